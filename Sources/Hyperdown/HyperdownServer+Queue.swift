import CHyperdown
import Foundation
import Synchronization

extension HyperdownServer {
  /// Adds an event for `user` with options (a time to live, a deduplication key, a collapse key)
  /// and returns what the add did once it is durable (docs/QUEUES.md).
  ///
  /// A duplicate (``AddResult/isDuplicate``) stored nothing and answers with the first add's
  /// number; a collapse key replaces the user's unsent event with the same key
  /// (``AddResult/replaced``); under ``OverflowPolicy/dropOldest`` older unsent events may make
  /// room (``AddResult/dropped``). The payload is copied before the call suspends.
  /// - Throws: ``HyperdownError``: `ELIMIT` (``HyperdownError/limitReached``) when the user is at
  ///   a limit under ``OverflowPolicy/reject``; `EINVAL` for an empty or oversized payload or a
  ///   key of more than 256 bytes; `ECLOSED`, `ESTORE`...
  public func addEvent(for user: PublicKey, payload: [UInt8], options: AddOptions) async throws -> AddResult {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<AddResult, any Error>) in
      let box = Completion(continuation).retainedPointer()
      do {
        try handle.with { h in
          let rc = options.withCOptions { opts in
            payload.withUnsafeBytes { bytes in
              hd_server_add_event_v2(h, user.bytes, bytes.baseAddress, bytes.count, opts, { ctx, status, result in
                let completion = Completion<AddResult>.take(ctx)!
                if status < 0 || result == nil {
                  completion.continuation.resume(throwing: HyperdownError.last(status < 0 ? status : HD_EIO.rawValue))
                } else {
                  completion.continuation.resume(returning: AddResult(result!.pointee))
                }
              }, box)
            }
          }
          try HyperdownError.check(rc)
        }
      } catch {
        Completion<AddResult>.release(box)  // the callback never fires when the call fails
        continuation.resume(throwing: error)
      }
    }
  }

  /// Adds several events for `user` with the same options, in this order, and returns their
  /// results (in the same order) once all are durable. They share commits, and a key's later add
  /// sees the earlier ones: a repeated deduplication key answers with the first one's number.
  /// - Throws: the first ``HyperdownError`` (events before a failed one may have been added).
  public func addEvents(for user: PublicKey, payloads: [[UInt8]], options: AddOptions) async throws -> [AddResult] {
    if payloads.isEmpty { return [] }
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[AddResult], any Error>) in
      let batch = BatchCompletion<AddResult>(count: payloads.count, continuation)
      do {
        try handle.with { h in
          options.withCOptions { opts in
            for (i, payload) in payloads.enumerated() {
              let slot = BatchSlot(batch: batch, index: i).retainedPointer()
              let rc = payload.withUnsafeBytes { bytes in
                hd_server_add_event_v2(h, user.bytes, bytes.baseAddress, bytes.count, opts, { ctx, status, result in
                  let slot = BatchSlot<AddResult>.take(ctx)!
                  slot.batch.finish(slot.index, status < 0 || result == nil
                    ? .failure(HyperdownError.last(status < 0 ? status : HD_EIO.rawValue))
                    : .success(AddResult(result!.pointee)))
                }, slot)
              }
              if rc < 0 {
                BatchSlot<AddResult>.release(slot)
                let error = HyperdownError.last(rc)
                for j in i..<payloads.count { batch.finish(j, .failure(error)) }
                return
              }
            }
          }
        }
      } catch {
        for j in 0..<payloads.count { batch.finish(j, .failure(error)) }
      }
    }
  }

  /// Adds one payload for every user of `users`, in one transaction with the payload stored once
  /// (fan-out, `hd_server_add_fanout`), and returns each user's outcome, in the order of `users`,
  /// once durable. A user that fails (`ELIMIT` at its limit...) fails alone. `options` applies to
  /// each user: a deduplication or collapse key is each user's own.
  /// - Throws: ``HyperdownError`` when the whole call fails: `EINVAL` (more than 100,000 users,
  ///   an empty or oversized payload, a key too long), `ECLOSED`, `ESTORE`...
  public func addEvents(forUsers users: [PublicKey], payload: [UInt8],
                        options: AddOptions = AddOptions()) async throws -> [Result<AddResult, HyperdownError>] {
    if users.isEmpty { return [] }
    var keys = [UInt8]()
    keys.reserveCapacity(users.count * 32)
    for user in users { keys += user.bytes }
    return try await withCheckedThrowingContinuation {
      (continuation: CheckedContinuation<[Result<AddResult, HyperdownError>], any Error>) in
      let box = Completion(continuation).retainedPointer()
      do {
        try handle.with { h in
          let rc = options.withCOptions { opts in
            payload.withUnsafeBytes { bytes in
              hd_server_add_fanout(h, keys, users.count, bytes.baseAddress, bytes.count, opts, { ctx, status, results, n in
                let completion = Completion<[Result<AddResult, HyperdownError>]>.take(ctx)!
                guard status >= 0, let results else {
                  completion.continuation.resume(throwing: HyperdownError.last(status < 0 ? status : HD_EIO.rawValue))
                  return
                }
                let outcomes = UnsafeBufferPointer(start: results, count: n).map { r -> Result<AddResult, HyperdownError> in
                  r.status < 0
                    ? .failure(HyperdownError(code: r.status, message: String(cString: hd_strerror(r.status))))
                    : .success(AddResult(r.result))
                }
                completion.continuation.resume(returning: outcomes)
              }, box)
            }
          }
          try HyperdownError.check(rc)
        }
      } catch {
        Completion<[Result<AddResult, HyperdownError>]>.release(box)
        continuation.resume(throwing: error)
      }
    }
  }
}
