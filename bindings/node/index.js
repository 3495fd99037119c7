'use strict'
/*
 * hyperdown: the Node binding of the Hyperdown C core (include/hyperdown.h).
 *
 * Layers:
 *   - binding (build/Release/hyperdown.node, src/*.c; lib/binding.js): the core's functions and
 *     its Server and Client handles running on Node's own libuv loop (no extra thread);
 *   - lib/: one module per concern: errors, bytes (hex, the payload rule), keys, options, the
 *     handle both classes share, server, client, queues (docs/QUEUES.md);
 *   - this file: the package's exports and the original's entry point
 *     `require('hyperdown')(options)`.
 */
const binding = require('./lib/binding')
const { errors, invalid } = require('./lib/errors')
const { hex, sizes, encode, decode } = require('./lib/bytes')
const keys = require('./lib/keys')
const { Server, HEX_KEYS } = require('./lib/server')
const { Client } = require('./lib/client')
const queues = require('./lib/queues')

/**
 * createServer({ keyPair, topic, listen, dataDir, onClientConsumedEvents, ... }): listens before
 * it returns (server.port). keyPair accepts every form keyPair() does; `uniqueKeyPair`,
 * `folderName`, `testFolder` and `address` are accepted as the original's names.
 */
function createServer (options) { return new Server(options) }

/** createClient({ keyPair, serverPublicKey, topic, connect, dataDir, eventHandler, ... }). */
function createClient (options) { return new Client(options) }

/**
 * Writes a consistent copy of the server store in `dataDir` to `path` while no server has it
 * open (EBUSY if a process has: use server.backup()); blocking, like fs.copyFileSync.
 */
function backupFolder (dataDir, path) {
  if (typeof dataDir !== 'string' || typeof path !== 'string') throw invalid('backupFolder(dataDir, path) takes two paths')
  binding.backupFolder(require('path').resolve(dataDir), path)
}

/**
 * The original's entry point: `await require('hyperdown')(options)`, with its option names
 * (uniqueKeyPair, folderName, testFolder, isServer, serverPublicKey, onClientConsumedEvents,
 * eventHandler, offline) plus the address: `listen` for a server (default '127.0.0.1:0'; the
 * original found peers with hyperswarm, here the address is explicit) and `connect` for a
 * client ('host:port' or a list of them), or one `address` for both. Storage: `dataDir`, else
 * folderName (/testFolder) relative to process.cwd(). As in the original, onClientConsumedEvents
 * gets the user's key as a hex string (createServer's gets a Buffer). docs/node.md lists every
 * difference from the original.
 */
async function hyperdown (options) {
  if (!options || typeof options !== 'object') throw invalid('options object is missing')
  if (options.isServer) {
    if (typeof options.onClientConsumedEvents !== 'function') {
      throw invalid('options.onClientConsumedEvents should be a function if you intend this to be a server')
    }
    const listen = options.listen ?? options.address ?? '127.0.0.1:0'
    return createServer({ ...options, listen, [HEX_KEYS]: true })
  }
  if (typeof options.eventHandler !== 'function') {
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
  ...keys,
  hex,
  OVERFLOW: queues.OVERFLOW,
  NOTICE_KINDS: queues.NOTICE_KINDS,
  encode,
  decode,
  errors,
  sizes,
  /** Most items of one server.addEvents() call. */
  ADD_EVENTS_MAX: binding.versions.addEventsMax,
  version: binding.versions.version,
  versions: Object.freeze({ ...binding.versions }),
  strerror: binding.strerror,
  errName: binding.errName,
  nativeObjects: binding.nativeObjects,
  backupFolder
})
