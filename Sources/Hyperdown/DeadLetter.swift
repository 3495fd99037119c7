import CHyperdown
import Foundation

/// An event its user's client failed to handle (after its attempts, or rejected), as the server
/// holds it (`hd_dead_letter_t`; docs/QUEUES.md "Poison events"). Listed by
/// ``HyperdownServer/deadLetters(for:after:limit:)``, reported to
/// ``ServerConfiguration/onDeadLetter``, given back by
/// ``HyperdownServer/requeueDeadLetters(for:ids:)``.
public struct DeadLetter: Sendable, Hashable, PayloadCarrying {
  /// The number it had in the user's queue.
  public let id: UInt64
  /// When it was added.
  public let created: Date
  /// What the add stored.
  public let payload: [UInt8]
  /// How many times the client's handler got it.
  public let attempts: UInt32
  /// The handler's reason (``Event/fail(reason:)``, ``Event/reject(reason:)``).
  public let reason: String
  /// When it became a dead letter.
  public let died: Date

  /// A dead letter with these fields (for tests and adapters).
  public init(id: UInt64, created: Date, payload: [UInt8], attempts: UInt32, reason: String, died: Date) {
    self.id = id
    self.created = created
    self.payload = payload
    self.attempts = attempts
    self.reason = reason
    self.died = died
  }

  init(_ d: hd_dead_letter_t) {
    id = d.seq
    created = Date(unixMilliseconds: d.created_ms)
    payload = copiedBytes(d.payload, d.payload_len)
    attempts = d.attempts
    reason = copiedText(d.reason, d.reason_len)
    died = Date(unixMilliseconds: d.dead_ms)
  }
}
