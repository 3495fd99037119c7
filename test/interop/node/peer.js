'use strict'
/*
 * A Node peer of the interop tests (test/interop/test_node_*.py), driven by pytest.
 *
 *   node peer.js '<options as JSON>'
 *
 * options: { role: 'server' | 'client', keyPair: { scalar, publicKey } | { seed } | ...,
 *            topic, dataDir, listen (server) | connect + serverPublicKey (client) }
 *
 * stdout, one JSON object a line:
 *   server: {"listening": "127.0.0.1:N", "port": N, "publicKey": hex} once listening;
 *           {"user": hex, "consumed": [{"id", "data", "payload"}]} per consumption report
 *           (cb(true) is called after the line is written);
 *   client: {"started": true, "publicKey": hex}; {"event": id, "data": ...} per event handed
 *           out, then cb(id, true, {"by": "node", "id": id}) (a payload that is not JSON prints as
 *           "dataBase64");
 *   both:   {"connect": hex} / {"disconnect": hex|null, "error": code|null};
 *           {"re": tag, ...} answers a command; {"closed": true} after a close.
 * stdin, one JSON command a line (answered with the same "tag"):
 *   {"tag": t, "op": "add", "user": hex, "data": <JSON>}  (or "dataBase64")  -> {"re": t, "id": N}
 *   {"tag": t, "op": "stats"}  -> {"re": t, "stats": {...}, "connected": [hex]}
 *   {"tag": t, "op": "close"}  -> closes, prints {"closed": true} and exits 0
 * SIGTERM / SIGINT / end of stdin close the handle the same way.
 */
const path = require('path')
const readline = require('readline')

let hd
try {
  hd = require('../../../bindings/node')
} catch (err) {
  process.stdout.write(JSON.stringify({ error: 'load', code: err.code || null, message: err.message }) + '\n')
  process.exit(3)
}

const opts = JSON.parse(process.argv[2])
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const hexOf = (b) => (b ? Buffer.from(b).toString('hex') : null)
const plain = (v) => (Buffer.isBuffer(v) ? { dataBase64: v.toString('base64') } : { data: v })

let handle
if (opts.role === 'server') {
  handle = hd.createServer({
    keyPair: opts.keyPair,
    topic: opts.topic,
    dataDir: path.resolve(opts.dataDir),
    listen: opts.listen || '127.0.0.1:0',
    onClientConsumedEvents (remotePublicKey, events, cb) {
      out({
        user: hexOf(remotePublicKey),
        consumed: events.map((e) => {
          const p = plain(e.payload)
          return { id: e.id, data: e.data, ...(p.data !== undefined ? { payload: p.data } : { payloadBase64: p.dataBase64 }) }
        })
      })
      cb(true)
    }
  })
  out({ listening: `127.0.0.1:${handle.port}`, port: handle.port, publicKey: hexOf(handle.publicKey) })
} else {
  handle = hd.createClient({
    keyPair: opts.keyPair,
    serverPublicKey: opts.serverPublicKey,
    topic: opts.topic,
    dataDir: path.resolve(opts.dataDir),
    connect: opts.connect,
    reconnectMinMs: 50,
    reconnectMaxMs: 500,
    eventHandler (id, data, cb) {
      out({ event: id, ...plain(data) })
      cb(id, true, { by: 'node', id })
    }
  })
  out({ started: true, publicKey: hexOf(handle.publicKey) })
}

handle.on('connect', (pk) => out({ connect: hexOf(pk) }))
handle.on('disconnect', (pk, err) => out({ disconnect: hexOf(pk), error: err ? err.code || String(err) : null }))
handle.on('callbackError', (err, where) => out({ callbackError: String(err), where }))

let closing = false
function close () {
  if (closing) return
  closing = true
  handle.close().then(() => { out({ closed: true }); process.exit(0) },
    (err) => { out({ closeError: String(err) }); process.exit(1) })
}
process.on('SIGTERM', close)
process.on('SIGINT', close)

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', async (line) => {
  if (!line.trim()) return
  let cmd
  try {
    cmd = JSON.parse(line)
  } catch (err) {
    return out({ re: null, error: 'bad command: ' + err.message })
  }
  const tag = cmd.tag ?? null
  try {
    if (cmd.op === 'add') {
      const data = cmd.dataBase64 !== undefined ? Buffer.from(cmd.dataBase64, 'base64') : cmd.data
      out({ re: tag, id: await handle.addEvent(cmd.user, data) })
    } else if (cmd.op === 'stats') {
      const connected = typeof handle.connectedUsers === 'function' ? handle.connectedUsers().map(hexOf) : undefined
      out({ re: tag, stats: handle.stats(), connected })
    } else if (cmd.op === 'close') {
      close()
    } else {
      out({ re: tag, error: 'unknown op ' + cmd.op })
    }
  } catch (err) {
    out({ re: tag, error: String(err), code: err.code || null })
  }
})
rl.on('close', close)
