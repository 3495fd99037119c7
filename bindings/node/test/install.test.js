'use strict'
// The install script (scripts/install.js) before any build: a library the core links that the
// compiler cannot find stops the install with the package to install.
const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('child_process')
const path = require('path')

test('without libsodium and SQLite the install stops at once and names libsodium-dev and libsqlite3-dev', () => {
  // the real compiler, pointed at an empty system root: it finds neither library (nor libc)
  const r = spawnSync(process.execPath, [path.join(__dirname, '..', 'scripts', 'install.js')], {
    env: { PATH: process.env.PATH, CC: 'cc --sysroot=/nonexistent-hyperdown-sysroot' },
    encoding: 'utf8',
    timeout: 60000
  })
  assert.equal(r.status, 1, r.stdout + r.stderr)
  assert.match(r.stderr, /links libsodium and SQLite, whose development files are missing/)
  assert.match(r.stderr, /apt-get install libsodium-dev libsqlite3-dev/)
  assert.doesNotMatch(r.stdout + r.stderr, /gyp info/, 'node-gyp is not started')
})
