'use strict'
// The native addon (build/Release/hyperdown.node, src/*.c): the core's functions and its Server
// and Client handles on Node's own libuv loop.
const path = require('path')

function loadBinding () {
  const tried = []
  for (const type of ['Release', 'Debug']) {
    const file = path.join(__dirname, '..', 'build', type, 'hyperdown.node')
    try {
      return require(file)
    } catch (err) {
      if (err.code !== 'MODULE_NOT_FOUND') throw err
      tried.push(file)
    }
  }
  const err = new Error('hyperdown: the native addon is not built (run `npm install` in ' +
    path.join(__dirname, '..') + '); looked for ' + tried.join(', '))
  err.code = 'ENOADDON'
  throw err
}

module.exports = loadBinding()
