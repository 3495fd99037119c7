'use strict'
// Shared by the tests: the original example's key pairs and bounded waits.
const { spawn } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')

const h = (s) => Buffer.from(s, 'hex')

// The three keypear key pairs of the original's example (hyperdown-original-README.md).
const ORIGINAL = {
  kp0: {
    scalar: h('808a6e175b246bc93d4adaada45d49c031296efb36da7fdf3c5128d3eb46fd5e'),
    publicKey: h('9b0e5bf749a3fd55ca5d08b225962bae6c0c826d9822a79e36b1871b50da82fe')
  },
  kp1: {
    scalar: h('684e14316d8f379829ee5d1b883dffd2cf123f2987b8658353ae740ed8758565'),
    publicKey: h('09f9cb2e6097bab4936696c7fb2e80c52ecc7e7a0dfe67274d93198e785c1558')
  },
  kp2: {
    scalar: h('b0cf93c3f3589ea5e7a09b752e7b6492e6e331661da8fe88854d692aec59114f'),
    publicKey: h('4cce6d17f4000b19b9f752fb7c185a56cff16d86f0cda8673e5ab6baed9e7171')
  }
}

/* Every store folder of a test process lives under one temporary folder, removed at exit. */
let root = null
/** A new empty folder for one handle's store (`name` only makes it readable). */
function tmpDir (name = 'store') {
  if (root === null) {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'hd-node-'))
    process.on('exit', () => { try { fs.rmSync(root, { recursive: true, force: true }) } catch {} })
  }
  return fs.mkdtempSync(path.join(root, name + '-'))
}

/** `promise`, or a rejection naming `what` after `ms` (the timer never holds the process). */
function within (promise, ms, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
    timer.unref()
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** The next `event` of `emitter` as an array of its arguments, bounded by `ms`. */
function next (emitter, event, ms = 5000) {
  return within(new Promise((resolve) => emitter.once(event, (...args) => resolve(args))), ms,
    `'${event}'`)
}

/**
 * Runs a fixture in its own node process; resolves { code, signal, stdout, stderr, ms }.
 * `until(stdout)`: once it returns true the child is sent SIGTERM (for scripts that never end).
 */
function runFixture (name, { timeout = 15000, args = [], nodeArgs = [], cwd, until } = {}) {
  const file = path.join(__dirname, 'fixtures', name)
  const started = Date.now()
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, file, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd })
    let stdout = ''
    let stderr = ''
    let stopping = false
    child.stdout.on('data', (d) => {
      stdout += d
      if (until && !stopping && until(stdout)) {
        stopping = true
        child.kill('SIGTERM')
      }
    })
    child.stderr.on('data', (d) => { stderr += d })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`fixture ${name} did not exit within ${timeout} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`))
    }, timeout)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started })
    })
  })
}

/** A server's onClientConsumedEvents that deletes what was consumed (required: no default). */
function confirm (remotePublicKey, events, cb) { cb(true) }

/** A client's eventHandler that records every event consumed (required: no default). */
function handle (id, data, cb) { cb(id, true) }

module.exports = { ORIGINAL, within, next, runFixture, tmpDir, confirm, handle }
