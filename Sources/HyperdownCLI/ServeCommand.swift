import ArgumentParser
import Foundation
import Hyperdown
import Logging
import ServiceLifecycle

struct Serve: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run a server until SIGINT or SIGTERM, then leave gracefully.",
    discussion: """
      Settings come from --config FILE (`key = value` lines, the keys the long flags' names: \
      `listen = 0.0.0.0:7000`), then HYPERDOWN_* variables (HYPERDOWN_LISTEN, \
      HYPERDOWN_MAX_PENDING_PER_USER), then flags, each over the one before; --print-config \
      prints those in force and exits. topic, data, key and listen are required. \
      Prints one JSON line when it listens ({"listening": ..., "port": ..., "publicKey": ...}) and \
      one per consumption report ({"user": ..., "consumed": [ids], "events": [{"id", "payload", \
      "data"}]}, "data" being what the client's handler reported). Events are added with \
      `hyperdown send` through the admin socket DIR/admin/hyperdown.sock (owner only). With \
      --allow FILE only the users whose keys FILE lists (one in hex per line, # comments) may \
      connect; SIGHUP reads FILE again, closes the connections of the users it no longer lists \
      and prints {"allowList": ..., "keys": n, "removed": n, "disconnected": n}. An event a client \
      failed (after its attempts, or rejected) prints {"user": ..., "deadLetter": id, "attempts": n, \
      "reason": ...}. --max-pending-per-user and --max-bytes-per-user bound what a user holds; \
      past them --overflow reject refuses the add (send fails with ELIMIT) and drop-oldest drops \
      the oldest unsent events, of which the client is told (docs/QUEUES.md). A key file open to \
      its group or others is refused. --next-key answers to a second key during a key rollover; \
      --metrics HOST:PORT serves /metrics, /healthz and /readyz. Under systemd (Type=notify) it \
      says READY=1 once it listens (docs/OPERATIONS.md).
      """)

  @Option(help: "A config file of `key = value` lines (flags and HYPERDOWN_* variables take precedence).")
  var config: String?
  @Flag(help: "Print the settings in force (as a config file) and exit.") var printConfig = false
  @Option(help: "The topic (folder name).") var topic: String?
  @Option(help: "The store's folder.") var data: String?
  @Option(help: "The server's key file (mode 0600 or narrower).") var key: String?
  @Option(help: "A second key file the server also answers to, while its clients move to it (key rollover).")
  var nextKey: String?
  @Option(help: "The address to listen on, HOST:PORT (port 0: any free port).") var listen: String?
  @Option(help: "Serve /metrics, /healthz and /readyz over HTTP on HOST:PORT.") var metrics: String?
  @Option(help: "A pause (ms) to push to clients at start.") var pause: UInt32?
  @Flag(inversion: .prefixedNo, help: "synchronous=NORMAL: faster, survives a process crash but not a power loss.")
  var syncNormal: Bool?
  @Option(help: "Log level on stderr (default: warning).") var logLevel: String?
  @Option(help: "Log lines as text or json (one JSON object per line; default: text).") var logFormat: LogFormat?
  @Option(help: "Admit only the users listed in this file (hex keys, one per line; reread on SIGHUP).")
  var allow: String?
  @Option(help: "Seconds an event may wait to be sent before it expires, unless its send says otherwise (default: never).")
  var defaultTtl: Double?
  @Option(help: "Events held per user (default: no limit).") var maxPendingPerUser: UInt64?
  @Option(help: "Payload bytes held per user (default: no limit).") var maxBytesPerUser: UInt64?
  @Option(help: "What an add past a user's limit does: reject (the add fails) or drop-oldest (default: reject).")
  var overflow: OverflowOption?
  @Flag(inversion: .prefixedNo, help: "Use a key file that its group or others may read (refused by default).")
  var allowInsecureKeyFile: Bool?

  enum OverflowOption: String, ExpressibleByArgument {
    case reject
    case dropOldest = "drop-oldest"
  }

  /// The settings a config file or HYPERDOWN_* variable may hold, in `--print-config`'s order.
  static let settingKeys = ["topic", "data", "key", "next-key", "listen", "metrics", "pause", "sync-normal",
                            "log-level", "log-format", "allow", "default-ttl", "max-pending-per-user",
                            "max-bytes-per-user", "overflow", "allow-insecure-key-file"]

  func validate() throws {
    if let defaultTtl, !(defaultTtl > 0) { throw ValidationError("--default-ttl must be above 0 seconds") }
    if maxPendingPerUser == 0 { throw ValidationError("--max-pending-per-user must be at least 1") }
    if maxBytesPerUser == 0 { throw ValidationError("--max-bytes-per-user must be at least 1") }
  }

  /// Every setting, each from the highest layer that has it.
  struct Settings {
    var topic: String?
    var data: String?
    var key: String?
    var nextKey: String?
    var listen: String?
    var metrics: String?
    var pause: UInt32?
    var syncNormal: Bool
    var logLevel: String
    var logFormat: LogFormat
    var allow: String?
    var defaultTtl: Double?
    var maxPendingPerUser: UInt64?
    var maxBytesPerUser: UInt64?
    var overflow: OverflowOption
    var allowInsecureKeyFile: Bool
    /// What `--print-config` prints.
    var rendered: String
  }

  func settings(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Settings {
    var layers = try ConfigLayers(keys: Self.settingKeys, filePath: config, environment: environment)
    let s = Settings(
      topic: try layers.resolve("topic", flag: topic),
      data: try layers.resolve("data", flag: data),
      key: try layers.resolve("key", flag: key),
      nextKey: try layers.resolve("next-key", flag: nextKey),
      listen: try layers.resolve("listen", flag: listen),
      metrics: try layers.resolve("metrics", flag: metrics),
      pause: try layers.resolve("pause", flag: pause),
      syncNormal: try layers.resolve("sync-normal", flag: syncNormal, default: false),
      logLevel: try layers.resolve("log-level", flag: logLevel, default: "warning")!,
      logFormat: try layers.resolve("log-format", flag: logFormat, default: .text)!,
      allow: try layers.resolve("allow", flag: allow),
      defaultTtl: try layers.resolve("default-ttl", flag: defaultTtl),
      maxPendingPerUser: try layers.resolve("max-pending-per-user", flag: maxPendingPerUser),
      maxBytesPerUser: try layers.resolve("max-bytes-per-user", flag: maxBytesPerUser),
      overflow: try layers.resolve("overflow", flag: overflow, default: .reject)!,
      allowInsecureKeyFile: try layers.resolve("allow-insecure-key-file", flag: allowInsecureKeyFile, default: false),
      rendered: "")
    var settings = s
    settings.rendered = layers.rendered()
    // the checks validate() makes of the flags, for values from the file or the environment
    if let ttl = s.defaultTtl, !(ttl > 0) { throw CLIError("default-ttl must be above 0 seconds") }
    if s.maxPendingPerUser == 0 { throw CLIError("max-pending-per-user must be at least 1") }
    if s.maxBytesPerUser == 0 { throw CLIError("max-bytes-per-user must be at least 1") }
    return settings
  }

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
      let s = try settings()
      if printConfig {
        Output.line(s.rendered)
        return
      }
      guard let topic = s.topic, let data = s.data, let key = s.key, let listen = s.listen else {
        let missing = [("topic", s.topic), ("data", s.data), ("key", s.key), ("listen", s.listen)]
          .filter { $0.1 == nil }.map { "--\($0.0)" }
        throw CLIError("missing \(missing.joined(separator: ", ")) (a flag, a HYPERDOWN_* variable or a line of --config)")
      }
      let logger = try CLILogging.logger("hyperdown.serve", level: s.logLevel, format: s.logFormat)
      let kp = try KeyFile.read(key, allowInsecure: s.allowInsecureKeyFile)
      var config = ServerConfiguration(keyPair: kp, folderName: topic, dataDirectory: data,
                                       listen: listen, logger: logger)
      config.nextKeyPair = try s.nextKey.map { try KeyFile.read($0, allowInsecure: s.allowInsecureKeyFile) }
      config.metricsListen = s.metrics
      config.durability = s.syncNormal ? .normal : .full
      config.pause = s.pause.map { .milliseconds(Int64($0)) }
      config.defaultTTL = s.defaultTtl.map { .milliseconds(Int64(($0 * 1000).rounded(.up))) }
      config.maxPendingPerUser = s.maxPendingPerUser
      config.maxBytesPerUser = s.maxBytesPerUser
      config.overflow = s.overflow == .reject ? .reject : .dropOldest
      config.onDeadLetter = { user, dead in
        Output.line("{\"user\": \"\(user.hex)\", \"deadLetter\": \(dead.id), \"attempts\": \(dead.attempts), \"reason\": \(JSONText.quote(dead.reason))}")
      }
      let allowList = try s.allow.map { try AllowList(path: $0) }
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
      var line = "{\"listening\": \"\(host):\(server.port)\", \"port\": \(server.port), \"publicKey\": \"\(kp.identity.hex)\", \"admin\": \(JSONText.quote(admin.path))"
      if let next = config.nextKeyPair { line += ", \"nextPublicKey\": \"\(next.identity.hex)\"" }
      if let port = server.metricsPort { line += ", \"metricsPort\": \(port)" }
      var services: [any Service] = [server, AdminService(admin: admin)]
      if let allowList { services.append(AllowListService(list: allowList, server: server)) }
      services.append(Announcer(line: line + "}", logger: logger, address: "\(host):\(server.port)",
                                metadata: ["topic": "\(topic)", "publicKey": "\(kp.identity.hex)"]))
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

/// Says the server is ready, once the service group runs (and so handles SIGTERM gracefully):
/// the listening line on stdout, a log line, READY=1 to the service manager; STOPPING=1 when
/// the graceful shutdown begins (it stops first: services stop in reverse order).
struct Announcer: Service {
  let line: String
  let logger: Logger
  let address: String
  let metadata: Logger.Metadata

  func run() async throws {
    Output.line(line)
    logger.info("listening", metadata: metadata.merging(["address": "\(address)"]) { _, new in new })
    SystemdNotify.send("READY=1\nSTATUS=listening on \(address)")
    try? await gracefulShutdown()
    SystemdNotify.send("STOPPING=1")
  }
}
