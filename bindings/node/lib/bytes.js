'use strict'
// Bytes: Buffers from the accepted forms, hex, sizes, and the payload rule (JSON or bytes).
const binding = require('./binding')
const { invalid } = require('./errors')

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

/** The sizes of keys and topics, as the core gives them (hd_publickey_bytes()...). */
const sizes = Object.freeze({ ...binding.sizes })

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

module.exports = { toBuffer, hex, sizes, encode, decode }
