import Foundation
import Synchronization
import Testing

import CHyperdown
@testable import Hyperdown

/// The queue semantics through the Swift API (docs/QUEUES.md): adds with keys and a time to live,
/// limits, fan-out, poison events and dead letters, notices, and the error codes.
@Suite(.timeLimit(.minutes(2)))
struct QueueTests {
  func serverConfig(_ dir: TempDir) -> ServerConfiguration {
    ServerConfiguration(keyPair: Keys.server, folderName: "topic", dataDirectory: dir.sub("server"),
                        listen: "127.0.0.1:0")
  }

  func clientConfig(_ dir: TempDir, _ port: Int, user: KeyPair = Keys.user1) -> ClientConfiguration {
    var c = ClientConfiguration(keyPair: user, serverPublicKey: Keys.server.identity,
                                folderName: "topic", dataDirectory: dir.sub("client-\(user.identity.hex.prefix(8))"),
                                server: "127.0.0.1:\(port)")
    c.reconnectMax = .milliseconds(200)
    c.retryMin = .milliseconds(20)
    c.retryMax = .milliseconds(50)
    return c
  }

  /// What a client handed out, in order: "event <payload> #<id> @<attempt>", "notice <kind>
  /// <first>-<last> x<count>", and "notice ... end" when the notice handler returned.
  final class Journal: Sendable {
    let lines = Mutex<[String]>([])
    func add(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
    func count(_ prefix: String) -> Int { all.filter { $0.hasPrefix(prefix) }.count }
  }

  static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

  /// A client whose notice handler records each notice and takes 50 ms over it, so that an event
  /// handed out before it returned would show between its two lines.
  func journaledClient(_ dir: TempDir, _ port: Int, _ journal: Journal,
                       configure: (inout ClientConfiguration) -> Void = { _ in }) throws -> HyperdownClient {
    var c = clientConfig(dir, port)
    c.onNotice = { notice in
      journal.add("notice \(notice.kindName) \(notice.firstSeq)-\(notice.lastSeq) x\(notice.count)")
      try? await Task.sleep(for: .milliseconds(50))
      journal.add("notice end")
    }
    configure(&c)
    return try HyperdownClient(configuration: c)
  }

  /// No event is handed out while a notice is with its handler.
  func expectNoticesInTheirPlace(_ journal: Journal) {
    var inNotice = false
    for line in journal.all {
      if line.hasPrefix("notice end") {
        inNotice = false
      } else if line.hasPrefix("notice") {
        #expect(!inNotice, "\(journal.all)")
        inNotice = true
      } else {
        #expect(!inNotice, "an event while a notice was handled: \(journal.all)")
      }
    }
  }

  @Test func dedupAndCollapseKeys() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let server = try HyperdownServer(configuration: serverConfig(dir))
    let user = Keys.user1.identity
    let first = try await server.addEvent(for: user, payload: Array("a".utf8), options: AddOptions(dedupKey: "k"))
    #expect(first == AddResult(seq: 1))
    let again = try await server.addEvent(for: user, payload: Array("a".utf8), options: AddOptions(dedupKey: "k"))
    #expect(again == AddResult(seq: 1, isDuplicate: true))
    let other = try await server.addEvent(for: user, payload: Array("b".utf8), options: AddOptions(dedupKey: "k"))
    #expect(other == AddResult(seq: 1, isDuplicate: true, isConflict: true))
    // a key is per user
    #expect(try await server.addEvent(for: Keys.user2.identity, payload: [1], options: AddOptions(dedupKey: "k")).seq == 1)
    // in one batch, in order: the later add sees the earlier one's key
    let batch = try await server.addEvents(for: Keys.user2.identity, payloads: [[2], [3], [2]],
                                           options: AddOptions(dedupKey: "batch"))
    #expect(batch == [AddResult(seq: 2), AddResult(seq: 2, isDuplicate: true, isConflict: true),
                      AddResult(seq: 2, isDuplicate: true)])

    let v1 = try await server.addEvent(for: user, payload: Array("v1".utf8), options: AddOptions(collapseKey: "state"))
    #expect(!v1.isDuplicate && v1.replaced == nil)
    let v2 = try await server.addEvent(for: user, payload: Array("v2".utf8), options: AddOptions(collapseKey: "state"))
    #expect(v2.replaced == v1.seq && v2.seq > v1.seq)
    #expect(try server.events(for: user).map { Self.text($0.payload) } == ["a", "v2"])

    let stats = try server.stats()
    #expect(stats.addsDuplicate == 4 && stats.eventsReplaced == 1)
    #expect(stats.eventsAdded == 5)  // duplicates store nothing

    for bad in [AddOptions(dedupKey: ""), AddOptions(collapseKey: String(repeating: "x", count: 257))] {
      await #expect(throws: HyperdownError(code: HyperdownError.invalidArgument, message: "")) {
        do { _ = try await server.addEvent(for: user, payload: [1], options: bad) } catch let e as HyperdownError {
          throw HyperdownError(code: e.code, message: "")
        }
      }
    }
    await server.leave()
  }

  @Test func limitsRejectOrDropTheOldest() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    var config = serverConfig(dir)
    config.maxPendingPerUser = 2
    config.maxBytesPerUser = 10
    let server = try HyperdownServer(configuration: config)
    let user = Keys.user1.identity
    _ = try await server.addEvent(for: user, payload: [1, 2, 3], options: AddOptions())
    _ = try await server.addEvent(for: user, payload: [4, 5, 6], options: AddOptions())
    do {
      _ = try await server.addEvent(for: user, payload: [7], options: AddOptions())
      Issue.record("an add past max_pending_per_user went through")
    } catch let error as HyperdownError {
      #expect(error.code == HyperdownError.limitReached && error.name == "ELIMIT", "\(error)")
    }
    // the bytes' limit
    await #expect(throws: HyperdownError.self) {
      try await server.addEvent(for: Keys.user2.identity, payload: [UInt8](repeating: 0, count: 11), options: AddOptions())
    }
    #expect(try server.stats().addsLimited == 2)
    #expect(try server.pending(for: user) == 2)
    await server.leave()

    // the same folder with drop-oldest: the oldest unsent event makes room, the client is told
    var dropping = serverConfig(dir)
    dropping.maxPendingPerUser = 2
    dropping.overflow = .dropOldest
    let server2 = try HyperdownServer(configuration: dropping)
    let result = try await server2.addEvent(for: user, payload: [9], options: AddOptions())
    #expect(result.dropped == 1, "\(result)")
    #expect(try server2.stats().eventsDropped == 1)
    #expect(try server2.events(for: user).map(\.payload).filter { $0.count > 0 }.contains([4, 5, 6]))

    let journal = Journal()
    let client = try journaledClient(dir, server2.port, journal)
    let events = Task {
      for try await event in client.events {
        journal.add("event \(event.payload) #\(event.id) @\(event.attempt)")
        event.complete()
        if event.payload == [9] { break }
      }
    }
    try await events.value
    try await eventually("the drop notice") { journal.count("notice dropped 1-1 x1") == 1 }
    #expect(journal.all.filter { $0.hasPrefix("event") }.map { $0.split(separator: " #")[0] }
              == ["event [4, 5, 6]", "event [9]"], "\(journal.all)")
    expectNoticesInTheirPlace(journal)
    #expect(try client.stats().noticesReceived == 1)
    await client.close()
    await server2.leave()
  }

  @Test func fanOutAnswersPerUser() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    var config = serverConfig(dir)
    config.maxPendingPerUser = 1
    let server = try HyperdownServer(configuration: config)
    _ = try await server.addEvent(for: Keys.user1.identity, payload: [0])
    let results = try await server.addEvents(forUsers: [Keys.user1.identity, Keys.user2.identity, Keys.server.identity],
                                             payload: Array("all".utf8))
    #expect(results.count == 3)
    if case .failure(let error) = results[0] {
      #expect(error.code == HyperdownError.limitReached)
    } else {
      Issue.record("user1 is at its limit: \(results[0])")
    }
    #expect(try results[1].get() == AddResult(seq: 1))
    #expect(try results[2].get() == AddResult(seq: 1))
    #expect(try server.events(for: Keys.user2.identity).map(\.payload) == [Array("all".utf8)])
    #expect(try await server.addEvents(forUsers: [], payload: [1]).isEmpty)
    await server.leave()
  }

  @Test func poisonEventsBecomeDeadLettersAndComeBack() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let deadReported = Journal()
    var config = serverConfig(dir)
    config.onDeadLetter = { user, dead in
      deadReported.add("\(user == Keys.user1.identity) \(dead.id) \(Self.text(dead.payload)) \(dead.attempts) \(dead.reason)")
    }
    let server = try HyperdownServer(configuration: config)
    let user = Keys.user1.identity
    for text in ["poison", "fine", "reject"] { _ = try await server.addEvent(for: user, payload: Array(text.utf8)) }

    struct Broken: Error, CustomStringConvertible { var description: String { "broken handler" } }
    let journal = Journal()
    let healed = Atomic<Bool>(false)
    let client = try journaledClient(dir, server.port, journal) { c in
      c.maxAttempts = 2
      c.eventHandler = { event in
        let text = Self.text(event.payload)
        journal.add("event \(text) #\(event.id) @\(event.attempt)")
        if text == "reject" { throw EventRejected(reason: "cannot ever") }
        if text == "poison" && !healed.load(ordering: .relaxed) { throw Broken() }
        return nil
      }
    }
    try await eventually("two dead letters reported") { deadReported.all.count == 2 }
    #expect(deadReported.all == ["true 1 poison 2 broken handler", "true 3 reject 1 cannot ever"])
    #expect(journal.count("event poison #1 @1") == 1 && journal.count("event poison #1 @2") == 1)
    #expect(journal.count("event fine #2 @1") == 1)  // later events flow on
    #expect(try server.deadLetterCount(for: user) == 2 && server.deadLetterCount() == 2)
    #expect(try server.deadLetterCount(for: Keys.user2.identity) == 0)
    let users = try server.deadLetterUsers()
    #expect(users.count == 1 && users[0].user == user && users[0].count == 2)
    let dead = try server.deadLetters(for: user)
    #expect(dead.map(\.id) == [1, 3] && dead.map(\.attempts) == [2, 1])
    #expect(dead[0].payload == Array("poison".utf8) && dead[0].reason == "broken handler")
    #expect(dead[1].died >= dead[1].created)
    #expect(try server.deadLetters(for: user, after: 1, limit: 1).map(\.id) == [3])
    #expect(try server.stats().eventsDead == 2 && server.stats().deadLetters == 2)
    try await eventually("the client counted them") { try client.stats().eventsDead == 2 }

    healed.store(true, ordering: .relaxed)
    #expect(try await server.requeueDeadLetters(for: user, ids: [1, 77]) == 1)
    try await eventually("the requeued event is handled") { journal.count("event poison") == 3 }
    let requeued = try #require(journal.all.last { $0.hasPrefix("event poison") })
    let notice = try #require(journal.all.first { $0.hasPrefix("notice requeued 1-") })
    #expect(notice.hasSuffix(" x1"))
    let newID = notice.dropFirst("notice requeued 1-".count).split(separator: " ")[0]
    #expect(requeued == "event poison #\(newID) @1", "\(journal.all)")  // its attempts start again
    expectNoticesInTheirPlace(journal)
    #expect(try server.stats().eventsRequeued == 1)
    #expect(try await server.deleteDeadLetters(for: user) == 1)
    #expect(try server.deadLetterCount() == 0 && server.deadLetterUsers().isEmpty)
    #expect(try server.deadLetters(for: user).isEmpty)
    #expect(try await server.requeueDeadLetters(for: user, ids: []) == 0)
    try await eventually("all confirmed") { try server.pending(for: user) == 0 }
    await client.close()
    await server.leave()
  }

  @Test func failAndRejectFromTheEventSequence() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let server = try HyperdownServer(configuration: serverConfig(dir))
    let user = Keys.user1.identity
    for i in 1...2 { _ = try await server.addEvent(for: user, payload: [UInt8(i)]) }
    var c = clientConfig(dir, server.port)
    c.maxAttempts = 3
    let client = try HyperdownClient(configuration: c)
    var attempts: [UInt32] = []
    for try await event in client.events {
      if attempts.count > 5 { break }  // bounded: 3 were due
      if event.id == 1 {
        attempts.append(event.attempt)
        #expect(event.fail(reason: String(repeating: "é", count: 600)))  // 1200 bytes: cut at a character
        #expect(!event.fail(reason: "twice"))
      } else {
        #expect(event.reject(reason: "no"))
        #expect(!event.complete())
        break
      }
    }
    #expect(attempts == [1, 2, 3])
    try await eventually("both dead") { try server.deadLetterCount(for: user) == 2 }
    let dead = try server.deadLetters(for: user)
    #expect(dead.map(\.attempts) == [3, 1] && dead[1].reason == "no")
    #expect(dead[0].reason == String(repeating: "é", count: 512), "\(dead[0].reason.utf8.count) bytes")
    await client.close()
    await server.leave()
  }

  @Test func eventsExpireUnsentAndTheClientIsTold() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    var config = serverConfig(dir)
    config.defaultTTL = .milliseconds(100)
    let server = try HyperdownServer(configuration: config)
    let user = Keys.user1.identity
    let short = try await server.addEvent(for: user, payload: Array("short".utf8), options: AddOptions())
    let explicit = try await server.addEvent(for: user, payload: Array("explicit".utf8),
                                             options: AddOptions(ttl: .after(.milliseconds(150))))
    _ = try await server.addEvent(for: user, payload: Array("kept".utf8), options: AddOptions(ttl: .never))
    _ = try await server.addEvent(for: user, payload: Array("hour".utf8), options: AddOptions(ttl: .after(.seconds(3600))))
    try await eventually("two expired") { try server.stats().eventsExpired == 2 }
    #expect(try server.events(for: user).map { Self.text($0.payload) }.filter { !$0.isEmpty }.contains("kept"))

    let journal = Journal()
    let client = try journaledClient(dir, server.port, journal)
    let events = Task {
      for try await event in client.events {
        journal.add("event \(Self.text(event.payload))")
        event.complete()
        if Self.text(event.payload) == "hour" { break }
      }
    }
    try await events.value
    #expect(journal.all.filter { $0.hasPrefix("event") } == ["event kept", "event hour"])
    // the sweep's notice takes the user's next number: it comes after the events held then
    try await eventually("the expiry notices") {
      journal.all.filter { $0.hasPrefix("notice expired") }.map { $0.split(separator: "x").last! }.reduce(0) { $0 + Int($1)! } >= 2
    }
    // one notice for both, or one each if two sweeps took them (on a loaded machine the first
    // sweep's notice may even take a number between the two adds)
    let expired = journal.all.filter { $0.hasPrefix("notice expired") }
    #expect(expired == ["notice expired \(short.seq)-\(explicit.seq) x2"]
              || expired == ["notice expired \(short.seq)-\(short.seq) x1", "notice expired \(explicit.seq)-\(explicit.seq) x1"],
            "\(journal.all)")
    expectNoticesInTheirPlace(journal)
    await client.close()
    await server.leave()
  }

  @Test func everyCoreErrorCodeHasAName() {
    let codes = HyperdownError.knownCodes
    #expect(Set(codes).count == codes.count)
    #expect(Set(codes) == Set(Int32(HD_ERRNO_MIN.rawValue)...(-1)), "a code of hyperdown.h without its constant")
    for code in codes {
      #expect(HyperdownError(code: code, message: "").name != "UNKNOWN", "\(code)")
    }
    #expect(HyperdownError.limitReached == -30)
  }
}
