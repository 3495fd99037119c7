import CHyperdown
import Foundation
import Logging
import Synchronization

/// A Hyperdown client: a user's side. It dials its server, stores the events it receives and hands
/// them to your code one at a time, in sequence order.
///
/// Handle events either with ``ClientConfiguration/eventHandler`` (the original's
/// `eventHandler`) or by iterating ``events``:
///
/// ```swift
/// let client = try HyperdownClient(configuration: config)
/// for try await event in client.events {
///   try await handle(event.payload)
///   event.complete()          // consumed: reported to the server
/// }
/// ```
///
/// Nothing is lost when the iterating task is cancelled or the client is dropped: an event that
/// was not completed is handed again (to the next iteration, or by the next client on the same
/// folder). A client dropped without ``close()`` closes itself in `deinit`, blocking until its
/// folder is released.
///
/// `Sendable`: every method may be called from any task; the C handle is thread-safe and guarded
/// against use after close.
public final class HyperdownClient: Sendable {
  let handle: CoreHandle
  let core: ClientCore

  /// Creates the client and starts dialing its server (it redials after a failure unless
  /// ``ClientConfiguration/noReconnect`` is set). Events already in its store are handed out
  /// even while the server is away.
  /// - Throws: ``HyperdownError``: `EBUSY` if another process uses the folder, `EADDR`, `EKEY`...
  public init(configuration c: ClientConfiguration) throws {
    if c.servers.isEmpty || c.serverPublicKeys.isEmpty {
      throw HyperdownError(code: HyperdownError.invalidArgument,
                           message: "a client needs at least one server address and one server key")
    }
    core = ClientCore(logger: c.logger, eventHandler: c.eventHandler, onNotice: c.onNotice)
    // The core names the server on a disconnect too; the client's callback only takes why.
    let onDisconnected: (@Sendable (PublicKey?, HyperdownError?) -> Void)? = c.onDisconnected.map { report in
      { @Sendable _, error in report(error) }
    }
    handle = CoreHandle(context: core, logger: c.logger, onPeerConnected: c.onConnected,
                        onPeerDisconnected: onDisconnected,
                        close: hd_client_close, closeWait: hd_client_close_wait)
    var opts = hd_client_options_t.defaults
    opts.reconnect_min_ms = c.reconnectMin?.clampedMilliseconds ?? 0
    opts.reconnect_max_ms = c.reconnectMax?.clampedMilliseconds ?? 0
    opts.no_reconnect = c.noReconnect ? 1 : 0
    opts.window = c.window ?? 0
    opts.retry_min_ms = c.retryMin?.clampedMilliseconds ?? 0
    opts.retry_max_ms = c.retryMax?.clampedMilliseconds ?? 0
    opts.max_attempts = c.maxAttempts ?? UInt32(HD_DEFAULT_MAX_ATTEMPTS)
    if c.onNotice != nil {
      opts.on_notice = { ud, event in
        guard let core = CoreHandle.context(ud, as: ClientCore.self), let event else { return }
        core.deliverNotice(event)
      }
    }
    opts.on_event = { ud, event in
      guard let core = CoreHandle.context(ud, as: ClientCore.self), let event else { return }
      core.deliver(event)
    }
    // Events may be handed out (and parked) before the create returns and sets the handle: fine,
    // they only need the handle when they are completed.
    let serverKeys = c.serverPublicKeys.flatMap(\.bytes)
    try handle.create(opts, configuration: c) { opts, handle in
      serverKeys.withUnsafeBufferPointer { serverKeys in
        withCStrings(c.servers) { servers in
          servers.withUnsafeBufferPointer { servers in
            opts.server_public_key = serverKeys.baseAddress
            if c.serverPublicKeys.count > 1 {
              opts.server_public_keys = serverKeys.baseAddress
              opts.server_public_key_count = c.serverPublicKeys.count
            }
            if c.servers.count > 1 {
              opts.connect_list = servers.baseAddress
              opts.connect_count = servers.count
            }
            return hd_client_create(&handle, &opts)
          }
        }
      }
    }
  }

  deinit {
    let parked = core.beginClosing()
    defer { core.release(parked) }
    handle.closeNow()
  }

  /// The events, as an `AsyncSequence`: each one stays with your code until you
  /// ``Event/complete(ok:data:)`` it, and the next comes only after that.
  ///
  /// One iteration at a time: starting a new one ends the previous. The sequence ends when the
  /// client closes. Cancelling the iterating task ends it too; the event it held (if any) is
  /// handed to the next iteration, so nothing is lost. Unused when
  /// ``ClientConfiguration/eventHandler`` is set.
  public var events: EventSequence { EventSequence(core: core) }

  /// Handles events with `handler` until the client closes or the calling task is cancelled: the
  /// data it returns is reported to the server; a thrown error is a failed attempt (handed again
  /// after the retry delay, a dead letter after ``ClientConfiguration/maxAttempts``), and
  /// ``EventRejected`` makes the event a dead letter at once.
  public func handleEvents(_ handler: (Event) async throws -> [UInt8]?) async {
    do {
      for try await event in events {
        do {
          let data = try await handler(event)
          event.complete(ok: true, data: data)
        } catch {
          core.handlerFailed(event, error)
        }
      }
    } catch {}
  }

  /// The client's counters and state. A short blocking read.
  public func stats() throws -> ClientStats {
    let s = try handle.stats(hd_client_stats)
    return ClientStats(eventsReceived: s.events_received, eventsHandled: s.events_handled,
                       eventsFailed: s.events_failed, eventsConfirmed: s.events_confirmed,
                       unhandled: s.unhandled, consumed: s.consumed, highWater: s.high_water,
                       pause: .milliseconds(Int64(s.pause_ms)), isConnected: s.connected != 0,
                       eventsDead: s.events_dead, noticesReceived: s.notices_received)
  }

  /// What losses of the server store's commits did to this client. A short blocking read.
  public func rollbackStats() throws -> RollbackStats {
    RollbackStats(try handle.stats(hd_client_rollback_stats))
  }

  /// Closes the client: says goodbye to the server, ends ``events``, flushes and closes the
  /// store. Events not completed yet come again next time. Returns once everything is released.
  public func close() async {
    let parked = core.beginClosing()
    defer { core.release(parked) }
    await handle.close()
  }
}

/// The events of a ``HyperdownClient`` as an `AsyncSequence` (``HyperdownClient/events``).
public struct EventSequence: AsyncSequence, Sendable {
  /// The element: one event to complete.
  public typealias Element = Event
  /// The sequence ends without error; the type leaves room for errors in later versions.
  public typealias Failure = any Error

  let core: ClientCore

  /// Starts an iteration (and ends a previous one).
  public func makeAsyncIterator() -> Iterator {
    Iterator(base: core.subscribe().makeAsyncIterator())
  }

  /// Iterates the events; `next()` returns `nil` once the client closed or the task was cancelled.
  public struct Iterator: AsyncIteratorProtocol {
    var base: AsyncThrowingStream<Event, any Error>.Iterator

    /// The next event, once the client hands it out.
    public mutating func next() async throws -> Event? {
      let event = try await base.next()
      event?.markSeen()
      return event
    }
  }
}

/// A client's own state: the events it hands out and the iteration that takes them. Its handle
/// (`CoreHandle`) holds it for the `on_event` callback.
final class ClientCore: Sendable {
  let logger: Logger
  let eventHandler: (@Sendable (Event) async throws -> [UInt8]?)?
  let onNotice: (@Sendable (Notice) async -> Void)?

  /// How an event is completed.
  enum Outcome {
    /// Consumed, with the data to report (`hd_event_complete` ok).
    case consumed([UInt8]?)
    /// A failed attempt without a reason (`hd_event_complete` not ok: "handler failed").
    case retry
    /// A failed attempt with a reason (`hd_event_fail`).
    case failed(String)
    /// A dead letter at once (`hd_event_reject`).
    case rejected(String)
  }

  typealias Continuation = AsyncThrowingStream<Event, any Error>.Continuation

  struct State {
    var consumer: (id: UInt64, continuation: Continuation)?
    var nextConsumer: UInt64 = 0
    /// Events the core handed out that wait for an iteration.
    var parked: [Delivery] = []
    var closing = false
  }
  let state = Mutex(State())

  init(logger: Logger, eventHandler: (@Sendable (Event) async throws -> [UInt8]?)?,
       onNotice: (@Sendable (Notice) async -> Void)?) {
    self.logger = logger
    self.eventHandler = eventHandler
    self.onNotice = onNotice
  }

  /// On the loop thread: a notice from the core, handed to ``ClientConfiguration/onNotice`` in a
  /// task and completed when it returns (the core hands the next event after that).
  func deliverNotice(_ event: OpaquePointer) {
    var n = hd_notice_t()
    let transfer = UnsafeTransfer(value: event)
    guard hd_event_notice(event, &n) == 0, let onNotice else {
      _ = hd_event_complete(event, 1, nil, 0)
      return
    }
    let notice = Notice(n)
    Task {
      await onNotice(notice)
      // also after the close: then the core only frees it (the notice comes again next time)
      _ = hd_event_complete(transfer.value, 1, nil, 0)
    }
  }

  /// A handler threw: a failed attempt with the error as its reason, or a rejection.
  func handlerFailed(_ event: Event, _ error: any Error) {
    if let rejection = error as? EventRejected {
      logger.debug("event \(event.id) rejected: \(rejection.reason)")
      event.reject(reason: rejection.reason)
    } else {
      logger.debug("event \(event.id) failed: \(error)")
      event.fail(reason: String(describing: error))
    }
  }

  /// On the loop thread: one event from the core.
  func deliver(_ event: OpaquePointer) {
    let delivery = Delivery(event)
    if let handler = eventHandler {
      Task {
        let event = Event(delivery: delivery, core: self)
        event.markSeen()
        do {
          let data = try await handler(event)
          event.complete(ok: true, data: data)
        } catch {
          self.handlerFailed(event, error)
        }
      }
      return
    }
    offer(delivery)
  }

  /// Hands `delivery` to the current iteration, or parks it for the next one.
  func offer(_ delivery: Delivery) {
    enum Route { case consumer((id: UInt64, continuation: Continuation)), parked, closing }
    let route = state.withLock { s -> Route in
      if s.closing { return .closing }
      if let c = s.consumer { return .consumer(c) }
      s.parked.append(delivery)
      return .parked
    }
    switch route {
    case .consumer(let consumer): yield(delivery, to: consumer)
    case .parked: break
    case .closing: _ = complete(delivery, ok: false, data: nil)  // frees it; handled next time
    }
  }

  private func yield(_ delivery: Delivery, to consumer: (id: UInt64, continuation: Continuation)) {
    let event = Event(delivery: delivery, core: self)
    withExtendedLifetime(event) {
      if case .terminated = consumer.continuation.yield(event) {
        // The iteration ended: forget it before `event` is released and parks its delivery.
        state.withLock { s in
          if s.consumer?.id == consumer.id { s.consumer = nil }
        }
      }
    }
  }

  func subscribe() -> AsyncThrowingStream<Event, any Error> {
    let (stream, continuation) = AsyncThrowingStream<Event, any Error>.makeStream()
    let (id, previous, parked, closing) = state.withLock { s in
      s.nextConsumer += 1
      let previous = s.consumer
      if s.closing { return (s.nextConsumer, previous, [Delivery](), true) }
      s.consumer = (s.nextConsumer, continuation)
      defer { s.parked = [] }
      return (s.nextConsumer, previous, s.parked, false)
    }
    continuation.onTermination = { [weak self] _ in
      self?.state.withLock { s in
        if s.consumer?.id == id { s.consumer = nil }
      }
    }
    previous?.continuation.finish()
    if closing {
      continuation.finish()
      return stream
    }
    for delivery in parked { yield(delivery, to: (id, continuation)) }
    return stream
  }

  /// An event was released without completion.
  func released(_ delivery: Delivery, seen: Bool) {
    if seen {
      // Your code had it and dropped it: a failure, handed again after the retry delay.
      _ = finish(delivery, .failed("the event was released without completion"))
    } else {
      offer(delivery)
    }
  }

  func complete(_ delivery: Delivery, ok: Bool, data: [UInt8]?) -> Bool {
    finish(delivery, ok ? .consumed(data) : .retry)
  }

  func finish(_ delivery: Delivery, _ outcome: Outcome) -> Bool {
    guard let event = delivery.take() else { return false }
    // Always completed, also after the client closed: then the core only frees the event (it is
    // handed again next time). An hd_event_t outlives its client until it is completed.
    let rc: Int32
    switch outcome {
    case .consumed(let data?) where !data.isEmpty:
      rc = data.withUnsafeBytes { hd_event_complete(event, 1, $0.baseAddress, $0.count) }
    case .consumed:
      rc = hd_event_complete(event, 1, nil, 0)
    case .retry:
      rc = hd_event_complete(event, 0, nil, 0)
    case .failed(let reason):
      let bytes = Self.reasonBytes(reason)
      rc = bytes.withUnsafeBufferPointer { hd_event_fail(event, $0.baseAddress, $0.count) }
    case .rejected(let reason):
      let bytes = Self.reasonBytes(reason)
      rc = bytes.withUnsafeBufferPointer { hd_event_reject(event, $0.baseAddress, $0.count) }
    }
    if rc < 0 { logger.warning("completing event \(delivery.seq): \(HyperdownError.last(rc))") }
    return rc >= 0
  }

  /// Marks the client closing, ends the iteration and returns the parked events.
  func beginClosing() -> [Delivery] {
    let (consumer, parked) = state.withLock { s in
      s.closing = true
      defer { s.consumer = nil; s.parked = [] }
      return (s.consumer?.continuation, s.parked)
    }
    consumer?.finish()
    return parked
  }

  /// Frees events nobody took (after the close, completing only frees them).
  func release(_ parked: [Delivery]) {
    for delivery in parked { _ = complete(delivery, ok: false, data: nil) }
  }

  /// A reason's UTF-8, cut to `HD_REASON_MAX_BYTES` at a character boundary.
  static func reasonBytes(_ reason: String) -> [CChar] {
    let limit = Int(HD_REASON_MAX_BYTES)
    var bytes = Array(reason.utf8)
    if bytes.count > limit {
      var end = limit
      while end > 0 && bytes[end] & 0xC0 == 0x80 { end -= 1 }  // not inside a character
      bytes.removeSubrange(end...)
    }
    return bytes.map { CChar(bitPattern: $0) }
  }
}
