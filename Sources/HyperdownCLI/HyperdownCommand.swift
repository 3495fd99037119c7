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
                  Purge.self, Demo.self]
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

struct Serve: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run a server until SIGINT or SIGTERM, then leave gracefully.",
    discussion: """
      Prints one JSON line when it listens ({"listening": ..., "port": ..., "publicKey": ...}) and \
      one per consumption report ({"user": ..., "consumed": [ids], "events": [{"id", "payload", \
      "data"}]}, "data" being what the client's handler reported). Events are added with \
      `hyperdown send` through the admin socket DIR/admin/hyperdown.sock (owner only). With \
      --allow FILE only the users whose keys FILE lists (one in hex per line, # comments) may \
      connect; SIGHUP reads FILE again, closes the connections of the users it no longer lists \
      and prints {"allowList": ..., "keys": n, "removed": n, "disconnected": n}.
      """)

  @Option(help: "The topic (folder name).") var topic: String
  @Option(help: "The store's folder.") var data: String
  @Option(help: "The server's key file.") var key: String
  @Option(help: "The address to listen on, HOST:PORT (port 0: any free port).") var listen: String
  @Option(help: "A pause (ms) to push to clients at start.") var pause: UInt32?
  @Flag(help: "synchronous=NORMAL: faster, survives a process crash but not a power loss.")
  var syncNormal = false
  @Option(help: "Log level on stderr.") var logLevel = "warning"
  @Option(help: "Admit only the users listed in this file (hex keys, one per line; reread on SIGHUP).")
  var allow: String?

  /// One consumed event as JSON: its id, the payload and what the client's handler reported
  /// (`data`; `...Base64` when the bytes are not text).
  static func eventJSON(_ event: ConsumedEvent) -> String {
    var fields = ["\"id\": \(event.id)"]
    let payload = JSONText.dataField(event.payload)
    fields.append("\"\(payload.key == "data" ? "payload" : "payloadBase64")\": \(payload.value)")
    if !event.data.isEmpty {
      let data = JSONText.dataField(event.data)
      fields.append("\"\(data.key)\": \(data.value)")
    }
    return "{" + fields.joined(separator: ", ") + "}"
  }

  func run() async throws {
    try await reportingErrors {
      let logger = try CLILogging.logger("hyperdown.serve", level: logLevel)
      let kp = try KeyFile.read(key)
      var config = ServerConfiguration(keyPair: kp, folderName: topic, dataDirectory: data,
                                       listen: listen, logger: logger)
      config.durability = syncNormal ? .normal : .full
      config.pause = pause.map { .milliseconds(Int64($0)) }
      let allowList = try allow.map { try AllowList(path: $0) }
      if let allowList {
        config.authorize = { user in allowList.contains(user) }
      }
      config.onClientConsumedEvents = { user, events in
        let ids = events.map { String($0.id) }.joined(separator: ", ")
        let detail = events.map(Self.eventJSON).joined(separator: ", ")
        Output.line("{\"user\": \"\(user.hex)\", \"consumed\": [\(ids)], \"events\": [\(detail)]}")
        return true
      }
      let server: HyperdownServer
      do {
        server = try HyperdownServer(configuration: config)
      } catch let error as HyperdownError where error.code == HyperdownError.busy {
        throw CLIError("folder \(data) is in use by another process")
      }
      let admin = try AdminServer(dataDirectory: data, server: server)
      admin.start()
      let host = listen.split(separator: ":").dropLast().joined(separator: ":")
      Output.line("{\"listening\": \"\(host):\(server.port)\", \"port\": \(server.port), \"publicKey\": \"\(kp.identity.hex)\", \"admin\": \(JSONText.quote(admin.path))}")
      var services: [any Service] = [server, AdminService(admin: admin)]
      if let allowList { services.append(AllowListService(list: allowList, server: server)) }
      let group = ServiceGroup(services: services,
                               gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
      try await group.run()
    }
  }
}

/// Stops the admin socket on graceful shutdown (before the server leaves: services stop in
/// reverse order).
struct AdminService: Service {
  let admin: AdminServer
  func run() async throws {
    try? await gracefulShutdown()
    admin.stop()
  }
}

struct Send: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Add events for a user through the server's admin socket; print each sequence number once durable.")

  @Option(help: "The server's store folder.") var data: String
  @Argument(help: "The user's public key in hex.") var userHex: String
  @Argument(help: "The event as JSON (more than one: several events, one number per line).")
  var json: [String]

  func validate() throws {
    if json.isEmpty { throw ValidationError("Missing expected argument '<json>'") }
  }

  func run() async throws {
    try await reportingErrors {
      let user = try hex("USER_HEX") { try PublicKey(hex: userHex) }
      for (i, text) in json.enumerated() where !JSONText.isValid(Array(text.utf8)) {
        throw CLIError("event \(i + 1) is not valid JSON: \(text.prefix(60))")
      }
      let response = try Admin.call(dataDirectory: data, Admin.Request(op: "add", user: user.hex, payloads: json))
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
    discussion: "Runs until SIGINT or SIGTERM. Fails if the server does not answer within --connect-timeout.")

  @Option(help: "The topic (folder name).") var topic: String
  @Option(help: "The client's store folder.") var data: String
  @Option(help: "The user's key file.") var key: String
  @Option(help: "The server's address, HOST:PORT.") var server: String
  @Option(name: .customLong("server-key"), help: "The server's public key in hex.") var serverKey: String
  @Option(help: "Seconds to wait for the first connection.") var connectTimeout: Double = 10
  @Option(help: "Log level on stderr.") var logLevel = "error"

  func run() async throws {
    try await reportingErrors {
      let logger = try CLILogging.logger("hyperdown.listen", level: logLevel)
      let serverKey = try hex("--server-key") { try PublicKey(hex: self.serverKey) }
      let kp = try KeyFile.read(key)
      let notes = AsyncStream<HyperdownError?>.makeStream()
      var config = ClientConfiguration(keyPair: kp, serverPublicKey: serverKey, folderName: topic,
                                       dataDirectory: data, server: server, logger: logger)
      config.onConnected = { _ in notes.continuation.yield(nil) }
      config.onDisconnected = { error in if let error { notes.continuation.yield(error) } }
      let client: HyperdownClient
      do {
        client = try HyperdownClient(configuration: config)
      } catch let error as HyperdownError where error.code == HyperdownError.busy {
        throw CLIError("folder \(data) is in use by another process")
      }
      let service = ListenService(client: client, server: server, notes: notes.stream,
                                  connectTimeout: .milliseconds(Int64(connectTimeout * 1000)))
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

  func run() async throws {
    do {
      try await withThrowingTaskGroup(of: Bool.self) { group in
        group.addTask {
          for try await event in client.events.cancelOnGracefulShutdown() {
            let (key, value) = JSONText.dataField(event.payload)
            Output.line("{\"id\": \(event.id), \"\(key)\": \(value)}")
            event.complete()
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
