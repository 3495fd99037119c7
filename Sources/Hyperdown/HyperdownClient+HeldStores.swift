import CHyperdown

/// What a client holds for a server store other than its server's current one: the server's store
/// was replaced (another store id), and these events of the old one wait (docs/OPERATIONS.md,
/// "Events held for another server store").
public struct HeldStore: Sendable, Equatable {
  /// The store's id (16 bytes), as ``HyperdownClient/purgeStore(_:)`` takes it.
  public let storeID: [UInt8]
  /// Its events still to handle (handed out before the current store's).
  public let unhandled: UInt64
  /// Its events handled whose consumption waits to be reported to that store.
  public let consumed: UInt64
}

extension HyperdownClient {
  /// The server stores other than the current one that this client holds events for, the one
  /// seen first first. A short blocking read.
  public func heldStores() throws -> [HeldStore] {
    try handle.with { h in
      var cap = 4
      while true {
        var ids = [UInt8](repeating: 0, count: cap * Int(HD_STORE_ID_BYTES))
        var unhandled = [UInt64](repeating: 0, count: cap)
        var consumed = [UInt64](repeating: 0, count: cap)
        let n = Int(try HyperdownError.check(hd_client_held_stores(h, &ids, &unhandled, &consumed, cap)))
        if n > cap {  // more came meanwhile: read them all
          cap = n
          continue
        }
        let size = Int(HD_STORE_ID_BYTES)
        return (0..<n).map { i in
          HeldStore(storeID: Array(ids[i * size..<(i + 1) * size]), unhandled: unhandled[i],
                    consumed: consumed[i])
        }
      }
    }
  }

  /// Drops every event held for the server store `storeID` (from ``heldStores()``) and forgets
  /// that store; returns once that is durable. Its unhandled events are not handled, its
  /// consumptions never reported; should a server with that store come back, it is taken for a
  /// store never seen and its pending events come again.
  /// - Throws: ``HyperdownError``: `ENOTFOUND` (a store this client never saw, or purged),
  ///   `EBUSY` (the current server's store), `EINVAL` (not 16 bytes), `ECLOSED`...
  public func purgeStore(_ storeID: [UInt8]) async throws {
    guard storeID.count == Int(HD_STORE_ID_BYTES) else {
      throw HyperdownError(code: HyperdownError.invalidArgument,
                           message: "a store id has \(HD_STORE_ID_BYTES) bytes, not \(storeID.count)")
    }
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
      let box = Completion(continuation).retainedPointer()
      do {
        try handle.with { h in
          try HyperdownError.check(hd_client_purge_store(h, storeID, { ctx, status in
            Completion<Void>.take(ctx)!.resume(status: status, returning: ())
          }, box))
        }
      } catch {
        Completion<Void>.release(box)
        continuation.resume(throwing: error)
      }
    }
  }
}
