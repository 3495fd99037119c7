/// Thrown by an event handler (``ClientConfiguration/eventHandler``,
/// ``HyperdownClient/handleEvents(_:)``) to reject the event at once, whatever its attempts: it
/// becomes a dead letter on the server with this reason (``Event/reject(reason:)``). Any other
/// error is a failed attempt (``Event/fail(reason:)``).
public struct EventRejected: Error, Sendable, Hashable, CustomStringConvertible {
  /// Why, as the dead letter keeps it (at most 1024 bytes of UTF-8 are kept).
  public var reason: String

  /// A rejection with this reason.
  public init(reason: String) { self.reason = reason }

  public var description: String { "event rejected: \(reason)" }
}
