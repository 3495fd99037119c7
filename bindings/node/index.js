'use strict'
/*
 * hyperdown: the Node binding of the Hyperdown C core (include/hyperdown.h).
 *
 * Layers:
 *   - binding (build/Release/hyperdown.node, src/*.c): the core's functions and its Server and
 *     Client handles running on Node's own libuv loop (no extra thread);
 *   - this file: key pair forms, option names, payload encoding (JSON or bytes), EventEmitter
 *     wrappers with events (addEvent, eventHandler, onClientConsumedEvents), and the original's
 *     entry point `require('hyperdown')(options)`.
 */
const { EventEmitter } = require('events')
const fs = require('fs')
const path = require('path')
const queues = require('./lib/queues')

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

/** The Error of a core code (a fan-out user's status). */
function codeError (code) {
  const name = binding.errName(code)
  const err = new Error(binding.strerror(code))
  err.code = name
  err.errno = code
  return err
}

/** add options with ttlMs: Infinity (never expires) as the core's UINT64_MAX. */
function ttlOption (options) {
  if (!options || options.ttlMs !== Infinity) return options
  return { ...options, ttlMs: 0xffffffffffffffffn }
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

/* ---- Payloads ----------------------------------------------------------------------------- */

/*
 * The rule shared by every binding: an event's payload (and the data a client reports with it)
 * is raw bytes on the wire and in the stores. Sending: a Buffer or Uint8Array goes as is; any
 * other value goes as its UTF-8 JSON (JSON.stringify). Receiving: bytes that are valid UTF-8
 * holding valid JSON are given as the parsed value; anything else as the Buffer. (So a Buffer
 * whose bytes happen to be JSON text, e.g. Buffer.from('42'), comes back parsed: 42. Pass
 * `json: false` to get Buffers always.)
 */
function encode (value, what = 'payload') {
  if (Buffer.isBuffer(value)) return value
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  let json
  try {
    json = JSON.stringify(value)
  } catch (err) {
    throw invalid(`${what} cannot be encoded as JSON: ${err.message}`)
  }
  if (json === undefined) throw invalid(`${what} must be a Buffer or a JSON value, got ${typeof value}`)
  return Buffer.from(json, 'utf8')
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

function decode (bytes) {
  if (bytes === null || bytes === undefined) return null
  if (bytes.length === 0) return bytes
  let text
  try {
    text = utf8.decode(bytes)
  } catch {
    return bytes
  }
  try {
    return JSON.parse(text)
  } catch {
    return bytes
  }
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

/**
 * The store's folder: `dataDir` when given, else `folderName` (or `topic`) relative to
 * process.cwd() as in the original, with `testFolder` as an inner folder of it.
 */
function storageDir (options, topic) {
  if (options.dataDir !== undefined && options.dataDir !== null) {
    if (typeof options.dataDir !== 'string' || options.dataDir.length === 0) {
      throw invalid('dataDir must be a non-empty string')
    }
    return path.resolve(options.dataDir)
  }
  let dir = path.resolve(process.cwd(), options.folderName ?? topic)
  if (options.testFolder !== undefined && options.testFolder !== null) {
    if (typeof options.testFolder !== 'string' || options.testFolder.length === 0) {
      throw invalid('testFolder must be a non-empty string')
    }
    dir = path.join(dir, options.testFolder)
  }
  return dir
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
  const dataDir = storageDir(options, topic)
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  return {
    kp,
    native: {
      publicKey: kp.publicKey,
      scalar: kp.scalar,
      topic,
      [addressKey]: address,
      dataDir,
      syncNormal: options.syncNormal === undefined ? undefined : Boolean(options.syncNormal),
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
 *   'callbackError' (error, where)  an eventHandler/onClientConsumedEvents threw or rejected
 *                (the events count as failed); printed to stderr when nobody listens
 *   'close'      ()                                           the handle finished closing
 * Exceptions thrown by listeners are caught by the addon, printed to stderr and ignored.
 */
class Handle extends EventEmitter {
  constructor (Native, native, options) {
    super()
    const onEvent = (type, a, b, c, d, e, f) => {
      if (type === 'log') this.emit('log', LOG_LEVELS[a] || String(a), b)
      else if (type === 'event') this._onEvent(a, b, c, d, e, f)
      else if (type === 'notice') this._onNotice(a, b, c, d, e)
      else if (type === 'consumed') this._onConsumed(a, b, c)
      else if (type === 'deadLetter') this._onDeadLetter(a, b)
      else this._event(type, a, b)
    }
    if (typeof options.log === 'function') this.on('log', options.log)
    this._json = options.json !== false
    this._native = new Native(native, onEvent)
    this._closing = null
    this.dataDir = native.dataDir
  }

  _event (type, publicKey, error) {
    this.emit(type, publicKey, error)
  }

  _decode (bytes) { return this._json ? decode(bytes) : bytes }

  /* A user callback threw or its promise rejected: never crash, tell whoever listens. */
  _callbackError (err, where) {
    if (this.listenerCount('callbackError') > 0) {
      try {
        this.emit('callbackError', err, where)
        return
      } catch (e) {
        err = e
      }
    }
    console.error(`hyperdown: ${where} failed (the event counts as not handled and comes again):`,
      err && err.stack ? err.stack : err)
  }

  /* Calls fn(...args); a throw or a rejection calls fail(err). */
  _guard (fn, args, where, fail) {
    let result
    try {
      result = fn.apply(this, args)
    } catch (err) {
      fail(err)
      this._callbackError(err, where)
      return
    }
    if (result && typeof result.then === 'function') {
      result.then(undefined, (err) => {
        fail(err)
        this._callbackError(err, where)
      })
    }
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

  /** The original's name for close(). */
  leave () { return this.close() }

  /**
   * What the store's losses did (docs/RELIABILITY.md, "Restores and rollbacks"): { epoch
   * (Buffer(16)), rollbacks, epochResumes, eventsRepeated, eventsOrphaned, consumedDropped },
   * counters since the handle was created (the last three are the client's; 0 on a server).
   */
  rollbackStats () { return this._native.rollbackStats() }
}

function quietly (fn) {
  try { fn() } catch {}
}

class Server extends Handle {
  constructor (options = {}) {
    const { kp, native } = commonOptions(options, 'listen')
    const onConsumed = options.onClientConsumedEvents ?? options.onConsumed
    if (onConsumed !== undefined && onConsumed !== null && typeof onConsumed !== 'function') {
      throw invalid('onClientConsumedEvents must be a function')
    }
    native.onConsumed = typeof onConsumed === 'function'
    native.pageEvents = options.pageEvents
    Object.assign(native, queues.serverOptions(options, invalid))
    super(binding.Server, native, options)
    this.publicKey = kp.publicKey
    this.topic = native.topic
    this.isServer = true
    this._port = this._native.port()
    this.peers = new Map() // hex public key -> Buffer, authenticated peers now connected
    /** The original's server callback: (remotePublicKey, events, cb(ok[, index])). */
    this.onClientConsumedEvents = onConsumed
    /** (user, deadLetter): an event of the user became a dead letter (also a 'deadLetter' event). */
    this.onDeadLetter = options.onDeadLetter
  }

  /* A dead letter, durably: onDeadLetter and the 'deadLetter' listeners (informational). */
  _onDeadLetter (user, d) {
    const letter = queues.deadLetter(d, (b) => this._decode(b))
    if (typeof this.onDeadLetter === 'function') {
      this._guard(this.onDeadLetter, [user, letter], 'onDeadLetter', () => {})
    }
    this.emit('deadLetter', user, letter)
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

  /*
   * A user reported events consumed: onClientConsumedEvents(remotePublicKey, events, cb) with
   * events [{ id, data, payload, createdAt }] in id order (data: what the client's handler
   * reported, payload: what addEvent stored, both decoded by the JSON rule). cb(true) deletes
   * them and confirms them to the client; cb(false) keeps them (the client reports them again
   * on its next connection); cb(ok, index) completes one event of the array. A throw or a
   * rejected promise counts as cb(false) for what is not completed yet.
   */
  _onConsumed (user, events, complete) {
    const list = events.map((e) => ({
      id: e.id,
      data: e.data === null ? null : this._decode(e.data),
      payload: this._decode(e.payload),
      createdAt: e.createdAt
    }))
    const cb = (ok = true, index) => {
      if (index === undefined || index === null) complete(Boolean(ok))
      else complete(Boolean(ok), index)
    }
    const fn = this.onClientConsumedEvents
    if (typeof fn !== 'function') return quietly(() => complete(true))
    this._guard(fn, [user, list, cb], 'onClientConsumedEvents', () => quietly(() => complete(false)))
  }

  /**
   * Stores an event for the user (its Ed25519 public key: Buffer, Uint8Array or hex); `data` is
   * a Buffer (sent as is) or any JSON value. Resolves with the event's id (the user's sequence
   * number, from 1) once it is durable; a connected user gets it right after.
   */
  addEvent (remotePublicKey, data) {
    try {
      return this._native.addEvent(toBuffer(remotePublicKey, 'remotePublicKey', sizes.publicKey),
        encode(data, 'data'))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /**
   * addEvent with options, resolving with what the add did (docs/QUEUES.md):
   * options { ttlMs (time to live; default the server's defaultTtlMs, Infinity never),
   * dedupKey (string or bytes: a repeat within the server's dedupWindowMs stores nothing and
   * gives the first add's seq), collapseKey (replaces the user's unsent event with the same
   * key) }; result { seq, duplicate, conflict (a duplicate whose payload differs), replacedSeq
   * (null unless it replaced one), dropped (older unsent events dropped for room) }. Rejects
   * with code 'ELIMIT' when the user is at a limit under overflow 'reject'. addEvent() is
   * unchanged: it resolves with the seq alone.
   */
  add (remotePublicKey, data, options) {
    try {
      return this._native.addEventV2(toBuffer(remotePublicKey, 'remotePublicKey', sizes.publicKey),
        encode(data, 'data'), queues.addOptions(ttlOption(options), invalid))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /**
   * One event for many users in one transaction, the payload stored once; options as add()'s,
   * each user's keys its own. Resolves with each user's result, in order: { user, error (null,
   * or an Error with code 'ELIMIT', 'EKEY'...: that user failed alone), seq, duplicate,
   * conflict, replacedSeq, dropped }.
   */
  addEventForUsers (users, data, options) {
    try {
      const keys = (Array.isArray(users) ? users : []).map((u, i) => toBuffer(u, `users[${i}]`, sizes.publicKey))
      return this._native.addFanout(queues.usersBuffer(keys, (k) => k, invalid), encode(data, 'data'),
        queues.addOptions(ttlOption(options), invalid))
        .then((results) => queues.fanoutResults(keys, results, codeError))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /**
   * A page of the user's dead letters (events its client failed maxAttempts times or rejected):
   * [{ id, payload, createdAt, attempts, reason, deadAt }] with an id above `after`, at most
   * `limit`; page on as listEvents.
   */
  listDeadLetters (remotePublicKey, { after = 0, limit = 256 } = {}) {
    return this._native.listDeadLetters(toBuffer(remotePublicKey, 'remotePublicKey', sizes.publicKey), after, limit)
      .map((d) => queues.deadLetter(d, (b) => this._decode(b)))
  }

  /** How many dead letters the store holds for the user (every user without one). */
  deadLetterCount (remotePublicKey) {
    const user = remotePublicKey === undefined || remotePublicKey === null
      ? null : toBuffer(remotePublicKey, 'remotePublicKey', sizes.publicKey)
    return this._native.deadLetterCount(user)
  }

  /** The users holding dead letters: [{ user: Buffer, count }]. */
  deadLetterUsers () { return this._native.deadLetterUsers() }

  /**
   * Gives the user's dead letters with these ids (all of them without ids) back as new events
   * (new ids, attempts from 1); the client gets a 'requeued' notice. Resolves with how many.
   */
  requeueDeadLetters (remotePublicKey, ids) {
    try {
      return this._native.requeueDeadLetters(toBuffer(remotePublicKey, 'remotePublicKey', sizes.publicKey), ids ?? null)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** Drops the user's dead letters with these ids (all without ids) for good; resolves with how many. */
  deleteDeadLetters (remotePublicKey, ids) {
    try {
      return this._native.deleteDeadLetters(toBuffer(remotePublicKey, 'remotePublicKey', sizes.publicKey), ids ?? null)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** Stores the pause (ms) clients wait before handling new events and pushes it to them. */
  updatePause (ms) {
    try {
      return this._native.updatePause(ms)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** { eventsAdded, eventsDelivered, eventsConsumed, eventsConfirmed, pendingTotal,
   *    connectedUsers, commits, eventsTooLarge, eventsExpired, eventsDead, eventsRequeued,
   *    addsDuplicate, eventsReplaced, eventsDropped, addsLimited, deadLetters } */
  stats () { return this._native.stats() }

  /** How many events the store holds for the user. */
  pending (remotePublicKey) {
    return this._native.pending(toBuffer(remotePublicKey, 'remotePublicKey', sizes.publicKey))
  }

  /** The public keys of the users connected now. */
  connectedUsers () { return this._native.connectedUsers() }

  /**
   * Every user the store holds events for, with how many: [{ user: Buffer, pending }], in the
   * order the store first saw them.
   */
  pendingUsers () { return this._native.pendingUsers() }

  /**
   * A page of the events the store holds for the user: [{ id, payload, createdAt }] (payload
   * decoded by the JSON rule), at most `limit` (default 256) of those with an id above `after`
   * (default 0), in order. Page on with the last one's id until a page comes back empty.
   */
  listEvents (remotePublicKey, { after = 0, limit = 256 } = {}) {
    const page = this._native.listEvents(toBuffer(remotePublicKey, 'remotePublicKey', sizes.publicKey),
      after, limit)
    return page.map((e) => ({ id: e.id, payload: this._decode(e.payload), createdAt: e.createdAt }))
  }

  /**
   * Deletes the user's events with these ids; resolves with how many the store still held once
   * that is durable. The user's client is not told: what it received already it still handles,
   * and its report is answered without onClientConsumedEvents; an event not sent yet never is.
   */
  deleteEvents (remotePublicKey, ids) {
    try {
      return this._native.deleteEvents(toBuffer(remotePublicKey, 'remotePublicKey', sizes.publicKey), ids)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** Deletes every event the store holds for the user (removed); resolves with how many. */
  deleteUser (remotePublicKey) {
    try {
      return this._native.deleteUser(toBuffer(remotePublicKey, 'remotePublicKey', sizes.publicKey))
    } catch (err) {
      return Promise.reject(err)
    }
  }
}

class Client extends Handle {
  constructor (options = {}) {
    const { kp, native } = commonOptions(options, 'connect')
    const server = options.serverPublicKey
    if (server === undefined || server === null) throw invalid('serverPublicKey is required')
    const handler = options.eventHandler ?? options.onEvent
    if (handler !== undefined && handler !== null && typeof handler !== 'function') {
      throw invalid('eventHandler must be a function')
    }
    native.serverPublicKey = toBuffer(server, 'serverPublicKey', sizes.publicKey)
    native.reconnect = options.reconnect === undefined ? undefined : Boolean(options.reconnect)
    native.reconnectMinMs = options.reconnectMinMs
    native.reconnectMaxMs = options.reconnectMaxMs
    native.window = options.window
    native.retryMinMs = options.retryMinMs
    native.retryMaxMs = options.retryMaxMs
    native.maxAttempts = options.maxAttempts
    if (options.onNotice !== undefined && options.onNotice !== null && typeof options.onNotice !== 'function') {
      throw invalid('onNotice must be a function')
    }
    native.onNotice = typeof options.onNotice === 'function'
    super(binding.Client, native, options)
    this.publicKey = kp.publicKey
    this.serverPublicKey = native.serverPublicKey
    this.topic = native.topic
    this.isServer = false
    this.connected = false
    this.offline = Boolean(options.offline) // informational, as in the original
    /** The original's client callback: (id, data, cb(id, ok[, result])). */
    this.eventHandler = handler
    /** (notice): what the user's application missed, in its place in the stream. */
    this.onNotice = options.onNotice
  }

  _event (type, publicKey, error) {
    if (type === 'connect') this.connected = true
    else if (type === 'disconnect') this.connected = false
    super._event(type, publicKey, error)
  }

  /*
   * One event at a time, in id order: eventHandler(id, data, cb, event) with data decoded by the
   * JSON rule and event = { id, payload (Buffer), createdAt, possiblyRepeated, attempt, fail,
   * reject } (possiblyRepeated: the server's store lost commits and gave this event again, and
   * this client may have handled it before; docs/RELIABILITY.md, "Restores and rollbacks";
   * attempt: 1 the first time). cb(id, true[, result]) records it consumed (result: optional
   * data reported to the server, a Buffer or a JSON value) and the next event follows;
   * cb(id, false), event.fail(reason), a throw or a rejected promise (its message the reason): a
   * failed attempt, handed out again after a backoff (retryMinMs doubling to retryMaxMs), before
   * any later event, until maxAttempts (default 10) make it a dead letter on the server;
   * event.reject(reason) makes it one at once. Without an eventHandler the 'event' listeners get
   * (id, data, cb, event); without either each attempt fails.
   */
  _onEvent (id, payload, createdAt, complete, possiblyRepeated, attempt) {
    let done = false
    const cb = (cbId, ok, result) => {
      if (typeof cbId === 'boolean' && ok === undefined) { ok = cbId; cbId = id } // cb(true)
      if (String(cbId) !== String(id)) {
        throw invalid(`Malformed id for event. Got: '${cbId}', expected: '${id}'`)
      }
      ok = ok === undefined ? true : Boolean(ok)
      const bytes = ok && result !== undefined && result !== null ? encode(result, 'result') : undefined
      complete(ok, bytes)
      done = true
    }
    const end = (how, reason) => {
      if (done) throw hdError('EALREADY', 'the event is already completed')
      complete(how, queues.reasonBytes(reason))
      done = true
    }
    // a throw or a rejection: a failed attempt whose reason is the error's message
    const fail = (err) => {
      if (!done) { done = true; quietly(() => complete(queues.COMPLETE_FAIL_REASON, queues.reasonBytes(err ?? 'handler failed'))) }
    }
    const event = {
      id,
      payload,
      createdAt,
      possiblyRepeated,
      /** Which handler call this is for the event: 1 the first time (counted across restarts). */
      attempt,
      /** A failed attempt with a reason; after maxAttempts the event is a dead letter. */
      fail: (reason) => end(queues.COMPLETE_FAIL_REASON, reason ?? 'handler failed'),
      /** A dead letter at once with `reason`, whatever its attempts. */
      reject: (reason) => end(queues.COMPLETE_REJECT, reason ?? 'rejected')
    }
    const data = this._decode(payload)
    const fn = this.eventHandler
    if (typeof fn === 'function') return this._guard(fn, [id, data, cb, event], 'eventHandler', fail)
    if (this.listenerCount('event') > 0) {
      return this._guard((...args) => { this.emit('event', ...args) }, [id, data, cb, event], "'event' listener", fail)
    }
    fail('no eventHandler and no event listener')
  }

  /*
   * A notice (docs/QUEUES.md): onNotice({ kind, count, firstSeq, lastSeq }) in its place in the
   * stream; returning (or resolving) completes it, a throw or a rejection hands it again later.
   */
  _onNotice (kind, count, firstSeq, lastSeq, complete) {
    let done = false
    const fail = () => { if (!done) { done = true; quietly(() => complete(false)) } }
    const n = queues.notice(kind, count, firstSeq, lastSeq)
    this._guard((x) => {
      const result = this.onNotice(x)
      if (result && typeof result.then === 'function') {
        return result.then(() => { if (!done) { done = true; complete(true) } })
      }
      done = true
      complete(true)
    }, [n], 'onNotice', fail)
  }

  /** { eventsReceived, eventsHandled, eventsFailed, eventsConfirmed, unhandled, consumed,
   *    highWater, pauseMs, eventsDead, noticesReceived, connected } */
  stats () { return this._native.stats() }
}

/**
 * createServer({ keyPair, topic, listen, dataDir, onClientConsumedEvents, ... }): listens before
 * it returns (server.port). keyPair accepts every form keyPair() does; `uniqueKeyPair`,
 * `folderName`, `testFolder` and `address` are accepted as the original's names.
 */
function createServer (options) { return new Server(options) }

/** createClient({ keyPair, serverPublicKey, topic, connect, dataDir, eventHandler, ... }). */
function createClient (options) { return new Client(options) }

/**
 * The original's entry point: `await require('hyperdown')(options)`, with its option names
 * (uniqueKeyPair, folderName, testFolder, isServer, serverPublicKey, onClientConsumedEvents,
 * eventHandler, offline) plus the address: `listen` for a server (default '127.0.0.1:0'; the
 * original found peers with hyperswarm, here the address is explicit) and `connect` for a
 * client ('host:port'), or one `address` for both. Storage: `dataDir`, else folderName
 * (/testFolder) relative to process.cwd().
 */
async function hyperdown (options) {
  if (!options || typeof options !== 'object') throw invalid('options object is missing')
  if (options.isServer) {
    if (typeof (options.onClientConsumedEvents ?? options.onConsumed) !== 'function') {
      throw invalid('options.onClientConsumedEvents should be a function if you intend this to be a server')
    }
    const listen = options.listen ?? options.address ?? '127.0.0.1:0'
    return createServer({ ...options, listen })
  }
  if (typeof (options.eventHandler ?? options.onEvent) !== 'function') {
    throw invalid('options.eventHandler should be a function if you intend this to be a client')
  }
  if ((options.connect ?? options.address) === undefined) {
    throw invalid('options.connect (the server\'s "host:port") is required: there is no discovery')
  }
  return createClient(options)
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
  OVERFLOW: queues.OVERFLOW,
  NOTICE_KINDS: queues.NOTICE_KINDS,
  encode,
  decode,
  errors,
  sizes,
  version: binding.versions.version,
  versions: Object.freeze({ ...binding.versions }),
  strerror: binding.strerror,
  errName: binding.errName,
  nativeObjects: binding.nativeObjects
})
