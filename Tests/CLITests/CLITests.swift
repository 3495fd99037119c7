import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The `hyperdown` tool end to end, as subprocesses: keygen, serve, send while the user is offline,
/// listen; the server SIGKILLed mid-stream and started again: nothing lost, nothing printed twice.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct CLITests {
  @Test func endToEndWithServerKilledMidStream() async throws {
    let dir = try Temp()
    defer { dir.remove() }
    let (N1, N2) = (1000, 1200)
    let serverKeyFile = dir.sub("server.key")
    let userKeyFile = dir.sub("user.key")

    // keygen: mode 0600, prints the public key.
    let serverKey = try run(["keygen", "--out", serverKeyFile]).stdout.trimmed
    let userKey = try run(["keygen", "--out", userKeyFile,
                           "--seed", String(repeating: "01", count: 32)]).stdout.trimmed
    #expect(serverKey.count == 64 && userKey.count == 64)
    #expect(try permissions(serverKeyFile) == 0o600)
    let keyJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: userKeyFile))) as! [String: Any]
    #expect(keyJSON["publicKey"] as? String == userKey)
    let again = try run(["keygen", "--out", userKeyFile])
    #expect(again.status != 0 && again.stderr.lines.count == 1)

    let port = try freePort()
    let serveArgs = ["serve", "--topic", "topic", "--data", dir.sub("server"), "--key", serverKeyFile,
                     "--listen", "127.0.0.1:\(port)"]
    var serve = try Child(serveArgs)
    try await serve.waitForLines(1, "serve listens")
    #expect(serve.stdoutLines[0].contains("\"port\": \(port)"))
    #expect(try permissions(dir.sub("server/admin")) == 0o700)
    #expect(try permissions(dir.sub("server/admin/hyperdown.sock")) == 0o600)

    // A second server on the same folder: one clear line, non-zero.
    let busy = try run(["serve", "--topic", "topic", "--data", dir.sub("server"), "--key", serverKeyFile,
                        "--listen", "127.0.0.1:0"])
    #expect(busy.status != 0 && busy.stderr.lines.count == 1 && busy.stderr.contains("in use"))

    // Events for the user while it is offline.
    let first = (1...N1).map { "{\"n\": \($0), \"note\": \"offline\"}" }
    let sent = try run(["send", "--data", dir.sub("server"), userKey] + first)
    #expect(sent.status == 0)
    #expect(sent.stdout.lines == (1...N1).map(String.init))
    let status = try run(["status", "--data", dir.sub("server")])
    #expect(status.status == 0 && status.stdout.contains("\"pendingTotal\":\(N1)"))

    // The user listens; the server is killed once some events are printed.
    let listen = try Child(["listen", "--topic", "topic", "--data", dir.sub("user"), "--key", userKeyFile,
                            "--server", "127.0.0.1:\(port)", "--server-key", serverKey])
    try await listen.waitForLines(1, "listen prints events", poll: .milliseconds(1))
    serve.kill(SIGKILL)
    try await serve.waitForExit()
    let printedAtKill = listen.stdoutLines.count
    print("CLITests: SIGKILL after \(printedAtKill) of \(N1) events printed")

    let down = try run(["send", "--data", dir.sub("server"), userKey, "{}"])
    #expect(down.status != 0 && down.stderr.lines.count == 1 && down.stderr.contains("no server is running"))

    serve = try Child(serveArgs)
    try await serve.waitForLines(1, "serve listens again")
    let second = (N1 + 1...N2).map { "{\"n\": \($0), \"note\": \"after restart\"}" }
    let sent2 = try run(["send", "--data", dir.sub("server"), userKey] + second)
    #expect(sent2.stdout.lines == (N1 + 1...N2).map(String.init))

    try await listen.waitForLines(N2, "listen prints all events")
    try await eventually("the server holds nothing") {
      try run(["status", "--data", dir.sub("server")]).stdout.contains("\"pendingTotal\":0")
    }
    try await Task.sleep(for: .milliseconds(300))  // room for a duplicate to show up
    let printed = listen.stdoutLines
    #expect(printed.count == N2)
    var ids: [Int] = []
    for line in printed {
      let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
      let id = object["id"] as! Int
      let data = object["data"] as! [String: Any]
      #expect(data["n"] as? Int == id)
      ids.append(id)
    }
    #expect(ids == Array(1...N2))  // every event once, in order

    listen.kill(SIGTERM)
    #expect(try await listen.waitForExit() == 0)
    serve.kill(SIGTERM)
    #expect(try await serve.waitForExit() == 0)
    #expect(!FileManager.default.fileExists(atPath: dir.sub("server/admin/hyperdown.sock")))
  }

  /// A backup through a running server's admin socket, and one from the folder of a stopped
  /// server; never over a file; a server started on a folder restored from a backup serves its
  /// events and says it was restored.
  @Test func backupAndRestore() async throws {
    let dir = try Temp()
    defer { dir.remove() }
    _ = try run(["keygen", "--out", dir.sub("server.key")])
    let userKey = try run(["keygen", "--out", dir.sub("user.key")]).stdout.trimmed
    func serve(_ folder: String) throws -> Child {
      try Child(["serve", "--topic", "topic", "--data", dir.sub(folder), "--key", dir.sub("server.key"),
                 "--listen", "127.0.0.1:0"])
    }
    var server = try serve("server")
    try await server.waitForLines(1, "serve listens")
    #expect(try run(["send", "--data", dir.sub("server"), userKey, "{\"n\": 1}", "{\"n\": 2}"]).status == 0)

    let online = try run(["backup", "--data", dir.sub("server"), dir.sub("online.db")])
    #expect(online.status == 0, "\(online.stderr)")
    #expect(online.stdout.contains("\"online\": true") && online.stdout.contains(dir.sub("online.db")))
    #expect(try permissions(dir.sub("online.db")) == 0o600)
    let again = try run(["backup", "--data", dir.sub("server"), dir.sub("online.db")])
    #expect(again.status != 0 && again.stderr.lines.count == 1 && again.stderr.contains("exists"))
    #expect(try run(["send", "--data", dir.sub("server"), userKey, "{\"n\": 3}"]).status == 0)
    server.kill(SIGTERM)
    #expect(try await server.waitForExit() == 0)

    let offline = try run(["backup", "--data", dir.sub("server"), dir.sub("offline.db")])
    #expect(offline.status == 0, "\(offline.stderr)")
    #expect(offline.stdout.contains("\"online\": false"))

    // a restore: a fresh folder holding the backup as its database (docs/OPERATIONS.md)
    for (name, pending) in [("online.db", 2), ("offline.db", 3)] {
      let folder = "restored-" + name
      try FileManager.default.createDirectory(atPath: dir.sub(folder), withIntermediateDirectories: false,
                                              attributes: [.posixPermissions: 0o700])
      try FileManager.default.copyItem(atPath: dir.sub(name), toPath: dir.sub(folder + "/hyperdown.db"))
      server = try serve(folder)
      try await server.waitForLines(1, "serve listens on the restored folder")
      let status = try run(["status", "--data", dir.sub(folder)])
      #expect(status.stdout.contains("\"pendingTotal\":\(pending)"), "\(status.stdout)")
      #expect(server.stderrText.contains("restored from a backup"), "\(server.stderrText)")
      server.kill(SIGTERM)
      #expect(try await server.waitForExit() == 0)
    }
  }

  /// `serve --allow FILE`: only the listed users get in; SIGHUP rereads the file and closes the
  /// connections of the users it dropped; a bad file on reload keeps the list in force.
  @Test func allowListReloadedOnSighup() async throws {
    let dir = try Temp()
    defer { dir.remove() }
    let serverKey = try run(["keygen", "--out", dir.sub("server.key")]).stdout.trimmed
    let user1 = try run(["keygen", "--out", dir.sub("u1.key")]).stdout.trimmed
    let user2 = try run(["keygen", "--out", dir.sub("u2.key")]).stdout.trimmed
    let allow = dir.sub("allow")
    try "# who may connect\n\(user1)  # the first user\n\n".write(toFile: allow, atomically: true, encoding: .utf8)
    let port = try freePort()
    let serve = try Child(["serve", "--topic", "topic", "--data", dir.sub("server"), "--key", dir.sub("server.key"),
                           "--listen", "127.0.0.1:\(port)", "--allow", allow])
    try await serve.waitForLines(1, "serve listens")
    func listen(_ user: String) throws -> Child {
      try Child(["listen", "--topic", "topic", "--data", dir.sub("c-" + user), "--key", dir.sub(user + ".key"),
                 "--server", "127.0.0.1:\(port)", "--server-key", serverKey])
    }

    let refused = try listen("u2")
    #expect(try await refused.waitForExit() != 0)
    #expect(refused.stderrText.contains("refused us"), "\(refused.stderrText)")

    let first = try listen("u1")
    #expect(try run(["send", "--data", dir.sub("server"), user1, "{\"n\": 1}"]).status == 0)
    try await first.waitForLines(1, "user1 gets its event")

    // the list now names user2 only
    try "\(user2)\n".write(toFile: allow, atomically: true, encoding: .utf8)
    serve.kill(SIGHUP)
    try await eventually("serve reloads the list") { serve.stdoutLines.contains { $0.contains("allowList") } }
    let reload = serve.stdoutLines.first { $0.contains("allowList") } ?? ""
    #expect(reload.contains("\"keys\": 1") && reload.contains("\"removed\": 1") && reload.contains("\"disconnected\": 1"),
            "\(reload)")
    #expect(try await first.waitForExit() != 0)  // dropped, then refused when it dials again
    #expect(first.stderrText.contains("refused us"), "\(first.stderrText)")

    let second = try listen("u2")
    #expect(try run(["send", "--data", dir.sub("server"), user2, "{\"n\": 2}"]).status == 0)
    try await second.waitForLines(1, "user2 is admitted now")
    second.kill(SIGTERM)
    _ = try await second.waitForExit()

    // a file that does not parse: reported, and the list in force stays
    try "not a key\n".write(toFile: allow, atomically: true, encoding: .utf8)
    serve.kill(SIGHUP)
    try await eventually("the bad list is reported") { serve.stderrText.contains("not a public key") }
    let again = try listen("u2")
    #expect(try run(["send", "--data", dir.sub("server"), user2, "{\"n\": 3}"]).status == 0)
    try await again.waitForLines(1, "user2 still gets in")
    again.kill(SIGTERM)
    _ = try await again.waitForExit()
    serve.kill(SIGTERM)
    #expect(try await serve.waitForExit() == 0)
  }

  /// `pending` and `purge` through a running server's admin socket and from the folder of a
  /// stopped one: the same lines either way; numbers go on after a purge.
  @Test func pendingAndPurge() async throws {
    let dir = try Temp()
    defer { dir.remove() }
    _ = try run(["keygen", "--out", dir.sub("server.key")])
    let userKey = try run(["keygen", "--out", dir.sub("user.key")]).stdout.trimmed
    let server = try Child(["serve", "--topic", "topic", "--data", dir.sub("server"), "--key", dir.sub("server.key"),
                            "--listen", "127.0.0.1:0"])
    try await server.waitForLines(1, "serve listens")
    #expect(try run(["send", "--data", dir.sub("server"), userKey, "{\"n\": 1}", "{\"n\": 2}", "\"three\""]).status == 0)
    let listed = try run(["pending", "--data", dir.sub("server"), userKey])
    #expect(listed.status == 0, "\(listed.stderr)")
    #expect(listed.stdout.lines.count == 3, "\(listed.stdout)")
    #expect(listed.stdout.lines.first?.hasPrefix("{\"id\": 1, \"createdMs\": ") == true)
    #expect(listed.stdout.lines.first?.hasSuffix("\"payload\": {\"n\": 1}}") == true, "\(listed.stdout)")
    #expect(listed.stdout.lines.last?.hasSuffix("\"payload\": \"three\"}") == true, "\(listed.stdout)")
    let one = try run(["purge", "--data", dir.sub("server"), userKey, "2", "77"])
    #expect(one.status == 0 && one.stdout.trimmed == "{\"user\": \"\(userKey)\", \"deleted\": 1}", "\(one.stdout) \(one.stderr)")
    let ids = try run(["pending", "--data", dir.sub("server"), userKey]).stdout.lines.map { $0.prefix(9) }
    #expect(ids == ["{\"id\": 1,", "{\"id\": 3,"])
    server.kill(SIGTERM)
    #expect(try await server.waitForExit() == 0)

    // no server: the folder itself
    let offline = try run(["pending", "--data", dir.sub("server"), userKey])
    #expect(offline.status == 0 && offline.stdout.lines.count == 2, "\(offline.stdout) \(offline.stderr)")
    let all = try run(["purge", "--data", dir.sub("server"), userKey])
    #expect(all.status == 0 && all.stdout.contains("\"deleted\": 2"), "\(all.stdout) \(all.stderr)")
    let none = try run(["pending", "--data", dir.sub("server"), userKey])
    #expect(none.status == 0 && none.stdout.isEmpty, "\(none.stdout) \(none.stderr)")
    let again = try Child(["serve", "--topic", "topic", "--data", dir.sub("server"), "--key", dir.sub("server.key"),
                           "--listen", "127.0.0.1:0"])
    try await again.waitForLines(1, "serve listens again")
    #expect(try run(["send", "--data", dir.sub("server"), userKey, "{\"n\": 4}"]).stdout.trimmed == "4")
    again.kill(SIGTERM)
    #expect(try await again.waitForExit() == 0)
  }

  @Test func errorsAreOneClearLine() async throws {
    let dir = try Temp()
    defer { dir.remove() }
    let user = try run(["keygen", "--out", dir.sub("k")]).stdout.trimmed
    let cases: [([String], String)] = [
      (["serve", "--topic", "t", "--data", dir.sub("s"), "--key", dir.sub("missing"), "--listen", "127.0.0.1:0"],
       "key file"),
      (["send", "--data", dir.sub("s"), "xyz", "{}"], "USER_HEX"),
      (["send", "--data", dir.sub("s"), user, "{nope"], "not valid JSON"),
      (["send", "--data", dir.sub("s"), String(repeating: "ab", count: 32), "{}"], "USER_HEX"),
      (["status", "--data", dir.sub("nothing")], "no server is running"),
      (["backup", "--data", dir.sub("nothing"), dir.sub("b.db")], "no server store"),
      (["pending", "--data", dir.sub("nothing"), user], "no server store"),
      (["purge", "--data", dir.sub("nothing"), user, "1"], "no server store"),
      (["purge", "--data", dir.sub("nothing"), "xyz"], "USER_HEX"),
      (["keygen", "--out", dir.sub("k2"), "--seed", "12"], "--seed"),
      (["listen", "--topic", "t", "--data", dir.sub("c"), "--key", dir.sub("k"), "--server", "127.0.0.1:\(try freePort())",
        "--server-key", user, "--connect-timeout", "0.5"], "does not answer"),
    ]
    for (args, needle) in cases {
      let result = try run(args)
      #expect(result.status != 0, "\(args)")
      #expect(result.stderr.lines.count == 1, "\(args): \(result.stderr)")
      #expect(result.stderr.contains(needle), "\(args): \(result.stderr)")
    }
  }

  @Test func demoRuns() async throws {
    let result = try run(["demo"], timeout: 60)
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("recovers what user1 consumed"))
    #expect(result.stdout.contains("reported once to the"))
  }
}

// MARK: helpers

/// The `hyperdown` binary beside this test bundle (or $HYPERDOWN_BIN).
let binary: String = {
  if let path = ProcessInfo.processInfo.environment["HYPERDOWN_BIN"] { return path }
  var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
  for _ in 0..<4 {
    url.deleteLastPathComponent()
    let candidate = url.appendingPathComponent("hyperdown").path
    if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
  }
  return URL(fileURLWithPath: Bundle.main.bundlePath).deletingLastPathComponent().appendingPathComponent("hyperdown").path
}()

struct Temp {
  let path: String
  init() throws {
    // Short: the admin socket path must fit in sockaddr_un.
    path = "/tmp/hdc-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }
  func sub(_ name: String) -> String { path + "/" + name }
  func remove() { try? FileManager.default.removeItem(atPath: path) }
}

struct RunResult {
  var status: Int32
  var stdout: String
  var stderr: String
}

extension String {
  var trimmed: String { trimmingCharacters(in: .whitespacesAndNewlines) }
  var lines: [String] { split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }
}

struct Timeout: Error {}

/// This process's environment without its HYPERDOWN_* variables (which `serve` would read), and
/// `extra`.
func childEnvironment(_ extra: [String: String]) -> [String: String] {
  ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("HYPERDOWN_") }.merging(extra) { _, new in new }
}

/// Runs the tool to completion (bounded).
func run(_ args: [String], timeout: Double = 30, environment: [String: String]? = nil) throws -> RunResult {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: binary)
  process.arguments = args
  if let environment { process.environment = childEnvironment(environment) }
  let out = Pipe(), err = Pipe()
  process.standardOutput = out
  process.standardError = err
  try process.run()
  let outData = Buffer(), errData = Buffer()
  let group = DispatchGroup()
  for (pipe, sink) in [(out, outData), (err, errData)] {
    group.enter()
    let handle = pipe.fileHandleForReading
    DispatchQueue.global().async {
      let data = handle.readDataToEndOfFile()
      sink.data.withLock { $0 = data }
      group.leave()
    }
  }
  if group.wait(timeout: .now() + timeout) == .timedOut {
    process.terminate()
    throw Timeout()
  }
  process.waitUntilExit()
  return RunResult(status: process.terminationStatus,
                   stdout: String(decoding: outData.data.withLock { $0 }, as: UTF8.self),
                   stderr: String(decoding: errData.data.withLock { $0 }, as: UTF8.self))
}

final class Buffer: Sendable {
  let data = Mutex(Data())
}

/// A long-running tool process whose stdout lines are collected as they come.
final class Child: Sendable {
  let process: Process
  private let out = Buffer()
  private let err = Buffer()

  init(_ args: [String], environment: [String: String]? = nil) throws {
    process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = args
    if let environment { process.environment = childEnvironment(environment) }
    let outPipe = Pipe(), errPipe = Pipe()
    process.standardOutput = outPipe
    process.standardError = errPipe
    outPipe.fileHandleForReading.readabilityHandler = { [out] h in
      let d = h.availableData
      out.data.withLock { $0.append(d) }
    }
    errPipe.fileHandleForReading.readabilityHandler = { [err] h in
      let d = h.availableData
      err.data.withLock { $0.append(d) }
    }
    try process.run()
  }

  var stdoutLines: [String] { String(decoding: out.data.withLock { $0 }, as: UTF8.self).lines }
  var stderrText: String { String(decoding: err.data.withLock { $0 }, as: UTF8.self) }

  func waitForLines(_ n: Int, _ what: String, poll: Duration = .milliseconds(20)) async throws {
    try await eventually("\(what) (stderr: \(stderrText))", poll: poll) {
      if !process.isRunning && stdoutLines.count < n { throw Timeout() }
      return stdoutLines.count >= n
    }
  }

  func kill(_ signal: Int32) { _ = Glibc.kill(process.processIdentifier, signal) }

  @discardableResult
  func waitForExit() async throws -> Int32 {
    try await eventually("exit") { !process.isRunning }
    return process.terminationStatus
  }

  deinit {
    if process.isRunning { _ = Glibc.kill(process.processIdentifier, SIGKILL) }
  }
}

func eventually(_ what: String, timeout: Duration = .seconds(30), poll: Duration = .milliseconds(20),
                _ condition: () throws -> Bool) async throws {
  let deadline = ContinuousClock.now + timeout
  while try !condition() {
    if ContinuousClock.now >= deadline {
      Issue.record("timed out: \(what)")
      throw Timeout()
    }
    try await Task.sleep(for: poll)
  }
}

func permissions(_ path: String) throws -> Int {
  (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as! NSNumber).intValue & 0o777
}

/// A port nobody listens on now (bound to port 0 and released).
func freePort() throws -> Int {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  defer { close(fd) }
  var addr = sockaddr_in()
  addr.sin_family = sa_family_t(AF_INET)
  addr.sin_addr.s_addr = inet_addr("127.0.0.1")
  addr.sin_port = 0
  var len = socklen_t(MemoryLayout<sockaddr_in>.size)
  let ok = withUnsafeMutablePointer(to: &addr) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
      bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
    }
  }
  guard ok else { throw Timeout() }
  return Int(UInt16(bigEndian: addr.sin_port))
}
