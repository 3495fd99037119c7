import Foundation
import Testing

@testable import Hyperdown

/// The admin calls: a user's pending events listed a page at a time, deleted some and all; the
/// numbering goes on.
@Suite(.timeLimit(.minutes(1)))
struct AdminTests {
  @Test func listAndDeleteAUsersEvents() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    var config = ServerConfiguration(keyPair: Keys.server, folderName: "topic",
                                     dataDirectory: dir.sub("server"), listen: "127.0.0.1:0")
    config.maxMessageBytes = 4 << 20
    let server = try HyperdownServer(configuration: config)
    let user = Keys.user1.identity
    for i in 1...5 { #expect(try await server.addEvent(for: user, payload: [UInt8(i)]) == UInt64(i)) }
    // a payload larger than the first buffer the listing tries (1 MiB)
    let big = 2 << 20
    #expect(try await server.addEvent(for: user, payload: [UInt8](repeating: 9, count: big)) == 6)
    let first = try server.events(for: user, limit: 2)
    #expect(first.map(\.id) == [1, 2] && first[1].payload == [2])
    #expect(abs(first[0].created.timeIntervalSinceNow) < 60)
    // a page ends before a payload that does not fit; the next one takes a larger buffer
    #expect(try server.events(for: user, after: 2).map(\.id) == [3, 4, 5])
    let last = try server.events(for: user, after: 5)
    #expect(last.map(\.id) == [6] && last[0].payload.count == big)
    #expect(try server.events(for: user, after: 6).isEmpty)
    #expect(try server.pendingUsers().map(\.pending) == [6])

    #expect(try await server.deleteEvents(for: user, ids: [2, 4, 77]) == 2)
    var all: [UInt64] = []  // every page, as a caller pages
    while case let page = try server.events(for: user, after: all.last ?? 0), !page.isEmpty {
      all += page.map(\.id)
    }
    #expect(all == [1, 3, 5, 6])
    #expect(try await server.deleteAllEvents(for: user) == 4)
    #expect(try server.pending(for: user) == 0 && server.pendingUsers().isEmpty)
    #expect(try await server.addEvent(for: user, payload: [7]) == 7)
    await server.leave()
    await #expect(throws: HyperdownError.self) { try await server.deleteAllEvents(for: user) }
  }
}
