'use strict'
// What the core tells about a server store that lost its last commits (docs/RELIABILITY.md,
// "Restores and rollbacks"), through the binding: event.possiblyRepeated and rollbackStats().
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('fs')
const path = require('path')
const hd = require('..')
const { ORIGINAL, within, next, tmpDir, confirm, handle } = require('./helpers')

const TOPIC = 'topic'
const USER = ORIGINAL.kp1.publicKey

function openServer (dataDir) {
  return hd.createServer({ keyPair: ORIGINAL.kp0, onClientConsumedEvents: confirm, topic: TOPIC, dataDir, listen: '127.0.0.1:0', syncNormal: true })
}

/** A client that records every event it is handed as [payload, possiblyRepeated] and completes it. */
function openClient (server, dataDir, seen) {
  return hd.createClient({
    keyPair: ORIGINAL.kp1,
    serverPublicKey: ORIGINAL.kp0.publicKey,
    topic: TOPIC,
    dataDir,
    connect: `127.0.0.1:${server.port}`,
    reconnectMinMs: 10,
    reconnectMaxMs: 50,
    eventHandler (id, data, cb, event) {
      seen.push([data, event.possiblyRepeated])
      cb(id, true)
    }
  })
}

function until (check, ms, what) {
  return within(new Promise((resolve) => {
    const tick = () => { if (check()) resolve(); else setTimeout(tick, 10) }
    tick()
  }), ms, what)
}

const ZERO = { rollbacks: 0, epochResumes: 0, eventsRepeated: 0, eventsOrphaned: 0, consumedDropped: 0 }
const counters = (s) => ({
  rollbacks: s.rollbacks,
  epochResumes: s.epochResumes,
  eventsRepeated: s.eventsRepeated,
  eventsOrphaned: s.eventsOrphaned,
  consumedDropped: s.consumedDropped
})

/** Closes what a test opened even when it fails (an open handle keeps the process alive); more
 *  can be pushed onto the array it returns. */
function closing (t, ...handles) {
  t.after(() => Promise.all(handles.map((h) => h.close())))
  return handles
}

test('a fresh pair: nothing rolled back, events unmarked', { timeout: 15000 }, async (t) => {
  const server = openServer(tmpDir('server'))
  const seen = []
  const client = openClient(server, tmpDir('client'), seen)
  closing(t, server, client)
  const ss = server.rollbackStats()
  assert.ok(Buffer.isBuffer(ss.epoch) && ss.epoch.length === 16)
  assert.ok(!ss.epoch.equals(Buffer.alloc(16)), 'a server store always has an epoch')
  assert.deepEqual(counters(ss), ZERO)
  assert.deepEqual(counters(client.rollbackStats()), ZERO)
  await server.addEvent(USER, 'one')
  await until(() => seen.length === 1, 5000, 'the event')
  assert.deepEqual(seen, [['one', false]])
  const cs = client.rollbackStats()
  // a client's first resume learns the store's epoch (counted in epochResumes); no rollback
  assert.deepEqual(counters(cs), { ...ZERO, epochResumes: cs.epochResumes })
  assert.ok(cs.epoch.equals(ss.epoch), 'the client learnt the server store\'s epoch')
  assert.equal(server.rollbackStats().rollbacks, 0)
  await within(Promise.all([client.close(), server.close()]), 5000, 'close')
  assert.throws(() => server.rollbackStats(), { code: 'ECLOSED' })
  assert.throws(() => client.rollbackStats(), { code: 'ECLOSED' })
})

test('a store put back as a power loss under syncNormal leaves it: the lost event comes back marked', { timeout: 30000 }, async (t) => {
  const serverDir = tmpDir('server')
  const image = path.join(tmpDir('image'), 'store')
  const clientDir = tmpDir('client')
  const seen = []
  let server = openServer(serverDir)
  const opened = closing(t, server)
  await server.addEvent(USER, 'old#1')
  // the files as a power loss would leave them on disk at this point
  fs.mkdirSync(image)
  for (const f of ['hyperdown.db', 'hyperdown.db-wal', 'hyperdown.store']) {
    if (fs.existsSync(path.join(serverDir, f))) fs.copyFileSync(path.join(serverDir, f), path.join(image, f))
  }
  await server.addEvent(USER, 'old#2')
  let client = openClient(server, clientDir, seen)
  opened.push(client)
  await until(() => seen.length === 2 && server.pending(USER) === 0 && client.stats().consumed === 0, 10000,
    'both events handled and confirmed')
  await within(Promise.all([client.close(), server.close()]), 5000, 'close')

  fs.rmSync(serverDir, { recursive: true, force: true })
  fs.renameSync(image, serverDir)
  server = openServer(serverDir)
  opened.push(server)
  assert.equal(await server.addEvent(USER, 'new#2'), 2) // the number the client saw for old#2
  seen.length = 0
  client = openClient(server, clientDir, seen)
  opened.push(client)
  await until(() => seen.length === 2 && server.pending(USER) === 0, 10000, 'old#1 again and new#2')
  assert.deepEqual(seen, [['old#1', true], ['new#2', false]])
  const ss = server.rollbackStats()
  const cs = client.rollbackStats()
  assert.deepEqual(counters(ss), { ...ZERO, rollbacks: 1, epochResumes: 1 })
  assert.deepEqual(counters(cs), { ...ZERO, rollbacks: 1, epochResumes: 1, eventsRepeated: 1 })
  assert.ok(cs.epoch.equals(ss.epoch))
  await within(Promise.all([client.close(), server.close()]), 5000, 'close')
})
