'use strict'
// Addresses and keys as lists (issue 12): a client with several server addresses (names
// resolved) reaches the one that answers; a client accepts a list of server keys; a server
// answers to its current and its next key during a key rollover.
const test = require('node:test')
const assert = require('node:assert/strict')
const net = require('net')
const hd = require('..')
const { ORIGINAL, within, tmpDir, confirm, handle } = require('./helpers')

const TOPIC = 'addresses'

function openServer (extra = {}) {
  return hd.createServer({ keyPair: ORIGINAL.kp0, topic: TOPIC, dataDir: tmpDir('server'), listen: '127.0.0.1:0', onClientConsumedEvents: confirm, ...extra })
}

function openClient (extra) {
  return hd.createClient({ keyPair: ORIGINAL.kp1, topic: TOPIC, dataDir: tmpDir('client'), eventHandler: handle,
    reconnectMinMs: 20, reconnectMaxMs: 100, ...extra })
}

/* A port nothing listens on: bound and closed again. */
async function refusingPort () {
  const s = net.createServer()
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address()
  await new Promise((resolve) => s.close(resolve))
  return port
}

/* The client connects (and an event goes through) within the time, with the key it expects. */
async function exchanges (server, client) {
  const got = new Promise((resolve) => { client.eventHandler = (id, data, cb) => { cb(id, true); resolve(data) } })
  await server.addEvent(ORIGINAL.kp1.publicKey, { hello: 1 })
  assert.deepEqual(await within(got, 10000, 'the event (the client never reached the server)'), { hello: 1 })
  assert.equal(client.connected, true)
}

test('connect: a list of addresses, the refusing ones passed over, a host name resolved', { timeout: 30000 }, async () => {
  const server = openServer()
  const dead = await refusingPort()
  const client = openClient({ serverPublicKey: ORIGINAL.kp0.publicKey, connect: [`127.0.0.1:${dead}`, `localhost:${dead}`, `localhost:${server.port}`] })
  try {
    assert.deepEqual(client.connectList, [`127.0.0.1:${dead}`, `localhost:${dead}`, `localhost:${server.port}`])
    await exchanges(server, client)
  } finally {
    await client.close()
    await server.close()
  }
})

test('serverPublicKeys: the client accepts any key of the list', { timeout: 30000 }, async () => {
  const server = openServer()
  const client = openClient({ serverPublicKeys: [ORIGINAL.kp2.publicKey, ORIGINAL.kp0.publicKey], connect: `127.0.0.1:${server.port}` })
  try {
    assert.equal(client.serverPublicKeys.length, 2)
    await exchanges(server, client)
  } finally {
    await client.close()
    await server.close()
  }
})

test('nextKeyPair: during a rollover the server answers to its next key too', { timeout: 30000 }, async () => {
  const server = openServer({ nextKeyPair: ORIGINAL.kp2 })
  const client = openClient({ serverPublicKey: ORIGINAL.kp2.publicKey, connect: `127.0.0.1:${server.port}` })
  try {
    assert.ok(server.nextPublicKey.equals(ORIGINAL.kp2.publicKey))
    await exchanges(server, client)
  } finally {
    await client.close()
    await server.close()
  }
})
