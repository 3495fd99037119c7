'use strict'
/*
 * hyperdown: the Node binding of the Hyperdown C core (include/hyperdown.h).
 *
 * Layers:
 *   - binding (build/Release/hyperdown.node, src/*.c): the core's functions and its Server and
 *     Client handles running on Node's own libuv loop (no extra thread);
 *   - this file: key pair forms, option names, EventEmitter wrappers, and the original's entry
 *     point `require('hyperdown')(options)`, which issue 5 completes once events exist.
 */
const { EventEmitter } = require('events')
const path = require('path')

const binding = loadBinding()

function loadBinding () {
  const tried = []
  for (const type of ['Release', 'Debug']) {
    const file = path.join(__dirname, 'build', type, 'hyperdown.node')
    try {
      return require(file)
    } catch (err) {
      if (err.code !== 'MODULE_NOT_FOUND') throw err
      tried.push(file)
    }
  }
  const err = new Error('hyperdown: the native addon is not built (run `npm install` in ' +
    __dirname + '); looked for ' + tried.join(', '))
  err.code = 'ENOADDON'
  throw err
}

/* ---- Errors ------------------------------------------------------------------------------ */

/** The core's error codes by name: errors.EKEY === -5. */
const errors = Object.freeze({ ...binding.errors })

function hdError (code, message) {
  const err = new Error(message || binding.strerror(errors[code]))
  err.code = code
  err.errno = errors[code]
  return err
}

function invalid (message) {
  const err = new TypeError(message)
  err.code = 'EINVAL'
  err.errno = errors.EINVAL
  return err
}

/* ---- Bytes, hex, keys --------------------------------------------------------------------- */

/** A Buffer from a Buffer, a Uint8Array or a hex string; checks the length when given. */
function toBuffer (value, name, length) {
  let buf
  if (Buffer.isBuffer(value)) buf = value
  else if (value instanceof Uint8Array) buf = Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  else if (typeof value === 'string') buf = hex.decode(value, length)
  else throw invalid(`${name} must be a Buffer, a Uint8Array or a hex string`)
  if (length !== undefined && buf.length !== length) {
    throw invalid(`${name} must be ${length} bytes, got ${buf.length}`)
  }
  return buf
}

const hex = Object.freeze({
  /** Lower-case hex of the bytes. */
  encode (bytes) { return binding.hexEncode(toBuffer(bytes, 'bytes')) },
  /** Exactly `length` bytes (default: half the digits) from hex; EHEX otherwise. */
  decode (text, length) {
    if (typeof text !== 'string') throw invalid('hex must be a string')
    return binding.hexDecode(text, length)
  }
})

const sizes = Object.freeze({ publicKey: 32, scalar: 32, seed: 32, secretKey: 64, topic: 32 })

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

/* ---- Options ------------------------------------------------------------------------------ */

const LOG_LEVELS = ['error', 'warn', 'info', 'debug']

function logLevel (value) {
  if (value === undefined || value === null) return undefined
  if (typeof value === 'number') return value
  const i = LOG_LEVELS.indexOf(value)
  if (i < 0) throw invalid(`logLevel must be one of ${LOG_LEVELS.join(', ')}`)
  return i
}

function commonOptions (options, addressKey) {
  if (!options || typeof options !== 'object') throw invalid('options must be an object')
  const kp = keyPair(options.keyPair ?? options.uniqueKeyPair)
  const topic = options.topic ?? options.folderName
  if (typeof topic !== 'string' || topic.length === 0) {
    throw invalid('topic (or folderName) must be a non-empty string')
  }
  const address = options[addressKey] ?? options.address
  if (typeof address !== 'string' || address.length === 0) {
    throw invalid(`${addressKey} (or address) must be a "host:port" string`)
  }
  const wantLog = typeof options.log === 'function' || options.logLevel !== undefined
  return {
    kp,
    native: {
      publicKey: kp.publicKey,
      scalar: kp.scalar,
      topic,
      [addressKey]: address,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
      keepaliveMs: options.keepaliveMs,
      idleTimeoutMs: options.idleTimeoutMs,
      maxMessageBytes: options.maxMessageBytes,
      log: wantLog,
      logLevel: wantLog ? (logLevel(options.logLevel) ?? LOG_LEVELS.indexOf('info')) : undefined
    }
  }
}

/* ---- Handles ------------------------------------------------------------------------------ */

/*
 * Events of both handles:
 *   'connect'    (publicKey: Buffer)                          a peer finished the handshake
 *   'disconnect' (publicKey: Buffer | null, error: Error | null)  a connection (or, for a
 *                client, an attempt) ended; error.code tells why ('EAUTH', 'ETOPIC', ...),
 *                null for an orderly close; publicKey is null if the peer never authenticated
 *   'log'        (level: 'error'|'warn'|'info'|'debug', message: string)  with options.log/logLevel
 *   'close'      ()                                           the handle finished closing
 * Exceptions thrown by listeners are caught by the addon, printed to stderr and ignored.
 */
class Handle extends EventEmitter {
  constructor (Native, native, options) {
    super()
    const onEvent = (type, a, b) => {
      if (type === 'log') this.emit('log', LOG_LEVELS[a] || String(a), b)
      else this._event(type, a, b)
    }
    if (typeof options.log === 'function') this.on('log', options.log)
    this._native = new Native(native, onEvent)
    this._closing = null
  }

  _event (type, publicKey, error) {
    this.emit(type, publicKey, error)
  }

  /** 'open', 'closing' or 'closed'. */
  get state () { return this._native.state() }

  get closed () { return this._native.state() === 'closed' }

  /** Closes the handle (orderly: peers are told goodbye); resolves once everything is released. */
  close () {
    if (this._closing === null) {
      this._closing = this._native.close().then(() => { this.emit('close') })
    }
    return this._closing
  }
}

class Server extends Handle {
  constructor (options = {}) {
    const { kp, native } = commonOptions(options, 'listen')
    super(binding.Server, native, options)
    this.publicKey = kp.publicKey
    this.topic = native.topic
    this.isServer = true
    this._port = this._native.port()
    this.peers = new Map() // hex public key -> Buffer, authenticated peers now connected
    /* kept for issue 5 (events): the original's server callback */
    this.onClientConsumedEvents = options.onClientConsumedEvents
  }

  /** The port it listens on (useful with port 0). */
  get port () { return this._port }

  _event (type, publicKey, error) {
    if (publicKey) {
      const id = publicKey.toString('hex')
      if (type === 'connect') this.peers.set(id, publicKey)
      else this.peers.delete(id)
    }
    super._event(type, publicKey, error)
  }

  /** The original's name for close(). */
  leave () { return this.close() }
}

class Client extends Handle {
  constructor (options = {}) {
    const { kp, native } = commonOptions(options, 'connect')
    const server = options.serverPublicKey
    if (server === undefined || server === null) throw invalid('serverPublicKey is required')
    native.serverPublicKey = toBuffer(server, 'serverPublicKey', sizes.publicKey)
    native.reconnect = options.reconnect === undefined ? undefined : Boolean(options.reconnect)
    native.reconnectMinMs = options.reconnectMinMs
    native.reconnectMaxMs = options.reconnectMaxMs
    super(binding.Client, native, options)
    this.publicKey = kp.publicKey
    this.serverPublicKey = native.serverPublicKey
    this.topic = native.topic
    this.isServer = false
    this.connected = false
    /* kept for issue 5 (events): the original's client callback */
    this.eventHandler = options.eventHandler
  }

  _event (type, publicKey, error) {
    if (type === 'connect') this.connected = true
    else if (type === 'disconnect') this.connected = false
    super._event(type, publicKey, error)
  }

  /** The original's name for close(). */
  leave () { return this.close() }
}

/**
 * createServer({ keyPair, topic, listen, ... }): listens before it returns (server.port).
 * keyPair accepts every form keyPair() does; `uniqueKeyPair`, `folderName` and `address` are
 * accepted as the original's names.
 */
function createServer (options) { return new Server(options) }

/** createClient({ keyPair, serverPublicKey, topic, connect, reconnect, ... }): starts dialing. */
function createClient (options) { return new Client(options) }

/**
 * The original's entry point: `await require('hyperdown')(options)`, with its option names
 * (uniqueKeyPair, folderName, testFolder, isServer, serverPublicKey, onClientConsumedEvents,
 * eventHandler) plus `listen` (server) / `connect` (client) or one `address` for both.
 * Today it resolves to a Server or a Client that does the handshake; addEvent, updatePause,
 * onClientConsumedEvents and eventHandler take effect with the event delivery (issue 5).
 */
async function hyperdown (options) {
  if (!options || typeof options !== 'object') throw invalid('options must be an object')
  return options.isServer ? createServer(options) : createClient(options)
}

module.exports = hyperdown
Object.assign(module.exports, {
  hyperdown,
  createServer,
  createClient,
  Server,
  Client,
  keyPair,
  keyPairFromSeed,
  keyPairFromSecretKey,
  keyPairFromScalar,
  generateKeyPair,
  checkPublicKey,
  topicKey,
  hex,
  errors,
  sizes,
  version: binding.versions.version,
  versions: Object.freeze({ ...binding.versions }),
  strerror: binding.strerror,
  errName: binding.errName
})
