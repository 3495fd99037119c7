'use strict'
// Key pairs in every accepted form, public key checks and topic keys.
const binding = require('./binding')
const { hdError, invalid } = require('./errors')
const { toBuffer, sizes } = require('./bytes')

/**
 * A checked key pair { publicKey, scalar } from any accepted form:
 *   - nothing: a new random key pair;
 *   - a 32-byte seed (Buffer, Uint8Array or hex), or { seed };
 *   - libsodium's 64-byte secret key, or { secretKey[, publicKey] } (hypercore-crypto's form);
 *   - { scalar, publicKey } (keypear's form, as in the original's example).
 * A pair that does not verify throws an Error with code 'EKEY'.
 */
function keyPair (input) {
  if (input === undefined || input === null) return binding.keyPairGenerate()
  if (typeof input === 'string' || input instanceof Uint8Array) {
    const buf = toBuffer(input, 'key')
    if (buf.length === sizes.seed) return binding.keyPairFromSeed(buf)
    if (buf.length === sizes.secretKey) return binding.keyPairFromSecretKey(buf)
    throw invalid(`a key must be a 32-byte seed or a 64-byte secret key, got ${buf.length} bytes`)
  }
  if (typeof input !== 'object') throw invalid('a key pair must be an object, a Buffer or hex')
  if (input.publicKey === undefined && typeof input.get === 'function') input = input.get() // a keypear Keychain
  if (input.scalar !== undefined && input.scalar !== null) {
    return keyPairFromScalar(input.scalar, input.publicKey)
  }
  if (input.secretKey !== undefined && input.secretKey !== null) {
    const kp = keyPairFromSecretKey(input.secretKey)
    if (input.publicKey !== undefined && input.publicKey !== null &&
        !toBuffer(input.publicKey, 'publicKey', sizes.publicKey).equals(kp.publicKey)) {
      throw hdError('EKEY', 'publicKey does not belong to secretKey')
    }
    return kp
  }
  if (input.seed !== undefined && input.seed !== null) return keyPairFromSeed(input.seed)
  throw invalid('a key pair needs { scalar, publicKey }, { secretKey } or { seed }')
}

function keyPairFromSeed (seed) {
  return binding.keyPairFromSeed(toBuffer(seed, 'seed', sizes.seed))
}

function keyPairFromSecretKey (secretKey) {
  return binding.keyPairFromSecretKey(toBuffer(secretKey, 'secretKey', sizes.secretKey))
}

/** keyPairFromScalar(scalar, publicKey) or keyPairFromScalar({ scalar, publicKey }). */
function keyPairFromScalar (scalar, publicKey) {
  if (publicKey === undefined && scalar && typeof scalar === 'object' && !(scalar instanceof Uint8Array)) {
    publicKey = scalar.publicKey
    scalar = scalar.scalar
  }
  if (publicKey === undefined || publicKey === null) throw invalid('publicKey is required with scalar')
  return binding.keyPairFromScalar(toBuffer(scalar, 'scalar', sizes.scalar),
    toBuffer(publicKey, 'publicKey', sizes.publicKey))
}

function generateKeyPair () { return binding.keyPairGenerate() }

/** Throws EKEY unless `publicKey` is a valid Ed25519 public key. */
function checkPublicKey (publicKey) {
  binding.publicKeyCheck(toBuffer(publicKey, 'publicKey', sizes.publicKey))
}

/** The 32-byte topic key of a folder name (a string, UTF-8, or bytes). */
function topicKey (name) {
  if (typeof name === 'string') return binding.topicKey(name)
  return binding.topicKey(toBuffer(name, 'name'))
}

module.exports = { keyPair, keyPairFromSeed, keyPairFromSecretKey, keyPairFromScalar, generateKeyPair, checkPublicKey, topicKey }
