import ArgumentParser
import Foundation
import Hyperdown
import Logging
import Synchronization

struct Demo: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "The original README's example, narrated step by step, in a temporary folder.")

  @Option(help: "Log level of the core on stderr.") var logLevel = "error"
  @Flag(help: "Keep the temporary folder.") var keep = false

  func run() async throws {
    try await reportingErrors {
      let logger = try CLILogging.logger("hyperdown.demo", level: logLevel)
      let root = FileManager.default.temporaryDirectory
        .appendingPathComponent("hyperdown-demo-\(UUID().uuidString.prefix(8))").path
      try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true,
                                              attributes: [.posixPermissions: 0o700])
      defer {
        if keep { Output.line("(folder kept: \(root))") } else { try? FileManager.default.removeItem(atPath: root) }
      }
      try await OriginalExample(root: root, logger: logger).run()
    }
  }
}

/// The event of the original example.
struct Prize: Codable, Sendable {
  var prize: Int
  var game: String
  var note: String
}

/// The original example, narrated. Every wait is bounded.
struct OriginalExample {
  let root: String
  let logger: Logger

  // The original's three key pairs, keypear's { scalar, publicKey } form.
  static let server = ("808a6e175b246bc93d4adaada45d49c031296efb36da7fdf3c5128d3eb46fd5e",
                       "9b0e5bf749a3fd55ca5d08b225962bae6c0c826d9822a79e36b1871b50da82fe")
  static let user1 = ("684e14316d8f379829ee5d1b883dffd2cf123f2987b8658353ae740ed8758565",
                      "09f9cb2e6097bab4936696c7fb2e80c52ecc7e7a0dfe67274d93198e785c1558")
  static let user2 = ("b0cf93c3f3589ea5e7a09b752e7b6492e6e331661da8fe88854d692aec59114f",
                      "4cce6d17f4000b19b9f752fb7c185a56cff16d86f0cda8673e5ab6baed9e7171")

  /// What happened, to check at the end: (who, event id) -> how many times.
  final class Tally: Sendable {
    let handled = Mutex<[String: Int]>([:])
    let consumed = Mutex<[String: Int]>([:])
    let slowStarted = Atomic<Bool>(false)
    let gateOpen = Atomic<Bool>(false)
    func count(_ m: borrowing Mutex<[String: Int]>, _ key: String) -> Int { m.withLock { $0[key] ?? 0 } }
  }

  func say(_ line: String) { Output.line(line) }

  static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

  func run() async throws {
    let tally = Tally()
    let kp0 = try KeyPair(scalarHex: Self.server.0, publicKeyHex: Self.server.1)
    let kp1 = try KeyPair(scalarHex: Self.user1.0, publicKeyHex: Self.user1.1)
    let kp2 = try KeyPair(scalarHex: Self.user2.0, publicKeyHex: Self.user2.1)
    let names = [kp1.identity: "user1", kp2.identity: "user2"]
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys

    say("Hyperdown demo: the original README's example, step by step.")
    say("Stores: embedded SQLite (synchronous=FULL) under \(root)")
    say("")

    var serverConfig = ServerConfiguration(keyPair: kp0, folderName: "topic",
                                           dataDirectory: root + "/server", listen: "127.0.0.1:0",
                                           logger: logger)
    serverConfig.onClientConsumedEvents = { user, events in
      let name = names[user] ?? user.hex
      for event in events {
        tally.consumed.withLock { $0["\(name)#\(event.id)", default: 0] += 1 }
        Output.line("  server: client \(name) used the event \(event.id) \(Self.text(event.payload))")
      }
      return true  // the original's cb(true): forget them, confirm to the client
    }
    say("1. The server starts with the original's key pair kp0 (public key \(kp0.identity.hex.prefix(16))…),")
    say("   topic \"topic\".")
    var server = try HyperdownServer(configuration: serverConfig)
    let port = server.port
    let address = "127.0.0.1:\(port)"
    say("   It listens on \(address).")

    func clientConfig(_ kp: KeyPair, _ name: String) -> ClientConfiguration {
      var c = ClientConfiguration(keyPair: kp, serverPublicKey: kp0.identity, folderName: "topic",
                                  dataDirectory: root + "/" + name, server: address, logger: logger)
      c.reconnectMax = .milliseconds(500)
      c.eventHandler = { event in
        tally.handled.withLock { $0["\(name)#\(event.id)", default: 0] += 1 }
        let prize = try event.decodePayload(Prize.self)
        Output.line("  \(name): event from server \(event.id) \(Self.text(event.payload))")
        if prize.note.contains("server leaves") {
          tally.slowStarted.store(true, ordering: .relaxed)
          let deadline = ContinuousClock.now + .seconds(30)
          while !tally.gateOpen.load(ordering: .relaxed) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
          }
          Output.line("  \(name): done with event \(event.id) (the server is away: the client keeps it consumed)")
        }
        return nil  // the original's cb(id, true)
      }
      return c
    }

    say("")
    say("2. user1 (kp1, \(kp1.identity.hex.prefix(16))…) comes online; the server adds an event for it.")
    let client1 = try HyperdownClient(configuration: clientConfig(kp1, "user1"))
    try await waitUntil("user1 connects") { try client1.stats().isConnected }
    let e1 = try await server.addEvent(for: kp1.identity, payload: Array(try encoder.encode(
      Prize(prize: 500, game: "boxing", note: "user1 is online"))))
    say("  server: event \(e1) for user1 is durable")
    try await waitUntil("user1's event 1 is consumed") { tally.count(tally.consumed, "user1#1") == 1 }

    say("")
    say("3. user2 (kp2, \(kp2.identity.hex.prefix(16))…) is offline; the server keeps its event.")
    let e2 = try await server.addEvent(for: kp2.identity, payload: Array(try encoder.encode(
      Prize(prize: -500, game: "boxing", note: "user2 is offline"))))
    say("  server: event \(e2) for user2 is durable; pending for user2: \(try server.pending(for: kp2.identity))")

    say("")
    say("4. user2 comes back later and gets what it missed.")
    let client2 = try HyperdownClient(configuration: clientConfig(kp2, "user2"))
    try await waitUntil("user2's event 1 is consumed") { tally.count(tally.consumed, "user2#1") == 1 }

    say("")
    say("5. Another event for user1, who is still online.")
    let e3 = try await server.addEvent(for: kp1.identity, payload: Array(try encoder.encode(
      Prize(prize: 4500, game: "boxing2", note: "user1 is still online"))))
    say("  server: event \(e3) for user1 is durable")
    try await waitUntil("user1's event 2 is consumed") { tally.count(tally.consumed, "user1#2") == 1 }

    say("")
    say("6. The server leaves while user1 is still handling an event (the original's server.leave()).")
    let e4 = try await server.addEvent(for: kp1.identity, payload: Array(try encoder.encode(
      Prize(prize: 100, game: "boxing3", note: "the server leaves while user1 handles this"))))
    say("  server: event \(e4) for user1 is durable")
    try await waitUntil("user1 starts on event 3") { tally.slowStarted.load(ordering: .relaxed) }
    await server.leave()
    say("  server: left (goodbye to every client, store closed)")
    tally.gateOpen.store(true, ordering: .relaxed)
    try await waitUntil("user1 consumes event 3 offline") { try client1.stats().consumed == 1 }
    say("  user1: event 3 consumed while the server is away; it will report it when the server is back")

    say("")
    say("7. The server comes back on the same folder and address, and recovers what user1 consumed.")
    serverConfig.listen = address
    server = try HyperdownServer(configuration: serverConfig)
    try await waitUntil("the server recovers user1's event 3") { tally.count(tally.consumed, "user1#3") == 1 }
    try await waitUntil("every event confirmed") {
      try server.pending(for: kp1.identity) == 0 && server.pending(for: kp2.identity) == 0
        && client1.stats().consumed == 0 && client2.stats().consumed == 0
    }

    say("")
    let expected = ["user1#1", "user1#2", "user1#3", "user2#1"]
    let handled = tally.handled.withLock { $0 }
    let consumed = tally.consumed.withLock { $0 }
    let onceEach = expected.allSatisfy { handled[$0] == 1 && consumed[$0] == 1 }
      && handled.count == expected.count && consumed.count == expected.count
    say("8. Summary: \(expected.count) events; each handled once by its client and reported once to the")
    say("   server: \(onceEach ? "yes" : "NO"); nothing pending on either side.")
    await client1.close()
    await client2.close()
    await server.leave()
    guard onceEach else { throw CLIError("the demo saw an event handled or reported more than once: \(handled) \(consumed)") }
  }
}
