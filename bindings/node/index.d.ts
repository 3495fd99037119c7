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
    | { get (): { scalar: Bytes; publicKey: Bytes } } // a keypear Keychain

  /**
   * An event's id: the user's sequence number, from 1. A Number (exact up to 2^53, which it
   * always is in practice); a BigInt only beyond that.
   */
  type EventId = number | bigint

  /**
   * A payload or a client's result: a Buffer/Uint8Array is sent as its bytes, any other value
   * as its UTF-8 JSON. Received bytes that are valid UTF-8 JSON are given parsed, others as the
   * Buffer (with `json: false`: always the Buffer).
   */
  type Payload = unknown

  /** One event of a consumption report (server side). */
  interface ConsumedEvent {
    id: EventId
    /** What the client's handler reported with cb(id, true, result); null if nothing. */
    data: Payload | null
    /** What addEvent stored. */
    payload: Payload
    /** When the server stored it (Unix ms). */
    createdAt: number
  }

  /** cb(ok) completes every event of the report; cb(ok, index) one of them. */
  type ConsumedCallback = (ok?: boolean, index?: number) => void

  type OnClientConsumedEvents = (this: Server, remotePublicKey: Buffer, events: ConsumedEvent[],
    cb: ConsumedCallback) => unknown

  /** cb(id, ok = true, result?); cb(true) is accepted too. Throws EINVAL for another id. */
  type EventCallback = (id: EventId | boolean, ok?: boolean, result?: Payload) => void

  /** The event as the client got it. possiblyRepeated: the server's store lost commits (a
   *  restore, a power loss under syncNormal) and gave this event again, and this client may have
   *  handled it before (docs/RELIABILITY.md, "Restores and rollbacks"). */
  interface ClientEvent {
    id: EventId
    payload: Buffer
    createdAt: number
    possiblyRepeated: boolean
  }

  type EventHandler = (this: Client, id: EventId, data: Payload, cb: EventCallback,
    event: ClientEvent) => unknown

  interface ServerStats {
    eventsAdded: number
    eventsDelivered: number
    eventsConsumed: number
    eventsConfirmed: number
    pendingTotal: number
    connectedUsers: number
    commits: number
  }

  interface ClientStats {
    eventsReceived: number
    eventsHandled: number
    eventsFailed: number
    eventsConfirmed: number
    unhandled: number
    consumed: number
    highWater: number
    pauseMs: number
    connected: boolean
  }

  /** hd_rollback_stats_t: what losses of the server store's last commits did, since the handle
   *  was created. The last three count on a client only (0 on a server). */
  interface RollbackStats {
    /** server: its store's epoch; client: the epoch of the server store its events belong to
     *  (16 bytes, zeros while none is known) */
    epoch: Buffer
    /** resumes of a client that had seen numbers the store lost */
    rollbacks: number
    /** resumes answered with a new epoch, rollback or not */
    epochResumes: number
    /** events handed out marked possiblyRepeated */
    eventsRepeated: number
    /** unhandled events the store lost: handed out, never reported */
    eventsOrphaned: number
    /** consumed events the store lost: dropped, never reported */
    consumedDropped: number
  }

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
    | 'EREPLACED'

  type LogLevel = 'error' | 'warn' | 'info' | 'debug'

  interface CommonOptions {
    /** The identity (any KeyPairInput form); the original's name is `uniqueKeyPair`. */
    keyPair?: KeyPairInput
    uniqueKeyPair?: KeyPairInput
    /** The topic, and the storage folder unless dataDir is given; the original's name is `folderName`. */
    topic?: string
    folderName?: string
    /** The store's folder (created). Default: folderName[/testFolder] relative to process.cwd(). */
    dataDir?: string
    /** With the default folder: an inner folder of folderName (the original's option). */
    testFolder?: string
    /** true: SQLite synchronous=NORMAL (survives a process crash, not a power loss). */
    syncNormal?: boolean
    /** false: payloads and results are always given as Buffers (no JSON decoding). */
    json?: boolean
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
    /** The original's server callback (required by require('hyperdown')(options)); without it
     *  consumption reports are completed with success. Alias: onConsumed. */
    onClientConsumedEvents?: OnClientConsumedEvents
    onConsumed?: OnClientConsumedEvents
    /** Catch-up page size in events (default 512). */
    pageEvents?: number
  }

  interface ClientOptions extends CommonOptions {
    serverPublicKey: Bytes
    /** "127.0.0.1:7000" or "[::1]:7000". */
    connect?: string
    /** Dial again after a failure or a disconnect (default true). */
    reconnect?: boolean
    reconnectMinMs?: number
    reconnectMaxMs?: number
    /** The original's client callback (required by require('hyperdown')(options)). Without it
     *  the 'event' listeners get the events; without either they wait. Alias: onEvent. */
    eventHandler?: EventHandler
    onEvent?: EventHandler
    /** Events accepted unconfirmed (default 1024). */
    window?: number
    /** Backoff of a failed event: retryMinMs (default 100) doubling up to retryMaxMs (30000). */
    retryMinMs?: number
    retryMaxMs?: number
    /** Accepted and kept as client.offline (informational, as in the original). */
    offline?: boolean
  }

  /** The original's options (require('hyperdown')(options)); a server listens on
   *  '127.0.0.1:0' unless `listen`/`address` says otherwise, a client needs `connect`/`address`. */
  interface OriginalOptions extends ServerOptions, Omit<ClientOptions, 'serverPublicKey'> {
    isServer?: boolean
    serverPublicKey?: Bytes
  }

  interface HandleEvents {
    connect: [publicKey: Buffer]
    disconnect: [publicKey: Buffer | null, error: HyperdownError | null]
    log: [level: LogLevel, message: string]
    /** An eventHandler / onClientConsumedEvents threw or rejected (the events count as failed). */
    callbackError: [error: unknown, where: string]
    /** Client without an eventHandler: the events. */
    event: [id: EventId, data: Payload, cb: EventCallback, event: ClientEvent]
    close: []
  }

  abstract class Handle extends EventEmitter {
    readonly publicKey: Buffer
    readonly topic: string
    readonly isServer: boolean
    /** 'open' | 'closing' | 'closed' */
    readonly state: 'open' | 'closing' | 'closed'
    readonly closed: boolean
    /** The store's folder. */
    readonly dataDir: string
    /** Orderly close; resolves once the core released everything. Idempotent. */
    close (): Promise<void>
    /** The original's name for close(). */
    leave (): Promise<void>
    /** Counters of the server store's rollbacks (a short blocking read; ECLOSED once closing). */
    rollbackStats (): RollbackStats
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
    onClientConsumedEvents?: OnClientConsumedEvents
    /** Stores an event for the user; resolves with its id once durable. Rejects with a code
     *  (EINVAL, EKEY, ECLOSED, ...). */
    addEvent (remotePublicKey: Bytes, data: Payload): Promise<EventId>
    /** Stores the pause (ms) and pushes it to connected clients. */
    updatePause (ms: number): Promise<void>
    stats (): ServerStats
    /** Events the store holds for the user. */
    pending (remotePublicKey: Bytes): number
    connectedUsers (): Buffer[]
    /** Every user the store holds events for, with how many, in the order first seen. */
    pendingUsers (): Array<{ user: Buffer, pending: number }>
    /** A page of the user's pending events with an id above `after` (default 0), at most
     *  `limit` (default 256), in order; empty: no more. */
    listEvents (remotePublicKey: Bytes, options?: { after?: EventId, limit?: number }):
      Array<{ id: EventId, payload: Payload, createdAt: number }>
    /** Deletes the user's events with these ids; resolves with how many were held, once
     *  durable. The user's client is not told (docs/OPERATIONS.md "Admin"). */
    deleteEvents (remotePublicKey: Bytes, ids: EventId[]): Promise<number>
    /** Deletes every event of the user; resolves with how many, once durable. */
    deleteUser (remotePublicKey: Bytes): Promise<number>
  }

  class Client extends Handle {
    constructor (options: ClientOptions)
    readonly serverPublicKey: Buffer
    readonly connected: boolean
    readonly isServer: false
    readonly offline: boolean
    eventHandler?: EventHandler
    stats (): ClientStats
  }

  /** The addon's native objects alive in this process: wrappers of handles, client events and
   *  server batches handed to JS, addEvent/updatePause calls in flight. All zero once every
   *  handle is closed and collected (a diagnostic: a leak shows as a count that stays up). */
  function nativeObjects (): { handles: number; events: number; batches: number; operations: number }

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
  /** The JSON rule: a Buffer as is, anything else as UTF-8 JSON. */
  function encode (value: Payload): Buffer
  /** Parsed UTF-8 JSON, or the Buffer itself. */
  function decode (bytes: Buffer | null): Payload
  function strerror (code: number): string
  function errName (code: number): string

  function hyperdown (options: OriginalOptions & { isServer: true }): Promise<Server>
  function hyperdown (options: OriginalOptions): Promise<Server | Client>
}

declare function hyperdown (options: hyperdown.OriginalOptions & { isServer: true }): Promise<hyperdown.Server>
declare function hyperdown (options: hyperdown.OriginalOptions): Promise<hyperdown.Server | hyperdown.Client>

export = hyperdown
