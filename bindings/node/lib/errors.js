'use strict'
// Errors: the core's codes by name, and Errors that carry them (code: 'EKEY', errno: -5).
const binding = require('./binding')

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

function invalid (message) {
  const err = new TypeError(message)
  err.code = 'EINVAL'
  err.errno = errors.EINVAL
  return err
}

module.exports = { errors, hdError, codeError, invalid }
