'use strict'
// The options both handles share: identity, topic, address, store folder, timeouts, log.
const fs = require('fs')
const path = require('path')
const { invalid } = require('./errors')
const { keyPair } = require('./keys')

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

module.exports = { LOG_LEVELS, commonOptions }
