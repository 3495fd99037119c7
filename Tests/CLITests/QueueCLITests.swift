import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The queue semantics through the `hyperdown` tool (docs/QUEUES.md): send's keys and time to
/// live, serve's limits, listen --exec with a poison event, dead-letters, requeue and
/// purge --dead-letters, online and from the folder.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct QueueCLITests {
  func json(_ line: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
  }

  func serve(_ dir: Temp, _ folder: String, _ extra: [String] = []) async throws -> Child {
    let child = try Child(["serve", "--topic", "topic", "--data", dir.sub(folder), "--key", dir.sub("server.key"),
                           "--listen", "127.0.0.1:0"] + extra)
    try await child.waitForLines(1, "serve listens")
    return child
  }

  func listen(_ dir: Temp, port: Int, serverKey: String, _ extra: [String] = []) throws -> Child {
    try Child(["listen", "--topic", "topic", "--data", dir.sub("user"), "--key", dir.sub("user.key"),
               "--server", "127.0.0.1:\(port)", "--server-key", serverKey] + extra)
  }

  func port(_ serve: Child) throws -> Int {
    try json(serve.stdoutLines[0])["port"] as! Int
  }

  @Test func sendKeysLimitsAndTimeToLive() async throws {
    let dir = try Temp()
    defer { dir.remove() }
    let serverKey = try run(["keygen", "--out", dir.sub("server.key")]).stdout.trimmed
    let user = try run(["keygen", "--out", dir.sub("user.key")]).stdout.trimmed
    let strict = try await serve(dir, "strict", ["--max-pending-per-user", "2", "--overflow", "reject"])
    func send(_ folder: String, _ args: [String]) throws -> RunResult {
      try run(["send", "--data", dir.sub(folder)] + args)
    }
    #expect(try send("strict", ["--dedup-key", "k", user, "{\"n\": 1}"]).stdout.trimmed == "1")
    #expect(try send("strict", ["--dedup-key", "k", user, "{\"n\": 1}"]).stdout.trimmed == "1")  // the first's
    #expect(try send("strict", ["--collapse-key", "c", user, "{\"v\": 1}"]).stdout.trimmed == "2")
    #expect(try send("strict", ["--collapse-key", "c", user, "{\"v\": 2}"]).stdout.trimmed == "3")  // replaces 2
    let limited = try send("strict", [user, "{\"n\": 3}"])
    #expect(limited.status != 0 && limited.stderr.lines.count == 1 && limited.stderr.contains("ELIMIT"),
            "\(limited.stdout) \(limited.stderr)")
    let held = try run(["pending", "--data", dir.sub("strict"), user]).stdout.lines
    #expect(held.count == 2 && held[0].hasPrefix("{\"id\": 1,") && held[1].hasPrefix("{\"id\": 3,")
              && held[1].hasSuffix("{\"v\": 2}}"), "\(held)")
    strict.kill(SIGTERM)
    #expect(try await strict.waitForExit() == 0)

    // drop-oldest and a default time to live; the listener is told of both in its stream
    let loose = try await serve(dir, "loose", ["--max-pending-per-user", "2", "--overflow", "drop-oldest",
                                               "--default-ttl", "0.3"])
    #expect(try send("loose", [user, "{\"a\": 1}"]).stdout.trimmed == "1")  // expires
    #expect(try send("loose", ["--ttl", "3600", user, "{\"b\": 2}"]).stdout.trimmed == "2")
    try await eventually("event 1 expires") {  // swept: not held any more
      try run(["status", "--data", dir.sub("loose")]).stdout.contains("\"eventsExpired\":1")
    }
    #expect(!(try run(["pending", "--data", dir.sub("loose"), user]).stdout.contains("{\"a\": 1}")))
    for payload in ["{\"c\": 3}", "{\"d\": 4}"] {  // the second drops b
      let sent = try send("loose", ["--ttl", "3600", user, payload])
      #expect(sent.status == 0 && UInt64(sent.stdout.trimmed) != nil, "\(sent.stderr)")
    }
    let pending = try run(["pending", "--data", dir.sub("loose"), user]).stdout
    #expect(!pending.contains("{\"b\": 2}") && pending.contains("{\"d\": 4}"), "\(pending)")

    let listener = try listen(dir, port: try port(loose), serverKey: serverKey)
    try await eventually("d is printed") { listener.stdoutLines.contains { $0.hasSuffix("{\"d\": 4}}") } }
    let lines = listener.stdoutLines
    let objects = try lines.map(json)
    let notices = objects.filter { $0["notice"] != nil }
    let expired = notices.filter { $0["notice"] as? String == "expired" }
    let dropped = notices.filter { $0["notice"] as? String == "dropped" }
    #expect(expired.count == 1 && expired.first?["count"] as? Int == 1 && expired.first?["firstSeq"] as? Int == 1
              && expired.first?["lastSeq"] as? Int == 1, "\(lines)")
    #expect(dropped.count == 1 && dropped.first?["count"] as? Int == 1 && dropped.first?["firstSeq"] as? Int == 2,
            "\(lines)")
    #expect(lines.contains("{\"notice\": \"expired\", \"count\": 1, \"firstSeq\": 1, \"lastSeq\": 1}"), "\(lines)")
    let data = objects.compactMap { $0["data"] as? [String: Int] }
    #expect(data == [["c": 3], ["d": 4]], "\(lines)")
    #expect(notices.count + data.count == lines.count)
    listener.kill(SIGTERM)
    #expect(try await listener.waitForExit() == 0)
    loose.kill(SIGTERM)
    #expect(try await loose.waitForExit() == 0)
  }

  @Test func poisonEventThroughExecEndsInDeadLettersAndRequeueBringsItBack() async throws {
    let dir = try Temp()
    defer { dir.remove() }
    let serverKey = try run(["keygen", "--out", dir.sub("server.key")]).stdout.trimmed
    let user = try run(["keygen", "--out", dir.sub("user.key")]).stdout.trimmed
    let server = try await serve(dir, "srv")
    let sent = try run(["send", "--data", dir.sub("srv"), user, "{\"n\": 1}", "{\"n\": 2}", "{\"n\": 3}", "{\"n\": 4}"])
    #expect(sent.stdout.lines == ["1", "2", "3", "4"])
    // n 1 is poison until "healed" exists, n 3 always fails, n 4 hangs
    let script = """
      line=$(cat)
      case "$line" in
        *'"n": 1}'*) [ -e \(dir.sub("healed")) ] && exit 0; echo 'cannot handle n=1' >&2; echo more >&2; exit 100;;
        *'"n": 3}'*) echo flaky >&2; exit 1;;
        *'"n": 4}'*) sleep 30;;
      esac
      exit 0
      """
    try script.write(toFile: dir.sub("handler.sh"), atomically: true, encoding: .utf8)
    let listener = try listen(dir, port: try port(server), serverKey: serverKey,
                              ["--exec", "sh \(dir.sub("handler.sh"))", "--exec-timeout", "0.5", "--max-attempts", "2"])
    try await eventually("three dead letters") { server.stdoutLines.filter { $0.contains("deadLetter") }.count == 3 }
    #expect(listener.stdoutLines == ["{\"id\": 2, \"data\": {\"n\": 2}}"], "\(listener.stdoutLines)")
    let reported = try server.stdoutLines.filter { $0.contains("deadLetter") }.map(json)
    #expect(reported.map { $0["deadLetter"] as? Int } == [1, 3, 4])
    #expect(reported.allSatisfy { $0["user"] as? String == user })

    for args in [["dead-letters", "--data", dir.sub("srv")], ["dead-letters", "--data", dir.sub("srv"), user]] {
      let listed = try run(args)
      #expect(listed.status == 0, "\(listed.stderr)")
      let dead = try listed.stdout.lines.map(json)
      #expect(dead.map { $0["id"] as? Int } == [1, 3, 4], "\(listed.stdout)")
      #expect(dead.map { $0["attempts"] as? Int } == [1, 2, 2], "\(listed.stdout)")
      #expect(dead.map { $0["reason"] as? String } == ["exit 100: cannot handle n=1", "exit 1: flaky",
                                                       "still running after 0.5 s: killed"], "\(listed.stdout)")
      #expect(dead.allSatisfy { $0["user"] as? String == user && $0["createdMs"] as? Int != nil && $0["deadMs"] as? Int != nil })
      #expect(listed.stdout.lines.first?.hasPrefix("{\"user\": \"\(user)\", \"id\": 1, \"payload\": {\"n\": 1}, \"attempts\": 1, ") == true,
              "\(listed.stdout)")
    }

    #expect(FileManager.default.createFile(atPath: dir.sub("healed"), contents: Data()))
    let requeued = try run(["requeue", "--data", dir.sub("srv"), user, "1"])
    #expect(requeued.stdout.trimmed == "{\"user\": \"\(user)\", \"requeued\": 1}", "\(requeued.stdout) \(requeued.stderr)")
    try await eventually("the requeued event is handled") { listener.stdoutLines.count >= 3 }
    let after = Array(listener.stdoutLines.dropFirst())  // the notice and the event, in the order of their numbers
    let notice = try #require(try after.map(json).first { $0["notice"] != nil }, "\(after)")
    #expect(notice["notice"] as? String == "requeued" && notice["firstSeq"] as? Int == 1 && notice["count"] as? Int == 1,
            "\(after)")
    let newID = try #require(notice["lastSeq"] as? Int)
    #expect(after.contains("{\"id\": \(newID), \"data\": {\"n\": 1}}") && after.count == 2, "\(after)")

    let purged = try run(["purge", "--dead-letters", "--data", dir.sub("srv"), user, "3"])
    #expect(purged.stdout.trimmed == "{\"user\": \"\(user)\", \"deleted\": 1}", "\(purged.stdout) \(purged.stderr)")
    #expect(try run(["dead-letters", "--data", dir.sub("srv")]).stdout.lines.map { try json($0)["id"] as? Int } == [4])
    listener.kill(SIGTERM)
    #expect(try await listener.waitForExit() == 0)
    server.kill(SIGTERM)
    #expect(try await server.waitForExit() == 0)

    // no server: the folder itself
    #expect(try run(["dead-letters", "--data", dir.sub("srv"), user]).stdout.lines.count == 1)
    let all = try run(["requeue", "--data", dir.sub("srv"), user])
    #expect(all.stdout.trimmed == "{\"user\": \"\(user)\", \"requeued\": 1}", "\(all.stdout) \(all.stderr)")
    let none = try run(["dead-letters", "--data", dir.sub("srv")])
    #expect(none.status == 0 && none.stdout.isEmpty, "\(none.stdout) \(none.stderr)")
    #expect(try run(["pending", "--data", dir.sub("srv"), user]).stdout.contains("{\"n\": 4}"))
    let nothing = try run(["purge", "--dead-letters", "--data", dir.sub("srv"), user])
    #expect(nothing.stdout.trimmed == "{\"user\": \"\(user)\", \"deleted\": 0}", "\(nothing.stdout) \(nothing.stderr)")
  }

  @Test func queueCommandsFailWithOneClearLine() async throws {
    let dir = try Temp()
    defer { dir.remove() }
    let user = try run(["keygen", "--out", dir.sub("k")]).stdout.trimmed
    let cases: [([String], String)] = [
      (["dead-letters", "--data", dir.sub("nothing")], "no server store"),
      (["dead-letters", "--data", dir.sub("nothing"), "xyz"], "USER_HEX"),
      (["requeue", "--data", dir.sub("nothing"), user, "1"], "no server store"),
      (["purge", "--dead-letters", "--data", dir.sub("nothing"), user], "no server store"),
      (["send", "--data", dir.sub("nothing"), "--dedup-key", "k", user, "{}"], "no server is running"),
    ]
    for (args, needle) in cases {
      let result = try run(args)
      #expect(result.status != 0, "\(args)")
      #expect(result.stderr.lines.count == 1, "\(args): \(result.stderr)")
      #expect(result.stderr.contains(needle), "\(args): \(result.stderr)")
    }
    // usage errors: exit 64
    for args in [["send", "--data", dir.sub("s"), "--ttl", "0", user, "{}"],
                 ["send", "--data", dir.sub("s"), "--dedup-key", "", user, "{}"],
                 ["serve", "--topic", "t", "--data", dir.sub("s"), "--key", dir.sub("k"), "--listen", "127.0.0.1:0",
                  "--overflow", "sometimes"],
                 ["listen", "--topic", "t", "--data", dir.sub("c"), "--key", dir.sub("k"), "--server", "127.0.0.1:1",
                  "--server-key", user, "--exec", "true", "--exec-timeout", "0"]] {
      #expect(try run(args).status == 64, "\(args)")
    }
  }
}
