'use strict'
// The repository root's package.json, derived from this package's own (the one definition of the
// Node package). npm installs a git dependency from the repository's root only (it has no syntax
// for a subfolder), so the root holds the same package seen from two folders up: the same name,
// version, description, engines, licence and keywords; main, types and exports pointing into
// bindings/node; "files" naming this package's files under bindings/node plus include/ and
// CSources/ in place of core/ (the C core is already where scripts/core.js looks when there is no
// core/ copy: two folders above this package); and the install script only (npm runs no prepack
// for a git dependency's root, nor needs one). The root has no binding.gyp: the build runs here.
//
//   node bindings/node/scripts/root-package.js           prints it
//   node bindings/node/scripts/root-package.js --write   writes <repository>/package.json
//   node bindings/node/scripts/root-package.js --check   exits 1 when the written one differs
// test/pack.test.js checks that the committed root package.json is what this script prints.
const fs = require('fs')
const path = require('path')

const PKG = path.join(__dirname, '..')
const REPO = path.join(PKG, '..', '..')
const HERE = path.relative(REPO, PKG).split(path.sep).join('/') // bindings/node
const ROOT_FILE = path.join(REPO, 'package.json')

/* "./index.js" (a target inside this package) as seen from the root: "./bindings/node/index.js". */
function fromRoot (target) {
  return './' + path.posix.join(HERE, target)
}

function mapExports (value, key) {
  if (key === './package.json') return './package.json' // the root's own, the one npm reads
  if (typeof value === 'string') return fromRoot(value)
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mapExports(v, k.startsWith('.') ? k : key)]))
}

function rootPackage (pkg) {
  const files = pkg.files.flatMap((f) => f === 'core/' ? ['include/', 'CSources/'] : [`${HERE}/${f}`])
  return {
    '//': `Generated from ${HERE}/package.json by \`node ${HERE}/scripts/root-package.js --write\`: ` +
      `the Node package as npm installs it from a git URL of this repository (${HERE}/README.md). Edit ${HERE}/package.json instead.`,
    name: pkg.name,
    version: pkg.version,
    description: pkg.description,
    main: fromRoot(pkg.main),
    types: fromRoot(pkg.types),
    scripts: {
      install: `node ${HERE}/scripts/install.js`
    },
    engines: pkg.engines,
    files: [...files, `${HERE}/package.json`],
    license: pkg.license,
    exports: mapExports(pkg.exports),
    keywords: pkg.keywords
  }
}

function text () {
  const pkg = JSON.parse(fs.readFileSync(path.join(PKG, 'package.json'), 'utf8'))
  return JSON.stringify(rootPackage(pkg), null, 2) + '\n'
}

module.exports = { rootPackage, text, ROOT_FILE }

if (require.main === module) {
  const arg = process.argv[2]
  if (arg === undefined) {
    process.stdout.write(text())
  } else if (arg === '--write') {
    fs.writeFileSync(ROOT_FILE, text())
  } else if (arg === '--check') {
    const written = fs.existsSync(ROOT_FILE) ? fs.readFileSync(ROOT_FILE, 'utf8') : ''
    if (written !== text()) {
      console.error(`hyperdown: ${ROOT_FILE} is not what ${HERE}/package.json gives: run node ${HERE}/scripts/root-package.js --write`)
      process.exit(1)
    }
  } else {
    console.error('usage: node scripts/root-package.js [--write|--check]')
    process.exit(2)
  }
}
