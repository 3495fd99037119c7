'use strict'
// The queue semantics through the Node binding (docs/QUEUES.md): add options and their results,
// limits, fan-out, dead letters in a round trip with a real client, requeue, notices,
// maxEventBytes and eventsTooLarge. Every wait is bounded.
const test = require('node:test')
const assert = require('node:assert/strict')
const hd = require('..')
const { ORIGINAL, within, tmpDir, confirm, handle } = require('./helpers')

const TOPIC = 'topic'
const u1 = ORIGINAL.kp1.publicKey
const u2 = ORIGINAL.kp2.publicKey
const hexOf = (b) => Buffer.from(b).toString('hex')

// every handle a test opens is closed after it, also when an assertion failed first
const opened = []
test.afterEach(() => within(Promise.all(opened.splice(0).map((h) => h.close())), 5000, 'closing the test\'s handles'))

function openServer (dataDir, options = {}) {
  return track(hd.createServer({ keyPair: ORIGINAL.kp0, onClientConsumedEvents: confirm, topic: TOPIC, dataDir, listen: '127.0.0.1:0', ...options }))
}

function track (handle) {
  opened.push(handle)
  return handle
}

function openClient (server, dataDir, options = {}) {
  return track(hd.createClient({
    keyPair: ORIGINAL.kp1,
    eventHandler: handle,
    serverPublicKey: ORIGINAL.kp0.publicKey,
    topic: TOPIC,
    dataDir,
    connect: `127.0.0.1:${server.port}`,
    retryMinMs: 10,
    retryMaxMs: 40,
    reconnectMinMs: 10,
    reconnectMaxMs: 50,
    ...options
  }))
}

/** Resolves when check() is true (polled every 10 ms), bounded by `ms`. */
function until (check, ms, what) {
  return within(new Promise((resolve) => {
    const tick = () => { if (check()) resolve(); else setTimeout(tick, 10) }
    tick()
  }), ms, what)
}

test('add options: a dedup repeat gives the first seq, a collapse key replaces; addEvent is unchanged', { timeout: 20000 }, async () => {
  const server = openServer(tmpDir('server'))
  assert.equal(await server.addEvent(u1, { n: 0 }), 1) // the plain add still resolves with the id
  const first = await server.add(u1, { n: 1 }, { dedupKey: 'order-7' })
  assert.deepEqual(first, { seq: 2, duplicate: false, conflict: false, replacedSeq: null, dropped: 0 })
  const again = await server.add(u1, { n: 1 }, { dedupKey: 'order-7' })
  assert.deepEqual(again, { seq: 2, duplicate: true, conflict: false, replacedSeq: null, dropped: 0 })
  const other = await server.add(u1, { n: 2 }, { dedupKey: Buffer.from('order-7') })
  assert.equal(other.seq, 2)
  assert.ok(other.duplicate && other.conflict, 'another payload under the same key: a conflict, the first wins')
  assert.equal(server.pending(u1), 2)

  const a = await server.add(u1, { score: 1 }, { collapseKey: 'score' })
  const b = await server.add(u1, { score: 2 }, { collapseKey: 'score' })
  assert.equal(b.replacedSeq, a.seq)
  assert.ok(b.seq > a.seq)
  assert.deepEqual(server.listEvents(u1).map((e) => e.payload), [{ n: 0 }, { n: 1 }, { score: 2 }])

  const forever = await server.add(u2, 'x', { ttlMs: Infinity })
  assert.equal(forever.seq, 1)
  await assert.rejects(server.add(u1, 'x', { dedupKey: Buffer.alloc(300) }), { code: 'EINVAL' })
  await assert.rejects(server.add(u1, 'x', { dedupKey: 5 }), { code: 'EINVAL' })
  const st = server.stats()
  assert.equal(st.addsDuplicate, 2)
  assert.equal(st.eventsReplaced, 1)
  await within(server.close(), 5000, 'close')
  await assert.rejects(server.add(u1, 'x'), { code: 'ECLOSED' })
})

test('limits: overflow reject refuses with ELIMIT, drop-oldest makes room', { timeout: 20000 }, async () => {
  const strict = openServer(tmpDir('server'), { maxPendingPerUser: 2 })
  await strict.add(u1, 1)
  await strict.add(u1, 2)
  const err = await strict.add(u1, 3).then(() => null, (e) => e)
  assert.ok(err, 'the third add must fail')
  assert.equal(err.code, 'ELIMIT')
  assert.equal(err.errno, hd.errors.ELIMIT)
  await assert.rejects(strict.addEvent(u1, 3), { code: 'ELIMIT' }) // the plain add is limited too
  assert.equal(strict.stats().addsLimited, 2)
  assert.equal(strict.pending(u1), 2)
  await within(strict.close(), 5000, 'close')

  const roomy = openServer(tmpDir('server'), { maxBytesPerUser: 20, overflow: 'drop-oldest' })
  await roomy.add(u1, Buffer.alloc(8))
  await roomy.add(u1, Buffer.alloc(8))
  const r = await roomy.add(u1, Buffer.alloc(8))
  assert.equal(r.dropped, 1)
  assert.ok(r.seq > 2) // (the dropped notice takes its place in the stream)
  const ids = roomy.listEvents(u1).map((e) => e.id)
  assert.ok(!ids.includes(1) && ids.includes(2) && ids.includes(r.seq), `held: ${ids}`)
  assert.equal(roomy.stats().eventsDropped, 1)
  await within(roomy.close(), 5000, 'close')
  assert.throws(() => openServer(tmpDir('server'), { overflow: 'sometimes' }), { code: 'EINVAL' })
})

test('fan-out: one payload for many users, each with its own result; a user at a limit fails alone', { timeout: 20000 }, async () => {
  const server = openServer(tmpDir('server'), { maxPendingPerUser: 1 })
  const u3 = hd.keyPair().publicKey
  await server.addEvent(u2, 'already one') // u2 is at its limit
  const results = await server.addEventForUsers([u1, hexOf(u2), u3], { sale: 50 }, { dedupKey: 'sale-1' })
  assert.equal(results.length, 3)
  assert.deepEqual(results.map((r) => hexOf(r.user)), [hexOf(u1), hexOf(u2), hexOf(u3)])
  assert.equal(results[0].error, null)
  assert.equal(results[0].seq, 1)
  assert.equal(results[1].error.code, 'ELIMIT')
  assert.equal(results[1].seq, null)
  assert.equal(results[2].seq, 1)
  assert.deepEqual(server.listEvents(u3)[0].payload, { sale: 50 })
  const repeat = await server.addEventForUsers([u1, u3], { sale: 50 }, { dedupKey: 'sale-1' })
  assert.ok(repeat.every((r) => r.duplicate && r.seq === 1))
  assert.deepEqual(server.pendingUsers().map((u) => [hexOf(u.user), u.pending]),
    [[hexOf(u2), 1], [hexOf(u1), 1], [hexOf(u3), 1]])
  await assert.rejects(server.addEventForUsers([], 'x'), { code: 'EINVAL' })
  await assert.rejects(server.addEventForUsers([Buffer.alloc(5)], 'x'), { code: 'EINVAL' })
  await within(server.close(), 5000, 'close')
})

test('dead letters: a rejected and an exhausted event reach the server; listed, requeued with a notice, deleted', { timeout: 30000 }, async () => {
  const reported = []
  const server = openServer(tmpDir('server'), { onDeadLetter (user, d) { reported.push([hexOf(user), d.id, d.reason]) } })
  const attempts = []
  const notices = []
  const handled = []
  let requeued = false
  const client = openClient(server, tmpDir('client'), {
    maxAttempts: 2,
    eventHandler (id, data, cb, event) {
      if (data.kind === 'poison' && !requeued) return event.reject('cannot parse')
      if (data.kind === 'flaky' && !requeued) {
        attempts.push(event.attempt)
        return event.fail(new Error('backend down'))
      }
      handled.push([id, data.kind])
      cb(id, true)
    },
    onNotice (n) { notices.push(n) }
  })
  await server.addEvent(u1, { kind: 'poison' })
  await server.addEvent(u1, { kind: 'flaky' })
  await server.addEvent(u1, { kind: 'fine' })
  // onDeadLetter runs once the dead letter is durable, which may be after the count shows it
  await until(() => server.deadLetterCount(u1) === 2 && handled.length === 1 && reported.length === 2, 15000,
    'two dead letters reported and the third event handled')
  assert.deepEqual(handled, [[3, 'fine']]) // later events flow on
  assert.deepEqual(attempts, [1, 2])
  assert.deepEqual(reported, [[hexOf(u1), 1, 'cannot parse'], [hexOf(u1), 2, 'backend down']])
  const letters = server.listDeadLetters(u1)
  assert.deepEqual(letters.map((d) => [d.id, d.payload.kind, d.reason, d.attempts]),
    [[1, 'poison', 'cannot parse', 1], [2, 'flaky', 'backend down', 2]])
  assert.ok(letters[0].deadAt >= letters[0].createdAt)
  assert.deepEqual(server.listDeadLetters(u1, { after: 1, limit: 1 }).map((d) => d.id), [2])
  assert.equal(server.deadLetterCount(), 2)
  assert.deepEqual(server.deadLetterUsers().map((u) => [hexOf(u.user), u.count]), [[hexOf(u1), 2]])
  await until(() => client.stats().eventsDead === 2, 5000, 'the client counts them dead')
  assert.equal(server.stats().eventsDead, 2)
  assert.equal(server.stats().deadLetters, 2)

  requeued = true
  assert.equal(await server.requeueDeadLetters(u1, [1]), 1)
  await until(() => handled.length === 2 && notices.length >= 1, 10000, 'the requeued event and its notice')
  assert.equal(handled[1][1], 'poison')
  assert.ok(handled[1][0] > 3, 'a requeued dead letter takes a new id')
  assert.deepEqual(notices[0], { kind: 'requeued', count: 1, firstSeq: 1, lastSeq: handled[1][0] })
  assert.equal(server.stats().eventsRequeued, 1)
  assert.equal(await server.deleteDeadLetters(u1, []), 0)
  assert.equal(await server.deleteDeadLetters(u1), 1)
  assert.equal(server.deadLetterCount(u1), 0)
  assert.deepEqual(server.deadLetterUsers(), [])
  await until(() => client.stats().noticesReceived >= 1, 5000, 'the notice counted')
  await within(Promise.all([client.close(), server.close()]), 5000, 'close')
})

test('notices: an event that expires unsent reaches the client as an expired notice', { timeout: 30000 }, async () => {
  const serverDir = tmpDir('server')
  const server = openServer(serverDir)
  const r = await server.add(u1, { late: true }, { ttlMs: 100 })
  await server.addEvent(u1, { onTime: true })
  await until(() => server.stats().eventsExpired >= 1, 15000, 'the expiry sweep')
  const notices = []
  const got = []
  const refused = []
  const client = openClient(server, tmpDir('client'), {
    eventHandler (id, data, cb) { got.push(id); cb(id, true) },
    async onNotice (n) {
      if (refused.length === 0) { refused.push(n); throw new Error('not yet') } // handed again
      notices.push(n)
    }
  })
  client.on('callbackError', () => {})
  await until(() => notices.length === 1 && got.length === 1, 10000, 'the notice and the live event')
  assert.deepEqual(refused, notices)
  assert.deepEqual(notices[0], { kind: 'expired', count: 1, firstSeq: r.seq, lastSeq: r.seq })
  assert.deepEqual(got, [2]) // the event on time; the expired one only as the notice
  assert.equal(client.stats().noticesReceived, 1)
  await within(Promise.all([client.close(), server.close()]), 5000, 'close')
})

test('maxEventBytes bounds adds; an event stored under a larger one counts in eventsTooLarge', { timeout: 20000 }, async () => {
  const dir = tmpDir('server')
  let server = openServer(dir, { maxEventBytes: 4000 })
  await assert.rejects(server.addEvent(u1, Buffer.alloc(4001)), { code: 'EINVAL' })
  assert.equal(await server.addEvent(u1, Buffer.alloc(3000)), 1)
  await within(server.close(), 5000, 'close')
  server = openServer(dir, { maxEventBytes: 1000 }) // the same store, now with a smaller limit
  const client = openClient(server, tmpDir('client'), { maxMessageBytes: 2000, reconnect: false, eventHandler () {} })
  await until(() => server.stats().eventsTooLarge >= 1, 10000, 'the too-large event told')
  assert.equal(server.pending(u1), 1)
  await within(Promise.all([client.close(), server.close()]), 5000, 'close')
})
