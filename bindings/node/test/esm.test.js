'use strict'
// The ES module entry (index.mjs) exports every name index.js does, the same objects.
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('path')
const { pathToFileURL } = require('url')

test('index.mjs: every export of index.js as a named export, and the entry point as default', async () => {
  const cjs = require('..')
  const esm = await import(pathToFileURL(path.join(__dirname, '..', 'index.mjs')).href)
  assert.equal(esm.default, cjs)
  assert.deepEqual(Object.keys(esm).filter((k) => k !== 'default').sort(), Object.keys(cjs).sort())
  for (const k of Object.keys(cjs)) assert.equal(esm[k], cjs[k], k)
})

test('package.json exports: import gives index.mjs, require index.js, types index.d.ts', () => {
  const pkg = require('../package.json')
  assert.deepEqual(pkg.exports['.'], { types: './index.d.ts', import: './index.mjs', require: './index.js' })
  assert.equal(Object.keys(pkg.exports['.'])[0], 'types') // TypeScript reads the first match
})
