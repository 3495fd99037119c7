import CHyperdown

/// Options of one add (``HyperdownServer/addEvent(for:payload:options:)``,
/// ``HyperdownServer/addEvents(forUsers:payload:options:)``; `hd_add_options_t`,
/// docs/QUEUES.md).
///
/// ```swift
/// var options = AddOptions()
/// options.ttl = .after(.seconds(60))
/// options.dedupKey = "order-1234"
/// let result = try await server.addEvent(for: user, payload: bytes, options: options)
/// ```
public struct AddOptions: Sendable, Hashable {
  /// How long the event may wait to be sent (``TimeToLive/serverDefault`` by default).
  public var ttl: TimeToLive = .serverDefault
  /// A deduplication key, per user: a repeat within the server's
  /// ``ServerConfiguration/dedupWindow`` stores nothing and answers with the first add's number
  /// (``AddResult/isDuplicate``). 1 to 256 bytes of UTF-8; `nil`: none.
  public var dedupKey: String?
  /// A collapse key, per user: the add replaces the user's unsent event with the same key
  /// (``AddResult/replaced``), so that only the latest state waits. 1 to 256 bytes; `nil`: none.
  public var collapseKey: String?

  /// Options with the defaults: the server's time to live, no keys.
  public init(ttl: TimeToLive = .serverDefault, dedupKey: String? = nil, collapseKey: String? = nil) {
    self.ttl = ttl
    self.dedupKey = dedupKey
    self.collapseKey = collapseKey
  }

  /// Runs `body` with the C options; the keys' bytes live for the duration of `body`.
  func withCOptions<R>(_ body: (UnsafePointer<hd_add_options_t>) throws -> R) rethrows -> R {
    let dedup = dedupKey.map { Array($0.utf8) } ?? []
    let collapse = collapseKey.map { Array($0.utf8) } ?? []
    return try dedup.withUnsafeBufferPointer { d in
      try collapse.withUnsafeBufferPointer { c in
        var opts = cOptions(dedup: d.baseAddress, collapse: c.baseAddress)
        return try body(&opts)
      }
    }
  }

  /// The C options, their keys' bytes at `dedup` and `collapse` (the caller keeps them alive).
  func cOptions(dedup: UnsafePointer<UInt8>?, collapse: UnsafePointer<UInt8>?) -> hd_add_options_t {
    var opts = hd_add_options_t()
    _ = hd_add_options_init(&opts, UInt32(HD_ADD_OPTIONS_VERSION))
    opts.ttl_ms = ttl.milliseconds
    // an empty key is passed as given (a pointer with length 0), for the core to refuse
    if let dedupKey {
      opts.dedup_key = dedup ?? UnsafePointer(bitPattern: 1)
      opts.dedup_key_len = dedupKey.utf8.count
    }
    if let collapseKey {
      opts.collapse_key = collapse ?? UnsafePointer(bitPattern: 1)
      opts.collapse_key_len = collapseKey.utf8.count
    }
    return opts
  }
}
