import Foundation
import Testing

@testable import Hyperdown

/// What the core tells about a server store that lost its last commits (docs/RELIABILITY.md,
/// "Restores and rollbacks"): `Event.possiblyRepeated` and `rollbackStats()`.
@Suite(.timeLimit(.minutes(1)))
struct RollbackTests {
  func serverConfig(_ dir: TempDir) -> ServerConfiguration {
    ServerConfiguration(keyPair: Keys.server, folderName: "topic", dataDirectory: dir.sub("server"),
                        listen: "127.0.0.1:0")
  }

  func clientConfig(_ dir: TempDir, _ port: Int) -> ClientConfiguration {
    var c = ClientConfiguration(keyPair: Keys.user1, serverPublicKey: Keys.server.identity,
                                folderName: "topic", dataDirectory: dir.sub("user1"),
                                server: "127.0.0.1:\(port)")
    c.reconnectMax = .milliseconds(200)
    return c
  }

  /// Handles `count` events from `client`, completing each; returns (payload, possiblyRepeated).
  func handle(_ client: HyperdownClient, count: Int) async throws -> [(String, Bool)] {
    var seen: [(String, Bool)] = []
    for try await event in client.events {
      seen.append((String(decoding: event.payload, as: UTF8.self), event.possiblyRepeated))
      event.complete()
      if seen.count == count { break }
    }
    return seen
  }

  func counters(_ s: RollbackStats) -> [UInt64] {
    [s.rollbacks, s.epochResumes, s.eventsRepeated, s.eventsOrphaned, s.consumedDropped]
  }

  @Test func aFreshPairHasNothingRolledBack() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let server = try HyperdownServer(configuration: serverConfig(dir))
    let ss = try server.rollbackStats()
    #expect(ss.epoch.count == 16 && ss.epoch != [UInt8](repeating: 0, count: 16))
    #expect(counters(ss) == [0, 0, 0, 0, 0])
    let client = try HyperdownClient(configuration: clientConfig(dir, server.port))
    #expect(counters(try client.rollbackStats()) == [0, 0, 0, 0, 0])
    _ = try await server.addEvent(for: Keys.user1.identity, payload: Array("one".utf8))
    let seen = try await handle(client, count: 1)
    #expect(seen.map(\.0) == ["one"] && seen.map(\.1) == [false])
    let cs = try client.rollbackStats()
    // the first resume learns the store's epoch (an epoch resume), no rollback
    #expect(cs.rollbacks == 0 && cs.eventsRepeated == 0 && cs.epoch == ss.epoch)
    await client.close()
    await server.leave()
    #expect(throws: HyperdownError.self) { try server.rollbackStats() }
  }

  @Test func aRestoredBackupHandsTheLostEventAgainMarked() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let user = Keys.user1.identity
    let image = dir.sub("image")
    try FileManager.default.createDirectory(atPath: image, withIntermediateDirectories: false)
    var server = try HyperdownServer(configuration: serverConfig(dir))
    _ = try await server.addEvent(for: user, payload: Array("old#1".utf8))
    try await server.backup(to: image + "/hyperdown.db")
    _ = try await server.addEvent(for: user, payload: Array("old#2".utf8))
    var client = try HyperdownClient(configuration: clientConfig(dir, server.port))
    _ = try await handle(client, count: 2)
    try await eventually("both events confirmed") {
      try server.pending(for: user) == 0 && client.stats().consumed == 0
    }
    await client.close()
    await server.leave()

    try FileManager.default.removeItem(atPath: dir.sub("server"))
    try FileManager.default.moveItem(atPath: image, toPath: dir.sub("server"))
    server = try HyperdownServer(configuration: serverConfig(dir))
    #expect(try await server.addEvent(for: user, payload: Array("new#2".utf8)) == 2)
    client = try HyperdownClient(configuration: clientConfig(dir, server.port))
    let seen = try await handle(client, count: 2)
    #expect(seen.map(\.0) == ["old#1", "new#2"] && seen.map(\.1) == [true, false])
    try await eventually("both confirmed") { try server.pending(for: user) == 0 }
    let ss = try server.rollbackStats()
    let cs = try client.rollbackStats()
    #expect(counters(ss) == [1, 1, 0, 0, 0])
    #expect(counters(cs) == [1, 1, 1, 0, 0])
    #expect(cs.epoch == ss.epoch)
    await client.close()
    await server.leave()
  }
}
