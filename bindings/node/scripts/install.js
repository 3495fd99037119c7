'use strict'
// npm's install script: builds the addon with node-gyp, offline, against the headers of the
// Node that runs this script, after checking the system libraries the core links (libuv comes
// from Node itself). No environment variable is needed; npm_config_nodedir, when set, wins.
const { spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')

const pkg = path.join(__dirname, '..')

function fail (message) {
  console.error('\nhyperdown: ' + message.split('\n').join('\nhyperdown: ') + '\n')
  process.exit(1)
}

/*
 * The folder whose include/node/ holds the running Node's headers: the prefix of its executable
 * (/usr for Debian's /usr/bin/node, where the nodejs package puts them in /usr/include/node),
 * else the prefix Node was configured with. node-gyp given it (--nodedir) never downloads.
 */
function nodeDir () {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir
  const candidates = [path.resolve(path.dirname(process.execPath), '..'),
    process.config.variables && process.config.variables.node_prefix].filter(Boolean)
  const found = candidates.find((d) => fs.existsSync(path.join(d, 'include', 'node', 'node_api.h')))
  if (found === undefined) {
    fail(`the headers of this Node (${process.version}) were not found in ` +
      candidates.map((d) => path.join(d, 'include', 'node')).join(' or ') + '.\n' +
      'Install them (Debian/Ubuntu: the nodejs package of the distribution, or libnode-dev; ' +
      'official builds ship them), or set npm_config_nodedir to the folder that holds include/node.')
  }
  return found
}

/* npm's own node-gyp (npm puts its path in npm_config_node_gyp), else the one beside npm. */
function nodeGyp () {
  const candidates = [process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    '/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
    '/usr/share/nodejs/node-gyp/bin/node-gyp.js'].filter(Boolean)
  for (const c of candidates) if (fs.existsSync(c)) return c
  try {
    return require.resolve('node-gyp/bin/node-gyp.js')
  } catch {}
  fail('node-gyp was not found (npm carries one: is this run by npm?); looked in ' + candidates.join(', '))
}

/* Compiles and links `#include <header>` with `-llib` in a scratch folder: the error, or null. */
function probe (header, lib) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperdown-probe-'))
  try {
    const src = path.join(dir, 'probe.c')
    fs.writeFileSync(src, `#include <${header}>\nint main(void) { return 0; }\n`)
    const [cc, ...flags] = (process.env.CC || 'cc').trim().split(/\s+/) // CC may carry flags, as make's
    const r = spawnSync(cc, [...flags, src, '-o', path.join(dir, 'probe'), '-l' + lib], { encoding: 'utf8' })
    if (r.error) return `${cc}: ${r.error.message}`
    return r.status === 0 ? null : (r.stderr || '').trim().split('\n').slice(-3).join('\n')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const LIBRARIES = [
  { name: 'libsodium', header: 'sodium.h', lib: 'sodium', debian: 'libsodium-dev', fedora: 'libsodium-devel', brew: 'libsodium' },
  { name: 'SQLite', header: 'sqlite3.h', lib: 'sqlite3', debian: 'libsqlite3-dev', fedora: 'sqlite-devel', brew: 'sqlite' }
]

function checkLibraries () {
  const missing = []
  for (const l of LIBRARIES) {
    const err = probe(l.header, l.lib)
    if (err === null) continue
    if (/ENOENT/.test(err)) {
      fail(`no C compiler (${process.env.CC || 'cc'}) was found: install one (Debian/Ubuntu: build-essential)`)
    }
    missing.push(l)
    console.error(`hyperdown: ${l.name} (<${l.header}>, -l${l.lib}) cannot be used:\n${err}`)
  }
  if (missing.length > 0) {
    fail(`the C core links ${missing.map((l) => l.name).join(' and ')}, whose development files are missing.\n` +
      `Install: Debian/Ubuntu: sudo apt-get install ${missing.map((l) => l.debian).join(' ')}\n` +
      `         Fedora: sudo dnf install ${missing.map((l) => l.fedora).join(' ')}\n` +
      `         macOS (Homebrew): brew install ${missing.map((l) => l.brew).join(' ')}\n` +
      'then run npm install again.')
  }
}

checkLibraries()
const args = [nodeGyp(), 'rebuild', '--nodedir=' + nodeDir(),
  '--jobs=' + String(Math.max(1, Math.min(os.availableParallelism ? os.availableParallelism() : os.cpus().length, 8)))]
const r = spawnSync(process.execPath, args, { cwd: pkg, stdio: 'inherit' })
if (r.error) fail('could not run node-gyp: ' + r.error.message)
if (r.status !== 0) fail('the build failed (node-gyp rebuild exited with ' + (r.status ?? r.signal) + '); its output is above')
