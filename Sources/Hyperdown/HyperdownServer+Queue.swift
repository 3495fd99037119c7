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
    let started = ContinuousClock.now
    let result = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<AddResult, any Error>) in
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
    metricsReporter?.addedDurable(since: started)
    return result
  }

  /// Adds one payload for every user of `users`, in one transaction with the payload stored once
  /// (fan-out, `hd_server_add_fanout`), and returns each user's outcome, in the order of `users`,
  /// once durable. A user that fails (`ELIMIT` at its limit...) fails alone. `options` applies to
  /// each user: a deduplication or collapse key is each user's own.
  /// - Throws: ``HyperdownError`` when the whole call fails: `EINVAL` (more than 100,000 users,
  ///   an empty or oversized payload, a key too long), `ECLOSED`, `ESTORE`...
  public func addEvents(forUsers users: [PublicKey], payload: [UInt8],
                        options: AddOptions = AddOptions()) async throws -> AddOutcomes {
    if users.isEmpty { return [] }
    var keys = [UInt8]()
    keys.reserveCapacity(users.count * 32)
    for user in users { keys += user.bytes }
    let started = ContinuousClock.now
    let outcomes = try await withCheckedThrowingContinuation {
      (continuation: CheckedContinuation<AddOutcomes, any Error>) in
      let box = Completion(continuation).retainedPointer()
      do {
        try handle.with { h in
          let rc = options.withCOptions { opts in
            payload.withUnsafeBytes { bytes in
              hd_server_add_fanout(h, keys, users.count, bytes.baseAddress, bytes.count, opts, { ctx, status, results, n in
                Completion<AddOutcomes>.take(ctx)!.resume(status: status, results: results, count: n)
              }, box)
            }
          }
          try HyperdownError.check(rc)
        }
      } catch {
        Completion<AddOutcomes>.release(box)
        continuation.resume(throwing: error)
      }
    }
    metricsReporter?.addedDurable(since: started)
    return outcomes
  }
}
