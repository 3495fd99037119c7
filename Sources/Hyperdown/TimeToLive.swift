/// How long an added event may wait to be sent before it expires (``AddOptions/ttl``;
/// docs/QUEUES.md "Time to live").
///
/// An event not sent to its user's client within its time to live is never sent: the server
/// deletes it and the client gets an ``Notice/Kind-swift.enum/expired`` notice in its place.
public enum TimeToLive: Sendable, Hashable {
  /// The server's ``ServerConfiguration/defaultTTL`` (no expiry when that is `nil`).
  case serverDefault
  /// Never expires, whatever the server's default.
  case never
  /// Expires this long after the add (at least 1 ms; a duration too long to count in
  /// milliseconds never expires).
  case after(Duration)

  /// `hd_add_options_t.ttl_ms`: 0 for the server's default, `UINT64_MAX` for never.
  var milliseconds: UInt64 {
    switch self {
    case .serverDefault: return 0
    case .never: return UInt64.max
    case .after(let duration): return max(1, duration.clampedMilliseconds64)
    }
  }
}
