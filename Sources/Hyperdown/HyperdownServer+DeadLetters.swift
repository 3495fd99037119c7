import CHyperdown
import Foundation

extension HyperdownServer {
  /// A page of `user`'s dead letters: at most `limit` of those numbered above `after`, in order.
  /// Page on with the last one's ``DeadLetter/id`` until a page comes back empty (a page may end
  /// early before a large payload). A short blocking read (docs/QUEUES.md "Poison events").
  public func deadLetters(for user: PublicKey, after: UInt64 = 0, limit: Int = 256) throws -> [DeadLetter] {
    let cap = max(1, limit)
    var entries = [hd_dead_letter_t](repeating: hd_dead_letter_t(), count: cap)
    var bufferSize = 1 << 20
    while true {
      var cursor = after
      var buffer = [UInt8](repeating: 0, count: bufferSize)
      do {
        return try handle.with { h in
          try buffer.withUnsafeMutableBufferPointer { buf in
            let n = Int(try HyperdownError.check(
              hd_server_list_dead_letters(h, user.bytes, &cursor, &entries, cap, buf.baseAddress, buf.count)))
            return (0..<n).map { DeadLetter(entries[$0]) }
          }
        }
      } catch let error as HyperdownError where error.code == HyperdownError.bufferTooSmall
                && bufferSize < 1 << 30 {
        bufferSize *= 4  // a payload larger than the buffer: the page's first; try again
      }
    }
  }

  /// How many dead letters the store holds for `user`, or for every user when `user` is `nil`.
  /// A short blocking read.
  public func deadLetterCount(for user: PublicKey? = nil) throws -> UInt64 {
    var n: UInt64 = 0
    try handle.with { h in
      if let user {
        try HyperdownError.check(hd_server_dead_letter_count(h, user.bytes, &n))
      } else {
        try HyperdownError.check(hd_server_dead_letter_count(h, nil, &n))
      }
    }
    return n
  }

  /// Every user holding dead letters, with how many. Reads the store a page at a time.
  public func deadLetterUsers() throws -> [(user: PublicKey, count: UInt64)] {
    let page = 256
    var cursor: UInt64 = 0
    var result: [(user: PublicKey, count: UInt64)] = []
    var keys = [UInt8](repeating: 0, count: page * 32)
    var counts = [UInt64](repeating: 0, count: page)
    while true {
      let n = Int(try handle.with { h in
        try HyperdownError.check(hd_server_dead_letter_users(h, &cursor, &keys, &counts, page))
      })
      for i in 0..<n {
        result.append((PublicKey(trusted: Array(keys[i * 32..<(i + 1) * 32])), counts[i]))
      }
      if n < page { return result }
    }
  }

  /// Gives `user`'s dead letters `ids` (`nil`: all of them) back to the user: each comes back as a
  /// new event with the user's next number and its attempts start again; the client gets a
  /// ``Notice/Kind-swift.enum/requeued`` notice. Returns how many, once durable.
  @discardableResult
  public func requeueDeadLetters(for user: PublicKey, ids: [UInt64]? = nil) async throws -> UInt64 {
    if let ids, ids.isEmpty { return 0 }
    return try await counting { h, box in
      withOptionalArray(ids) { seqs, n in
        hd_server_requeue_dead_letters(h, user.bytes, seqs, n, { ctx, status, count in
          Completion<UInt64>.take(ctx)!.resume(status: status, returning: count)
        }, box)
      }
    }
  }

  /// Deletes `user`'s dead letters `ids` (`nil`: all of them) for good and returns how many, once
  /// durable.
  @discardableResult
  public func deleteDeadLetters(for user: PublicKey, ids: [UInt64]? = nil) async throws -> UInt64 {
    if let ids, ids.isEmpty { return 0 }
    return try await counting { h, box in
      withOptionalArray(ids) { seqs, n in
        hd_server_delete_dead_letters(h, user.bytes, seqs, n, { ctx, status, count in
          Completion<UInt64>.take(ctx)!.resume(status: status, returning: count)
        }, box)
      }
    }
  }
}

/// Runs `body` with the array's elements and count, or with NULL and 0 for `nil` (the core's
/// "all of them").
func withOptionalArray<R>(_ array: [UInt64]?, _ body: (UnsafePointer<UInt64>?, Int) -> R) -> R {
  guard let array else { return body(nil, 0) }
  return array.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
}
