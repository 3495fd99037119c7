'use strict'
// The options both handles share: identity, topic, address, store folder, timeouts, log.
const fs = require('fs')
const path = require('path')
const { invalid } = require('./errors')
const { keyPair } = require('./keys')

const LOG_LEVELS = ['error', 'warn', 'info', 'debug']

/*
 * Every option each role takes, the original's names included (uniqueKeyPair, folderName,
 * testFolder, isServer, offline): anything else is a mistake (`lisen:` would otherwise give a
 * server on a random port) and throws, naming the closest known option.
 */
const COMMON_OPTIONS = ['keyPair', 'uniqueKeyPair', 'topic', 'folderName', 'testFolder', 'address',
  'dataDir', 'syncNormal', 'json', 'handshakeTimeoutMs', 'keepaliveMs', 'idleTimeoutMs',
  'maxMessageBytes', 'log', 'logLevel', 'isServer']
const SERVER_OPTIONS = new Set([...COMMON_OPTIONS, 'listen', 'onClientConsumedEvents', 'onConsumed',
  'pageEvents', 'onDeadLetter', 'maxEventBytes', 'defaultTtlMs', 'maxPendingPerUser',
  'maxBytesPerUser', 'overflow', 'dedupWindowMs', 'dedupKeysPerUser', 'expiryBatch', 'nextKeyPair',
  'metricsListen', 'authorize', 'authorizeTimeoutMs', 'maxHandshakes', 'handshakesPerAddress'])
const CLIENT_OPTIONS = new Set([...COMMON_OPTIONS, 'connect', 'serverPublicKey', 'serverPublicKeys',
  'eventHandler', 'onEvent', 'reconnect', 'reconnectMinMs', 'reconnectMaxMs', 'window', 'retryMinMs',
  'retryMaxMs', 'maxAttempts', 'onNotice', 'offline'])

/* Levenshtein distance, for the suggestion of an unknown option. */
function distance (a, b) {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    row = next
  }
  return row[b.length]
}

/** Throws EINVAL for an option `role` ('server' or 'client') does not take. */
function checkKnown (options, role) {
  const known = role === 'server' ? SERVER_OPTIONS : CLIENT_OPTIONS
  const other = role === 'server' ? CLIENT_OPTIONS : SERVER_OPTIONS
  for (const key of Object.keys(options)) {
    if (known.has(key)) continue
    let hint = ''
    if (other.has(key)) {
      hint = ` (it is a ${role === 'server' ? 'client' : 'server'} option)`
    } else {
      const near = [...known].map((k) => [distance(key.toLowerCase(), k.toLowerCase()), k])
        .sort((x, y) => x[0] - y[0])[0]
      if (near && near[0] <= Math.max(2, Math.floor(key.length / 4))) hint = ` (did you mean '${near[1]}'?)`
    }
    throw invalid(`unknown ${role} option '${key}'${hint}`)
  }
}

/*
 * The identity: required. A random one made silently would give a restarted service another
 * key, and every client would refuse it (or every user would lose its events).
 */
function identity (options) {
  const given = options.keyPair ?? options.uniqueKeyPair
  if (given === undefined || given === null) {
    throw invalid('keyPair (the original\'s uniqueKeyPair) is required: make one once with ' +
      'hyperdown.keyPair(), store it, and pass it on every start so that the identity survives restarts')
  }
  return keyPair(given)
}

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
  checkKnown(options, addressKey === 'listen' ? 'server' : 'client')
  const kp = identity(options)
  const topic = options.topic ?? options.folderName
  if (typeof topic !== 'string' || topic.length === 0) {
    throw invalid('topic (or folderName) must be a non-empty string')
  }
  // a client may take a list of addresses (dialed in turn): the first goes as `connect`
  const given = options[addressKey] ?? options.address
  const list = addressKey === 'connect' && Array.isArray(given) ? given : null
  const address = list ? list[0] : given
  if (typeof address !== 'string' || address.length === 0 ||
      (list && !list.every((a) => typeof a === 'string' && a.length > 0))) {
    throw invalid(addressKey === 'connect'
      ? 'connect (or address) must be a "host:port" string or a non-empty array of them'
      : 'listen (or address) must be a "host:port" string')
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
      connectList: list ?? undefined,
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

module.exports = { LOG_LEVELS, SERVER_OPTIONS, CLIENT_OPTIONS, commonOptions }
