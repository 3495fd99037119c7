import Foundation
import Testing

@testable import HyperdownCLI

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

/// The operations of `hyperdown serve` (docs/OPERATIONS.md): settings from a file, the
/// environment and flags; JSON log lines; key files others may read; a key rollover; metrics;
/// the service manager told when the server is ready; and `listen`'s lists.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct OperationsCLITests {
  func json(_ line: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
  }

  /// Each `key = value` line of `--print-config`, and the comment before it (where it came from).
  func printed(_ text: String) -> [String: (value: String, from: String)] {
    var settings: [String: (value: String, from: String)] = [:]
    var from = ""
    for line in text.lines {
      if line.hasPrefix("# from ") { from = String(line.dropFirst(7)); continue }
      if line.hasPrefix("#") { continue }
      let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
      settings[parts[0]] = (parts[1], from)
    }
    return settings
  }

  @Test func settingsComeFromFlagsOverEnvironmentOverFile() throws {
    let dir = try Temp()
    defer { dir.remove() }
    let file = dir.sub("hyperdown.conf")
    try """
      # the shop's server
      topic = from-file
      data = \(dir.sub("srv"))
      listen = 127.0.0.1:1111
      pause = 5
      overflow = drop-oldest
      max-pending-per-user = 10
      sync-normal = yes
      log-format = "json"
      """.write(toFile: file, atomically: true, encoding: .utf8)
    let env = ["HYPERDOWN_LISTEN": "127.0.0.1:2222", "HYPERDOWN_PAUSE": "7", "HYPERDOWN_MAX_PENDING_PER_USER": "20",
               "HYPERDOWN_UNRELATED": "left alone"]
    let result = try run(["serve", "--config", file, "--pause", "9", "--no-sync-normal", "--print-config"],
                         environment: env)
    #expect(result.status == 0, "\(result.stderr)")
    let s = printed(result.stdout)
    #expect(s["topic"]?.value == "from-file" && s["topic"]?.from == "\(file):2")
    #expect(s["listen"]?.value == "127.0.0.1:2222" && s["listen"]?.from == "HYPERDOWN_LISTEN")
    #expect(s["pause"]?.value == "9" && s["pause"]?.from == "--pause")
    #expect(s["max-pending-per-user"]?.value == "20")
    #expect(s["overflow"]?.value == "drop-oldest" && s["log-format"]?.value == "json")
    #expect(s["sync-normal"]?.value == "false" && s["sync-normal"]?.from == "--sync-normal")
    #expect(s["log-level"]?.value == "warning" && s["log-level"]?.from == "default")
    #expect(s["key"] == nil)  // not set anywhere, no default

    // what it prints reads back as a config file with the same settings
    try result.stdout.write(toFile: dir.sub("printed.conf"), atomically: true, encoding: .utf8)
    let again = try run(["serve", "--config", dir.sub("printed.conf"), "--print-config"], environment: [:])
    #expect(printed(again.stdout).mapValues(\.value) == s.mapValues(\.value), "\(again.stderr)")
  }

  @Test func badSettingsAreOneClearLine() throws {
    let dir = try Temp()
    defer { dir.remove() }
    try "topic = t\nlisen = 127.0.0.1:0\n".write(toFile: dir.sub("typo.conf"), atomically: true, encoding: .utf8)
    try "pause = soon\n".write(toFile: dir.sub("bad.conf"), atomically: true, encoding: .utf8)
    let cases: [([String], [String: String], String)] = [
      (["serve", "--config", dir.sub("typo.conf"), "--print-config"], [:], "typo.conf:2: unknown setting 'lisen'"),
      (["serve", "--config", dir.sub("bad.conf"), "--print-config"], [:], "bad.conf:1: not a valid pause"),
      (["serve", "--config", dir.sub("none.conf")], [:], "no such file"),
      (["serve", "--print-config"], ["HYPERDOWN_OVERFLOW": "sometimes"], "HYPERDOWN_OVERFLOW=sometimes"),
      (["serve", "--topic", "t"], [:], "missing --data, --key, --listen"),
    ]
    for (args, env, needle) in cases {
      let result = try run(args, environment: env)
      #expect(result.status != 0, "\(args)")
      #expect(result.stderr.lines.count == 1 && result.stderr.contains(needle), "\(args): \(result.stderr)")
    }
  }

  @Test func keyFilesOthersMayReadAreRefused() async throws {
    let dir = try Temp()
    defer { dir.remove() }
    let serverKey = try run(["keygen", "--out", dir.sub("server.key")]).stdout.trimmed
    #expect(chmod(dir.sub("server.key"), 0o644) == 0)
    let args = ["serve", "--topic", "t", "--data", dir.sub("srv"), "--key", dir.sub("server.key"), "--listen", "127.0.0.1:0"]
    let refused = try run(args)
    #expect(refused.status != 0 && refused.stderr.lines.count == 1, "\(refused.stderr)")
    #expect(refused.stderr.contains("mode 0644") && refused.stderr.contains("--allow-insecure-key-file"))
    let listen = try run(["listen", "--topic", "t", "--data", dir.sub("c"), "--key", dir.sub("server.key"),
                          "--server", "127.0.0.1:1", "--server-key", serverKey])
    #expect(listen.status != 0 && listen.stderr.contains("mode 0644"), "\(listen.stderr)")

    let accepted = try Child(args + ["--allow-insecure-key-file"])
    try await accepted.waitForLines(1, "serve listens with the flag")
    accepted.kill(SIGTERM)
    #expect(try await accepted.waitForExit() == 0)
    #expect(chmod(dir.sub("server.key"), 0o400) == 0)  // narrower than 0600 is fine
    let narrow = try Child(args)
    try await narrow.waitForLines(1, "serve listens with a 0400 key")
    narrow.kill(SIGTERM)
    #expect(try await narrow.waitForExit() == 0)
  }

  /// --log-format json: every line on stderr is one JSON object with time, level, label and
  /// message; the core's own lines too.
  @Test func jsonLogLinesParse() async throws {
    let dir = try Temp()
    defer { dir.remove() }
    _ = try run(["keygen", "--out", dir.sub("server.key")])
    let serve = try Child(["serve", "--topic", "t", "--data", dir.sub("srv"), "--key", dir.sub("server.key"),
                           "--listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug"])
    try await serve.waitForLines(1, "serve listens")
    try await eventually("a log line") { serve.stderrText.contains("\"message\": \"listening\"") }
    serve.kill(SIGTERM)
    #expect(try await serve.waitForExit() == 0)
    let lines = serve.stderrText.lines
    #expect(lines.count >= 2)  // the core's at debug, and "listening"
    for line in lines {
      let object = try json(line)
      #expect(object["time"] is String && object["level"] is String && object["message"] is String, "\(line)")
      #expect((object["time"] as? String)?.hasSuffix("Z") == true)
    }
    let listening = try lines.map(json).first { $0["message"] as? String == "listening" }
    let fields = try #require(listening?["fields"] as? [String: Any])
    #expect(fields["topic"] as? String == "t" && (fields["address"] as? String)?.hasPrefix("127.0.0.1:") == true)
  }

  /// A rollover: the server answers to its key and its next one; a client of each connects, one
  /// of them through a list of addresses whose first refuses. Then the server runs with the next
  /// key alone: a client that knows only the old key is refused.
  @Test func keyRolloverAndAddressList() async throws {
    let dir = try Temp()
    defer { dir.remove() }
    let oldKey = try run(["keygen", "--out", dir.sub("old.key")]).stdout.trimmed
    let newKey = try run(["keygen", "--out", dir.sub("new.key")]).stdout.trimmed
    let user1 = try run(["keygen", "--out", dir.sub("u1.key")]).stdout.trimmed
    let user2 = try run(["keygen", "--out", dir.sub("u2.key")]).stdout.trimmed
    let base = ["serve", "--topic", "t", "--data", dir.sub("srv"), "--listen", "127.0.0.1:0"]
    var serve = try Child(base + ["--key", dir.sub("old.key"), "--next-key", dir.sub("new.key"), "--metrics", "127.0.0.1:0"])
    try await serve.waitForLines(1, "serve listens")
    let hello = try json(serve.stdoutLines[0])
    #expect(hello["publicKey"] as? String == oldKey && hello["nextPublicKey"] as? String == newKey)
    let port = try #require(hello["port"] as? Int)
    #expect(try run(["send", "--data", dir.sub("srv"), user1, "{\"n\": 1}"]).status == 0)
    #expect(try run(["send", "--data", dir.sub("srv"), user2, "{\"n\": 2}"]).status == 0)

    func listen(_ user: String, keys: String, servers: String) throws -> Child {
      try Child(["listen", "--topic", "t", "--data", dir.sub("c-" + user), "--key", dir.sub(user + ".key"),
                 "--server", servers, "--server-key", keys, "--connect-timeout", "5"])
    }
    let refusing = "127.0.0.1:\(try freePort())"
    let old = try listen("u1", keys: oldKey, servers: "\(refusing), 127.0.0.1:\(port)")
    let new = try listen("u2", keys: "\(oldKey),\(newKey)", servers: "127.0.0.1:\(port)")
    try await old.waitForLines(1, "the old key's client gets its event")
    try await new.waitForLines(1, "the new key's client gets its event")

    // the metrics responder of the same server counts what flowed
    let metricsPort = try #require(hello["metricsPort"] as? Int)
    let (body, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(metricsPort)/metrics")!)
    #expect(String(decoding: body, as: UTF8.self).contains("hyperdown_events_added_total 2"))
    old.kill(SIGTERM)
    new.kill(SIGTERM)
    _ = try await old.waitForExit()
    _ = try await new.waitForExit()
    serve.kill(SIGTERM)
    #expect(try await serve.waitForExit() == 0)

    // after the rollover: the new key alone
    serve = try Child(base + ["--key", dir.sub("new.key")])
    try await serve.waitForLines(1, "serve listens with the new key")
    let port2 = try #require(try json(serve.stdoutLines[0])["port"] as? Int)
    let stale = try run(["listen", "--topic", "t", "--data", dir.sub("c-u1"), "--key", dir.sub("u1.key"),
                         "--server", "127.0.0.1:\(port2)", "--server-key", oldKey, "--connect-timeout", "5"])
    #expect(stale.status != 0 && stale.stderr.contains("refused us"), "\(stale.stderr)")
    serve.kill(SIGTERM)
    #expect(try await serve.waitForExit() == 0)
  }

  @Test func addressAndKeyListsParse() throws {
    #expect(try AddressList.addresses("a:7000,b:7000") == ["a:7000", "b:7000"])
    #expect(try AddressList.addresses(" [::1]:7000 , 127.0.0.1:1 ,") == ["[::1]:7000", "127.0.0.1:1"])
    for bad in ["", "a", "a:0", "a:70000", ":7000", "::1:7000", "a:7000,b"] {
      #expect(throws: CLIError.self, "\(bad)") { try AddressList.addresses(bad) }
    }
    let key = "9b0e5bf749a3fd55ca5d08b225962bae6c0c826d9822a79e36b1871b50da82fe"
    #expect(try AddressList.keys("\(key), \(key)").count == 2)
    #expect(throws: CLIError.self) { try AddressList.keys("\(key),nothex") }
    let result = try run(["listen", "--topic", "t", "--data", "/tmp/none", "--key", "/tmp/none",
                          "--server", "127.0.0.1:7000,nowhere", "--server-key", key])
    #expect(result.status != 0 && result.stderr.lines.count == 1 && result.stderr.contains("'nowhere'"), "\(result.stderr)")
  }

  /// Under systemd (Type=notify) the server says READY=1 on $NOTIFY_SOCKET once it listens, and
  /// STOPPING=1 when it leaves.
  @Test func tellsTheServiceManagerWhenReady() async throws {
    let dir = try Temp()
    defer { dir.remove() }
    _ = try run(["keygen", "--out", dir.sub("server.key")])
    let path = dir.sub("notify")
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    #expect(bound == 0)
    var timeout = timeval(tv_sec: 20, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let serve = try Child(["serve", "--topic", "t", "--data", dir.sub("srv"), "--key", dir.sub("server.key"),
                           "--listen", "127.0.0.1:0"], environment: ["NOTIFY_SOCKET": path])
    func receive() -> String {
      var buffer = [UInt8](repeating: 0, count: 512)
      let n = recv(fd, &buffer, buffer.count, 0)
      return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : ""
    }
    let ready = receive()
    #expect(ready.hasPrefix("READY=1"), "\(ready)")
    try await serve.waitForLines(1, "the listening line, written before READY=1")
    serve.kill(SIGTERM)
    #expect(receive() == "STOPPING=1")
    #expect(try await serve.waitForExit() == 0)
  }
}
