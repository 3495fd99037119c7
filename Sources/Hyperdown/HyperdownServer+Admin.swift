import CHyperdown
import Foundation

/// An event the server's store holds for a user, as ``HyperdownServer/events(for:after:limit:)``
/// lists it.
public struct PendingEvent: Sendable, Hashable {
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
    let cap = max(1, limit)
    var infos = [hd_event_info_t](repeating: hd_event_info_t(), count: cap)
    var bufferSize = 1 << 20
    while true {
      var cursor = after
      var buffer = [UInt8](repeating: 0, count: bufferSize)
      do {
        return try handle.with { h in
          try buffer.withUnsafeMutableBufferPointer { buf in
            let n = Int(try HyperdownError.check(
              hd_server_list_events(h, user.bytes, &cursor, &infos, cap, buf.baseAddress, buf.count)))
            return (0..<n).map { i in
              let e = infos[i]
              return PendingEvent(
                id: e.seq, created: Date(timeIntervalSince1970: Double(e.created_ms) / 1000),
                payload: e.payload_len > 0 && e.payload != nil
                  ? Array(UnsafeBufferPointer(start: e.payload, count: e.payload_len)) : [])
            }
          }
        }
      } catch let error as HyperdownError where error.code == HyperdownError.bufferTooSmall
                && bufferSize < 1 << 30 {
        bufferSize *= 4  // a payload larger than the buffer: the page's first; try again
      }
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
}
