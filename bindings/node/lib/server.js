'use strict'
// The server: adds (plain, with options, fan-out), consumption reports, admin, dead letters.
const binding = require('./binding')
const { codeError, invalid } = require('./errors')
const { toBuffer, sizes, encode } = require('./bytes')
const { commonOptions } = require('./options')
const { Handle, quietly } = require('./handle')
const { keyPair } = require('./keys')
const queues = require('./queues')

/*
 * Set by the original's entry point (index.js, hyperdown()): onClientConsumedEvents gets the
 * user's key as a hex string, as the original's did (its own example prints it in a template
 * string). A symbol, so that no options object can set it by mistake.
 */
const HEX_KEYS = Symbol('hyperdown.hexKeys')

class Server extends Handle {
  constructor (options = {}) {
    const { kp, native } = commonOptions(options, 'listen')
    const onConsumed = options.onClientConsumedEvents ?? options.onConsumed
    if (typeof onConsumed !== 'function') {
      throw invalid('onClientConsumedEvents (remotePublicKey, events, cb) is required for a server ' +
        'and must be a function: it decides what a consumed event means (cb(true) deletes them)')
    }
    native.onConsumed = true
    // key rollover: a second identity the server also answers to while clients move to it
    const next = options.nextKeyPair === undefined || options.nextKeyPair === null
      ? null : keyPair(options.nextKeyPair)
    if (next !== null) {
      native.nextPublicKey = next.publicKey
      native.nextScalar = next.scalar
    }
    if (options.metricsListen !== undefined && options.metricsListen !== null &&
        (typeof options.metricsListen !== 'string' || options.metricsListen.length === 0)) {
      throw invalid('metricsListen must be a "host:port" string')
    }
    native.metricsListen = options.metricsListen
    // admission (docs/RELIABILITY.md, "Admission control")
    if (options.authorize !== undefined && options.authorize !== null && typeof options.authorize !== 'function') {
      throw invalid('authorize must be a function (publicKey) => boolean | Promise<boolean>')
    }
    native.authorize = typeof options.authorize === 'function'
    native.authorizeTimeoutMs = options.authorizeTimeoutMs
    native.maxHandshakes = options.maxHandshakes
    native.handshakesPerAddress = options.handshakesPerAddress
    native.pageEvents = options.pageEvents
    Object.assign(native, queues.serverOptions(options, invalid))
    super(binding.Server, native, options, {
      onconsumed: (user, events, batch) => this._onConsumed(user, events, batch),
      ondeadletter: (user, deadLetter) => this._onDeadLetter(user, deadLetter),
      onauthorize: (publicKey, request) => this._onAuthorize(publicKey, request)
    })
    /** (publicKey) => boolean | Promise<boolean>: whether a client's key may connect. */
    this.authorize = options.authorize
    this._hexKeys = options[HEX_KEYS] === true
    this.publicKey = kp.publicKey
    /** The next identity's public key during a key rollover (nextKeyPair), else null. */
    this.nextPublicKey = next === null ? null : next.publicKey
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

  /*
   * A client's key authenticated its first handshake message: authorize(publicKey) decides
   * (true or a promise of true: admitted); a throw, a rejection or anything else refuses it.
   * Not answered within authorizeTimeoutMs (default 5000), the core refuses it.
   */
  _onAuthorize (publicKey, request) {
    // request: the native request; binding.authorizationAllow/Deny answer it (once)
    const answer = (ok) => ok === true ? binding.authorizationAllow(request) : binding.authorizationDeny(request)
    const refuse = () => quietly(() => answer(false))
    this._guard((pk) => {
      const result = this.authorize(pk)
      if (result && typeof result.then === 'function') {
        return result.then((ok) => quietly(() => answer(ok === true)))
      }
      answer(result === true)
    }, [publicKey], 'authorize', refuse)
  }

  /**
   * Closes every connection of the user (open ones with a goodbye saying EAUTH); returns how
   * many. For a key the authorize callback no longer admits: it meets authorize again when it
   * dials back.
   */
  disconnect (remotePublicKey) {
    return this._native.disconnect(toBuffer(remotePublicKey, 'remotePublicKey', sizes.publicKey))
  }

  /**
   * Writes a consistent copy of the running store to `path` (a file that must not exist),
   * marked as a backup; resolves once it is complete and durable. Adds and deliveries go on.
   */
  backup (path) {
    try {
      if (typeof path !== 'string' || path.length === 0) throw invalid('path must be a non-empty string')
      return this._native.backup(path)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** The port it listens on (useful with port 0). */
  get port () { return this._port }

  _onConnect (publicKey) {
    this.peers.set(publicKey.toString('hex'), publicKey)
    super._onConnect(publicKey)
  }

  _onDisconnect (publicKey, error) {
    if (publicKey) this.peers.delete(publicKey.toString('hex'))
    super._onDisconnect(publicKey, error)
  }

  /*
   * A user reported events consumed: onClientConsumedEvents(remotePublicKey, events, cb) with
   * events [{ id, data, payload, createdAt }] in id order (data: what the client's handler
   * reported, payload: what addEvent stored, both decoded by the JSON rule). cb(true) deletes
   * them and confirms them to the client; cb(false) keeps them (the client reports them again
   * on its next connection); cb(ok, index) completes one event of the array. A throw or a
   * rejected promise counts as cb(false) for what is not completed yet.
   */
  _onConsumed (user, events, batch) {
    const list = events.map((e) => ({
      id: e.id,
      data: e.data === null ? null : this._decode(e.data),
      payload: this._decode(e.payload),
      createdAt: e.createdAt
    }))
    // batch: the native batch; consumedComplete (one event) and consumedCompleteAll complete it
    const cb = (ok = true, index) => index === undefined || index === null
      ? binding.consumedCompleteAll(batch, Boolean(ok))
      : binding.consumedComplete(batch, index, Boolean(ok))
    const key = this._hexKeys ? user.toString('hex') : user
    this._guard(this.onClientConsumedEvents, [key, list, cb], 'onClientConsumedEvents',
      () => quietly(() => binding.consumedCompleteAll(batch, false)))
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
        encode(data, 'data'), queues.addOptions(queues.ttlOption(options), invalid))
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
        queues.addOptions(queues.ttlOption(options), invalid))
        .then((results) => queues.fanoutResults(keys, results, codeError))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /**
   * Many events in one call, one transaction and one fsync (hd_server_add_events): items
   * [{ user, data, options }] (user: a public key in any accepted form; data as addEvent's;
   * options as add()'s, optional), at most ADD_EVENTS_MAX. Resolves with each item's result, in
   * order, as addEventForUsers does: { user, error (null, or an Error with code 'ELIMIT'...: that
   * item failed alone), seq, duplicate, conflict, replacedSeq, dropped }. An invalid item rejects
   * the whole call and adds nothing.
   */
  addEvents (items) {
    try {
      if (!Array.isArray(items) || items.length === 0) throw invalid('items must be a non-empty array of { user, data, options }')
      const users = []
      const payloads = []
      const options = []
      items.forEach((item, i) => {
        if (!item || typeof item !== 'object') throw invalid(`items[${i}] must be { user, data, options }`)
        users.push(toBuffer(item.user, `items[${i}].user`, sizes.publicKey))
        payloads.push(encode(item.data, `items[${i}].data`))
        options.push(queues.addOptions(queues.ttlOption(item.options), invalid))
      })
      return this._native.addEvents(Buffer.concat(users), payloads, options)
        .then((results) => queues.fanoutResults(users, results, codeError))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /**
   * The server's metrics in the Prometheus text format (hd_server_metrics), names prefixed
   * `hyperdown_`: mount it on your own HTTP server (as prom-client users do), or let the
   * server serve it on metricsListen.
   */
  metrics () { return this._native.metrics() }

  /** The port of the metrics responder (metricsListen with port 0), null without one. */
  get metricsPort () { return this._native.metricsPort() }

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

module.exports = { Server, HEX_KEYS }
