import Foundation
import Testing

@testable import Hyperdown

/// A server store replaced by another (a new store id): the client keeps what it held of the old
/// one apart, shows it in `heldStores()` and drops it with `purgeStore(_:)`.
@Suite(.timeLimit(.minutes(1)))
struct HeldStoresTests {
  func clientConfig(_ dir: TempDir, _ port: Int) -> ClientConfiguration {
    var c = ClientConfiguration(keyPair: Keys.user1, serverPublicKey: Keys.server.identity,
                                folderName: "topic", dataDirectory: dir.sub("client"),
                                server: "127.0.0.1:\(port)")
    c.reconnectMax = .milliseconds(200)
    return c
  }

  func server(_ dir: TempDir, _ folder: String) throws -> HyperdownServer {
    try HyperdownServer(configuration: ServerConfiguration(
      keyPair: Keys.server, folderName: "topic", dataDirectory: dir.sub(folder), listen: "127.0.0.1:0"))
  }

  @Test func eventsOfAReplacedStoreAreHeldApartAndPurged() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    // Store A: two events received, not handled (nobody iterates).
    let a = try server(dir, "a")
    for i in 1...2 { _ = try await a.addEvent(for: Keys.user1.identity, payload: [UInt8(i)]) }
    var client = try HyperdownClient(configuration: clientConfig(dir, a.port))
    try await eventually("A's events stored") { try client.stats().unhandled == 2 }
    #expect(try client.heldStores().isEmpty)
    await client.close()
    await a.leave()

    // Store B (another folder: another store id): A's events are held apart.
    let b = try server(dir, "b")
    client = try HyperdownClient(configuration: clientConfig(dir, b.port))
    try await eventually("connected to B") { try client.stats().isConnected && !client.heldStores().isEmpty }
    let held = try client.heldStores()
    #expect(held.count == 1 && held[0].storeID.count == 16)
    #expect(held[0].unhandled == 2 && held[0].consumed == 0)

    await #expect(throws: HyperdownError.self) { try await client.purgeStore([UInt8](repeating: 7, count: 16)) }
    await #expect(throws: HyperdownError.self) { try await client.purgeStore([1, 2, 3]) }
    try await client.purgeStore(held[0].storeID)
    #expect(try client.heldStores().isEmpty)
    #expect(try client.stats().unhandled == 0)
    await client.close()
    await b.leave()
  }
}
