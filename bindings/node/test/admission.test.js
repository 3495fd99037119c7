'use strict'
// Admission and admin calls of the C ABI in Node: the authorize callback (hd_authorization_*),
// disconnect, backups, and a client's events held for other server stores.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('fs')
const path = require('path')
const hd = require('..')
const { ORIGINAL, within, next, tmpDir, confirm, handle } = require('./helpers')

const TOPIC = 'admission'

function openClient (server, kp, extra = {}) {
  return hd.createClient({ keyPair: kp, serverPublicKey: ORIGINAL.kp0.publicKey, topic: TOPIC, dataDir: tmpDir('client'),
    connect: `127.0.0.1:${server.port}`, eventHandler: handle, reconnectMinMs: 20, reconnectMaxMs: 50, ...extra })
}

test('authorize admits one key and refuses another (sync and async answers); disconnect closes a user\'s connection', { timeout: 20000 }, async () => {
  const asked = []
  const server = hd.createServer({
    keyPair: ORIGINAL.kp0, topic: TOPIC, dataDir: tmpDir('server'), listen: '127.0.0.1:0', onClientConsumedEvents: confirm,
    authorize (publicKey) {
      asked.push(publicKey.toString('hex'))
      if (publicKey.equals(ORIGINAL.kp1.publicKey)) return true
      return new Promise((resolve) => setTimeout(() => resolve(false), 10))
    }
  })
  const admitted = openClient(server, ORIGINAL.kp1)
  const admittedUp = next(admitted, 'connect', 10000)
  const refused = openClient(server, ORIGINAL.kp2, { reconnect: false })
  const refusedDown = next(refused, 'disconnect', 10000)
  try {
    const [, err] = await refusedDown
    assert.equal(err && err.code, 'EAUTH')
    await admittedUp
    assert.ok(asked.includes(ORIGINAL.kp1.publicKey.toString('hex')) && asked.includes(ORIGINAL.kp2.publicKey.toString('hex')))
    assert.deepEqual(server.connectedUsers().map((k) => k.toString('hex')), [ORIGINAL.kp1.publicKey.toString('hex')])
    const lost = next(admitted, 'disconnect', 10000)
    assert.equal(server.disconnect(ORIGINAL.kp1.publicKey), 1)
    const [, why] = await lost
    assert.ok(why && ['EBYE', 'EAUTH'].includes(why.code), String(why)) // the server's goodbye
    assert.equal(server.disconnect(ORIGINAL.kp2.publicKey), 0)
  } finally {
    await Promise.all([admitted.close(), refused.close()])
    await server.close()
  }
})

test('an authorize callback that throws refuses the key', { timeout: 20000 }, async () => {
  const server = hd.createServer({ keyPair: ORIGINAL.kp0, topic: TOPIC, dataDir: tmpDir('server'), listen: '127.0.0.1:0',
    onClientConsumedEvents: confirm, authorize () { throw new Error('no admission service') } })
  server.on('callbackError', () => {})
  const client = openClient(server, ORIGINAL.kp1, { reconnect: false })
  const down = next(client, 'disconnect', 10000)
  try {
    const [, err] = await down
    assert.equal(err && err.code, 'EAUTH')
  } finally {
    await client.close()
    await server.close()
  }
})

test('backup of a running server and backupFolder of a closed one; EBUSY while open', { timeout: 20000 }, async () => {
  const dir = tmpDir('server')
  const server = hd.createServer({ keyPair: ORIGINAL.kp0, topic: TOPIC, dataDir: dir, listen: '127.0.0.1:0', onClientConsumedEvents: confirm })
  const out = tmpDir('backups')
  try {
    await server.addEvent(ORIGINAL.kp1.publicKey, { n: 1 })
    await within(server.backup(path.join(out, 'live.db')), 10000, 'backup')
    assert.ok(fs.statSync(path.join(out, 'live.db')).size > 0)
    await assert.rejects(server.backup(path.join(out, 'live.db')), { code: 'EINVAL' }) // exists
    assert.throws(() => hd.backupFolder(dir, path.join(out, 'busy.db')), { code: 'EBUSY' })
  } finally {
    await server.close()
  }
  hd.backupFolder(dir, path.join(out, 'cold.db'))
  // the backup is a store: a server opened on a folder holding it has the event
  const restored = tmpDir('restored')
  fs.copyFileSync(path.join(out, 'cold.db'), path.join(restored, 'hyperdown.db'))
  const again = hd.createServer({ keyPair: ORIGINAL.kp0, topic: TOPIC, dataDir: restored, listen: '127.0.0.1:0', onClientConsumedEvents: confirm })
  try {
    assert.equal(again.pending(ORIGINAL.kp1.publicKey), 1)
  } finally {
    await again.close()
  }
})

test('heldStores is empty for a client of one store; purgeStore of an unknown store is ENOTFOUND', { timeout: 20000 }, async () => {
  const server = hd.createServer({ keyPair: ORIGINAL.kp0, topic: TOPIC, dataDir: tmpDir('server'), listen: '127.0.0.1:0', onClientConsumedEvents: confirm })
  const client = openClient(server, ORIGINAL.kp1)
  const up = next(client, 'connect', 10000)
  try {
    await up
    assert.deepEqual(client.heldStores(), [])
    await assert.rejects(client.purgeStore(Buffer.alloc(16, 7)), { code: 'ENOTFOUND' })
    await assert.rejects(client.purgeStore(Buffer.alloc(15)), { code: 'EINVAL' })
  } finally {
    await client.close()
    await server.close()
  }
})
