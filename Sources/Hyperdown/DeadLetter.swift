import CHyperdown
import Foundation

/// An event its user's client failed to handle (after its attempts, or rejected), as the server
/// holds it (`hd_dead_letter_t`; docs/QUEUES.md "Poison events"). Listed by
/// ``HyperdownServer/deadLetters(for:after:limit:)``, reported to
/// ``ServerConfiguration/onDeadLetter``, given back by
/// ``HyperdownServer/requeueDeadLetters(for:ids:)``.
public struct DeadLetter: Sendable, Hashable {
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

  /// Decodes the payload as JSON.
  public func decodePayload<T: Decodable>(_ type: T.Type, decoder: JSONDecoder = JSONDecoder()) throws -> T {
    try decoder.decode(type, from: Data(payload))
  }

  init(_ d: hd_dead_letter_t) {
    id = d.seq
    created = Date(timeIntervalSince1970: Double(d.created_ms) / 1000)
    payload = d.payload_len > 0 && d.payload != nil
      ? Array(UnsafeBufferPointer(start: d.payload, count: d.payload_len)) : []
    attempts = d.attempts
    reason = d.reason_len > 0 && d.reason != nil
      ? d.reason.withMemoryRebound(to: UInt8.self, capacity: d.reason_len) {
          String(decoding: UnsafeBufferPointer(start: $0, count: d.reason_len), as: UTF8.self)
        }
      : ""
    died = Date(timeIntervalSince1970: Double(d.dead_ms) / 1000)
  }
}
