import CHyperdown
import Foundation

extension HyperdownServer {
  /// A page of `user`'s dead letters: at most `limit` of those numbered above `after`, in order.
  /// Page on with the last one's ``DeadLetter/id`` until a page comes back empty (a page may end
  /// early before a large payload). A short blocking read (docs/QUEUES.md "Poison events").
  public func deadLetters(for user: PublicKey, after: UInt64 = 0, limit: Int = 256) throws -> [DeadLetter] {
    try listPage(after: after, limit: limit, empty: hd_dead_letter_t()) { h, cursor, entries, cap, buf, len in
      hd_server_list_dead_letters(h, user.bytes, cursor, entries, cap, buf, len)
    } convert: { DeadLetter($0) }
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
    try allUsers(hd_server_dead_letter_users).map { (user: $0.0, count: $0.1) }
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
