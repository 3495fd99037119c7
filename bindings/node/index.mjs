// The package as an ES module: `import { createServer } from 'hyperdown'`, or the original's
// entry point as the default export (`import hyperdown from 'hyperdown'`). One implementation:
// this re-exports index.js (test/esm.test.js checks that every name of index.js is here).
import { createRequire } from 'node:module'

const hyperdown = createRequire(import.meta.url)('./index.js')

export default hyperdown
export const {
  createServer,
  createClient,
  Server,
  Client,
  keyPair,
  keyPairFromSeed,
  keyPairFromSecretKey,
  keyPairFromScalar,
  generateKeyPair,
  checkPublicKey,
  topicKey,
  hex,
  OVERFLOW,
  NOTICE_KINDS,
  encode,
  decode,
  errors,
  sizes,
  ADD_EVENTS_MAX,
  version,
  versions,
  strerror,
  errName,
  nativeObjects,
  backupFolder
} = hyperdown
export { hyperdown }
