'use strict'
// Where node-gyp finds the C core: the package's own copy (core/, once the package carries it)
// or the checkout two folders up. Prints the core's sources (every .c under CSources/, the one
// recursive glob every build of the core uses) or its include folders (include/ and each layer
// named in CSources/LAYERS), relative to the package, one per line, for binding.gyp's <!@(...).
const fs = require('fs')
const path = require('path')

const pkg = path.join(__dirname, '..')
const candidates = [path.join(pkg, 'core'), path.join(pkg, '..', '..')]
const root = candidates.find((d) => fs.existsSync(path.join(d, 'CSources', 'LAYERS')))
if (root === undefined) {
  console.error('hyperdown: the C core (CSources/ and include/) was not found in ' + candidates.join(' or '))
  process.exit(1)
}
const rel = (p) => path.relative(pkg, p).split(path.sep).join('/')

function sources (dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))
    .flatMap((e) => e.isDirectory() ? sources(path.join(dir, e.name))
      : e.name.endsWith('.c') ? [path.join(dir, e.name)] : [])
}

function includeDirs () {
  const layers = fs.readFileSync(path.join(root, 'CSources', 'LAYERS'), 'utf8').split('\n')
    .map((l) => l.trim()).filter((l) => l && !l.startsWith('#')).flatMap((l) => l.split('|'))
  return [path.join(root, 'include'), ...layers.map((l) => path.join(root, 'CSources', l))]
}

const what = process.argv[2]
const out = what === 'sources' ? sources(path.join(root, 'CSources'))
  : what === 'include_dirs' ? includeDirs() : null
if (out === null) {
  console.error('usage: node scripts/core.js sources|include_dirs')
  process.exit(2)
}
console.log(out.map(rel).join('\n'))
