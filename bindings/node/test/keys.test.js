'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const hd = require('..')
const { ORIGINAL } = require('./helpers')

function assertCode (fn, code) {
  assert.throws(fn, (err) => {
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`)
    assert.equal(err.errno, hd.errors[code])
    assert.ok(err instanceof Error)
    return true
  })
}

test('versions come from the core and Node\'s own libuv', () => {
  assert.equal(hd.version, '0.1.0')
  assert.equal(hd.versions.version, hd.versions.header)
  assert.equal(hd.versions.abi, 1)
  assert.equal(hd.versions.protocol, 1)
  // compiled against Node's uv.h (not the system's), running on Node's libuv
  assert.equal(hd.versions.uvHeaderHex, hd.versions.uvRuntimeHex)
  assert.equal(hd.versions.uv, process.versions.uv)
})

test('error codes and texts come from the core', () => {
  assert.equal(hd.errors.EKEY, -5)
  assert.equal(hd.errors.EAUTH, -8)
  assert.equal(hd.errName(-5), 'EKEY')
  assert.equal(hd.strerror(hd.errors.EAUTH), 'handshake authentication failed')
  assert.equal(Object.keys(hd.errors).length, 30)
  assert.equal(hd.errors.EREPLACED, -29)
  assert.equal(hd.errors.ELIMIT, -30)
  assert.equal(hd.errName(-30), 'ELIMIT')
})

test('index.d.ts lists every error code the core has, and no other', () => {
  const dts = require('fs').readFileSync(require('path').join(__dirname, '..', 'index.d.ts'), 'utf8')
  const union = dts.match(/type ErrorCode =([^]*?)\n\n/)[1]
  const listed = [...union.matchAll(/'(E[A-Z]+)'/g)].map((m) => m[1]).sort()
  assert.deepEqual(listed, Object.keys(hd.errors).sort())
})

test('the original example\'s three keypear key pairs load', () => {
  for (const [name, kp] of Object.entries(ORIGINAL)) {
    const loaded = hd.keyPair(kp)
    assert.deepEqual(loaded.publicKey, kp.publicKey, name)
    assert.deepEqual(loaded.scalar, kp.scalar, name)
    // same through the explicit function, in both call forms, and from hex strings
    assert.deepEqual(hd.keyPairFromScalar(kp.scalar, kp.publicKey).publicKey, kp.publicKey)
    assert.deepEqual(hd.keyPairFromScalar(kp).publicKey, kp.publicKey)
    assert.deepEqual(hd.keyPair({ scalar: kp.scalar.toString('hex'), publicKey: kp.publicKey.toString('hex') }).publicKey,
      kp.publicKey)
    hd.checkPublicKey(kp.publicKey)
  }
})

test('a mismatched pair throws EKEY with the core\'s detail', () => {
  assertCode(() => hd.keyPair({ scalar: ORIGINAL.kp0.scalar, publicKey: ORIGINAL.kp1.publicKey }), 'EKEY')
  assert.throws(() => hd.keyPair({ scalar: ORIGINAL.kp0.scalar, publicKey: ORIGINAL.kp1.publicKey }),
    /does not belong together/)
  // a scalar that is not clamped is not an Ed25519 secret scalar
  const unclamped = Buffer.from(ORIGINAL.kp0.scalar)
  unclamped[0] |= 1
  assertCode(() => hd.keyPair({ scalar: unclamped, publicKey: ORIGINAL.kp0.publicKey }), 'EKEY')
  assert.throws(() => hd.keyPair({ scalar: unclamped, publicKey: ORIGINAL.kp0.publicKey }), /not clamped/)
})

test('seed, secret key and generated forms agree', () => {
  const seed = crypto.randomBytes(32)
  const a = hd.keyPairFromSeed(seed)
  assert.equal(a.publicKey.length, 32)
  assert.equal(a.scalar.length, 32)
  assert.deepEqual(hd.keyPair(seed), a)
  assert.deepEqual(hd.keyPair({ seed }), a)
  assert.deepEqual(hd.keyPair(seed.toString('hex')), a)
  const secretKey = Buffer.concat([seed, a.publicKey]) // libsodium's layout
  assert.deepEqual(hd.keyPairFromSecretKey(secretKey), a)
  assert.deepEqual(hd.keyPair({ secretKey, publicKey: a.publicKey }), a)
  // the scalar form of the same identity verifies too
  assert.deepEqual(hd.keyPair({ scalar: a.scalar, publicKey: a.publicKey }), a)
  // a secret key whose public half is someone else's
  assertCode(() => hd.keyPairFromSecretKey(Buffer.concat([seed, ORIGINAL.kp0.publicKey])), 'EKEY')
  assertCode(() => hd.keyPair({ secretKey, publicKey: ORIGINAL.kp0.publicKey }), 'EKEY')
  const g1 = hd.generateKeyPair()
  const g2 = hd.keyPair()
  assert.notDeepEqual(g1.publicKey, g2.publicKey)
  assert.deepEqual(hd.keyPair(g1), g1)
})

test('wrong sizes and types throw EINVAL TypeErrors', () => {
  assertCode(() => hd.keyPairFromSeed(Buffer.alloc(31)), 'EINVAL')
  assertCode(() => hd.keyPair(Buffer.alloc(33)), 'EINVAL')
  assertCode(() => hd.keyPair({ scalar: ORIGINAL.kp0.scalar }), 'EINVAL')
  assertCode(() => hd.keyPair(42), 'EINVAL')
  assert.throws(() => hd.keyPairFromSeed(Buffer.alloc(31)), TypeError)
  assertCode(() => hd.checkPublicKey(Buffer.alloc(31)), 'EINVAL')
})

test('hex goes through the core and rejects bad input with EHEX', () => {
  const bytes = Buffer.from([0, 1, 0xab, 0xff])
  assert.equal(hd.hex.encode(bytes), '0001abff')
  assert.equal(hd.hex.encode(new Uint8Array(0)), '')
  assert.deepEqual(hd.hex.decode('0001ABff'), bytes)
  assert.deepEqual(hd.hex.decode('0001abff', 4), bytes)
  assertCode(() => hd.hex.decode('0001abzz'), 'EHEX')
  assertCode(() => hd.hex.decode('0001abff', 3), 'EHEX')
  assertCode(() => hd.keyPair({ scalar: 'nothex', publicKey: ORIGINAL.kp0.publicKey }), 'EHEX')
})

test('topic keys are 32 bytes, deterministic and per name', () => {
  const t = hd.topicKey('topic')
  assert.equal(t.length, 32)
  assert.deepEqual(hd.topicKey('topic'), t)
  assert.deepEqual(hd.topicKey(Buffer.from('topic')), t)
  assert.notDeepEqual(hd.topicKey('topic2'), t)
  assert.notDeepEqual(hd.topicKey('tøpic'), hd.topicKey('tpic'))
})
