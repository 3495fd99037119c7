import ArgumentParser
import Foundation
import Hyperdown

struct DeadLetters: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "dead-letters",
    abstract: "Print dead letters, one JSON line each: {\"user\", \"id\", \"payload\", \"attempts\", \"reason\", \"createdMs\", \"deadMs\"}.",
    discussion: """
      The events the users' clients failed (after their attempts, or rejected): a user's, or \
      every user's without USER_HEX, in order, read a page at a time. Through the admin socket \
      of the server running on the folder, or from the folder itself when no server runs. \
      "payload" is the event's JSON ("payloadBase64" when it is not text). `hyperdown requeue` \
      gives them back, `hyperdown purge --dead-letters` deletes them. docs/QUEUES.md.
      """)

  @Option(help: "The server's store folder.") var data: String
  @Argument(help: "The user's public key in hex (default: every user).") var userHex: String?

  func run() async throws {
    try await reportingErrors {
      let named = try userHex.map { text in try hex("USER_HEX") { try PublicKey(hex: text) } }
      // one path or the other for the whole listing (a store opened once when no server runs)
      try await Admin.onStore(data, online: {
        let users = try named.map { [$0] } ?? Self.call(data, Admin.Request(op: "deadLetterUsers")) {
          try $0.deadLetterUsers.map { list in try list.map { try PublicKey(hex: $0.user) } }
        }
        for user in users {
          try Self.printPages(user) { after in
            try Self.call(data, Admin.Request(op: "deadLetters", user: user.hex, after: after)) { $0.deadLetters }
          }
        }
      }, offline: { server in
        for user in try named.map({ [$0] }) ?? server.deadLetterUsers().map(\.user) {
          try Self.printPages(user) { after in
            try server.deadLetters(for: user, after: after, limit: Admin.eventsPage).map(Admin.DeadLetter.init)
          }
        }
      })
    }
  }

  /// An admin call whose answer must carry what `field` reads.
  static func call<T>(_ data: String, _ request: Admin.Request, _ field: (Admin.Response) throws -> T?) throws -> T {
    let response = try Admin.call(dataDirectory: data, request)
    guard response.ok, let value = try field(response) else {
      throw CLIError(response.error ?? "the server refused the request")
    }
    return value
  }

  /// Prints the user's dead letters a page at a time until a page comes back empty.
  static func printPages(_ user: PublicKey, _ page: (UInt64) throws -> [Admin.DeadLetter]) throws {
    var after: UInt64 = 0
    while true {
      let dead = try page(after)
      for d in dead { Output.line(line(user: user, d)) }
      guard let last = dead.last else { return }
      after = last.id
    }
  }

  static func line(user: PublicKey, _ dead: Admin.DeadLetter) -> String {
    let payload = JSONText.dataField(Array(dead.payload))
    let key = payload.key == "data" ? "payload" : "payloadBase64"
    return "{\"user\": \"\(user.hex)\", \"id\": \(dead.id), \"\(key)\": \(payload.value), "
      + "\"attempts\": \(dead.attempts), \"reason\": \(JSONText.quote(dead.reason)), "
      + "\"createdMs\": \(dead.createdMs), \"deadMs\": \(dead.deadMs)}"
  }
}

struct Requeue: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Give a user's dead letters back to it; print {\"user\", \"requeued\": n} once durable.",
    discussion: """
      Each one named (all of the user's without ids) comes back as a new event with the user's \
      next number, its attempts starting again, and the client gets a notice \
      {"notice": "requeued", "firstSeq": <the dead letter's id>, "lastSeq": <the new id>}. \
      Through the admin socket of the server running on the folder, or from the folder itself \
      when no server runs. docs/QUEUES.md.
      """)

  @Option(help: "The server's store folder.") var data: String
  @Argument(help: "The user's public key in hex.") var userHex: String
  @Argument(help: "The dead letters' ids (none: every one of the user's).") var ids: [UInt64] = []

  func run() async throws {
    try await reportingErrors {
      let user = try hex("USER_HEX") { try PublicKey(hex: userHex) }
      let named = ids.isEmpty ? nil : ids
      let requeued = try await Admin.onStore(data, online: {
        let response = try Admin.call(dataDirectory: data, Admin.Request(op: "requeue", user: user.hex, ids: named))
        guard response.ok, let n = response.requeued else {
          throw CLIError(response.error ?? "the server refused the requeue")
        }
        return n
      }, offline: { server in
        try await server.requeueDeadLetters(for: user, ids: named)
      })
      Output.line("{\"user\": \"\(user.hex)\", \"requeued\": \(requeued)}")
    }
  }
}

extension Admin.DeadLetter {
  init(_ dead: Hyperdown.DeadLetter) {
    self.init(id: dead.id, createdMs: Int64((dead.created.timeIntervalSince1970 * 1000).rounded()),
              payload: Data(dead.payload), attempts: dead.attempts, reason: dead.reason,
              deadMs: Int64((dead.died.timeIntervalSince1970 * 1000).rounded()))
  }
}
