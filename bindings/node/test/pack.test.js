'use strict'
// The package as a user gets it: `npm pack`, then an offline install of the tarball into a fresh
// project in a scratch folder outside the repository (no environment but PATH and a private
// HOME and npm cache there), and the original's example run from that project over the host
// name `localhost`, in CommonJS and with ESM named imports. Also an install from a path (the
// unpacked tarball's folder), and from a git URL of the repository (`git+file://`), whose root
// package.json is this package's (scripts/root-package.js) seen from two folders up.
const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn, spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { pathToFileURL } = require('url')
const rootPackage = require('../scripts/root-package')

const PKG = path.join(__dirname, '..')
const REPO = path.join(PKG, '..', '..')
const npmMissing = spawnSync('npm', ['--version'], { encoding: 'utf8' }).error?.code === 'ENOENT'
const gitMissing = spawnSync('git', ['--version'], { encoding: 'utf8' }).error?.code === 'ENOENT'

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

test('the repository root\'s package.json is this package\'s seen from the root (scripts/root-package.js), and npm in bindings/node does not see it',
  { timeout: 60000 }, async () => {
    const root = require(rootPackage.ROOT_FILE)
    const own = require('../package.json')
    assert.equal(fs.readFileSync(rootPackage.ROOT_FILE, 'utf8'), rootPackage.text(),
      'package.json at the root is out of date: run node bindings/node/scripts/root-package.js --write')
    for (const k of ['name', 'version', 'description', 'engines', 'license', 'keywords']) assert.deepEqual(root[k], own[k], k)
    assert.deepEqual(root.exports['.'], { types: './bindings/node/index.d.ts', import: './bindings/node/index.mjs', require: './bindings/node/index.js' })
    assert.deepEqual(Object.keys(root.exports), Object.keys(own.exports))
    for (const f of [root.main, root.types, ...Object.values(root.exports['.']), ...root.files]) {
      assert.ok(fs.existsSync(path.join(REPO, f)), `${f} (named in the root package.json) exists`)
    }
    // every file of the tarball's package is in the root's, at its place two folders down
    for (const f of own.files.filter((f) => f !== 'core/')) assert.ok(root.files.includes('bindings/node/' + f), f)
    assert.ok(root.files.includes('include/') && root.files.includes('CSources/'))
    // nothing that would make npm treat bindings/node as part of the root project
    assert.equal(root.workspaces, undefined)
    assert.equal(root.scripts.install, 'node bindings/node/scripts/install.js')
    assert.ok(!fs.existsSync(path.join(REPO, 'binding.gyp')), 'no binding.gyp at the root: npm adds no node-gyp build there')
    if (!npmMissing) {
      const env = { PATH: process.env.PATH, HOME: fs.mkdtempSync(path.join(os.tmpdir(), 'hd-prefix-')) }
      try {
        const prefix = await run('npm', ['prefix'], { cwd: PKG, env, ms: 30000 })
        assert.equal(prefix.code, 0, prefix.stderr)
        assert.equal(fs.realpathSync(prefix.stdout.trim()), fs.realpathSync(PKG), 'npm in bindings/node works on bindings/node')
      } finally {
        fs.rmSync(env.HOME, { recursive: true, force: true })
      }
    }
  })

/* A git repository in `dir` holding the working tree as it is (tracked and untracked files that
 * are not ignored, with their changes), one commit: what a clone of a pushed commit has. */
async function scratchRepository (dir, env) {
  const listed = await run('git', ['-C', REPO, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], { env, ms: 60000 })
  assert.equal(listed.code, 0, listed.stderr)
  const files = listed.stdout.split('\0').filter(Boolean)
  assert.ok(files.includes('package.json') && files.includes('CSources/LAYERS'), 'the repository lists its files')
  for (const f of files) {
    const from = path.join(REPO, f)
    let st
    try {
      st = fs.lstatSync(from)
    } catch (err) {
      if (err.code === 'ENOENT') continue // deleted in the working tree
      throw err
    }
    const to = path.join(dir, f)
    fs.mkdirSync(path.dirname(to), { recursive: true })
    if (st.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(from), to)
    else if (st.isFile()) fs.copyFileSync(from, to) // a submodule (a folder) would be skipped
    if (st.isFile()) fs.chmodSync(to, st.mode & 0o777)
  }
  const git = (...args) => run('git', ['-c', 'user.name=hyperdown test', '-c', 'user.email=test@hyperdown.invalid',
    '-c', 'commit.gpgsign=false', '-c', 'init.defaultBranch=main', ...args], { cwd: dir, env, ms: 60000 })
  for (const args of [['init', '-q'], ['add', '-A'], ['commit', '-q', '-m', 'the working tree']]) {
    const r = await git(...args)
    assert.equal(r.code, 0, `git ${args.join(' ')}: ${r.stdout}${r.stderr}`)
  }
}

test('npm install git+file:// of the repository, offline, in a fresh project outside it: the addon builds and a server and a client exchange an event over localhost',
  { skip: (npmMissing && 'npm is not installed: the package test needs it') || (gitMissing && 'git is not installed'), timeout: 600000 }, async () => {
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'hd-git-'))
    try {
      const env = { PATH: process.env.PATH, HOME: path.join(scratch, 'home'), npm_config_cache: path.join(scratch, 'npm-cache'), GIT_CONFIG_NOSYSTEM: '1' }
      fs.mkdirSync(env.HOME)
      const repo = path.join(scratch, 'repo')
      fs.mkdirSync(repo)
      await scratchRepository(repo, env)

      const app = path.join(scratch, 'app')
      fs.mkdirSync(app)
      fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
      const url = 'git+' + pathToFileURL(repo).href
      const installed = await run('npm', ['install', '--offline', '--no-audit', '--no-fund', url], { cwd: app, env })
      assert.equal(installed.code, 0, installed.stdout + installed.stderr)
      assert.doesNotMatch(installed.stdout + installed.stderr, /nodejs\.org|http GET/, 'nothing is downloaded')

      // the package as npm packed the clone: the root's "files", the addon built two folders down
      const hd = path.join(app, 'node_modules', 'hyperdown')
      assert.equal(JSON.parse(fs.readFileSync(path.join(hd, 'package.json'), 'utf8')).version, require('../package.json').version)
      assert.ok(fs.existsSync(path.join(hd, 'bindings', 'node', 'build', 'Release', 'hyperdown.node')))
      for (const f of ['include/hyperdown.h', 'CSources/LAYERS', 'bindings/node/index.d.ts', 'bindings/node/LICENSE', 'bindings/node/README.md']) {
        assert.ok(fs.existsSync(path.join(hd, f)), `${f} is installed`)
      }
      for (const f of ['Makefile', 'Package.swift', 'Sources', 'bindings/python', 'bindings/node/test', 'bindings/node/topic', '.git']) {
        assert.ok(!fs.existsSync(path.join(hd, f)), `${f} is not part of the package`)
      }
      const resolved = await run(process.execPath, ['-e', "console.log(require.resolve('hyperdown'), typeof require('hyperdown').createServer)"], { cwd: app, env, ms: 30000 })
      assert.equal(resolved.stdout.trim(), path.join(fs.realpathSync(hd), 'bindings', 'node', 'index.js') + ' function', resolved.stderr)

      // ESM named imports: a server and a client over localhost, one event each way, a clean exit
      fs.writeFileSync(path.join(app, 'esm.mjs'), ESM_EXAMPLE)
      const esm = await run(process.execPath, ['esm.mjs'], { cwd: app, env, ms: 60000 })
      assert.equal(esm.code, 0, esm.stdout + esm.stderr)
      assert.equal(esm.stderr, '')
      assert.match(esm.stdout, /^handled 1 \{"prize":500\}$/m)
      assert.match(esm.stdout, /^consumed \[\[1,\{"prize":500\},\{"ok":1\}\]\]$/m)
      assert.match(esm.stdout, /^default export function function true$/m)
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true })
    }
  })
