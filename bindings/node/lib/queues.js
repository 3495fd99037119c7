'use strict'
/*
 * The queue semantics of docs/QUEUES.md on the JS side: option names and units (milliseconds,
 * as every other *Ms option of this binding), add options and results, fan-out results, dead
 * letters and notices as plain objects. index.js's Server and Client call these; the native
 * side (src/queues.c) takes what they return.
 */

/** What an add past a per-user limit does: 'reject' (ELIMIT) or 'drop-oldest'. */
const OVERFLOW = Object.freeze({ reject: 0, 'drop-oldest': 1 })

/** Notice kinds by their number in the C API (HD_NOTICE_*); a later release may add more. */
const NOTICE_KINDS = Object.freeze({ 1: 'expired', 2: 'dropped', 3: 'requeued' })

/**
 * The server's queue options, as the native constructor reads them: limits (maxPendingPerUser,
 * maxBytesPerUser, overflow), expiry (defaultTtlMs, expiryBatch), deduplication (dedupWindowMs,
 * dedupKeysPerUser), maxEventBytes, and whether dead letters are reported (always: they become
 * 'deadLetter' events, few and worth seeing).
 */
function serverOptions (options, invalid) {
  let overflow
  if (options.overflow !== undefined && options.overflow !== null) {
    overflow = OVERFLOW[options.overflow]
    if (overflow === undefined) throw invalid("overflow must be 'reject' or 'drop-oldest'")
  }
  if (options.onDeadLetter !== undefined && options.onDeadLetter !== null &&
      typeof options.onDeadLetter !== 'function') {
    throw invalid('onDeadLetter must be a function')
  }
  return {
    maxEventBytes: options.maxEventBytes,
    defaultTtlMs: options.defaultTtlMs,
    maxPendingPerUser: options.maxPendingPerUser,
    maxBytesPerUser: options.maxBytesPerUser,
    overflow,
    dedupWindowMs: options.dedupWindowMs,
    dedupKeysPerUser: options.dedupKeysPerUser,
    expiryBatch: options.expiryBatch,
    onDeadLetter: true
  }
}

/** A deduplication or collapse key: bytes as they are, a string as its UTF-8. */
function keyBytes (value, name, invalid) {
  if (value === undefined || value === null) return undefined
  if (typeof value === 'string') return Buffer.from(value, 'utf8')
  if (value instanceof Uint8Array) return value
  throw invalid(`${name} must be a string or a Buffer`)
}

/** { ttlMs, dedupKey, collapseKey } of one add, for the native call (undefined: none). */
function addOptions (options, invalid) {
  if (options === undefined || options === null) return undefined
  if (typeof options !== 'object') throw invalid('add options must be an object')
  return {
    ttlMs: options.ttlMs,
    dedupKey: keyBytes(options.dedupKey, 'dedupKey', invalid),
    collapseKey: keyBytes(options.collapseKey, 'collapseKey', invalid)
  }
}

/** The users of a fan-out as one Buffer of n x 32 bytes. */
function usersBuffer (users, toKey, invalid) {
  if (!Array.isArray(users) || users.length === 0) throw invalid('users must be a non-empty array of public keys')
  return Buffer.concat(users.map((u, i) => toKey(u, `users[${i}]`)))
}

/**
 * The fan-out's per-user results, in the users' order: { user, error, seq, duplicate, conflict,
 * replacedSeq, dropped } with error null, or an Error (code 'ELIMIT', 'EKEY'...) and the rest
 * null/false/0 for a user that failed alone.
 */
function fanoutResults (users, results, makeError) {
  return results.map((r, i) => r.status === 0
    ? { user: users[i], error: null, ...r.result }
    : { user: users[i], error: makeError(r.status), seq: null, duplicate: false, conflict: false, replacedSeq: null, dropped: 0 })
}

/** A dead letter as listed or reported, its payload decoded by the binding's JSON rule. */
function deadLetter (d, decode) {
  return {
    id: d.id,
    payload: decode(d.payload),
    createdAt: d.createdAt,
    attempts: d.attempts,
    reason: d.reason,
    deadAt: d.deadAt
  }
}

/** A notice: { kind: 'expired'|'dropped'|'requeued'|<number>, count, firstSeq, lastSeq }. */
function notice (kind, count, firstSeq, lastSeq) {
  return { kind: NOTICE_KINDS[kind] ?? kind, count, firstSeq, lastSeq }
}

/** add options with ttlMs: Infinity (never expires) as the core's UINT64_MAX. */
function ttlOption (options) {
  if (!options || options.ttlMs !== Infinity) return options
  return { ...options, ttlMs: 0xffffffffffffffffn }
}

/** A reason for a failed or rejected event as UTF-8 bytes (the core cuts it at 1024). */
function reasonBytes (reason) {
  if (reason === undefined || reason === null) return Buffer.alloc(0)
  if (reason instanceof Error) reason = reason.message || String(reason)
  return Buffer.from(String(reason), 'utf8')
}

module.exports = {
  OVERFLOW,
  NOTICE_KINDS,
  serverOptions,
  addOptions,
  ttlOption,
  usersBuffer,
  fanoutResults,
  deadLetter,
  notice,
  reasonBytes
}
