import CHyperdown

/// One event of ``HyperdownServer/addEvents(_:)``: its user, its payload and the options of its
/// add (`hd_add_item_t`).
public struct EventToAdd: Sendable, Hashable {
  /// The user the event is for.
  public var user: PublicKey
  /// The event's bytes (1 byte up to the server's ``ServerConfiguration/maxEventBytes``).
  public var payload: [UInt8]
  /// The add's options (a time to live, a deduplication or collapse key); `nil`: none.
  public var options: AddOptions?

  /// An event to add.
  public init(user: PublicKey, payload: [UInt8], options: AddOptions? = nil) {
    self.user = user
    self.payload = payload
    self.options = options
  }
}

/// The outcome of each event of one call, in the order of the call's events.
public typealias AddOutcomes = [Result<AddResult, HyperdownError>]

extension HyperdownServer {
  /// Most events one transaction of ``addEvents(_:)`` takes (`hd_add_events_max`, 100,000).
  public static var addEventsMax: Int { Int(hd_add_events_max()) }

  /// Adds many events, for any users, in one transaction and one fsync
  /// (`hd_server_add_events`), and returns each event's outcome, in the order of `events`, once
  /// durable. A user's events take its numbers in the order of `events`. An event that fails
  /// (`ELIMIT` at its user's limit...) fails alone. More than ``addEventsMax`` events go in one
  /// transaction per ``addEventsMax``, in order.
  /// - Throws: ``HyperdownError`` when a whole transaction fails: `EINVAL` if any event is
  ///   invalid (an empty or oversized payload, a key too long; nothing of that transaction is
  ///   added), `ECLOSED`, `ESTORE`, `EIO`...
  public func addEvents(_ events: [EventToAdd]) async throws -> AddOutcomes {
    var outcomes = AddOutcomes()
    outcomes.reserveCapacity(events.count)
    var start = events.startIndex
    while start < events.endIndex {
      let end = min(start + Self.addEventsMax, events.endIndex)
      outcomes += try await addEventsInOneTransaction(events[start..<end])
      start = end
    }
    return outcomes
  }

  /// Adds several events for `user`, in this order, in one transaction (``addEvents(_:)``), and
  /// returns their sequence numbers (in the same order) once all are durable.
  /// - Throws: the first event's ``HyperdownError`` that failed (the others were added), or the
  ///   whole transaction's.
  @discardableResult
  public func addEvents(for user: PublicKey, payloads: [[UInt8]]) async throws -> [UInt64] {
    try await addEvents(payloads.map { EventToAdd(user: user, payload: $0) }).map { try $0.get().seq }
  }

  /// Adds several events for `user` with the same options, in this order, in one transaction
  /// (``addEvents(_:)``), and returns their results (in the same order) once all are durable. A
  /// key's later add sees the earlier ones: a repeated deduplication key answers with the first
  /// one's number.
  /// - Throws: the first event's ``HyperdownError`` that failed (the others were added), or the
  ///   whole transaction's.
  public func addEvents(for user: PublicKey, payloads: [[UInt8]], options: AddOptions) async throws -> [AddResult] {
    try await addEvents(payloads.map { EventToAdd(user: user, payload: $0, options: options) }).map { try $0.get() }
  }

  private func addEventsInOneTransaction(_ events: ArraySlice<EventToAdd>) async throws -> AddOutcomes {
    let started = ContinuousClock.now
    let outcomes = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<AddOutcomes, any Error>) in
      let box = Completion(continuation).retainedPointer()
      do {
        try handle.with { h in
          let rc = withCAddItems(events) { items, n in
            hd_server_add_events(h, items, n, { ctx, status, results, n in
              Completion<AddOutcomes>.take(ctx)!.resume(status: status, results: results, count: n)
            }, box)
          }
          try HyperdownError.check(rc)
        }
      } catch {
        Completion<AddOutcomes>.release(box)  // the callback never fires when the call fails
        continuation.resume(throwing: error)
      }
    }
    metricsReporter?.addedDurable(since: started)
    return outcomes
  }
}

extension Completion where Value == AddOutcomes {
  /// Resumes with each event's outcome (`hd_fanout_cb`), or the whole call's error.
  func resume(status: Int32, results: UnsafePointer<hd_fanout_result_t>?, count: Int) {
    guard status >= 0, let results else {
      continuation.resume(throwing: HyperdownError.last(status < 0 ? status : HD_EIO.rawValue))
      return
    }
    continuation.resume(returning: UnsafeBufferPointer(start: results, count: count).map { r in
      r.status < 0
        ? .failure(HyperdownError(code: r.status, message: String(cString: hd_strerror(r.status))))
        : .success(AddResult(r.result))
    })
  }
}

/// Runs `body` with the C items of `events` (`hd_add_item_t`): their users, payloads and keys
/// copied into one allocation that lives for the duration of `body` (the core copies them
/// before the call returns).
func withCAddItems<R>(_ events: ArraySlice<EventToAdd>,
                      _ body: (UnsafePointer<hd_add_item_t>, Int) -> R) -> R {
  var size = 0
  for e in events {
    size += 32 + e.payload.count + (e.options?.dedupKey?.utf8.count ?? 0) + (e.options?.collapseKey?.utf8.count ?? 0)
  }
  let arena = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(size, 1))
  let options = UnsafeMutableBufferPointer<hd_add_options_t>.allocate(capacity: events.count)
  let items = UnsafeMutableBufferPointer<hd_add_item_t>.allocate(capacity: events.count)
  defer {
    arena.deallocate()
    options.deallocate()
    items.deallocate()
  }
  var at = 0
  func copy(_ bytes: some Collection<UInt8>) -> UnsafePointer<UInt8> {
    let start = arena.baseAddress! + at
    _ = UnsafeMutableBufferPointer(start: start, count: bytes.count).initialize(from: bytes)
    at += bytes.count
    return UnsafePointer(start)
  }
  for (i, e) in events.enumerated() {
    let user = copy(e.user.bytes)
    let payload = copy(e.payload)
    var item = hd_add_item_t(user: user, payload: UnsafeRawPointer(payload), len: e.payload.count, opts: nil)
    if let o = e.options {
      let dedup = o.dedupKey.map { copy($0.utf8) }
      let collapse = o.collapseKey.map { copy($0.utf8) }
      (options.baseAddress! + i).initialize(to: o.cOptions(dedup: dedup, collapse: collapse))
      item.opts = UnsafePointer(options.baseAddress! + i)
    }
    (items.baseAddress! + i).initialize(to: item)
  }
  return body(items.baseAddress!, events.count)
}
