import Foundation
import Testing

@testable import Hyperdown

/// The original README's example through the Swift API: a server, an online user, an offline user
/// who comes later, the server leaving and coming back and recovering what a client consumed
/// meanwhile. Every event must be handled once and reported to the server once.
@Suite(.timeLimit(.minutes(1)))
struct OriginalExampleTests {
  @Test func originalExample() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let handled = Counter()
    let consumed = Counter()
    let consumedData = Counter()
    let names = [Keys.user1.identity: "user1", Keys.user2.identity: "user2"]

    var serverConfig = ServerConfiguration(keyPair: Keys.server, folderName: "topic",
                                           dataDirectory: dir.sub("server"))
    serverConfig.onClientConsumedEvents = { user, events in
      for e in events {
        consumed.add("\(names[user]!)#\(e.id)")
        consumedData.add(String(decoding: e.data, as: UTF8.self))
      }
      return true
    }
    var server = try HyperdownServer(configuration: serverConfig)
    let address = "127.0.0.1:\(server.port)"

    // user1: the original's eventHandler form, reporting data to the server.
    let gate = Counter()
    var c1 = ClientConfiguration(keyPair: Keys.user1, serverPublicKey: Keys.server.identity,
                                 folderName: "topic", dataDirectory: dir.sub("user1"), server: address)
    c1.reconnectMax = .milliseconds(200)
    c1.eventHandler = { event in
      handled.add("user1#\(event.id)")
      let prize = try event.decodePayload(Prize.self)
      if prize.note == "slow" {
        gate.add("started")
        try await eventually("the gate opens") { gate["open"] == 1 }
      }
      return Array("ok \(event.id)".utf8)
    }
    let client1 = try HyperdownClient(configuration: c1)
    try await eventually("user1 connects") { try client1.stats().isConnected }
    #expect(try server.connectedUsers() == [Keys.user1.identity])

    let s1 = try await server.addEvent(for: Keys.user1.identity,
                                       json: Prize(prize: 500, game: "boxing", note: "user1 is online"))
    #expect(s1 == 1)
    try await eventually("user1#1 consumed") { consumed["user1#1"] == 1 }
    #expect(consumedData["ok 1"] == 1)

    // user2 is offline: its event waits in the server's store.
    let s2 = try await server.addEvent(for: Keys.user2.identity,
                                       json: Prize(prize: -500, game: "boxing", note: "user2 is offline"))
    #expect(s2 == 1)
    #expect(try server.pending(for: Keys.user2.identity) == 1)

    // user2 comes back later; it iterates `events` (the AsyncSequence form).
    let c2 = ClientConfiguration(keyPair: Keys.user2, serverPublicKey: Keys.server.identity,
                                 folderName: "topic", dataDirectory: dir.sub("user2"), server: address)
    let client2 = try HyperdownClient(configuration: c2)
    let user2Loop = Task {
      for try await event in client2.events {
        handled.add("user2#\(event.id)")
        #expect(try event.decodePayload(Prize.self).note == "user2 is offline")
        event.complete()
      }
    }
    try await eventually("user2#1 consumed") { consumed["user2#1"] == 1 }

    let s3 = try await server.addEvent(for: Keys.user1.identity,
                                       json: Prize(prize: 4500, game: "boxing2", note: "user1 is still online"))
    #expect(s3 == 2)
    try await eventually("user1#2 consumed") { consumed["user1#2"] == 1 }

    // The server leaves while user1 handles event 3; it comes back and recovers the consumption.
    try await server.updatePause(.milliseconds(0))
    _ = try await server.addEvent(for: Keys.user1.identity, json: Prize(prize: 1, game: "g", note: "slow"))
    try await eventually("user1 starts event 3") { gate["started"] == 1 }
    await server.leave()
    await #expect(throws: HyperdownError.self) {
      _ = try await server.addEvent(for: Keys.user1.identity, payload: [1])
    }
    gate.add("open")
    try await eventually("user1 consumed event 3 offline") { try client1.stats().consumed == 1 }
    #expect(consumed["user1#3"] == 0)

    serverConfig.listen = address
    server = try HyperdownServer(configuration: serverConfig)
    try await eventually("server recovers user1#3") { consumed["user1#3"] == 1 }
    try await eventually("all confirmed") {
      try server.pending(for: Keys.user1.identity) == 0 && server.pending(for: Keys.user2.identity) == 0
        && client1.stats().consumed == 0 && client2.stats().consumed == 0
    }
    let stats = try client1.stats()
    #expect(stats.eventsHandled == 3 && stats.eventsFailed == 0 && stats.highWater == 3)

    // Every event handled once, every callback once.
    #expect(handled.all == ["user1#1": 1, "user1#2": 1, "user1#3": 1, "user2#1": 1])
    #expect(consumed.all == ["user1#1": 1, "user1#2": 1, "user1#3": 1, "user2#1": 1])

    await client2.close()
    try await user2Loop.value  // the sequence ends when the client closes
    await client1.close()
    await server.leave()
    await server.leave()  // a second leave returns at once
  }
}
