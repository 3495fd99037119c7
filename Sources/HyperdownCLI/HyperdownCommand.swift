import ArgumentParser
import Foundation
import Hyperdown
import Logging
import ServiceLifecycle
import Synchronization

@main
struct HyperdownCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "hyperdown",
    abstract: "A durable event memory for a server and its users.",
    discussion: "docs/swift.md describes every command, the key file and the admin socket.",
    version: Version.string,
    subcommands: [Keygen.self, Serve.self, Send.self, Listen.self, Status.self, Backup.self, Pending.self,
                  Purge.self, DeadLetters.self, Requeue.self, Demo.self]
  )
}

struct Keygen: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write a key pair file (mode 0600) and print its public key in hex.")

  @Option(help: "The key file to write.") var out: String
  @Option(help: "A 32-byte seed in hex (default: a random one).") var seed: String?
  @Option(help: "Import a keypear-style key pair: the secret scalar in hex (with --public-key).")
  var scalar: String?
  @Option(name: .customLong("public-key"), help: "The public key in hex that goes with --scalar.")
  var publicKey: String?
  @Flag(help: "Replace an existing key file.") var force = false

  func run() async throws {
    try await reportingErrors {
      var file = KeyFile()
      let kp: KeyPair
      if let scalar {
        guard seed == nil, let publicKey else { throw CLIError("--scalar needs --public-key (and no --seed)") }
        kp = try hex("key pair") { try KeyPair(scalarHex: scalar, publicKeyHex: publicKey) }
        file.scalar = Hex.encode(kp.scalar)
      } else {
        let seedBytes: [UInt8]
        if let seed {
          seedBytes = try hex("--seed") { try Hex.decode(seed, count: 32) }
        } else {
          var rng = SystemRandomNumberGenerator()  // getrandom(2): cryptographically secure
          seedBytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
        }
        kp = try KeyPair(seed: seedBytes)
        file.seed = Hex.encode(seedBytes)
      }
      file.publicKey = Hex.encode(kp.publicKey)
      try KeyFile.write(file, to: out, force: force)
      Output.line(Hex.encode(kp.publicKey))
    }
  }
}

/// Maps a core error about hex or keys to a line that names the argument.
func hex<T>(_ what: String, _ body: () throws -> T) throws -> T {
  do { return try body() } catch let error as HyperdownError {
    throw CLIError("\(what) is not valid: \(error.line)")
  }
}

struct Send: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Add events for a user through the server's admin socket; print each sequence number once durable.",
    discussion: """
      --ttl: the event expires if it is not sent to the user's client within this many seconds \
      (the client is told). --dedup-key: a repeat of the key within the server's window adds \
      nothing and prints the first add's number. --collapse-key: the event replaces the user's \
      unsent event with the same key. Past a limit of a server that rejects (--overflow reject) \
      the send fails with ELIMIT. docs/QUEUES.md.
      """)

  @Option(help: "The server's store folder.") var data: String
  @Option(help: "Seconds the event may wait to be sent before it expires (default: the server's).")
  var ttl: Double?
  @Option(help: "A deduplication key (per user).") var dedupKey: String?
  @Option(help: "A collapse key (per user): replaces the unsent event with the same key.") var collapseKey: String?
  @Argument(help: "The user's public key in hex.") var userHex: String
  @Argument(help: "The event as JSON (more than one: several events, one number per line).")
  var json: [String]

  func validate() throws {
    if json.isEmpty { throw ValidationError("Missing expected argument '<json>'") }
    if let ttl, !(ttl > 0) { throw ValidationError("--ttl must be above 0 seconds") }
    for (name, key) in [("--dedup-key", dedupKey), ("--collapse-key", collapseKey)] {
      if let key, key.isEmpty || key.utf8.count > 256 { throw ValidationError("\(name) takes 1 to 256 bytes") }
    }
  }

  func run() async throws {
    try await reportingErrors {
      let user = try hex("USER_HEX") { try PublicKey(hex: userHex) }
      for (i, text) in json.enumerated() where !JSONText.isValid(Array(text.utf8)) {
        throw CLIError("event \(i + 1) is not valid JSON: \(text.prefix(60))")
      }
      var request = Admin.Request(op: "add", user: user.hex, payloads: json)
      if ttl != nil || dedupKey != nil || collapseKey != nil {
        request.op = "add2"
        request.ttlMs = ttl.map { UInt64(($0 * 1000).rounded(.up)) }
        request.dedupKey = dedupKey
        request.collapseKey = collapseKey
      }
      let response = try Admin.call(dataDirectory: data, request)
      guard response.ok, let seqs = response.seqs else {
        throw CLIError(response.error ?? "the server refused the event")
      }
      for seq in seqs { Output.line(String(seq)) }
    }
  }
}

struct Status: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Print the server's pending counts as JSON (through the admin socket).")

  @Option(help: "The server's store folder.") var data: String
  @Argument(help: "Users (hex) to count besides those the server knows this run.") var users: [String] = []

  func run() async throws {
    try await reportingErrors {
      for u in users { _ = try hex("user \(u.prefix(16))") { try PublicKey(hex: u) } }
      let response = try Admin.call(dataDirectory: data, Admin.Request(op: "status", users: users))
      guard response.ok, let status = response.status else {
        throw CLIError(response.error ?? "the server refused the request")
      }
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      Output.line(String(decoding: try encoder.encode(status), as: UTF8.self))
    }
  }
}

struct Backup: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write a consistent copy of a server's store, marked as a backup; print it as JSON.",
    discussion: """
      Through the admin socket of the server running on the folder (`hyperdown serve`), which \
      goes on serving; from the folder itself when no server runs (it is locked meanwhile). OUT \
      must not exist. A server started on a folder restored from the copy knows it was \
      restored and tells its clients (docs/OPERATIONS.md).
      """)

  @Option(help: "The server's store folder.") var data: String
  @Argument(help: "The backup file to write (must not exist).") var out: String

  func run() async throws {
    try await reportingErrors {
      // the server resolves paths against its own working directory
      let path = out.hasPrefix("/") ? out : FileManager.default.currentDirectoryPath + "/" + out
      if FileManager.default.fileExists(atPath: path) {
        throw CLIError("\(out) exists: a backup is never written over a file")
      }
      var online = false
      do {
        try HyperdownServer.backup(dataDirectory: data, to: path)
      } catch let error as HyperdownError where error.code == HyperdownError.busy {
        // a server has the folder open: it makes the copy
        let response = try Admin.call(dataDirectory: data, Admin.Request(op: "backup", path: path))
        guard response.ok else { throw CLIError(response.error ?? "the server refused the backup") }
        online = true
      }
      Output.line("{\"backup\": \(JSONText.quote(path)), \"online\": \(online)}")
    }
  }
}

struct Listen: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run a client: print each event as one JSON line {\"id\": N, \"data\": ...}, then confirm it.",
    discussion: """
      Runs until SIGINT or SIGTERM. Fails if the server does not answer within --connect-timeout. \
      With --exec CMD, each event's line goes to the standard input of `/bin/sh -c CMD` first \
      (CMD's standard output and error go to listen's standard error): exit 0 consumes the event \
      and prints its line; exit 100 rejects it at once (a dead letter on the server, reason \
      "exit 100: <CMD's first line of stderr>"); any other status, or running past \
      --exec-timeout (CMD's process group is killed), is a failed attempt, tried again after a \
      delay up to --max-attempts times, then a dead letter. Notices (events that expired or were \
      dropped unsent, a dead letter requeued) print in their place as \
      {"notice": "expired", "count": n, "firstSeq": a, "lastSeq": b}.
      """)

  @Option(help: "The topic (folder name).") var topic: String
  @Option(help: "The client's store folder.") var data: String
  @Option(help: "The user's key file.") var key: String
  @Option(help: "The server's address, HOST:PORT; several, comma-separated, are dialed in turn (a:7000,b:7000).")
  var server: String
  @Option(name: .customLong("server-key"),
          help: "The server's public key in hex; several, comma-separated, are each accepted (a key rollover).")
  var serverKey: String
  @Flag(help: "Use a key file that its group or others may read (refused by default).")
  var allowInsecureKeyFile = false
  @Option(help: "Log lines as text or json (one JSON object per line).") var logFormat: LogFormat = .text
  @Option(help: "Seconds to wait for the first connection.") var connectTimeout: Double = 10
  @Option(help: "Log level on stderr.") var logLevel = "error"
  @Option(help: "A shell command that handles each event: its JSON line on stdin; exit 0 consumes it, 100 rejects it.")
  var exec: String?
  @Option(help: "Seconds --exec's command may run before it is killed (a failed attempt).")
  var execTimeout: Double = 30
  @Option(help: "Handler attempts per event before it becomes a dead letter (0: unlimited).")
  var maxAttempts: UInt32 = UInt32(Listen.defaultMaxAttempts)

  static let defaultMaxAttempts = 10

  func validate() throws {
    if !(execTimeout > 0) { throw ValidationError("--exec-timeout must be above 0 seconds") }
  }

  /// A notice's line: `{"notice": "expired", "count": 3, "firstSeq": 4, "lastSeq": 6}`.
  static func noticeLine(_ notice: Notice) -> String {
    var kind = JSONText.quote(notice.kindName)
    if case .unknown(let number) = notice.kind { kind += ", \"kindNumber\": \(number)" }
    return "{\"notice\": \(kind), \"count\": \(notice.count), \"firstSeq\": \(notice.firstSeq), \"lastSeq\": \(notice.lastSeq)}"
  }

  func run() async throws {
    try await reportingErrors {
      let logger = try CLILogging.logger("hyperdown.listen", level: logLevel, format: logFormat)
      let servers = try AddressList.addresses(server)
      let serverKeys = try AddressList.keys(serverKey)
      let kp = try KeyFile.read(key, allowInsecure: allowInsecureKeyFile)
      let notes = AsyncStream<HyperdownError?>.makeStream()
      var config = ClientConfiguration(keyPair: kp, serverPublicKeys: serverKeys, folderName: topic,
                                       dataDirectory: data, servers: servers, logger: logger)
      config.onConnected = { _ in notes.continuation.yield(nil) }
      config.onDisconnected = { error in if let error { notes.continuation.yield(error) } }
      config.maxAttempts = maxAttempts
      // printed before the core hands the next event, so in its place among the events' lines
      config.onNotice = { notice in Output.line(Listen.noticeLine(notice)) }
      let handler = exec.map { ExecHandler(command: $0, timeout: .milliseconds(Int64((execTimeout * 1000).rounded(.up)))) }
      // a command that exits without reading its stdin must fail our write (EPIPE), not kill us
      if handler != nil { signal(SIGPIPE, SIG_IGN) }
      let client: HyperdownClient
      do {
        client = try HyperdownClient(configuration: config)
      } catch let error as HyperdownError where error.code == HyperdownError.busy {
        throw CLIError("folder \(data) is in use by another process")
      }
      let service = ListenService(client: client, server: server, notes: notes.stream,
                                  connectTimeout: .milliseconds(Int64(connectTimeout * 1000)),
                                  handler: handler)
      let group = ServiceGroup(services: [service], gracefulShutdownSignals: [.sigterm, .sigint],
                               logger: logger)
      try await group.run()
    }
  }
}

struct ListenService: Service {
  let client: HyperdownClient
  let server: String
  let notes: AsyncStream<HyperdownError?>
  let connectTimeout: Duration
  let handler: ExecHandler?

  func run() async throws {
    do {
      try await withThrowingTaskGroup(of: Bool.self) { group in
        group.addTask {
          for try await event in client.events.cancelOnGracefulShutdown() {
            let (key, value) = JSONText.dataField(event.payload)
            let line = "{\"id\": \(event.id), \"\(key)\": \(value)}"
            guard let handler else {
              Output.line(line)
              event.complete()
              continue
            }
            await handler.handle(event, line: line)
          }
          return true
        }
        let seen = ConnectionSeen()
        group.addTask {
          for await note in notes {
            guard let error = note else { seen.connected.store(true, ordering: .relaxed); continue }
            seen.lastError.withLock { $0 = error }
            if [HyperdownError.authenticationFailed, HyperdownError.wrongTopic, HyperdownError.versionMismatch].contains(error.code) {
              throw CLIError("server \(server) refused us: \(error.line)")
            }
          }
          return false
        }
        group.addTask {
          try await Task.sleep(for: connectTimeout)
          if !seen.connected.load(ordering: .relaxed) {
            let why = seen.lastError.withLock { $0 }.map { ": \($0.line)" } ?? ""
            throw CLIError("server \(server) does not answer\(why)")
          }
          return false
        }
        while let finished = try await group.next() {
          if finished { break }
        }
        group.cancelAll()
      }
    } catch {
      await client.close()
      throw error
    }
    await client.close()
  }
}

/// What the connection watchers of `listen` saw.
final class ConnectionSeen: Sendable {
  let connected = Atomic<Bool>(false)
  let lastError = Mutex<HyperdownError?>(nil)
}
