'use strict'
// npm's prepack (npm pack, npm publish, a git dependency's install): copies the C core (include/
// and CSources/ of the checkout, two folders up) into core/, so that the tarball builds on its
// own; scripts/core.js finds it there. `postpack` (scripts/prepack.js --clean) removes the copy
// again, so that a build in the checkout always compiles the checkout's own core.
const fs = require('fs')
const path = require('path')

const pkg = path.join(__dirname, '..')
const copy = path.join(pkg, 'core')

if (process.argv[2] === '--clean') {
  fs.rmSync(copy, { recursive: true, force: true })
  process.exit(0)
}

const repo = path.join(pkg, '..', '..')
if (!fs.existsSync(path.join(repo, 'CSources', 'LAYERS'))) {
  // packing a package that already carries its core (an unpacked tarball): nothing to copy
  if (fs.existsSync(path.join(copy, 'CSources', 'LAYERS'))) process.exit(0)
  console.error('hyperdown: prepack needs the C core: run it in bindings/node of a Hyperdown checkout')
  process.exit(1)
}
fs.rmSync(copy, { recursive: true, force: true })
for (const dir of ['include', 'CSources']) {
  fs.cpSync(path.join(repo, dir), path.join(copy, dir), { recursive: true })
}
