import CHyperdown

/// What an add past a user's limit does (``ServerConfiguration/overflow``;
/// `hd_server_options_t.overflow`, docs/QUEUES.md "Limits").
public enum OverflowPolicy: Sendable, Hashable {
  /// The add fails with ``HyperdownError/limitReached`` (`ELIMIT`); nothing held is touched.
  case reject
  /// The user's oldest events not yet sent make room (``AddResult/dropped``), and its client
  /// gets a ``Notice/Kind-swift.enum/dropped`` notice in their place.
  case dropOldest

  var cValue: Int32 {
    switch self {
    case .reject: return Int32(HD_OVERFLOW_REJECT)
    case .dropOldest: return Int32(HD_OVERFLOW_DROP_OLDEST)
    }
  }
}
