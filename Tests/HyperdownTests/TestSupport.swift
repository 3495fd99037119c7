import Foundation
import Synchronization
import Testing

@testable import Hyperdown

/// A temporary folder, removed by `remove()` (call it in a defer).
struct TempDir {
  let path: String
  init() throws {
    path = FileManager.default.temporaryDirectory
      .appendingPathComponent("hd-swift-\(UUID().uuidString.prefix(12))").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }
  func sub(_ name: String) -> String { path + "/" + name }
  func remove() { try? FileManager.default.removeItem(atPath: path) }
}

struct Timeout: Error, CustomStringConvertible {
  let description: String
}

/// Polls `condition` every 5 ms; throws after `timeout`.
func eventually(_ what: String, timeout: Duration = .seconds(20),
                _ condition: () throws -> Bool) async throws {
  let deadline = ContinuousClock.now + timeout
  while try !condition() {
    if ContinuousClock.now >= deadline { throw Timeout(description: "timed out: \(what)") }
    try await Task.sleep(for: .milliseconds(5))
  }
}

/// Counts keyed occurrences from any thread.
final class Counter: Sendable {
  private let counts = Mutex<[String: Int]>([:])
  func add(_ key: String) { counts.withLock { $0[key, default: 0] += 1 } }
  subscript(_ key: String) -> Int { counts.withLock { $0[key] ?? 0 } }
  var all: [String: Int] { counts.withLock { $0 } }
}

enum Keys {
  static let server = try! KeyPair(
    scalarHex: "808a6e175b246bc93d4adaada45d49c031296efb36da7fdf3c5128d3eb46fd5e",
    publicKeyHex: "9b0e5bf749a3fd55ca5d08b225962bae6c0c826d9822a79e36b1871b50da82fe")
  static let user1 = try! KeyPair(
    scalarHex: "684e14316d8f379829ee5d1b883dffd2cf123f2987b8658353ae740ed8758565",
    publicKeyHex: "09f9cb2e6097bab4936696c7fb2e80c52ecc7e7a0dfe67274d93198e785c1558")
  static let user2 = try! KeyPair(
    scalarHex: "b0cf93c3f3589ea5e7a09b752e7b6492e6e331661da8fe88854d692aec59114f",
    publicKeyHex: "4cce6d17f4000b19b9f752fb7c185a56cff16d86f0cda8673e5ab6baed9e7171")
}

struct Prize: Codable, Equatable, Sendable {
  var prize: Int
  var game: String
  var note: String
}
