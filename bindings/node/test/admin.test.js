'use strict'
// The admin calls through the Node binding: pendingUsers, listEvents (paged), deleteEvents and
// deleteUser, for a user that is offline and for one whose client is connected. Every wait is
// bounded.
const test = require('node:test')
const assert = require('node:assert/strict')
const hd = require('..')
const { ORIGINAL, within, tmpDir, confirm, handle } = require('./helpers')

const hexOf = (b) => Buffer.from(b).toString('hex')

test('pendingUsers, listEvents pages, deleteEvents and deleteUser; ids go on after a purge', { timeout: 20000 }, async () => {
  const server = hd.createServer({ keyPair: ORIGINAL.kp0, onClientConsumedEvents: confirm, topic: 'topic', dataDir: tmpDir('server'), listen: '127.0.0.1:0' })
  const u1 = ORIGINAL.kp1.publicKey
  const u2 = ORIGINAL.kp2.publicKey
  for (let i = 1; i <= 5; i++) await server.addEvent(u1, { n: i })
  await server.addEvent(u2, Buffer.from([0xff, 1]))
  const users = server.pendingUsers()
  assert.deepEqual(users.map((u) => [hexOf(u.user), u.pending]), [[hexOf(u1), 5], [hexOf(u2), 1]])

  const first = server.listEvents(u1, { limit: 2 })
  assert.deepEqual(first.map((e) => e.id), [1, 2])
  assert.deepEqual(first[1].payload, { n: 2 })
  assert.ok(Math.abs(first[0].createdAt - Date.now()) < 60000)
  const rest = server.listEvents(u1, { after: 2 })
  assert.deepEqual(rest.map((e) => e.id), [3, 4, 5])
  assert.deepEqual(server.listEvents(u1, { after: 5 }), [])
  assert.deepEqual(server.listEvents(hexOf(u2))[0].payload, Buffer.from([0xff, 1]))

  assert.equal(await server.deleteEvents(u1, [2, 4, 77n]), 2)
  assert.deepEqual(server.listEvents(u1).map((e) => e.id), [1, 3, 5])
  assert.equal(await server.deleteEvents(u1, []), 0)
  assert.equal(await server.deleteUser(u1), 3)
  assert.equal(server.pending(u1), 0)
  assert.deepEqual(server.pendingUsers().map((u) => hexOf(u.user)), [hexOf(u2)])
  assert.equal(await server.addEvent(u1, { n: 6 }), 6) // numbers are never given again

  await assert.rejects(server.deleteEvents(u1, [-1]), { code: 'EINVAL' })
  await assert.rejects(server.deleteEvents(u1, 'nope'), { code: 'EINVAL' })
  await assert.rejects(server.deleteUser(Buffer.alloc(3)), { code: 'EINVAL' })
  assert.throws(() => server.listEvents(u1, { limit: 0 }), { code: 'EINVAL' })
  await within(server.close(), 5000, 'close')
  await assert.rejects(server.deleteUser(u1), { code: 'ECLOSED' })
  assert.throws(() => server.pendingUsers(), { code: 'ECLOSED' })
})

test('a connected client whose events are deleted stays connected and gets the next ones', { timeout: 20000 }, async () => {
  const reported = []
  const server = hd.createServer({
    keyPair: ORIGINAL.kp0,
    topic: 'topic',
    dataDir: tmpDir('server'),
    listen: '127.0.0.1:0',
    onClientConsumedEvents (pk, events, cb) { reported.push(...events.map((e) => e.id)); cb(true) }
  })
  const got = []
  let release
  const gate = new Promise((resolve) => { release = resolve })
  const client = hd.createClient({
    keyPair: ORIGINAL.kp1,
    serverPublicKey: ORIGINAL.kp0.publicKey,
    topic: 'topic',
    dataDir: tmpDir('client'),
    connect: `127.0.0.1:${server.port}`,
    async eventHandler (id, data, cb) { got.push(id); await gate; cb(id, true) }
  })
  const u1 = ORIGINAL.kp1.publicKey
  await server.addEvent(u1, { n: 1 })
  await server.addEvent(u1, { n: 2 })
  await within(new Promise((resolve) => { const t = () => got.length ? resolve() : setTimeout(t, 10); t() }), 10000, 'first event handed out')
  assert.equal(await server.deleteUser(u1), 2) // both delivered already: the client still handles them
  release()
  assert.equal(await server.addEvent(u1, { n: 3 }), 3)
  await within(new Promise((resolve) => { const t = () => got.length === 3 && client.stats().consumed === 0 ? resolve() : setTimeout(t, 10); t() }), 10000, 'all handled and confirmed')
  assert.deepEqual(got, [1, 2, 3])
  assert.deepEqual(reported, [3]) // the deleted ones are confirmed without the callback
  assert.equal(server.stats().pendingTotal, 0)
  await within(Promise.all([client.close(), server.close()]), 5000, 'close')
})
