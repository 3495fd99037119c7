// Type declarations of the `hyperdown` Node binding (index.js, and index.mjs's named exports).
// They use Buffer and EventEmitter: a TypeScript project needs @types/node (README.md).
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
  /** The original's entry point hands the user's key as hex, as the original did. */
  type OriginalOnClientConsumedEvents = (this: Server, remotePublicKey: string, events: ConsumedEvent[],
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
    /** Which handler call this is for the event: 1 the first time (counted across restarts). */
    attempt: number
    /** A failed attempt with a reason (default 'handler failed'); after maxAttempts the event
     *  is a dead letter on the server. Throws EALREADY once completed. */
    fail (reason?: string | Error): void
    /** A dead letter at once with the reason (at most 1024 bytes), whatever its attempts. */
    reject (reason?: string | Error): void
  }

  /** Add options (docs/QUEUES.md). */
  interface AddOptions {
    /** Time to live (ms): not sent by then, the event expires and the client gets an 'expired'
     *  notice. Default: the server's defaultTtlMs; Infinity: never. */
    ttlMs?: number | bigint
    /** A repeat of the key (per user) within the server's dedupWindowMs stores nothing and
     *  resolves with the first add's seq (duplicate: true). 1 to 256 bytes. */
    dedupKey?: string | Uint8Array
    /** Replaces the user's unsent event with the same key (replacedSeq). 1 to 256 bytes. */
    collapseKey?: string | Uint8Array
  }

  /** What an add did. */
  interface AddResult {
    /** The event's id (a duplicate: the first add's). */
    seq: EventId
    /** The dedupKey was seen within the window: nothing stored. */
    duplicate: boolean
    /** With duplicate: this add's payload differs from the first's (the first wins). */
    conflict: boolean
    /** The unsent event this add replaced (collapseKey), or null. */
    replacedSeq: EventId | null
    /** How many older unsent events were dropped to make room (overflow 'drop-oldest'). */
    dropped: number
  }

  /** One user's result of addEventForUsers: error null and the result, or the Error (code
   *  'ELIMIT', 'EKEY', ...) of a user that failed alone (then seq and replacedSeq are null). */
  interface FanoutResult extends Omit<AddResult, 'seq'> {
    user: Buffer
    error: HyperdownError | null
    seq: EventId | null
  }

  /** An event its user's client failed maxAttempts times or rejected, as the server holds it. */
  interface DeadLetter {
    /** The id it had in the user's queue. */
    id: EventId
    payload: Payload
    /** When it was added (Unix ms). */
    createdAt: number
    /** Handler calls the client made. */
    attempts: number
    /** The handler's reason. */
    reason: string
    /** When it became a dead letter (Unix ms). */
    deadAt: number
  }

  /** What the user's application missed, in its place in the stream: `count` events numbered
   *  firstSeq..lastSeq expired unsent or were dropped by a limit, or (requeued, count 1) the
   *  dead letter firstSeq comes back as event lastSeq. A later release may add kinds (numbers). */
  interface Notice {
    kind: 'expired' | 'dropped' | 'requeued' | number
    count: number
    firstSeq: EventId
    lastSeq: EventId
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
    /** Times an event was larger than a client's maxMessageBytes (stored under a larger
     *  maxEventBytes): that connection closed with EMSGSIZE. */
    eventsTooLarge: number
    /** Deleted unsent after their time to live. */
    eventsExpired: number
    /** Moved to the dead letters. */
    eventsDead: number
    /** Dead letters given back to their users. */
    eventsRequeued: number
    /** Adds answered with an earlier add's seq (dedupKey). */
    addsDuplicate: number
    /** Unsent events replaced by a newer one with their collapseKey. */
    eventsReplaced: number
    /** Unsent events dropped to make room (overflow 'drop-oldest'). */
    eventsDropped: number
    /** Adds refused with ELIMIT. */
    addsLimited: number
    /** Dead letters held now. */
    deadLetters: number
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
    /** Reported failed after maxAttempts, or rejected. */
    eventsDead: number
    /** Notices stored. */
    noticesReceived: number
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
    | 'EREPLACED' | 'ELIMIT'

  type LogLevel = 'error' | 'warn' | 'info' | 'debug'

  /** The identity (any KeyPairInput form), required: `keyPair`, or the original's
   *  `uniqueKeyPair`. Make it once and store it: it must survive restarts. */
  type Identity = { keyPair: KeyPairInput; uniqueKeyPair?: never } | { uniqueKeyPair: KeyPairInput; keyPair?: never }

  interface CommonOptions {
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
    /** Accepted for the original's sake (require('hyperdown')(options) chooses by it). */
    isServer?: boolean
    handshakeTimeoutMs?: number
    keepaliveMs?: number
    idleTimeoutMs?: number
    maxMessageBytes?: number
    /** Receives the core's log lines (also emitted as 'log'). */
    log?: (level: LogLevel, message: string) => void
    logLevel?: LogLevel
  }

  interface ServerOptionsBase extends CommonOptions {
    /** "127.0.0.1:7000", "[::1]:0", "0.0.0.0:7000", "localhost:7000"; port 0 picks a free port. */
    listen?: string
    /** A second identity the server also answers to while its clients move to it (key rollover). */
    nextKeyPair?: KeyPairInput
    /** "host:port" of an HTTP/1.1 responder on the server's loop: GET /metrics, /healthz, /readyz
     *  (port 0: any, see metricsPort). */
    metricsListen?: string
    /** Whether a client's key may connect (admission control); a throw or a rejection refuses. */
    authorize?: (this: Server, publicKey: Buffer) => boolean | Promise<boolean>
    /** An authorize answer not given by then refuses the key (default 5000 ms). */
    authorizeTimeoutMs?: number
    /** Connections accepted and not yet authenticated (default 512). */
    maxHandshakes?: number
    /** Connections accepted per second from one address (default 64). */
    handshakesPerAddress?: number
    /** Catch-up page size in events (default 4096). */
    pageEvents?: number
    /** The largest payload addEvent accepts (default maxMessageBytes - 64); clients whose
     *  maxMessageBytes is below it + 64 are refused at the handshake (EMSGSIZE). */
    maxEventBytes?: number
    /** An event not sent this long (ms) after its add expires; default 0: never. */
    defaultTtlMs?: number | bigint
    /** Events held per user (notices aside); default 0: no limit. */
    maxPendingPerUser?: number | bigint
    /** Payload bytes held per user; default 0: no limit. */
    maxBytesPerUser?: number | bigint
    /** An add past a limit: 'reject' (default; ELIMIT) or 'drop-oldest' (the oldest unsent
     *  events make room and the client gets a 'dropped' notice). */
    overflow?: 'reject' | 'drop-oldest'
    /** How long a dedupKey is remembered (ms); default 24 h. */
    dedupWindowMs?: number | bigint
    /** Most dedupKeys remembered per user (the oldest go first); default 100000. */
    dedupKeysPerUser?: number
    /** Most expired events one sweep transaction deletes; default 1000. */
    expiryBatch?: number
    /** An event of the user became a dead letter (durably); informational. Also 'deadLetter'. */
    onDeadLetter?: (this: Server, user: Buffer, deadLetter: DeadLetter) => unknown
  }

  /** A server's options: the identity and the consumption callback are required (alias
   *  onConsumed). Unknown options throw EINVAL. */
  type ServerOptions = ServerOptionsBase & Identity &
    ({ onClientConsumedEvents: OnClientConsumedEvents; onConsumed?: never } | { onConsumed: OnClientConsumedEvents; onClientConsumedEvents?: never })

  interface ClientOptionsBase extends CommonOptions {
    /** "127.0.0.1:7000", "[::1]:7000", "host:7000", or a list of them dialed in turn. */
    connect?: string | string[]
    /** Dial again after a failure or a disconnect (default true). */
    reconnect?: boolean
    reconnectMinMs?: number
    reconnectMaxMs?: number
    /** Events accepted unconfirmed (default 8192). */
    window?: number
    /** Backoff of a failed event: retryMinMs (default 100) doubling up to retryMaxMs (30000). */
    retryMinMs?: number
    retryMaxMs?: number
    /** Accepted and kept as client.offline (informational, as in the original). */
    offline?: boolean
    /** Handler calls per event before it is reported failed (a dead letter on the server) and
     *  later events flow on; default 10, 0: unlimited (strict order). */
    maxAttempts?: number
    /** Notices (what the application missed: expired, dropped, requeued events) in their place
     *  in the stream; returning (or resolving) completes one, a throw hands it again later.
     *  Without it notices are confirmed unseen. */
    onNotice?: (this: Client, notice: Notice) => unknown
  }

  /** A client's options: the identity, the handler (alias onEvent) and the server's key (or the
   *  keys it may answer to during a key rollover) are required. Unknown options throw EINVAL. */
  type ClientOptions = ClientOptionsBase & Identity &
    ({ eventHandler: EventHandler; onEvent?: never } | { onEvent: EventHandler; eventHandler?: never }) &
    ({ serverPublicKey: Bytes; serverPublicKeys?: never } | { serverPublicKeys: Bytes[]; serverPublicKey?: never })

  /** The original's server options (require('hyperdown')({ isServer: true, ... })): listens on
   *  '127.0.0.1:0' unless `listen`/`address` says otherwise; onClientConsumedEvents gets the
   *  user's key as hex, as in the original. */
  type OriginalServerOptions = ServerOptionsBase & Identity & {
    isServer: true
    onClientConsumedEvents: OriginalOnClientConsumedEvents
  }

  /** The original's client options: `connect`/`address` is required (there is no discovery). */
  type OriginalClientOptions = ClientOptionsBase & Identity & {
    isServer?: false
    eventHandler: EventHandler
  } & ({ serverPublicKey: Bytes; serverPublicKeys?: never } | { serverPublicKeys: Bytes[]; serverPublicKey?: never })

  interface HandleEvents {
    connect: [publicKey: Buffer]
    disconnect: [publicKey: Buffer | null, error: HyperdownError | null]
    log: [level: LogLevel, message: string]
    /** An eventHandler / onClientConsumedEvents threw or rejected (the events count as failed). */
    callbackError: [error: unknown, where: string]
    /** Server: an event became a dead letter. */
    deadLetter: [user: Buffer, deadLetter: DeadLetter]
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
    /** The next identity's public key during a key rollover (nextKeyPair), else null. */
    readonly nextPublicKey: Buffer | null
    /** The port of the metrics responder (metricsListen), null without one. */
    readonly metricsPort: number | null
    authorize?: (this: Server, publicKey: Buffer) => boolean | Promise<boolean>
    /** Many events, any users, one transaction (at most ADD_EVENTS_MAX); each item's result in
     *  order (an item at a limit fails alone); an invalid item rejects the call, adding nothing. */
    addEvents (items: Array<{ user: Bytes, data: Payload, options?: AddOptions }>): Promise<FanoutResult[]>
    /** The metrics in the Prometheus text format, names prefixed hyperdown_. */
    metrics (): string
    /** Closes every connection of the user; returns how many. */
    disconnect (remotePublicKey: Bytes): number
    /** A consistent copy of the running store to `path` (must not exist), durable when resolved. */
    backup (path: string): Promise<void>
    /** Authenticated peers connected now, by hex public key. */
    readonly peers: Map<string, Buffer>
    readonly isServer: true
    onClientConsumedEvents: OnClientConsumedEvents | OriginalOnClientConsumedEvents
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
    onDeadLetter?: (this: Server, user: Buffer, deadLetter: DeadLetter) => unknown
    /** addEvent with options; resolves with what the add did. Rejects with ELIMIT at a limit
     *  under overflow 'reject'. (addEvent itself is unchanged: it resolves with the id.) */
    add (remotePublicKey: Bytes, data: Payload, options?: AddOptions): Promise<AddResult>
    /** One event for many users (1 to 100000) in one transaction; each user's result, in order. */
    addEventForUsers (users: Bytes[], data: Payload, options?: AddOptions): Promise<FanoutResult[]>
    /** A page of the user's dead letters with an id above `after`, at most `limit` (256). */
    listDeadLetters (remotePublicKey: Bytes, options?: { after?: EventId, limit?: number }): DeadLetter[]
    /** Dead letters held for the user (for every user without one). */
    deadLetterCount (remotePublicKey?: Bytes | null): number
    /** The users holding dead letters, with how many. */
    deadLetterUsers (): Array<{ user: Buffer, count: number }>
    /** Gives these dead letters (all without ids) back as new events; resolves with how many. */
    requeueDeadLetters (remotePublicKey: Bytes, ids?: EventId[] | null): Promise<number>
    /** Drops these dead letters (all without ids) for good; resolves with how many. */
    deleteDeadLetters (remotePublicKey: Bytes, ids?: EventId[] | null): Promise<number>
  }

  class Client extends Handle {
    constructor (options: ClientOptions)
    /** The first (or only) server key it accepts. */
    readonly serverPublicKey: Buffer
    /** Every server key it accepts. */
    readonly serverPublicKeys: Buffer[]
    /** The server addresses it dials, in turn. */
    readonly connectList: string[]
    /** Server stores other than the current one it holds events for. */
    heldStores (): Array<{ store: Buffer, unhandled: number, consumed: number }>
    /** Drops the events held for that store; ENOTFOUND, EBUSY (the current server's). */
    purgeStore (store: Bytes): Promise<void>
    readonly connected: boolean
    readonly isServer: false
    readonly offline: boolean
    eventHandler: EventHandler
    onNotice?: (this: Client, notice: Notice) => unknown
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
  /** overflow's values and their numbers in the C API. */
  const OVERFLOW: Readonly<{ reject: 0; 'drop-oldest': 1 }>
  /** Notice kinds by their number in the C API. */
  const NOTICE_KINDS: Readonly<{ 1: 'expired'; 2: 'dropped'; 3: 'requeued' }>
  const sizes: Readonly<{ publicKey: 32; scalar: 32; seed: 32; secretKey: 64; topic: 32 }>
  /** Most items of one addEvents() call. */
  const ADD_EVENTS_MAX: number
  /** A consistent copy of the server store in dataDir (no server has it open) to path; blocking. */
  function backupFolder (dataDir: string, path: string): void
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
    addEventsMax: number
  }>
  /** The JSON rule: a Buffer as is, anything else as UTF-8 JSON. */
  function encode (value: Payload): Buffer
  /** Parsed UTF-8 JSON, or the Buffer itself. */
  function decode (bytes: Buffer | null): Payload
  function strerror (code: number): string
  function errName (code: number): string

  /** The original's entry point: a Server for isServer: true, a Client otherwise. */
  function hyperdown (options: OriginalServerOptions): Promise<Server>
  function hyperdown (options: OriginalClientOptions): Promise<Client>
}

/** The original's entry point: a Server for isServer: true, a Client otherwise. */
declare function hyperdown (options: hyperdown.OriginalServerOptions): Promise<hyperdown.Server>
declare function hyperdown (options: hyperdown.OriginalClientOptions): Promise<hyperdown.Client>

export = hyperdown
