import CHyperdown

/// What an add with options did (`hd_add_result_t`): the event's number and what its keys and
/// the user's limits made of it.
public struct AddResult: Sendable, Hashable {
  /// The event's sequence number; for a duplicate, the first add's (that event may have been
  /// consumed since).
  public var seq: UInt64
  /// The deduplication key was seen within the window: nothing was stored.
  public var isDuplicate: Bool
  /// A duplicate whose payload differs from the first add's (the first one wins).
  public var isConflict: Bool
  /// The unsent event this one replaced (same collapse key), if any.
  public var replaced: UInt64?
  /// How many older unsent events were dropped to make room (``OverflowPolicy/dropOldest``).
  public var dropped: UInt64

  /// A result with these fields (for tests and adapters).
  public init(seq: UInt64, isDuplicate: Bool = false, isConflict: Bool = false,
              replaced: UInt64? = nil, dropped: UInt64 = 0) {
    self.seq = seq
    self.isDuplicate = isDuplicate
    self.isConflict = isConflict
    self.replaced = replaced
    self.dropped = dropped
  }

  init(_ r: hd_add_result_t) {
    let flags = r.flags
    seq = r.seq
    isDuplicate = flags & UInt32(HD_ADD_DUPLICATE) != 0
    isConflict = flags & UInt32(HD_ADD_CONFLICT) != 0
    replaced = flags & UInt32(HD_ADD_REPLACED) != 0 ? r.replaced_seq : nil
    dropped = flags & UInt32(HD_ADD_DROPPED) != 0 ? r.dropped : 0
  }
}
