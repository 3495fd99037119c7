// Type declarations of the `hyperdown` Node binding (index.js).
/// <reference types="node" />
import { EventEmitter } from 'events'

declare namespace hyperdown {
  /** A checked Ed25519 key pair: the public key and the clamped secret scalar (keypear's form). */
  interface KeyPair {
    publicKey: Buffer
    scalar: Buffer
  }

  type Bytes = Buffer | Uint8Array | string // string: hex

  /** Every accepted key pair form. */
  type KeyPairInput =
    | Bytes // a 32-byte seed or libsodium's 64-byte secret key
    | { scalar: Bytes; publicKey: Bytes }
    | { secretKey: Bytes; publicKey?: Bytes }
    | { seed: Bytes }

  /** An Error from the core: `code` is the name ('EKEY', 'EAUTH', ...), `errno` the number. */
  interface HyperdownError extends Error {
    code: ErrorCode
    errno: number
  }

  type ErrorCode =
    | 'EINVAL' | 'ENOMEM' | 'EINIT' | 'EVERSION' | 'EKEY' | 'EHEX' | 'ETOPIC' | 'EAUTH'
    | 'EPROTO' | 'EMSGSIZE' | 'ETIMEDOUT' | 'ECONNREFUSED' | 'ECONNRESET' | 'EADDRINUSE'
    | 'EADDR' | 'EIO' | 'ECLOSED' | 'EBUSY' | 'ENOSPC' | 'ESTORE' | 'ECORRUPT' | 'ECANCELED'
    | 'ENOTFOUND' | 'EALREADY' | 'EBUFSIZE' | 'ESTATE' | 'EBYE' | 'ETHREAD'

  type LogLevel = 'error' | 'warn' | 'info' | 'debug'

  interface CommonOptions {
    /** The identity (any KeyPairInput form); the original's name is `uniqueKeyPair`. */
    keyPair?: KeyPairInput
    uniqueKeyPair?: KeyPairInput
    /** The topic (and, with events, the storage folder); the original's name is `folderName`. */
    topic?: string
    folderName?: string
    /** "host:port" for both a server (listen) and a client (connect). */
    address?: string
    handshakeTimeoutMs?: number
    keepaliveMs?: number
    idleTimeoutMs?: number
    maxMessageBytes?: number
    /** Receives the core's log lines (also emitted as 'log'). */
    log?: (level: LogLevel, message: string) => void
    logLevel?: LogLevel
  }

  interface ServerOptions extends CommonOptions {
    /** "127.0.0.1:7000", "[::1]:0", "0.0.0.0:7000"; port 0 picks a free port. */
    listen?: string
    /** Issue 5 (events): the original's server callback. */
    onClientConsumedEvents?: (remotePublicKey: Buffer, events: unknown[], cb: (ok: boolean) => void) => void
  }

  interface ClientOptions extends CommonOptions {
    serverPublicKey: Bytes
    /** "127.0.0.1:7000" or "[::1]:7000". */
    connect?: string
    /** Dial again after a failure or a disconnect (default true). */
    reconnect?: boolean
    reconnectMinMs?: number
    reconnectMaxMs?: number
    /** Issue 5 (events): the original's client callback. */
    eventHandler?: (id: unknown, data: unknown, cb: (id: unknown, ok: boolean) => unknown) => unknown
  }

  /** The original's options (require('hyperdown')(options)). */
  interface OriginalOptions extends ServerOptions, Omit<ClientOptions, 'serverPublicKey'> {
    isServer?: boolean
    serverPublicKey?: Bytes
    testFolder?: string
    offline?: boolean
  }

  interface HandleEvents {
    connect: [publicKey: Buffer]
    disconnect: [publicKey: Buffer | null, error: HyperdownError | null]
    log: [level: LogLevel, message: string]
    close: []
  }

  abstract class Handle extends EventEmitter {
    readonly publicKey: Buffer
    readonly topic: string
    readonly isServer: boolean
    /** 'open' | 'closing' | 'closed' */
    readonly state: 'open' | 'closing' | 'closed'
    readonly closed: boolean
    /** Orderly close; resolves once the core released everything. Idempotent. */
    close (): Promise<void>
    /** The original's name for close(). */
    leave (): Promise<void>
    on<E extends keyof HandleEvents> (event: E, listener: (...args: HandleEvents[E]) => void): this
    once<E extends keyof HandleEvents> (event: E, listener: (...args: HandleEvents[E]) => void): this
    off<E extends keyof HandleEvents> (event: E, listener: (...args: HandleEvents[E]) => void): this
    emit<E extends keyof HandleEvents> (event: E, ...args: HandleEvents[E]): boolean
  }

  class Server extends Handle {
    constructor (options: ServerOptions)
    readonly port: number
    /** Authenticated peers connected now, by hex public key. */
    readonly peers: Map<string, Buffer>
    readonly isServer: true
  }

  class Client extends Handle {
    constructor (options: ClientOptions)
    readonly serverPublicKey: Buffer
    readonly connected: boolean
    readonly isServer: false
  }

  function createServer (options: ServerOptions): Server
  function createClient (options: ClientOptions): Client

  function keyPair (input?: KeyPairInput): KeyPair
  function keyPairFromSeed (seed: Bytes): KeyPair
  function keyPairFromSecretKey (secretKey: Bytes): KeyPair
  function keyPairFromScalar (scalar: Bytes, publicKey: Bytes): KeyPair
  function keyPairFromScalar (pair: { scalar: Bytes; publicKey: Bytes }): KeyPair
  function generateKeyPair (): KeyPair
  function checkPublicKey (publicKey: Bytes): void
  function topicKey (name: string | Uint8Array): Buffer

  const hex: {
    encode (bytes: Uint8Array | string): string
    decode (text: string, length?: number): Buffer
  }

  const errors: Readonly<Record<ErrorCode, number>>
  const sizes: Readonly<{ publicKey: 32; scalar: 32; seed: 32; secretKey: 64; topic: 32 }>
  const version: string
  const versions: Readonly<{
    version: string
    versionHex: number
    abi: number
    protocol: number
    header: string
    uv: string
    uvHeaderHex: number
    uvRuntimeHex: number
    napi: number
  }>
  function strerror (code: number): string
  function errName (code: number): string

  function hyperdown (options: OriginalOptions & { isServer: true }): Promise<Server>
  function hyperdown (options: OriginalOptions): Promise<Server | Client>
}

declare function hyperdown (options: hyperdown.OriginalOptions & { isServer: true }): Promise<hyperdown.Server>
declare function hyperdown (options: hyperdown.OriginalOptions): Promise<hyperdown.Server | hyperdown.Client>

export = hyperdown
