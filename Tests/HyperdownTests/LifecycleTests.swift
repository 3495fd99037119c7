import Foundation
import Logging
import ServiceLifecycle
import Testing

@testable import Hyperdown

/// Cancelling an iteration, dropping a client or a server without closing it: nothing leaks and
/// nothing is lost.
@Suite(.timeLimit(.minutes(1)))
struct LifecycleTests {
  func serverConfig(_ dir: TempDir, listen: String = "127.0.0.1:0") -> ServerConfiguration {
    ServerConfiguration(keyPair: Keys.server, folderName: "topic", dataDirectory: dir.sub("server"),
                        listen: listen)
  }

  func clientConfig(_ dir: TempDir, _ port: Int, folder: String = "user1") -> ClientConfiguration {
    var c = ClientConfiguration(keyPair: Keys.user1, serverPublicKey: Keys.server.identity,
                                folderName: "topic", dataDirectory: dir.sub(folder),
                                server: "127.0.0.1:\(port)")
    c.reconnectMax = .milliseconds(200)
    c.retryMin = .milliseconds(20)
    c.retryMax = .milliseconds(100)
    return c
  }

  @Test func cancellingTheIteratingTaskLosesNothing() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let server = try HyperdownServer(configuration: serverConfig(dir))
    for i in 1...3 { _ = try await server.addEvent(for: Keys.user1.identity, payload: [UInt8(i)]) }
    let client = try HyperdownClient(configuration: clientConfig(dir, server.port))

    // First iteration: takes event 1 and is cancelled before completing it.
    let got = Counter()
    let first = Task {
      for try await event in client.events {
        got.add("first#\(event.id)")
        try await Task.sleep(for: .seconds(60))  // cancelled here: the event is dropped uncompleted
        event.complete()
      }
    }
    try await eventually("first iteration gets event 1") { got["first#1"] == 1 }
    first.cancel()
    _ = try? await first.value

    // Second iteration: event 1 again, then 2 and 3.
    var ids: [UInt64] = []
    for try await event in client.events {
      ids.append(event.id)
      #expect(event.payload == [UInt8(event.id)])
      event.complete()
      if event.id == 3 { break }
    }
    #expect(ids == [1, 2, 3])
    try await eventually("all confirmed") { try server.pending(for: Keys.user1.identity) == 0 }

    // An iteration cancelled while it waits (no event) ends cleanly.
    let idle = Task { for try await _ in client.events {} }
    try await Task.sleep(for: .milliseconds(50))
    idle.cancel()
    try await idle.value
    await client.close()
    await server.leave()
  }

  @Test func droppingAClientWithoutClosingLeaksAndLosesNothing() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let server = try HyperdownServer(configuration: serverConfig(dir))
    _ = try await server.addEvent(for: Keys.user1.identity, payload: Array("one".utf8))
    weak var core: ClientCore?
    do {
      let client = try HyperdownClient(configuration: clientConfig(dir, server.port))
      core = client.core
      var iterator = client.events.makeAsyncIterator()
      let event = try #require(try await iterator.next())
      #expect(event.id == 1)
      #expect(try client.stats().unhandled == 1)
      // Neither completed nor closed: dropped here.
    }
    #expect(core == nil)  // deinit closed the handle and the core released its box

    // The folder is free at once; the stored event comes again.
    let client = try HyperdownClient(configuration: clientConfig(dir, server.port))
    var iterator = client.events.makeAsyncIterator()
    let event = try #require(try await iterator.next())
    #expect(event.id == 1 && event.payload == Array("one".utf8))
    #expect(event.complete())
    #expect(!event.complete())  // exactly once
    try await eventually("confirmed") { try server.pending(for: Keys.user1.identity) == 0 }
    await client.close()
    #expect(!event.complete())
    await server.leave()
  }

  @Test func droppingAServerWithoutLeavingLeaksAndLosesNothing() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    weak var core: ServerCore?
    do {
      let server = try HyperdownServer(configuration: serverConfig(dir))
      core = server.core
      for i in 1...5 { _ = try await server.addEvent(for: Keys.user2.identity, payload: [UInt8(i)]) }
    }
    #expect(core == nil)
    let server = try HyperdownServer(configuration: serverConfig(dir))
    #expect(try server.pending(for: Keys.user2.identity) == 5)
    // the store lists its users itself, also those added for by an earlier process
    let listed = try server.pendingUsers()
    #expect(listed.count == 1 && listed[0].user == Keys.user2.identity && listed[0].pending == 5)
    #expect(try await server.addEvent(for: Keys.user2.identity, payload: [6]) == 6)
    #expect(try server.stats().pendingTotal == 6)
    await server.leave()
  }

  @Test func completingAfterCloseOnlyFreesAndTheEventComesAgain() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let server = try HyperdownServer(configuration: serverConfig(dir))
    _ = try await server.addEvent(for: Keys.user1.identity, payload: [42])
    let client = try HyperdownClient(configuration: clientConfig(dir, server.port))
    var iterator = client.events.makeAsyncIterator()
    let held = try #require(try await iterator.next())
    await client.close()
    #expect(try await iterator.next() == nil)  // the sequence ends with the client
    held.complete()                             // after the close: freed, not recorded
    #expect(!held.complete())
    #expect(throws: HyperdownError.self) { _ = try client.stats() }

    let again = try HyperdownClient(configuration: clientConfig(dir, server.port))
    var it2 = again.events.makeAsyncIterator()
    let event = try #require(try await it2.next())
    #expect(event.id == 1 && event.payload == [42])
    event.complete()
    try await eventually("confirmed") { try server.pending(for: Keys.user1.identity) == 0 }
    await again.close()
    await server.leave()
  }

  @Test func aDroppedHandledEventIsRetried() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let server = try HyperdownServer(configuration: serverConfig(dir))
    _ = try await server.addEvent(for: Keys.user1.identity, payload: [7])
    let client = try HyperdownClient(configuration: clientConfig(dir, server.port))
    var seen: [UInt64] = []
    for try await event in client.events {
      seen.append(event.id)
      if seen.count == 1 { continue }  // dropped by the handler: a failure, handed again
      event.complete()
      break
    }
    #expect(seen == [1, 1])
    try await eventually("failure counted") { try client.stats().eventsFailed == 1 }
    await client.close()
    await server.leave()
  }

  @Test func serverRunsAsAService() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let server = try HyperdownServer(configuration: serverConfig(dir))
    let group = ServiceGroup(services: [server], logger: Logger(label: "test"))
    let running = Task { try await group.run() }
    _ = try await server.addEvent(for: Keys.user1.identity, payload: [1])
    await group.triggerGracefulShutdown()
    try await running.value
    #expect(throws: HyperdownError.self) { try server.stats() }
  }

  @Test func clearErrors() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let server = try HyperdownServer(configuration: serverConfig(dir))
    #expect {
      _ = try HyperdownServer(configuration: serverConfig(dir))
    } throws: { ($0 as? HyperdownError)?.code == HyperdownError.busy }
    await #expect(throws: HyperdownError.self) {
      _ = try await server.addEvent(for: Keys.user1.identity, payload: [])
    }
    #expect(throws: HyperdownError.self) { try PublicKey(hex: "abc") }

    // A client that expects another server key is told why.
    let why = Counter()
    var c = clientConfig(dir, server.port)
    c.serverPublicKey = Keys.user2.identity
    c.onDisconnected = { error in if let error { why.add(error.name) } }
    let client = try HyperdownClient(configuration: c)
    try await eventually("EAUTH reported") { why["EAUTH"] >= 1 }
    await client.close()
    await server.leave()
  }
}
