'use strict'
// The options, as every binding treats them (issue 12): an unknown option and a missing required
// one (the identity, the server's consumption callback, the client's handler) are clear errors;
// nothing is made up silently.
const test = require('node:test')
const assert = require('node:assert/strict')
const hd = require('..')
const { ORIGINAL, tmpDir, confirm, handle } = require('./helpers')

const server = (extra = {}) => ({ keyPair: ORIGINAL.kp0, topic: 't', dataDir: tmpDir('server'), listen: '127.0.0.1:0', onClientConsumedEvents: confirm, ...extra })
const client = (extra = {}) => ({ keyPair: ORIGINAL.kp1, serverPublicKey: ORIGINAL.kp0.publicKey, topic: 't', dataDir: tmpDir('client'), connect: '127.0.0.1:1', reconnect: false, eventHandler: handle, ...extra })
const without = (o, key) => { const c = { ...o }; delete c[key]; return c }
const einval = (pattern) => (err) => err instanceof TypeError && err.code === 'EINVAL' && pattern.test(err.message)

test('an unknown option throws, naming the closest known one', () => {
  const { listen, ...rest } = server()
  assert.throws(() => hd.createServer({ ...rest, lisen: listen }), einval(/unknown server option 'lisen' \(did you mean 'listen'\?\)/))
  assert.throws(() => hd.createClient(client({ evenHandler: handle })), einval(/unknown client option 'evenHandler' \(did you mean 'eventHandler'\?\)/))
  assert.throws(() => hd.createClient(client({ listen: '127.0.0.1:0' })), einval(/unknown client option 'listen' \(it is a server option\)/))
  assert.throws(() => hd.createServer(server({ window: 10 })), einval(/unknown server option 'window' \(it is a client option\)/))
  assert.throws(() => hd.createServer(server({ zzzzzzzz: 1 })), einval(/^unknown server option 'zzzzzzzz'$/))
})

test('the original\'s entry point rejects unknown options too', async () => {
  await assert.rejects(hd({ uniqueKeyPair: ORIGINAL.kp0, folderName: 't', dataDir: tmpDir('server'), isServer: true, lisen: '127.0.0.1:0', onClientConsumedEvents: confirm }),
    einval(/unknown server option 'lisen'/))
})

test('no identity: an error, never a random key pair', async () => {
  assert.throws(() => hd.createServer(without(server(), 'keyPair')), einval(/keyPair \(the original's uniqueKeyPair\) is required/))
  assert.throws(() => hd.createClient(without(client(), 'keyPair')), einval(/keyPair .* is required/))
  await assert.rejects(hd({ folderName: 't', dataDir: tmpDir('server'), isServer: true, onClientConsumedEvents: confirm }), einval(/is required/))
  await assert.rejects(hd({ folderName: 't', dataDir: tmpDir('client'), serverPublicKey: ORIGINAL.kp0.publicKey, connect: '127.0.0.1:1', eventHandler: handle }), einval(/is required/))
})

test('a server needs onClientConsumedEvents, a client its eventHandler and the server\'s key', async () => {
  assert.throws(() => hd.createServer(without(server(), 'onClientConsumedEvents')), einval(/onClientConsumedEvents .* is required for a server/))
  assert.throws(() => hd.createServer(server({ onClientConsumedEvents: 'yes' })), einval(/onClientConsumedEvents .* must be a function/))
  assert.throws(() => hd.createClient(without(client(), 'eventHandler')), einval(/eventHandler .* is required for a client/))
  assert.throws(() => hd.createClient(without(client(), 'serverPublicKey')), einval(/serverPublicKey .* is required for a client/))
  assert.throws(() => hd.createClient(client({ serverPublicKeys: [ORIGINAL.kp0.publicKey] })), einval(/not both/))
  assert.throws(() => hd.createClient(client({ connect: [] })), einval(/non-empty array/))
  await assert.rejects(hd({ uniqueKeyPair: ORIGINAL.kp0, folderName: 't', dataDir: tmpDir('server'), isServer: true }),
    einval(/onClientConsumedEvents should be a function/))
  await assert.rejects(hd({ uniqueKeyPair: ORIGINAL.kp1, folderName: 't', dataDir: tmpDir('client'), serverPublicKey: ORIGINAL.kp0.publicKey, connect: '127.0.0.1:1' }),
    einval(/eventHandler should be a function/))
})

test('the original\'s option names and ours are all accepted', async () => {
  const s = await hd({ uniqueKeyPair: ORIGINAL.kp0, folderName: 't', testFolder: 'server', dataDir: tmpDir('server'), isServer: true, onClientConsumedEvents: confirm })
  const c = await hd({ uniqueKeyPair: ORIGINAL.kp1, folderName: 't', testFolder: 'c', dataDir: tmpDir('client'), serverPublicKey: ORIGINAL.kp0.publicKey,
    connect: `127.0.0.1:${s.port}`, offline: true, eventHandler: handle })
  assert.equal(c.offline, true)
  await c.close()
  await s.close()
})
