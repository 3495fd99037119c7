import CoreMetrics
import Logging

/// How hard the store works to keep what it acknowledged.
public enum Durability: Sendable, Hashable {
  /// SQLite `synchronous=FULL`: an acknowledged event survives a power loss (the default).
  case full
  /// SQLite `synchronous=NORMAL`: an acknowledged event survives a crash of the process, but the
  /// last commits may be lost when the machine loses power. Faster on slow disks.
  case normal
}

/// Everything a ``HyperdownServer`` needs: its identity, its topic, its folder and its address.
///
/// ```swift
/// var config = ServerConfiguration(
///   keyPair: try KeyPair(scalarHex: "808a…", publicKeyHex: "9b0e…"),
///   folderName: "topic", dataDirectory: "/var/lib/hyperdown/server", listen: "0.0.0.0:7000")
/// config.onClientConsumedEvents = { user, events in
///   print("\(user) used \(events.map(\.id))")
///   return true
/// }
/// let server = try HyperdownServer(configuration: config)
/// ```
public struct ServerConfiguration: Sendable {
  /// The server's identity. Clients must know its public key (`serverPublicKey`).
  public var keyPair: KeyPair
  /// The topic (the original's `folderName`). Peers on another topic fail the handshake (`ETOPIC`).
  public var folderName: String
  /// The store's folder: created with mode 0700, locked while the server runs (a second process
  /// gets `EBUSY`). A server started again on the same folder resumes where it was.
  public var dataDirectory: String
  /// The address to listen on: `"127.0.0.1:7000"`, `"[::1]:7000"`, `"0.0.0.0:7000"`; port 0 picks
  /// a free port (read it from ``HyperdownServer/port``).
  public var listen: String
  /// A pause to push to every client when the server starts (see ``HyperdownServer/updatePause(_:)``);
  /// `nil` keeps the pause the store remembers.
  public var pause: Duration?
  /// Durability of the store (``Durability/full`` by default).
  public var durability: Durability = .full
  /// The catch-up page size in events (`nil`: the core's default, 4096).
  public var pageEvents: UInt32?
  /// Handshake timeout (`nil`: 10 s).
  public var handshakeTimeout: Duration?
  /// Ping after this much silence (`nil`: 5 s).
  public var keepalive: Duration?
  /// Drop a peer silent this long (`nil`: three keepalives).
  public var idleTimeout: Duration?
  /// The largest message accepted, in bytes (`nil`: 1 MiB).
  public var maxMessageBytes: UInt32?
  /// Receives the core's log lines; its `logLevel` decides how verbose the core is.
  public var logger: Logger
  /// Runs when a user reports events consumed (the original's `onClientConsumedEvents`): the
  /// user's key and the events, in sequence order, with the data the client's handler reported.
  /// Return `true` to forget them and confirm them to the client, `false` to keep them (the
  /// client reports them again on its next connection). It runs in a task of its own, one per
  /// batch. `nil` accepts every report.
  public var onClientConsumedEvents: (@Sendable (PublicKey, [ConsumedEvent]) async -> Bool)?
  /// A user finished the handshake. Runs on the core's loop thread: it must not block.
  public var onUserConnected: (@Sendable (PublicKey) -> Void)?
  /// A user's connection ended: `nil` for an orderly close, else why. Runs on the loop thread.
  public var onUserDisconnected: (@Sendable (PublicKey?, HyperdownError?) -> Void)?
  /// Decides which users may connect (admission control): it runs, in a task of its own, once a
  /// client's first handshake message has authenticated its key and before the server answers.
  /// `false` refuses the key: the client gets `EAUTH` and never sees the server's reply (its
  /// store id). `nil` admits every key. See also ``HyperdownServer/disconnect(user:)``.
  public var authorize: (@Sendable (PublicKey) async -> Bool)?
  /// An ``authorize`` answer that takes longer than this refuses the key (`nil`: 5 s).
  public var authorizeTimeout: Duration?
  /// Connections accepted and not yet authenticated; more are closed at once (`nil`: 512).
  public var maxHandshakes: UInt32?
  /// Connections accepted per second from one address (an IPv6 /64); more are closed at once
  /// (`nil`: 64).
  public var handshakesPerAddress: UInt32?
  /// The largest event payload accepted, in bytes (`nil`: ``maxMessageBytes`` less 64). A
  /// client whose own message limit cannot carry it is refused at the handshake.
  public var maxEventBytes: UInt32?
  /// How long an event may wait to be sent to its user's client before it expires, unless its
  /// add says otherwise (``AddOptions/ttl``); `nil`: events do not expire (docs/QUEUES.md).
  public var defaultTTL: Duration?
  /// Events held per user (notices aside); `nil`: no limit. What an add past it does:
  /// ``overflow``.
  public var maxPendingPerUser: UInt64?
  /// Payload bytes held per user; `nil`: no limit.
  public var maxBytesPerUser: UInt64?
  /// What an add past ``maxPendingPerUser`` or ``maxBytesPerUser`` does
  /// (``OverflowPolicy/reject`` by default: it fails with `ELIMIT`).
  public var overflow: OverflowPolicy = .reject
  /// How long a deduplication key (``AddOptions/dedupKey``) is remembered (`nil`: 24 h).
  public var dedupWindow: Duration?
  /// Most deduplication keys remembered per user, the oldest forgotten first (`nil`: 100,000).
  public var dedupKeysPerUser: UInt32?
  /// Most expired events one sweep transaction deletes (`nil`: 1000).
  public var expiryBatch: UInt32?
  /// An event of a user became a dead letter (its client failed it after its attempts, or
  /// rejected it), durably: the user and the dead letter. Informational: list, requeue or delete
  /// dead letters with ``HyperdownServer/deadLetters(for:after:limit:)`` and the calls beside it.
  /// Runs on the core's loop thread: it must not block.
  public var onDeadLetter: (@Sendable (PublicKey, DeadLetter) -> Void)?
  /// A second identity the server also answers to, while its clients move to it (key rollover,
  /// docs/OPERATIONS.md "Key files"): a client that trusts either key connects. Start the server
  /// with its current key as ``keyPair`` and the new one here; once the clients know the new key
  /// (``ClientConfiguration/serverPublicKeys``), restart it with the new key alone. `nil`: none.
  public var nextKeyPair: KeyPair?
  /// An address, `"127.0.0.1:9090"`, where the core serves `GET /metrics` (``HyperdownServer/metrics()``),
  /// `/healthz` and `/readyz` over HTTP/1.1 on the server's own loop (port 0: any free one,
  /// ``HyperdownServer/metricsPort``). `nil`: no such responder.
  public var metricsListen: String?
  /// Where the server's swift-metrics go: `nil` is the process's `MetricsSystem.factory`, the
  /// backend the service bootstrapped (swift-prometheus, say); nothing is reported when none was.
  public var metricsFactory: (any MetricsFactory)?
  /// How often the core's counters are handed to swift-metrics (`nil`: never; default 1 s).
  public var metricsInterval: Duration? = .seconds(1)
  /// Dimensions (labels) of every swift-metrics metric of this server, e.g. `[("topic", "shop")]`
  /// when a process runs more than one server.
  public var metricsDimensions: [(String, String)] = []

  /// A configuration with the required fields; set the others as needed.
  /// - Parameters:
  ///   - keyPair: the server's identity.
  ///   - folderName: the topic.
  ///   - dataDirectory: the store's folder.
  ///   - listen: the address to listen on (default `127.0.0.1:0`, any free port).
  ///   - logger: receives the core's log lines (default: warnings and errors).
  public init(keyPair: KeyPair, folderName: String, dataDirectory: String,
              listen: String = "127.0.0.1:0",
              logger: Logger = quietLogger("hyperdown.server")) {
    self.keyPair = keyPair
    self.folderName = folderName
    self.dataDirectory = dataDirectory
    self.listen = listen
    self.logger = logger
  }
}

/// Everything a ``HyperdownClient`` needs: the user's identity, the server it trusts and where.
///
/// ```swift
/// var config = ClientConfiguration(
///   keyPair: user, serverPublicKey: server.identity, folderName: "topic",
///   dataDirectory: "/var/lib/hyperdown/client", server: "127.0.0.1:7000")
/// let client = try HyperdownClient(configuration: config)
/// for try await event in client.events {
///   print(event.id, String(decoding: event.payload, as: UTF8.self))
///   event.complete()
/// }
/// ```
public struct ClientConfiguration: Sendable {
  /// The user's identity: the server adds events for its public key.
  public var keyPair: KeyPair
  /// The server's public key; a server with another key fails the handshake (`EAUTH`). Setting
  /// it replaces ``serverPublicKeys``.
  public var serverPublicKey: PublicKey {
    get { serverPublicKeys[0] }
    set { serverPublicKeys = [newValue] }
  }
  /// The server keys the client accepts, tried in turn (at least one): during a server's key
  /// rollover, its current and its next key (docs/OPERATIONS.md "Key files").
  public var serverPublicKeys: [PublicKey]
  /// The topic (the original's `folderName`); it must be the server's.
  public var folderName: String
  /// The client's store folder (created 0700, locked while open). Events received are written
  /// here before they are handled, so they are handled even while the server is away.
  public var dataDirectory: String
  /// The server's address, `"127.0.0.1:7000"`, `"[::1]:7000"` or `"host:7000"` (a name is
  /// resolved without blocking, every address it resolves to tried in turn). Setting it replaces
  /// ``servers``.
  public var server: String {
    get { servers[0] }
    set { servers = [newValue] }
  }
  /// The server's addresses (at least one), dialed in turn with a jittered, capped backoff
  /// (``reconnectMin``, ``reconnectMax``): a client reaches whichever answers.
  public var servers: [String]
  /// How many events the client accepts unconfirmed (`nil`: 8192). Bounds memory on both sides.
  public var window: UInt32?
  /// First delay before a failed event is handed again (`nil`: 100 ms); it doubles up to
  /// ``retryMax``.
  public var retryMin: Duration?
  /// Cap of the retry delay (`nil`: 30 s).
  public var retryMax: Duration?
  /// First redial delay after a failed or lost connection (`nil`: 100 ms).
  public var reconnectMin: Duration?
  /// Cap of the doubling redial delay (`nil`: 5 s). Each delay is drawn at random between half
  /// of its value and all of it, so that many clients part after a server restart instead of
  /// dialing in the same millisecond.
  public var reconnectMax: Duration?
  /// `true`: do not dial again after a failure or a disconnect.
  public var noReconnect: Bool = false
  /// Handler calls per event, each counted durably before the call: after the last failed one
  /// the event is reported failed (a dead letter on the server) and later events flow on
  /// (`nil`: 10; 0: unlimited, the event is retried for ever and holds back the later ones;
  /// docs/QUEUES.md "Poison events").
  public var maxAttempts: UInt32?
  /// Receives the notices (``Notice``: events that expired or were dropped unsent, a dead letter
  /// requeued) in their place in the user's stream: the next event comes after it returns.
  /// `nil`: notices are confirmed without being handed out.
  public var onNotice: (@Sendable (Notice) async -> Void)?
  /// Durability of the store (``Durability/full`` by default).
  public var durability: Durability = .full
  /// Handshake timeout (`nil`: 10 s).
  public var handshakeTimeout: Duration?
  /// Ping after this much silence (`nil`: 5 s).
  public var keepalive: Duration?
  /// Drop the server when silent this long (`nil`: three keepalives).
  public var idleTimeout: Duration?
  /// The largest message accepted, in bytes (`nil`: 1 MiB).
  public var maxMessageBytes: UInt32?
  /// Receives the core's log lines; its `logLevel` decides how verbose the core is.
  public var logger: Logger
  /// The original's `eventHandler`: when set, every event goes to this closure (and none to
  /// ``HyperdownClient/events``). Return the data to report to the server (or `nil`) to mark the
  /// event consumed; throw to have it handed again after the retry delay (a failed attempt whose
  /// reason is the error's description: after ``maxAttempts`` it becomes a dead letter); throw
  /// ``EventRejected`` to make it a dead letter at once.
  public var eventHandler: (@Sendable (Event) async throws -> [UInt8]?)?
  /// The server authenticated (its key). Runs on the core's loop thread: it must not block.
  public var onConnected: (@Sendable (PublicKey) -> Void)?
  /// A connection or a connection attempt ended: `nil` for an orderly close, else why (`EAUTH`
  /// for a wrong server key, `ETOPIC` for another topic, `ECONNREFUSED`...). Loop thread.
  public var onDisconnected: (@Sendable (HyperdownError?) -> Void)?

  /// A configuration with the required fields; set the others as needed.
  /// - Parameters:
  ///   - keyPair: the user's identity.
  ///   - serverPublicKey: the server it trusts.
  ///   - folderName: the topic.
  ///   - dataDirectory: the client's store folder.
  ///   - server: the server's address.
  ///   - logger: receives the core's log lines (default: warnings and errors).
  public init(keyPair: KeyPair, serverPublicKey: PublicKey, folderName: String,
              dataDirectory: String, server: String,
              logger: Logger = quietLogger("hyperdown.client")) {
    self.keyPair = keyPair
    self.serverPublicKeys = [serverPublicKey]
    self.folderName = folderName
    self.dataDirectory = dataDirectory
    self.servers = [server]
    self.logger = logger
  }

  /// A configuration with lists: the server keys it accepts and the server's addresses (each
  /// list not empty), see ``serverPublicKeys`` and ``servers``.
  public init(keyPair: KeyPair, serverPublicKeys: [PublicKey], folderName: String,
              dataDirectory: String, servers: [String],
              logger: Logger = quietLogger("hyperdown.client")) {
    self.keyPair = keyPair
    self.serverPublicKeys = serverPublicKeys
    self.folderName = folderName
    self.dataDirectory = dataDirectory
    self.servers = servers
    self.logger = logger
  }
}

/// A logger at level `warning`: the default of the configurations.
@usableFromInline
func quietLogger(_ label: String) -> Logger {
  var logger = Logger(label: label)
  logger.logLevel = .warning
  return logger
}
