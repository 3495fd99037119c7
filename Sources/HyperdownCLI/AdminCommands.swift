import ArgumentParser
import Foundation
import Hyperdown

extension Admin {
  /// Events per page of an `events` request (a page's payloads fit in one answer line).
  static let eventsPage = 256

  static func delete(_ server: HyperdownServer, user: PublicKey, ids: [UInt64]?) async throws -> UInt64 {
    if let ids { return try await server.deleteEvents(for: user, ids: ids) }
    return try await server.deleteAllEvents(for: user)
  }

  /// Runs `online` through the admin socket of the server running on `dataDirectory`, or, when
  /// none has the folder open, `offline` on its store opened for the call (a server listening
  /// on 127.0.0.1 on a free port under a throwaway key, left at once): the same calls either way.
  static func onStore<T>(_ dataDirectory: String, online: () throws -> T,
                         offline: (HyperdownServer) async throws -> T) async throws -> T {
    let marker = dataDirectory + "/hyperdown.store"
    if !FileManager.default.fileExists(atPath: marker) {
      // a server that has not committed yet has no marker either: ask it
      do { return try online() } catch let error as CLIError where error.description.contains("no server is running") {
        throw CLIError("no server store in \(dataDirectory), and no server is running on it")
      }
    }
    let server: HyperdownServer
    do {
      server = try HyperdownServer(configuration: ServerConfiguration(
        keyPair: try KeyPair.generate(), folderName: "hyperdown-admin", dataDirectory: dataDirectory))
    } catch let error as HyperdownError where error.code == HyperdownError.busy {
      return try online()  // a server has the folder open: it does it
    }
    do {
      let result = try await offline(server)
      await server.leave()
      return result
    } catch {
      await server.leave()
      throw error
    }
  }
}

struct Pending: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Print a user's pending events, one JSON line each: {\"id\", \"createdMs\", \"payload\"}.",
    discussion: """
      In order, read a page at a time. Through the admin socket of the server running on the \
      folder (`hyperdown serve`); from the folder itself when no server runs. "payload" is the \
      event's JSON ("payloadBase64" when it is not text). docs/OPERATIONS.md "Admin".
      """)

  @Option(help: "The server's store folder.") var data: String
  @Argument(help: "The user's public key in hex.") var userHex: String

  func run() async throws {
    try await reportingErrors {
      let user = try hex("USER_HEX") { try PublicKey(hex: userHex) }
      var after: UInt64 = 0
      while true {
        let page: [Admin.Event] = try await Admin.onStore(data, online: {
          let response = try Admin.call(dataDirectory: data, Admin.Request(op: "events", user: user.hex, after: after))
          guard response.ok, let events = response.events else {
            throw CLIError(response.error ?? "the server refused the request")
          }
          return events
        }, offline: { server in
          try server.events(for: user, after: after, limit: Admin.eventsPage).map(Admin.Event.init)
        })
        for event in page { Output.line(Self.line(event)) }
        guard let last = page.last else { return }
        after = last.id
      }
    }
  }

  static func line(_ event: Admin.Event) -> String {
    let payload = JSONText.dataField(Array(event.payload))
    let key = payload.key == "data" ? "payload" : "payloadBase64"
    return "{\"id\": \(event.id), \"createdMs\": \(event.createdMs), \"\(key)\": \(payload.value)}"
  }
}

struct Purge: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Delete a user's events, the ones named or all of them; print {\"user\", \"deleted\": n} once durable.",
    discussion: """
      For a user or a device that was removed, or events sent by mistake. The user's client is \
      not told: what it received already it still handles, and the server answers its reports; \
      numbers are never given again. With --dead-letters, the user's dead letters instead (for \
      good). Through the admin socket of the server running on the folder, or from the folder \
      itself when no server runs. docs/OPERATIONS.md "Admin".
      """)

  @Option(help: "The server's store folder.") var data: String
  @Flag(help: "Delete the user's dead letters (those named, or all) instead of its pending events.")
  var deadLetters = false
  @Argument(help: "The user's public key in hex.") var userHex: String
  @Argument(help: "The events' ids (none: every event of the user).") var ids: [UInt64] = []

  func run() async throws {
    try await reportingErrors {
      let user = try hex("USER_HEX") { try PublicKey(hex: userHex) }
      let named = ids.isEmpty ? nil : ids
      let deleted = try await Admin.onStore(data, online: {
        let op = deadLetters ? "deleteDeadLetters" : "delete"
        let response = try Admin.call(dataDirectory: data, Admin.Request(op: op, user: user.hex, ids: named))
        guard response.ok, let n = response.deleted else {
          throw CLIError(response.error ?? "the server refused the delete")
        }
        return n
      }, offline: { server in
        if deadLetters { return try await server.deleteDeadLetters(for: user, ids: named) }
        return try await Admin.delete(server, user: user, ids: named)
      })
      Output.line("{\"user\": \"\(user.hex)\", \"deleted\": \(deleted)}")
    }
  }
}

extension Admin.Event {
  init(_ event: PendingEvent) {
    self.init(id: event.id, createdMs: Int64((event.created.timeIntervalSince1970 * 1000).rounded()),
              payload: Data(event.payload))
  }
}
