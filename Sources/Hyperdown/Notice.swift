import CHyperdown

/// What the user's application missed, handed in its place in the user's stream
/// (``ClientConfiguration/onNotice``; `hd_notice_t`, docs/QUEUES.md "Notices").
public struct Notice: Sendable, Hashable {
  /// What happened.
  public enum Kind: Sendable, Hashable {
    /// ``Notice/count`` events numbered ``Notice/firstSeq`` to ``Notice/lastSeq`` expired unsent
    /// (their time to live ran out).
    case expired
    /// ``Notice/count`` events numbered ``Notice/firstSeq`` to ``Notice/lastSeq`` were dropped
    /// by the user's limit (``OverflowPolicy/dropOldest``).
    case dropped
    /// The dead letter ``Notice/firstSeq`` comes back as the event ``Notice/lastSeq``.
    case requeued
    /// A kind a later release added (its `HD_NOTICE_*` number): ignore it or log it.
    case unknown(UInt32)
  }

  /// What happened.
  public let kind: Kind
  /// How many events it is about.
  public let count: UInt64
  /// The first event's number.
  public let firstSeq: UInt64
  /// The last event's number (for ``Kind-swift.enum/requeued``: the new one).
  public let lastSeq: UInt64

  /// A notice with these fields (for tests and adapters).
  public init(kind: Kind, count: UInt64, firstSeq: UInt64, lastSeq: UInt64) {
    self.kind = kind
    self.count = count
    self.firstSeq = firstSeq
    self.lastSeq = lastSeq
  }

  /// The kind's name: `"expired"`, `"dropped"`, `"requeued"` or `"unknown"`.
  public var kindName: String {
    switch kind {
    case .expired: return "expired"
    case .dropped: return "dropped"
    case .requeued: return "requeued"
    case .unknown: return "unknown"
    }
  }

  init(_ n: hd_notice_t) {
    switch n.kind {
    case UInt32(HD_NOTICE_EXPIRED): kind = .expired
    case UInt32(HD_NOTICE_DROPPED): kind = .dropped
    case UInt32(HD_NOTICE_REQUEUED): kind = .requeued
    default: kind = .unknown(n.kind)
    }
    count = n.count
    firstSeq = n.first_seq
    lastSeq = n.last_seq
  }
}
