'use strict'
// The package as a user gets it: `npm pack`, then an offline install of the tarball into a fresh
// project in a scratch folder outside the repository (no environment but PATH and a private
// HOME and npm cache there), and the original's example run from that project over the host
// name `localhost`, in CommonJS and with ESM named imports. Also an install from a path (the
// unpacked tarball's folder).
const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn, spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')

const PKG = path.join(__dirname, '..')
const npmMissing = spawnSync('npm', ['--version'], { encoding: 'utf8' }).error?.code === 'ENOENT'

/* Runs a command with `env` only, bounded by `ms`; stops it (SIGTERM) once until(stdout) holds. */
function run (cmd, args, { cwd, env, ms = 180000, until } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let stop = null
    const hard = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${cmd} ${args.join(' ')} did not end within ${ms} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`))
    }, ms)
    child.stdout.on('data', (d) => {
      stdout += d
      // a moment more after the output is complete: a repeated or late line would show
      if (until && stop === null && until(stdout)) stop = setTimeout(() => child.kill('SIGTERM'), 1000)
    })
    child.stderr.on('data', (d) => { stderr += d })
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(hard)
      clearTimeout(stop)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/* The original's example (test/fixtures/original-example.js) as a user of the package has it:
 * require('hyperdown'), and the host name localhost for the addresses. */
function originalExample () {
  const text = fs.readFileSync(path.join(__dirname, 'fixtures', 'original-example.js'), 'utf8')
    .replaceAll("require('../..')", "require('hyperdown')")
    .replaceAll("'127.0.0.1:", "'localhost:")
  assert.match(text, /listen: 'localhost:0'/)
  assert.equal((text.match(/connect: 'localhost:' \+ server\.port/g) || []).length, 2)
  return text
}

const ESM_EXAMPLE = `
import { createServer, createClient, keyPair, ADD_EVENTS_MAX } from 'hyperdown'
import hyperdown from 'hyperdown'
import fs from 'node:fs'

const serverKeys = keyPair()
const userKeys = keyPair()
let consumed
const done = new Promise((resolve) => { consumed = resolve })
const server = createServer({ keyPair: serverKeys, topic: 'esm', listen: 'localhost:0',
  dataDir: fs.mkdtempSync('server-'), onClientConsumedEvents (user, events, cb) { cb(true); consumed(events) } })
const client = createClient({ keyPair: userKeys, serverPublicKey: serverKeys.publicKey, topic: 'esm',
  connect: 'localhost:' + server.port, dataDir: fs.mkdtempSync('client-'),
  eventHandler (id, data, cb) { console.log('handled', id, JSON.stringify(data)); cb(id, true, { ok: 1 }) } })
await server.addEvent(userKeys.publicKey, { prize: 500 })
const events = await done
console.log('consumed', JSON.stringify(events.map((e) => [e.id, e.payload, e.data])))
console.log('default export', typeof hyperdown, typeof hyperdown.createServer, ADD_EVENTS_MAX > 0)
await client.close()
await server.close()
`

function exampleLines (stdout) {
  return {
    client1: [...stdout.matchAll(/^client1: event from server (\d+) \{ [^}]*note: '([^']*)' \}/gm)].map((m) => [Number(m[1]), m[2]]),
    client2: [...stdout.matchAll(/^client2: event from server (\d+) \{ [^}]*note: '([^']*)' \}/gm)].map((m) => [Number(m[1]), m[2]]),
    // the original printed the user's key with a template string: hex, as here
    serverKeys: [...stdout.matchAll(/^server: client (\S+) used the event/gm)].map((m) => m[1]),
    serverNotes: [...stdout.matchAll(/payload: \{ prize: -?\d+, game: '\w+', note: '([^']*)' \}/g)].map((m) => m[1])
  }
}

test('npm pack, an offline install in a fresh project outside the repository, the original\'s example over localhost (CommonJS) and ESM named imports',
  { skip: npmMissing && 'npm is not installed: the package test needs it', timeout: 600000 }, async () => {
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'hd-pack-'))
    try {
      // no environment variable but these: nothing of the repository's or the caller's npm setup
      const env = { PATH: process.env.PATH, HOME: path.join(scratch, 'home'), npm_config_cache: path.join(scratch, 'npm-cache') }
      fs.mkdirSync(env.HOME)
      const packed = await run('npm', ['pack', '--offline', '--pack-destination', scratch], { cwd: PKG, env })
      assert.equal(packed.code, 0, packed.stderr)
      const tarball = path.join(scratch, 'hyperdown-' + require('../package.json').version + '.tgz')
      assert.ok(fs.existsSync(tarball), packed.stdout + packed.stderr)
      assert.ok(!fs.existsSync(path.join(PKG, 'core')), 'postpack removes the copy of the core')
      const listed = await run('tar', ['tzf', tarball], { env })
      for (const f of ['package/README.md', 'package/LICENSE', 'package/index.mjs', 'package/index.d.ts',
        'package/core/include/hyperdown.h', 'package/core/CSources/LAYERS', 'package/scripts/install.js']) {
        assert.ok(listed.stdout.split('\n').includes(f), `${f} is in the tarball`)
      }

      const app = path.join(scratch, 'app')
      fs.mkdirSync(app)
      fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
      const installed = await run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], { cwd: app, env })
      assert.equal(installed.code, 0, installed.stdout + installed.stderr)
      assert.doesNotMatch(installed.stdout + installed.stderr, /nodejs\.org|http GET/, 'nothing is downloaded')
      assert.ok(fs.existsSync(path.join(app, 'node_modules', 'hyperdown', 'build', 'Release', 'hyperdown.node')))

      // CommonJS: the original's example, stopped once every line is out (its server stays up)
      fs.writeFileSync(path.join(app, 'original.js'), originalExample())
      const complete = (s) => { const o = exampleLines(s); return o.client1.length >= 2 && o.client2.length >= 1 && o.serverNotes.length >= 3 }
      const cjs = await run(process.execPath, ['original.js'], { cwd: app, env, ms: 60000, until: complete })
      assert.equal(cjs.signal, 'SIGTERM', cjs.stdout + cjs.stderr)
      assert.equal(cjs.stderr, '')
      const o = exampleLines(cjs.stdout)
      assert.deepEqual(o.client1, [[1, 'user1 is online'], [2, 'user1 is still online']])
      assert.deepEqual(o.client2, [[1, 'user2 is offline']])
      assert.deepEqual([...o.serverNotes].sort(), ['user1 is online', 'user1 is still online', 'user2 is offline'])
      const users = ['09f9cb2e6097bab4936696c7fb2e80c52ecc7e7a0dfe67274d93198e785c1558',
        '4cce6d17f4000b19b9f752fb7c185a56cff16d86f0cda8673e5ab6baed9e7171']
      assert.ok(o.serverKeys.length >= 2 && o.serverKeys.every((k) => users.includes(k)), o.serverKeys.join('\n'))

      // ESM: named imports and the default export, one event each way, then a clean exit
      fs.writeFileSync(path.join(app, 'esm.mjs'), ESM_EXAMPLE)
      const esm = await run(process.execPath, ['esm.mjs'], { cwd: app, env, ms: 60000 })
      assert.equal(esm.code, 0, esm.stdout + esm.stderr)
      assert.equal(esm.stderr, '')
      assert.match(esm.stdout, /^handled 1 \{"prize":500\}$/m)
      assert.match(esm.stdout, /^consumed \[\[1,\{"prize":500\},\{"ok":1\}\]\]$/m)
      assert.match(esm.stdout, /^default export function function true$/m)

      // from a path: the unpacked tarball's folder (the package carries its core)
      const unpacked = path.join(scratch, 'unpacked')
      fs.mkdirSync(unpacked)
      assert.equal((await run('tar', ['xzf', tarball, '-C', unpacked], { env })).code, 0)
      const app2 = path.join(scratch, 'app2')
      fs.mkdirSync(app2)
      fs.writeFileSync(path.join(app2, 'package.json'), JSON.stringify({ name: 'app2', version: '1.0.0', private: true }))
      const fromPath = await run('npm', ['install', '--offline', '--no-audit', '--no-fund', path.join(unpacked, 'package')], { cwd: app2, env })
      assert.equal(fromPath.code, 0, fromPath.stdout + fromPath.stderr)
      const loaded = await run(process.execPath, ['-e', "const hd = require('hyperdown'); console.log(typeof hd.createServer, hd.version)"], { cwd: app2, env, ms: 30000 })
      assert.equal(loaded.stdout.trim(), 'function ' + require('..').version, loaded.stderr)
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true })
    }
  })
