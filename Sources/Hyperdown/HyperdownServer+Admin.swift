import CHyperdown
import Foundation

/// An event the server's store holds for a user, as ``HyperdownServer/events(for:after:limit:)``
/// lists it.
public struct PendingEvent: Sendable, Hashable, PayloadCarrying {
  /// The user's sequence number of the event (from 1, never reused).
  public let id: UInt64
  /// When the server stored the event.
  public let created: Date
  /// What ``HyperdownServer/addEvent(for:payload:)-(PublicKey,[UInt8])`` stored.
  public let payload: [UInt8]
}

extension HyperdownServer {
  /// A page of the events the store holds for `user`: at most `limit` of those numbered above
  /// `after`, in order. Page on with the last one's ``PendingEvent/id`` until a page comes back
  /// empty. A short blocking read (docs/OPERATIONS.md "Admin").
  public func events(for user: PublicKey, after: UInt64 = 0, limit: Int = 256) throws -> [PendingEvent] {
    try listPage(after: after, limit: limit, empty: hd_event_info_t()) { h, cursor, entries, cap, buf, len in
      hd_server_list_events(h, user.bytes, cursor, entries, cap, buf, len)
    } convert: { e in
      PendingEvent(id: e.seq, created: Date(unixMilliseconds: e.created_ms),
                   payload: copiedBytes(e.payload, e.payload_len))
    }
  }

  /// Deletes the events `ids` of `user` and returns how many of them the store still held, once
  /// that is durable. The user's client is not told: an event it received already is still
  /// handled there, and its report is answered as done without
  /// ``ServerConfiguration/onClientConsumedEvents``; one not yet sent is never sent.
  /// - Throws: ``HyperdownError``: `ECLOSED`, `EIO`, `ENOSPC`...
  @discardableResult
  public func deleteEvents(for user: PublicKey, ids: [UInt64]) async throws -> UInt64 {
    try await counting { h, box in
      hd_server_delete_events(h, user.bytes, ids, ids.count, { ctx, status, count in
        Completion<UInt64>.take(ctx)!.resume(status: status, returning: count)
      }, box)
    }
  }

  /// Deletes every event the store holds for `user` (the user or its device was removed) and
  /// returns how many, once that is durable. Its numbering goes on. See
  /// ``deleteEvents(for:ids:)`` for what the user's client sees.
  @discardableResult
  public func deleteAllEvents(for user: PublicKey) async throws -> UInt64 {
    try await counting { h, box in
      hd_server_delete_user(h, user.bytes, { ctx, status, count in
        Completion<UInt64>.take(ctx)!.resume(status: status, returning: count)
      }, box)
    }
  }

  /// Runs `call`, a core call that completes through an `hd_count_cb` with a `Completion<UInt64>`
  /// as its `cb_data`, and returns the count.
  func counting(
    _ call: (OpaquePointer, UnsafeMutableRawPointer) -> Int32
  ) async throws -> UInt64 {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<UInt64, any Error>) in
      let box = Completion(continuation).retainedPointer()
      do {
        try handle.with { h in try HyperdownError.check(call(h, box)) }
      } catch {
        Completion<UInt64>.release(box)
        continuation.resume(throwing: error)
      }
    }
  }

  /// A page of a listing the core copies into a buffer (`hd_server_list_events`,
  /// `hd_server_list_dead_letters`): at most `limit` entries numbered above `after`, each
  /// converted while the buffer lives. The buffer starts at 1 MiB and grows when the page's
  /// first payload does not fit.
  func listPage<Entry, Item>(
    after: UInt64, limit: Int, empty: Entry,
    _ list: (OpaquePointer, UnsafeMutablePointer<UInt64>, UnsafeMutablePointer<Entry>, Int,
             UnsafeMutablePointer<UInt8>, Int) -> Int32,
    convert: (Entry) -> Item
  ) throws -> [Item] {
    let cap = max(1, limit)
    var entries = [Entry](repeating: empty, count: cap)
    var bufferSize = 1 << 20
    while true {
      var cursor = after
      var buffer = [UInt8](repeating: 0, count: bufferSize)
      do {
        return try handle.with { h in
          try buffer.withUnsafeMutableBufferPointer { buf in
            try entries.withUnsafeMutableBufferPointer { entries in
              let n = Int(try HyperdownError.check(
                list(h, &cursor, entries.baseAddress!, cap, buf.baseAddress!, buf.count)))
              return entries.prefix(n).map(convert)
            }
          }
        }
      } catch let error as HyperdownError where error.code == HyperdownError.bufferTooSmall
                && bufferSize < 1 << 30 {
        bufferSize *= 4  // a payload larger than the buffer: the page's first; try again
      }
    }
  }

  /// Every user of a paged user listing (`hd_server_pending_users`,
  /// `hd_server_dead_letter_users`) with its count, a page of 256 at a time.
  func allUsers(
    _ list: (OpaquePointer, UnsafeMutablePointer<UInt64>, UnsafeMutablePointer<UInt8>,
             UnsafeMutablePointer<UInt64>, Int) -> Int32
  ) throws -> [(PublicKey, UInt64)] {
    let page = 256
    var cursor: UInt64 = 0
    var result: [(PublicKey, UInt64)] = []
    var keys = [UInt8](repeating: 0, count: page * 32)
    var counts = [UInt64](repeating: 0, count: page)
    while true {
      let n = Int(try handle.with { h in try HyperdownError.check(list(h, &cursor, &keys, &counts, page)) })
      for i in 0..<n {
        result.append((PublicKey(trusted: Array(keys[i * 32..<(i + 1) * 32])), counts[i]))
      }
      if n < page { return result }
    }
  }
}
