'use strict'
// What Server and Client share: the native handle, its events, callbacks guarded, close.
const { EventEmitter } = require('events')
const { LOG_LEVELS } = require('./options')
const { decode } = require('./bytes')

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
  constructor (Native, native, options, callbacks) {
    super()
    if (typeof options.log === 'function') this.on('log', options.log)
    this._json = options.json !== false
    // one typed callback per kind of call from the core (src/handles.h, hdn_callback_t)
    this._native = new Native(native, {
      onconnect: (publicKey) => this._onConnect(publicKey),
      ondisconnect: (publicKey, error) => this._onDisconnect(publicKey, error),
      onlog: (level, message) => this.emit('log', LOG_LEVELS[level] || String(level), message),
      ...callbacks
    })
    this._closing = null
    this.dataDir = native.dataDir
  }

  /* A peer finished the handshake (the subclasses keep their state, then call this). */
  _onConnect (publicKey) { this.emit('connect', publicKey) }

  /* A connection (or a client's attempt) ended. */
  _onDisconnect (publicKey, error) { this.emit('disconnect', publicKey, error) }

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

module.exports = { Handle, quietly }
