'use strict'
// Events through the Node binding: the original's example, the JSON rule, throwing callbacks,
// closing while events are in flight, and 1,000 open/close cycles. Every wait is bounded.
const test = require('node:test')
const assert = require('node:assert/strict')
const hd = require('..')
const { ORIGINAL, within, next, runFixture, tmpDir, confirm, handle } = require('./helpers')

const TOPIC = 'topic'
const hexOf = (b) => Buffer.from(b).toString('hex')

function openServer (dataDir, options = {}) {
  return hd.createServer({ keyPair: ORIGINAL.kp0, onClientConsumedEvents: confirm, topic: TOPIC, dataDir, listen: '127.0.0.1:0', ...options })
}

function openClient (server, dataDir, options = {}) {
  return hd.createClient({
    keyPair: ORIGINAL.kp1,
    eventHandler: handle,
    serverPublicKey: ORIGINAL.kp0.publicKey,
    topic: TOPIC,
    dataDir,
    connect: `127.0.0.1:${typeof server === 'number' ? server : server.port}`,
    retryMinMs: 10,
    retryMaxMs: 40,
    reconnectMinMs: 10,
    reconnectMaxMs: 50,
    ...options
  })
}

/** Resolves when check() is true (polled every 10 ms), bounded by `ms`. */
function until (check, ms, what) {
  return within(new Promise((resolve) => {
    const tick = () => { if (check()) resolve(); else setTimeout(tick, 10) }
    tick()
  }), ms, what)
}

// ---- The original's example -----------------------------------------------------------------

function exampleOutput (stdout) {
  const client1 = [...stdout.matchAll(/^client1: event from server (\d+) \{ ([^}]*) \} \[Function: cb\]$/gm)].map((m) => [Number(m[1]), m[2]])
  const client2 = [...stdout.matchAll(/^client2: event from server (\d+) \{ ([^}]*) \} \[Function: cb\]$/gm)].map((m) => [Number(m[1]), m[2]])
  const serverCalls = (stdout.match(/^server: client .* used the event \[/gm) || []).length
  // the server prints each consumed event's payload once: count the payload notes in its lines
  const serverNotes = [...stdout.matchAll(/payload: \{ prize: -?\d+, game: '\w+', note: '([^']*)' \}/g)].map((m) => m[1])
  return { client1, client2, serverCalls, serverNotes }
}

test('the original\'s example runs with its own keys and behaves as the original describes', { timeout: 60000 }, async () => {
  const cwd = tmpDir('example') // folderName 'topic' is relative to process.cwd(), as in the original
  const complete = (stdout) => {
    const o = exampleOutput(stdout)
    return o.client1.length >= 2 && o.client2.length >= 1 && o.serverNotes.length >= 3
  }
  // run it in a child that we stop ourselves once the output is complete
  const { spawn } = require('child_process')
  const path = require('path')
  const runOnce = () => new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'original-example.js')], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let stopTimer = null
    const hard = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`the example did not complete within 20 s\nstdout:\n${stdout}\nstderr:\n${stderr}`)) }, 20000)
    child.stdout.on('data', (d) => {
      stdout += d
      if (stopTimer === null && complete(stdout)) stopTimer = setTimeout(() => child.kill('SIGTERM'), 1500)
    })
    child.stderr.on('data', (d) => { stderr += d })
    child.on('error', reject)
    child.on('close', (code, signal) => { clearTimeout(hard); clearTimeout(stopTimer); resolve({ code, signal, stdout, stderr }) })
  })

  const first = await runOnce()
  assert.equal(first.signal, 'SIGTERM', `it must still be running (its server stays up) until stopped\n${first.stderr}`)
  assert.equal(first.stderr, '')
  const o1 = exampleOutput(first.stdout)
  // each client's handler prints each of its events exactly once, in order, with the data as sent
  assert.deepEqual(o1.client1, [[1, "prize: 500, game: 'boxing', note: 'user1 is online'"],
    [2, "prize: 4500, game: 'boxing2', note: 'user1 is still online'"]])
  assert.deepEqual(o1.client2, [[1, "prize: -500, game: 'boxing', note: 'user2 is offline'"]])
  // the server's callback reports each consumed event exactly once
  assert.deepEqual([...o1.serverNotes].sort(), ['user1 is online', 'user1 is still online', 'user2 is offline'])
  assert.ok(o1.serverCalls >= 1 && o1.serverCalls <= 3, first.stdout)
  // the original's entry point hands onClientConsumedEvents the user's key as hex, as the
  // original did: its own log line prints it
  const keys = [...first.stdout.matchAll(/^server: client (\S+) used the event/gm)].map((m) => m[1])
  assert.ok(keys.length === o1.serverCalls && keys.every((k) => [ORIGINAL.kp1, ORIGINAL.kp2].some((kp) => kp.publicKey.toString('hex') === k)),
    first.stdout)

  // "re-run": the stores under ./topic/{server,onlineClient1,offlineClient2} are reopened; the
  // events of the first run were confirmed, so only the new ones are handled, with the next ids
  const second = await runOnce()
  assert.equal(second.stderr, '')
  const o2 = exampleOutput(second.stdout)
  assert.deepEqual(o2.client1.map(([id]) => id), [3, 4])
  assert.deepEqual(o2.client2.map(([id]) => id), [2])
  assert.equal(o2.serverNotes.length, 3, second.stdout)
})

// ---- The API --------------------------------------------------------------------------------

test('addEvent resolves ids; the JSON rule both ways; stats, pending and connectedUsers', { timeout: 20000 }, async () => {
  const consumed = []
  const server = openServer(tmpDir('server'), {
    onClientConsumedEvents (pk, events, cb) { consumed.push(...events); cb(true) }
  })
  const got = []
  const client = openClient(server, tmpDir('client'), {
    eventHandler (id, data, cb, event) {
      got.push({ id, data, event })
      cb(id, true, id === 1 ? { reply: 'ok' } : id === 2 ? Buffer.from([0xff, 0]) : undefined)
    }
  })
  const invalidUtf8 = Buffer.from([0xc3, 0x28, 0x7b])
  const values = [{ prize: 500 }, [1, 'two'], 'text', 42, null, Buffer.from([1, 2, 3]), invalidUtf8, Buffer.from('{"a":1}')]
  const ids = []
  for (const v of values) ids.push(await server.addEvent(ORIGINAL.kp1.publicKey, v))
  assert.deepEqual(ids, [1, 2, 3, 4, 5, 6, 7, 8])
  assert.equal(typeof ids[0], 'number')
  await until(() => got.length === values.length && consumed.length === values.length, 10000, 'all events handled')
  assert.deepEqual(got.map((g) => g.id), ids)
  assert.deepEqual(got[0].data, { prize: 500 })
  assert.deepEqual(got[1].data, [1, 'two'])
  assert.equal(got[2].data, 'text')
  assert.equal(got[3].data, 42)
  assert.equal(got[4].data, null)
  assert.deepEqual(got[5].data, Buffer.from([1, 2, 3])) // not UTF-8 JSON: the Buffer
  assert.deepEqual(got[6].data, invalidUtf8)
  assert.deepEqual(got[7].data, { a: 1 }) // bytes that are JSON text come back parsed
  assert.ok(Buffer.isBuffer(got[0].event.payload))
  assert.equal(got[0].event.payload.toString(), '{"prize":500}')
  assert.ok(Math.abs(got[0].event.createdAt - Date.now()) < 60000)
  // the server's side: { id, data (the client's result), payload, createdAt }
  consumed.sort((a, b) => a.id - b.id)
  assert.deepEqual(consumed.map((e) => e.id), ids)
  assert.deepEqual(consumed[0].data, { reply: 'ok' })
  assert.deepEqual(consumed[0].payload, { prize: 500 })
  assert.deepEqual(consumed[1].data, Buffer.from([0xff, 0]))
  assert.equal(consumed[2].data, null)
  await until(() => server.stats().eventsConfirmed === values.length, 5000, 'confirmations')
  const s = server.stats()
  assert.equal(s.eventsAdded, values.length)
  assert.equal(s.pendingTotal, 0)
  assert.equal(s.connectedUsers, 1)
  assert.equal(server.pending(ORIGINAL.kp1.publicKey), 0)
  assert.deepEqual(server.connectedUsers().map(hexOf), [hexOf(ORIGINAL.kp1.publicKey)])
  const cs = client.stats()
  assert.equal(cs.eventsHandled, values.length)
  assert.equal(cs.connected, true)
  // a user that is not connected: stored, pending, and ids are per user
  assert.equal(await server.addEvent(hexOf(ORIGINAL.kp2.publicKey), { offline: true }), 1)
  assert.equal(server.pending(ORIGINAL.kp2.publicKey), 1)
  await server.updatePause(0)
  // errors are rejections with a code
  await assert.rejects(server.addEvent(ORIGINAL.kp1.publicKey, Buffer.alloc(0)), { code: 'EINVAL' })
  await assert.rejects(server.addEvent(Buffer.alloc(32, 0xff), { x: 1 }), { code: 'EKEY' })
  await assert.rejects(server.addEvent(Buffer.alloc(3), { x: 1 }), { code: 'EINVAL' })
  await assert.rejects(server.addEvent(ORIGINAL.kp1.publicKey, undefined), { code: 'EINVAL' })
  await assert.rejects(server.updatePause(-1), { code: 'EINVAL' })
  await within(Promise.all([client.close(), server.close()]), 5000, 'close')
  await assert.rejects(server.addEvent(ORIGINAL.kp1.publicKey, { late: true }), { code: 'ECLOSED' })
  assert.throws(() => server.stats(), { code: 'ECLOSED' })
})

test('json: false hands out Buffers; cb(id, false) retries; a wrong id in cb throws', { timeout: 20000 }, async () => {
  const server = openServer(tmpDir('server'))
  const seen = []
  const client = openClient(server, tmpDir('client'), {
    json: false,
    eventHandler (id, data, cb) {
      seen.push(id)
      assert.throws(() => cb(id + 1, true), { code: 'EINVAL' })
      cb(id, seen.length >= 3) // fails twice, then succeeds
    }
  })
  await server.addEvent(ORIGINAL.kp1.publicKey, { a: 1 })
  await until(() => client.stats().eventsHandled === 1, 10000, 'handled')
  assert.deepEqual(seen, [1, 1, 1])
  assert.equal(client.stats().eventsFailed, 2)
  await within(Promise.all([client.close(), server.close()]), 5000, 'close')
})

// ---- Throwing callbacks ---------------------------------------------------------------------

test('a throwing or rejecting callback neither crashes nor loses the event: it is retried', { timeout: 30000 }, async () => {
  const serverDir = tmpDir('server')
  const clientDir = tmpDir('client')
  const errors = []
  let serverCalls = 0
  const confirmed = []
  const onConsumed = (pk, events, cb) => {
    serverCalls++
    if (serverCalls === 1) throw new Error('boom in onClientConsumedEvents')
    if (serverCalls === 2) return Promise.reject(new Error('async boom in onClientConsumedEvents'))
    confirmed.push(...events.map((e) => e.id))
    cb(true)
  }
  let server = openServer(serverDir, { onClientConsumedEvents: onConsumed })
  server.on('callbackError', (err, where) => errors.push([where, err.message]))
  const attempts = new Map()
  const handled = []
  const client = openClient(server, clientDir, {
    async eventHandler (id, data, cb) {
      const n = (attempts.get(id) || 0) + 1
      attempts.set(id, n)
      if (data.mode === 'throw' && n === 1) throw new Error(`boom in eventHandler ${id}`)
      if (data.mode === 'reject' && n <= 2) {
        await new Promise((resolve) => setImmediate(resolve))
        throw new Error(`async boom in eventHandler ${id}`)
      }
      handled.push(id)
      await cb(id, true)
    }
  })
  client.on('callbackError', (err, where) => errors.push([where, err.message]))
  await server.addEvent(ORIGINAL.kp1.publicKey, { mode: 'throw' })
  await server.addEvent(ORIGINAL.kp1.publicKey, { mode: 'reject' })
  await server.addEvent(ORIGINAL.kp1.publicKey, { mode: 'fine' })
  await until(() => handled.length === 3, 10000, 'the client handles all three')
  assert.deepEqual(handled, [1, 2, 3]) // in order: a failed event comes again before later ones
  assert.equal(attempts.get(1), 2)
  assert.equal(attempts.get(2), 3)
  assert.equal(client.stats().eventsFailed, 3)
  // the server's callback failed for the first reports: the events stay until they are
  // reported again (on the client's next connection) and the callback succeeds
  await until(() => serverCalls >= 2, 5000, 'the server callback ran')
  assert.ok(server.pending(ORIGINAL.kp1.publicKey) > 0)
  await within(server.close(), 5000, 'server close')
  server = openServer(serverDir, { onClientConsumedEvents: onConsumed, listen: `127.0.0.1:${server.port}` })
  await until(() => server.pending(ORIGINAL.kp1.publicKey) === 0, 10000, 'the events confirmed after a reconnect')
  assert.deepEqual([...new Set(confirmed)].sort(), [1, 2, 3])
  assert.ok(errors.some(([w, m]) => w === 'eventHandler' && m === 'boom in eventHandler 1'))
  assert.ok(errors.some(([w, m]) => w === 'eventHandler' && m === 'async boom in eventHandler 2'))
  assert.ok(errors.some(([w, m]) => w === 'onClientConsumedEvents' && m === 'boom in onClientConsumedEvents'))
  await within(Promise.all([client.close(), server.close()]), 5000, 'close')
})

test('an uncaught throw in a callback without a callbackError listener is printed, not fatal', { timeout: 20000 }, async () => {
  const r = await runFixture('throwing-callback.js')
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /^events done$/m)
  assert.match(r.stderr, /eventHandler failed .*: Error: boom in eventHandler/s)
})

// ---- Closing with events in flight ----------------------------------------------------------

test('closing a client while events are in flight and reopening it loses nothing', { timeout: 40000 }, async () => {
  const N = 200
  const server = openServer(tmpDir('server'))
  const clientDir = tmpDir('client')
  const handledOk = new Set()
  let held = null
  const handler = async (id, data, cb) => {
    assert.equal(data.n, id)
    if (id === 60 && held === null) { held = cb; return } // in the handler when the client closes
    await new Promise((resolve) => setImmediate(resolve))
    await cb(id, true)
    handledOk.add(id)
  }
  let client = openClient(server, clientDir, { eventHandler: handler })
  const adds = []
  for (let i = 1; i <= N; i++) adds.push(server.addEvent(ORIGINAL.kp1.publicKey, { n: i }))
  assert.deepEqual(await within(Promise.all(adds), 10000, 'adds'), Array.from({ length: N }, (_, i) => i + 1))
  await until(() => held !== null, 10000, 'event 60 in the handler')
  await within(client.close(), 5000, 'client close with an event in the handler')
  held(60, true) // completing after the close is harmless: the event stays unhandled in the store
  // reopen on the same folder: event 60 and every later one are handled
  client = openClient(server, clientDir, { eventHandler: handler })
  await until(() => handledOk.size === N, 20000, `all ${N} handled (now ${handledOk.size})`)
  await until(() => server.pending(ORIGINAL.kp1.publicKey) === 0, 10000, 'the server confirmed all')
  assert.equal(server.stats().eventsConfirmed, N)
  await within(Promise.all([client.close(), server.close()]), 5000, 'close')
})

test('closing a server while adds and consumption reports are in flight and reopening it loses nothing', { timeout: 40000 }, async () => {
  const serverDir = tmpDir('server')
  const clientDir = tmpDir('client')
  const batches = []
  let delay = true
  const onConsumed = (pk, events, cb) => {
    if (delay) batches.push(cb) // not completed yet when the server closes
    else cb(true)
  }
  let server = openServer(serverDir, { onClientConsumedEvents: onConsumed })
  const port = server.port
  const handled = new Set()
  const client = openClient(server, clientDir, {
    eventHandler (id, data, cb) { handled.add(data.n); cb(id, true) }
  })
  for (let i = 1; i <= 20; i++) await server.addEvent(ORIGINAL.kp1.publicKey, { n: i })
  await until(() => handled.size === 20 && batches.length > 0, 10000, 'handled, reports outstanding')
  // 100 adds in flight, then close at once
  const adds = []
  for (let i = 21; i <= 120; i++) adds.push(server.addEvent(ORIGINAL.kp1.publicKey, { n: i }).then((id) => ({ ok: true, i, id }), (err) => ({ ok: false, i, code: err.code })))
  const closing = server.close()
  const late = await server.addEvent(ORIGINAL.kp1.publicKey, { n: 999 }).catch((err) => err)
  assert.equal(late.code, 'ECLOSED')
  const results = await within(Promise.all(adds), 10000, 'every add settles')
  await within(closing, 5000, 'server close')
  for (const cb of batches) cb(true) // completing after the close only frees the batch
  const stored = results.filter((r) => r.ok).map((r) => r.i)
  for (const r of results) if (!r.ok) assert.equal(r.code, 'ECLOSED', JSON.stringify(r))
  // reopen on the same folder and port: the client reports again, every stored event arrives
  delay = false
  server = openServer(serverDir, { onClientConsumedEvents: onConsumed, listen: `127.0.0.1:${port}` })
  const missing = () => [...Array(20).keys()].map((k) => k + 1).concat(stored).filter((n) => !handled.has(n))
  await until(() => missing().length === 0, 20000, 'every stored event handled')
  await until(() => server.pending(ORIGINAL.kp1.publicKey) === 0, 10000, 'every event confirmed')
  console.log(`# ${stored.length}/100 adds were durable before the close; all ${20 + stored.length} events handled`)
  await within(Promise.all([client.close(), server.close()]), 5000, 'close')
})

// ---- Cycles ---------------------------------------------------------------------------------

for (const kind of ['server', 'client']) {
  test(`1,000 open/close cycles of a ${kind}: all collected, no native object left, RSS growth < 50 MiB`, { timeout: 180000 }, async () => {
    const r = await runFixture('cycles.js', { nodeArgs: ['--expose-gc'], args: [kind, '1000'], timeout: 175000 })
    assert.equal(r.code, 0, r.stderr + r.stdout)
    assert.match(r.stdout, /^collected 1000\/1000$/m)
    // exact: every wrapper, event, batch and operation the addon allocated was freed
    assert.match(r.stdout, /^native \{"handles":0,"events":0,"batches":0,"operations":0\}$/m)
    const m = r.stdout.match(/^rss ([\d.]+) MiB -> ([\d.]+) MiB \(\+(-?[\d.]+)\)$/m)
    assert.ok(m, r.stdout)
    console.log(`# ${kind}: ${r.stdout.trim().split('\n').join('; ')}`)
    assert.ok(Number(m[3]) < 50, r.stdout)
  })
}

test('a wrong server key fails with EAUTH (events never flow)', { timeout: 15000 }, async () => {
  const server = openServer(tmpDir('server'))
  const client = openClient(server, tmpDir('client'), {
    serverPublicKey: ORIGINAL.kp2.publicKey,
    reconnect: false,
    eventHandler () { throw new Error('never') }
  })
  const [, err] = await next(client, 'disconnect')
  assert.equal(err.code, 'EAUTH')
  assert.equal(server.connectedUsers().length, 0)
  await within(Promise.all([client.close(), server.close()]), 5000, 'close')
})
