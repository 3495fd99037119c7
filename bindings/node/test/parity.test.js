'use strict'
// Parity with the C ABI (issue 12): parity.txt maps every public function of include/hyperdown.h
// to its JS name, or says why it is deliberately not exposed. A new hd_ function without a
// line fails here; so does a mapped function the addon never calls or a JS name that is not
// there.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('fs')
const path = require('path')
const hd = require('..')
const { ORIGINAL, tmpDir, confirm, handle } = require('./helpers')

const PKG = path.join(__dirname, '..')
const root = [path.join(PKG, 'core'), path.join(PKG, '..', '..')]
  .find((d) => fs.existsSync(path.join(d, 'include', 'hyperdown.h')))
const header = fs.readFileSync(path.join(root, 'include', 'hyperdown.h'), 'utf8')
  .replace(/\/\*[\s\S]*?\*\//g, '') // comments may quote declarations
const publicFunctions = [...new Set([...header.matchAll(/\bHD_EXTERN\b[^;(]*?\b(hd_\w+)\s*\(/g)].map((m) => m[1]))]

const parity = fs.readFileSync(path.join(PKG, 'parity.txt'), 'utf8').split('\n').filter(Boolean)
  .map((line) => {
    const [fn, js, why, ...rest] = line.split('\t')
    assert.equal(rest.length, 0, `one or two tabs: ${line}`)
    return { fn, js, why, line }
  })

const sources = fs.readdirSync(path.join(PKG, 'src')).filter((f) => f.endsWith('.c'))
  .map((f) => fs.readFileSync(path.join(PKG, 'src', f), 'utf8')).join('\n')
  .replace(/\/\*[\s\S]*?\*\//g, '')
const js = [path.join(PKG, 'index.js'), ...fs.readdirSync(path.join(PKG, 'lib')).map((f) => path.join(PKG, 'lib', f))]
  .map((f) => fs.readFileSync(f, 'utf8')).join('\n')

test('parity.txt has exactly one line per public function of include/hyperdown.h', () => {
  assert.ok(publicFunctions.length >= 80, `found ${publicFunctions.length} HD_EXTERN functions`)
  const listed = parity.map((p) => p.fn)
  assert.deepEqual(listed.filter((f, i) => listed.indexOf(f) !== i), [], 'listed twice')
  assert.deepEqual(publicFunctions.filter((f) => !listed.includes(f)), [], 'public functions without a line in parity.txt')
  assert.deepEqual(listed.filter((f) => !publicFunctions.includes(f)), [], 'lines for functions the header does not declare')
  for (const p of parity) {
    if (p.js === '-') assert.ok(p.why && p.why.length > 10, `a deliberate omission says why: ${p.line}`)
    else assert.ok(/^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/.test(p.js), `a JS name: ${p.line}`)
  }
})

test('every mapped function is called by the addon and its JS name is defined', () => {
  for (const p of parity.filter((x) => x.js !== '-')) {
    assert.match(sources, new RegExp(`\\b${p.fn}\\b`), `${p.fn} is used in src/*.c`)
    const last = p.js.split('.').pop()
    assert.match(js, new RegExp(`(\\bthis\\.${last}\\s*=|\\b${last}\\s*:|\\bfunction\\s+${last}\\b|\\b(const|let)\\s+${last}\\b|^\\s*(get\\s+)?${last}\\s*\\()`, 'm'),
      `${p.js} (${p.fn}) is defined in lib/*.js or index.js`)
  }
})

/* A getter somewhere on the prototype chain (read it and its call runs). */
function getter (obj, name) {
  for (let o = obj; o !== null; o = Object.getPrototypeOf(o)) {
    const d = Object.getOwnPropertyDescriptor(o, name)
    if (d) return typeof d.get === 'function'
  }
  return false
}

test('every mapped JS name is there at run time, on the module or on a live handle', async () => {
  const server = hd.createServer({ keyPair: ORIGINAL.kp0, topic: 'p', dataDir: tmpDir('server'), listen: '127.0.0.1:0', onClientConsumedEvents: confirm, authorize: () => true })
  const client = hd.createClient({ keyPair: ORIGINAL.kp1, serverPublicKey: ORIGINAL.kp0.publicKey, topic: 'p', dataDir: tmpDir('client'), connect: `127.0.0.1:${server.port}`, eventHandler: handle, onNotice () {} })
  try {
    for (const p of parity.filter((x) => x.js !== '-')) {
      const parts = p.js.split('.')
      const last = parts.pop()
      // `in`, not a read: a getter (metricsPort) is there even where its call fails
      let at = parts[0] === 'Server' ? server : parts[0] === 'Client' ? client : hd
      for (const part of (parts[0] === 'Server' || parts[0] === 'Client') ? parts.slice(1) : parts) at = at[part]
      assert.ok(at !== undefined && at !== null && last in at && (getter(at, last) || at[last] !== undefined),
        `${p.js} (${p.fn})`)
    }
  } finally {
    await client.close()
    await server.close()
  }
})
