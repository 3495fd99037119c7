import Dispatch
import Foundation
import Hyperdown
import ServiceLifecycle
import Synchronization

/// The `--allow` file of `hyperdown serve`: the users that may connect, one public key in hex per
/// line; `#` starts a comment, blank lines are skipped. Read again on SIGHUP.
final class AllowList: Sendable {
  let path: String
  private let keys: Mutex<Set<PublicKey>>

  init(path: String) throws {
    self.path = path
    keys = Mutex(try Self.read(path))
  }

  /// The keys the file lists. Throws a ``CLIError`` naming the file and line of a bad one.
  static func read(_ path: String) throws -> Set<PublicKey> {
    let text: String
    do {
      text = try String(contentsOfFile: path, encoding: .utf8)
    } catch {
      throw CLIError("cannot read the allow-list \(path): \(error.localizedDescription)")
    }
    var keys = Set<PublicKey>()
    for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let line = (raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        .trimmingCharacters(in: .whitespacesAndNewlines)
      if line.isEmpty { continue }
      do {
        keys.insert(try PublicKey(hex: line))
      } catch {
        throw CLIError("\(path):\(i + 1): not a public key (64 hex digits): \(line)")
      }
    }
    return keys
  }

  var count: Int { keys.withLock { $0.count } }

  func contains(_ key: PublicKey) -> Bool { keys.withLock { $0.contains(key) } }

  /// Reads the file again and returns the keys it no longer lists. On an error the list in force
  /// stays as it was.
  func reload() throws -> (count: Int, removed: [PublicKey]) {
    let fresh = try Self.read(path)
    let removed = keys.withLock { k -> Set<PublicKey> in
      defer { k = fresh }
      return k.subtracting(fresh)
    }
    return (fresh.count, Array(removed))
  }
}

/// Reloads the allow-list on SIGHUP and closes the connections of the users it dropped; prints
/// one JSON line per reload ({"allowList": ..., "keys": n, "disconnected": n}). Stops on graceful
/// shutdown.
struct AllowListService: Service {
  let list: AllowList
  let server: HyperdownServer

  func run() async throws {
    signal(SIGHUP, SIG_IGN)  // delivered to the dispatch source instead
    let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
    let list = self.list, server = self.server
    source.setEventHandler {
      do {
        let (count, removed) = try list.reload()
        var closed = 0
        for key in removed { closed += (try? server.disconnect(user: key)) ?? 0 }
        Output.line("{\"allowList\": \(JSONText.quote(list.path)), \"keys\": \(count), \"removed\": \(removed.count), \"disconnected\": \(closed)}")
      } catch {
        Output.error("\(error) (the allow-list in force is unchanged)")
      }
    }
    source.resume()
    try? await gracefulShutdown()
    source.cancel()
  }
}
