import Foundation

/// A value that carries an event's payload: ``ConsumedEvent``, ``DeadLetter``, ``PendingEvent``,
/// ``Event``. The payload is often JSON (the original's events are objects).
public protocol PayloadCarrying {
  /// The event's bytes.
  var payload: [UInt8] { get }
}

extension PayloadCarrying {
  /// Decodes the payload as JSON.
  public func decodePayload<T: Decodable>(_ type: T.Type, decoder: JSONDecoder = JSONDecoder()) throws -> T {
    try decoder.decode(type, from: Data(payload))
  }
}

/// The bytes the core lends at `pointer` (NULL or a count of 0: none), copied.
func copiedBytes(_ pointer: UnsafePointer<UInt8>?, _ count: Int) -> [UInt8] {
  guard count > 0, let pointer else { return [] }
  return Array(UnsafeBufferPointer(start: pointer, count: count))
}

/// The UTF-8 text the core lends at `pointer` (not NUL-terminated), copied.
func copiedText(_ pointer: UnsafePointer<CChar>?, _ count: Int) -> String {
  guard count > 0, let pointer else { return "" }
  return pointer.withMemoryRebound(to: UInt8.self, capacity: count) {
    String(decoding: UnsafeBufferPointer(start: $0, count: count), as: UTF8.self)
  }
}

extension Date {
  /// A time the core gives in Unix milliseconds.
  init(unixMilliseconds ms: Int64) {
    self.init(timeIntervalSince1970: Double(ms) / 1000)
  }
}
