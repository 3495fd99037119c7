'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const hd = require('..')
const { ORIGINAL, within, next, runFixture, tmpDir, confirm, handle } = require('./helpers')

const TOPIC = 'topic'

function pair (options = {}) {
  const server = hd.createServer({ keyPair: ORIGINAL.kp0, onClientConsumedEvents: confirm, topic: TOPIC, dataDir: tmpDir('server'), listen: '127.0.0.1:0', ...options.server })
  const client = hd.createClient({
    keyPair: ORIGINAL.kp1,
    eventHandler: handle,
    dataDir: tmpDir('client'),
    serverPublicKey: ORIGINAL.kp0.publicKey,
    topic: TOPIC,
    connect: `127.0.0.1:${server.port}`,
    ...options.client
  })
  return { server, client }
}

test('server and client handshake over 127.0.0.1 and see each other\'s keys', { timeout: 15000 }, async () => {
  const server = hd.createServer({ keyPair: ORIGINAL.kp0, onClientConsumedEvents: confirm, topic: TOPIC, dataDir: tmpDir('server'), listen: '127.0.0.1:0' })
  assert.ok(server.port > 0)
  assert.equal(server.state, 'open')
  const serverSaw = next(server, 'connect')
  const client = hd.createClient({
    keyPair: ORIGINAL.kp1,
    eventHandler: handle,
    dataDir: tmpDir('client'),
    serverPublicKey: ORIGINAL.kp0.publicKey,
    topic: TOPIC,
    connect: `127.0.0.1:${server.port}`
  })
  const clientSaw = next(client, 'connect')
  const [[clientKey], [serverKey]] = await Promise.all([serverSaw, clientSaw])
  assert.deepEqual(clientKey, ORIGINAL.kp1.publicKey)
  assert.deepEqual(serverKey, ORIGINAL.kp0.publicKey)
  assert.ok(Buffer.isBuffer(clientKey))
  assert.equal(client.connected, true)
  assert.deepEqual([...server.peers.keys()], [ORIGINAL.kp1.publicKey.toString('hex')])

  // an orderly close: the server sees the client leave without an error
  const serverLost = next(server, 'disconnect')
  const clientClosed = client.close()
  assert.equal(client.state, 'closing')
  assert.equal(client.close(), clientClosed) // idempotent
  await within(clientClosed, 5000, 'client.close()')
  assert.equal(client.state, 'closed')
  const [lostKey, lostErr] = await serverLost
  assert.deepEqual(lostKey, ORIGINAL.kp1.publicKey)
  assert.equal(lostErr, null)
  assert.equal(server.peers.size, 0)
  await within(server.close(), 5000, 'server.close()')
  assert.equal(server.closed, true)
  await within(server.close(), 1000, 'a second server.close()')
})

test('a wrong server key fails the handshake with EAUTH on both sides', { timeout: 15000 }, async () => {
  const server = hd.createServer({ keyPair: ORIGINAL.kp0, onClientConsumedEvents: confirm, topic: TOPIC, dataDir: tmpDir('server'), listen: '127.0.0.1:0' })
  const serverLost = next(server, 'disconnect')
  let connects = 0
  server.on('connect', () => connects++)
  const client = hd.createClient({
    keyPair: ORIGINAL.kp1,
    eventHandler: handle,
    dataDir: tmpDir('client'),
    serverPublicKey: ORIGINAL.kp2.publicKey, // not the server's key
    topic: TOPIC,
    connect: `127.0.0.1:${server.port}`,
    reconnect: false
  })
  client.on('connect', () => connects++)
  const [[cKey, cErr], [sKey, sErr]] = await Promise.all([next(client, 'disconnect'), serverLost])
  assert.equal(cErr.code, 'EAUTH', cErr.message)
  assert.equal(cErr.errno, hd.errors.EAUTH)
  assert.ok(cErr instanceof Error)
  assert.ok(cErr.message.length > 0)
  assert.equal(sErr.code, 'EAUTH', sErr.message)
  assert.equal(cKey, null)
  assert.equal(sKey, null)
  assert.equal(connects, 0)
  await within(Promise.all([client.close(), server.close()]), 5000, 'close')
})

test('another topic fails the handshake with ETOPIC', { timeout: 15000 }, async () => {
  const { server, client } = pair({ client: { topic: 'another-topic', reconnect: false } })
  const [[, cErr], [, sErr]] = await Promise.all([next(client, 'disconnect'), next(server, 'disconnect')])
  assert.equal(cErr.code, 'ETOPIC', cErr.message)
  assert.equal(sErr.code, 'ETOPIC', sErr.message)
  await within(Promise.all([client.close(), server.close()]), 5000, 'close')
})

test('a client dialing nobody reports ECONNREFUSED and retries until closed', { timeout: 15000 }, async () => {
  const probe = hd.createServer({ keyPair: ORIGINAL.kp0, onClientConsumedEvents: confirm, topic: TOPIC, dataDir: tmpDir('server'), listen: '127.0.0.1:0' })
  const port = probe.port
  await within(probe.close(), 5000, 'probe close')
  const client = hd.createClient({
    keyPair: ORIGINAL.kp1,
    eventHandler: handle,
    dataDir: tmpDir('client'), serverPublicKey: ORIGINAL.kp0.publicKey, topic: TOPIC,
    connect: `127.0.0.1:${port}`, reconnectMinMs: 10, reconnectMaxMs: 20
  })
  const errs = []
  await within(new Promise((resolve) => client.on('disconnect', (pk, err) => {
    errs.push(err.code)
    if (errs.length === 3) resolve()
  })), 5000, 'three failed attempts')
  assert.deepEqual(errs, ['ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED'])
  await within(client.close(), 5000, 'client.close()')
})

test('bad options throw synchronously with a code', () => {
  assert.throws(() => hd.createServer({ keyPair: { scalar: ORIGINAL.kp0.scalar, publicKey: ORIGINAL.kp1.publicKey }, onClientConsumedEvents: confirm, topic: TOPIC, listen: '127.0.0.1:0' }),
    { code: 'EKEY' })
  assert.throws(() => hd.createServer({ keyPair: ORIGINAL.kp0, onClientConsumedEvents: confirm, topic: TOPIC, dataDir: tmpDir('server'), listen: 'nonsense' }), { code: 'EADDR' })
  assert.throws(() => hd.createServer({ keyPair: ORIGINAL.kp0, onClientConsumedEvents: confirm, topic: TOPIC, dataDir: tmpDir('server') }), { code: 'EINVAL' })
  assert.throws(() => hd.createServer({ keyPair: ORIGINAL.kp0, onClientConsumedEvents: confirm, dataDir: tmpDir('server'), listen: '127.0.0.1:0' }), { code: 'EINVAL' })
  assert.throws(() => hd.createClient({ keyPair: ORIGINAL.kp1, eventHandler: handle, dataDir: tmpDir('client'), topic: TOPIC, connect: '127.0.0.1:1' }), { code: 'EINVAL' })
  assert.throws(() => hd.createClient({ keyPair: ORIGINAL.kp1, eventHandler: handle, dataDir: tmpDir('client'), serverPublicKey: Buffer.alloc(32, 0xff), topic: TOPIC, connect: '127.0.0.1:1' }),
    { code: 'EKEY' })
})

test('a port in use gives EADDRINUSE', { timeout: 10000 }, async () => {
  const a = hd.createServer({ keyPair: ORIGINAL.kp0, onClientConsumedEvents: confirm, topic: TOPIC, dataDir: tmpDir('server'), listen: '127.0.0.1:0' })
  assert.throws(() => hd.createServer({ keyPair: ORIGINAL.kp0, onClientConsumedEvents: confirm, topic: TOPIC, dataDir: tmpDir('server'), listen: `127.0.0.1:${a.port}` }),
    (err) => err.code === 'EADDRINUSE' && /127\.0\.0\.1/.test(err.message))
  await within(a.close(), 5000, 'close')
})

test('the original\'s entry point with its option names and keys', { timeout: 15000 }, async () => {
  const hyperdown = require('..')
  const server = await hyperdown({
    uniqueKeyPair: ORIGINAL.kp0,
    folderName: 'topic',
    testFolder: 'server',
    dataDir: tmpDir('server'), // instead of ./topic/server under process.cwd()
    isServer: true,
    address: '127.0.0.1:0',
    onClientConsumedEvents (remotePublicKey, events, cb) { cb(true) }
  })
  assert.ok(server instanceof hd.Server)
  const seen = new Promise((resolve) => {
    const want = new Set([ORIGINAL.kp1.publicKey.toString('hex'), ORIGINAL.kp2.publicKey.toString('hex')])
    server.on('connect', (pk) => { want.delete(pk.toString('hex')); if (want.size === 0) resolve() })
  })
  const clients = []
  for (const kp of [ORIGINAL.kp1, ORIGINAL.kp2]) {
    clients.push(await hyperdown({
      serverPublicKey: ORIGINAL.kp0.publicKey,
      uniqueKeyPair: kp,
      folderName: 'topic',
      dataDir: tmpDir('client'),
      address: `127.0.0.1:${server.port}`,
      async eventHandler (id, data, cb) { await cb(id, true) }
    }))
  }
  assert.ok(clients.every((c) => c instanceof hd.Client))
  await within(seen, 5000, 'both original clients')
  await within(Promise.all(clients.map((c) => c.leave())), 5000, 'clients leave')
  await within(server.leave(), 5000, 'server leave')
})

test('log lines arrive as \'log\' events', { timeout: 10000 }, async () => {
  const lines = []
  const server = hd.createServer({ keyPair: ORIGINAL.kp0, onClientConsumedEvents: confirm, topic: TOPIC, dataDir: tmpDir('server'), listen: '127.0.0.1:0', logLevel: 'info', log: (level, msg) => lines.push([level, msg]) })
  await within(server.close(), 5000, 'close')
  assert.ok(lines.some(([level, msg]) => level === 'info' && /listening/.test(msg)), JSON.stringify(lines))
})

test('a throwing callback does not crash the process', { timeout: 20000 }, async () => {
  const r = await runFixture('throwing-callback.js')
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /^done$/m)
  assert.match(r.stderr, /caught and ignored: Error: boom in server connect/)
  assert.match(r.stderr, /caught and ignored: Error: boom in client connect/)
  assert.match(r.stderr, /caught and ignored: Error: boom in client disconnect/)
})

test('close resolves and the process exits by itself', { timeout: 20000 }, async () => {
  const r = await runFixture('exits-by-itself.js')
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.signal, null)
  assert.match(r.stdout, /^closed$/m)
  assert.equal(r.stderr, '')
})

test('open handles keep the process alive', { timeout: 20000 }, async () => {
  // the fixture opens a server and prints its port, then does nothing: it must still be alive
  // after 1 s (its own 'exit' handler prints if the loop ever runs dry), then it closes on a timer
  const r = await runFixture('stays-alive.js')
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /^alive after 1000 ms$/m)
  assert.match(r.stdout, /^closed$/m)
})

test('handles left open in a worker are closed when it is torn down', { timeout: 20000 }, async () => {
  const r = await runFixture('worker-teardown.js')
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /^terminated$/m)
  assert.match(r.stdout, /^exited$/m)
  assert.match(r.stdout, /^done$/m)
})
// open/close cycles (1,000 of each kind, RSS measured): events.test.js
