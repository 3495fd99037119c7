'use strict'
// The client: events handed to the handler one at a time, attempts, notices.
const binding = require('./binding')
const { hdError, invalid } = require('./errors')
const { toBuffer, sizes, encode } = require('./bytes')
const { commonOptions } = require('./options')
const { Handle, quietly } = require('./handle')
const queues = require('./queues')

class Client extends Handle {
  constructor (options = {}) {
    const { kp, native } = commonOptions(options, 'connect')
    const handler = options.eventHandler ?? options.onEvent
    if (typeof handler !== 'function') {
      throw invalid('eventHandler (id, data, cb) is required for a client and must be a function')
    }
    // the server's key, or the keys it may answer to during a key rollover (tried in turn)
    const servers = serverKeys(options)
    native.serverPublicKey = servers[0]
    if (options.serverPublicKeys !== undefined && options.serverPublicKeys !== null) {
      native.serverPublicKeys = Buffer.concat(servers)
    }
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
    super(binding.Client, native, options, {
      onevent: (id, payload, createdAt, ref, possiblyRepeated, attempt) =>
        this._onEvent(id, payload, createdAt, ref, possiblyRepeated, attempt),
      onnotice: (kind, count, firstSeq, lastSeq, ref) =>
        this._onNotice(kind, count, firstSeq, lastSeq, ref)
    })
    this.publicKey = kp.publicKey
    this.serverPublicKey = native.serverPublicKey
    /** Every server key the client accepts (serverPublicKeys, else [serverPublicKey]). */
    this.serverPublicKeys = servers
    /** The server addresses it dials, in turn. */
    this.connectList = native.connectList ?? [native.connect]
    this.topic = native.topic
    this.isServer = false
    this.connected = false
    this.offline = Boolean(options.offline) // informational, as in the original
    /** The original's client callback: (id, data, cb(id, ok[, result])). */
    this.eventHandler = handler
    /** (notice): what the user's application missed, in its place in the stream. */
    this.onNotice = options.onNotice
  }

  _onConnect (publicKey) {
    this.connected = true
    super._onConnect(publicKey)
  }

  _onDisconnect (publicKey, error) {
    this.connected = false
    super._onDisconnect(publicKey, error)
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
   * event.reject(reason) makes it one at once.
   */
  _onEvent (id, payload, createdAt, ref, possiblyRepeated, attempt) {
    // ref: the native event; binding.eventComplete/eventFail/eventReject end it (once)
    let done = false
    const cb = (cbId, ok, result) => {
      if (typeof cbId === 'boolean' && ok === undefined) { ok = cbId; cbId = id } // cb(true)
      if (String(cbId) !== String(id)) {
        throw invalid(`Malformed id for event. Got: '${cbId}', expected: '${id}'`)
      }
      ok = ok === undefined ? true : Boolean(ok)
      const bytes = ok && result !== undefined && result !== null ? encode(result, 'result') : undefined
      binding.eventComplete(ref, ok, bytes)
      done = true
    }
    const end = (how, reason) => {
      if (done) throw hdError('EALREADY', 'the event is already completed')
      how(ref, queues.reasonBytes(reason))
      done = true
    }
    // a throw or a rejection: a failed attempt whose reason is the error's message
    const fail = (err) => {
      if (!done) { done = true; quietly(() => binding.eventFail(ref, queues.reasonBytes(err ?? 'handler failed'))) }
    }
    const event = {
      id,
      payload,
      createdAt,
      possiblyRepeated,
      /** Which handler call this is for the event: 1 the first time (counted across restarts). */
      attempt,
      /** A failed attempt with a reason; after maxAttempts the event is a dead letter. */
      fail: (reason) => end(binding.eventFail, reason ?? 'handler failed'),
      /** A dead letter at once with `reason`, whatever its attempts. */
      reject: (reason) => end(binding.eventReject, reason ?? 'rejected')
    }
    this._guard(this.eventHandler, [id, this._decode(payload), cb, event], 'eventHandler', fail)
  }

  /*
   * A notice (docs/QUEUES.md): onNotice({ kind, count, firstSeq, lastSeq }) in its place in the
   * stream; returning (or resolving) completes it, a throw or a rejection hands it again later.
   */
  _onNotice (kind, count, firstSeq, lastSeq, ref) {
    let done = false
    const complete = (ok) => binding.eventComplete(ref, ok)
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

  /**
   * The server stores other than the current one this client holds events for (the store was
   * replaced by another, docs/OPERATIONS.md "Events held for another server store"):
   * [{ store: Buffer(16), unhandled, consumed }], the one seen first first.
   */
  heldStores () { return this._native.heldStores() }

  /**
   * Drops every event held for that server store and forgets it; resolves once durable.
   * Rejects with ENOTFOUND (a store never seen, or purged) or EBUSY (the current server's).
   */
  purgeStore (store) {
    try {
      return this._native.purgeStore(toBuffer(store, 'store', 16))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** { eventsReceived, eventsHandled, eventsFailed, eventsConfirmed, unhandled, consumed,
   *    highWater, pauseMs, eventsDead, noticesReceived, connected } */
  stats () { return this._native.stats() }
}

/* serverPublicKey, or serverPublicKeys (a non-empty array), as checked 32-byte Buffers. */
function serverKeys (options) {
  const list = options.serverPublicKeys
  const one = options.serverPublicKey
  if (list !== undefined && list !== null) {
    if (!Array.isArray(list) || list.length === 0) {
      throw invalid('serverPublicKeys must be a non-empty array of public keys')
    }
    if (one !== undefined && one !== null) {
      throw invalid('give serverPublicKey or serverPublicKeys, not both')
    }
    return list.map((k, i) => toBuffer(k, `serverPublicKeys[${i}]`, sizes.publicKey))
  }
  if (one === undefined || one === null) {
    throw invalid('serverPublicKey (the server\'s public key, or serverPublicKeys) is required for a client')
  }
  return [toBuffer(one, 'serverPublicKey', sizes.publicKey)]
}

module.exports = { Client }
