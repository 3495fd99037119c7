import CHyperdown
import CoreMetrics
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// A Hyperdown server: it keeps each user's events until the user's client has handled them.
///
/// Create it with a ``ServerConfiguration``; it listens before the initializer returns. Add events
/// with ``addEvent(for:payload:)-(PublicKey,[UInt8])`` (the sequence number comes back once the event is durable);
/// a connected user gets the event at once, an offline one when they come back. When a user
/// reports events consumed, ``ServerConfiguration/onClientConsumedEvents`` decides whether to
/// forget them. ``leave()`` closes it gracefully; a server started again on the same folder
/// resumes where it was.
///
/// As a swift-service-lifecycle `Service`, ``run()`` waits for the graceful shutdown of its
/// `ServiceGroup` (SIGTERM, say) and then leaves.
///
/// A server dropped without ``leave()`` closes itself in `deinit` (blocking until its folder is
/// released); events added and not yet consumed stay in its store.
///
/// `Sendable`: every method may be called from any task; the C handle is thread-safe and guarded
/// against use after close.
public final class HyperdownServer: Sendable, Service {
  let handle: CoreHandle
  let core: ServerCore
  /// The metrics it reports through swift-metrics (`nil`: none, ``ServerConfiguration/metricsInterval``).
  let metricsReporter: ServerMetrics?
  /// Reads the core's counters for `metricsReporter` until the server leaves.
  let metricsFollower: Task<Void, Never>?

  /// Creates the server: opens (or creates) its store, binds and listens.
  /// - Throws: ``HyperdownError``: `EBUSY` if another process uses the folder, `EADDRINUSE`,
  ///   `EADDR` for a malformed address, `EKEY`, `ESTORE`...
  public init(configuration c: ServerConfiguration) throws {
    core = ServerCore(onClientConsumedEvents: c.onClientConsumedEvents, authorize: c.authorize,
                      onDeadLetter: c.onDeadLetter)
    let handle = CoreHandle(context: core, logger: c.logger, onPeerConnected: c.onUserConnected,
                            onPeerDisconnected: c.onUserDisconnected,
                            close: hd_server_close, closeWait: hd_server_close_wait)
    self.handle = handle
    var opts = hd_server_options_t.defaults
    opts.page_events = c.pageEvents ?? 0
    opts.authorize_timeout_ms = c.authorizeTimeout?.clampedMilliseconds ?? 0
    opts.max_handshakes = c.maxHandshakes ?? 0
    opts.handshakes_per_address = c.handshakesPerAddress ?? 0
    opts.max_event_bytes = c.maxEventBytes ?? 0
    opts.default_ttl_ms = c.defaultTTL.map { max(1, $0.clampedMilliseconds64) } ?? 0
    opts.max_pending_per_user = c.maxPendingPerUser ?? 0
    opts.max_bytes_per_user = c.maxBytesPerUser ?? 0
    opts.overflow = c.overflow.cValue
    opts.dedup_window_ms = c.dedupWindow.map { max(1, $0.clampedMilliseconds64) } ?? 0
    opts.dedup_keys_per_user = c.dedupKeysPerUser ?? 0
    opts.expiry_batch = c.expiryBatch ?? 0
    if c.onDeadLetter != nil {
      opts.on_dead_letter = { ud, user, deadLetter in
        guard let core = CoreHandle.context(ud, as: ServerCore.self), let user, let deadLetter else { return }
        core.onDeadLetter?(PublicKey(pointer: user), DeadLetter(deadLetter.pointee))
      }
    }
    if c.authorize != nil {
      opts.authorize = { ud, key, request in
        guard let request else { return }
        guard let core = CoreHandle.context(ud, as: ServerCore.self), let key else {
          _ = hd_authorization_deny(request)
          return
        }
        core.authorize(user: PublicKey(pointer: key), request: request)
      }
    }
    if c.onClientConsumedEvents != nil {
      opts.on_consumed = { ud, user, batch in
        guard let core = CoreHandle.context(ud, as: ServerCore.self), let user, let batch else { return }
        core.consumed(user: PublicKey(pointer: user), batch: batch)
      }
    }
    try handle.create(opts, configuration: c) { opts, handle in
      withOptionalCKeyPair(c.nextKeyPair) { nextKeyPair in
        withCStrings([c.metricsListen]) { s in
          opts.next_keypair = nextKeyPair
          opts.metrics_listen = s[0]
          return hd_server_create(&handle, &opts)
        }
      }
    }
    let factory = c.metricsFactory ?? MetricsSystem.factory
    if let interval = c.metricsInterval, !(factory is NOOPMetricsHandler) {
      let metrics = ServerMetrics(factory: factory, dimensions: c.metricsDimensions)
      metricsReporter = metrics
      metricsFollower = ServerMetrics.follow(handle, into: metrics, every: interval)
    } else {
      metricsReporter = nil
      metricsFollower = nil
    }
    if let pause = c.pause {
      try handle.with { h in try HyperdownError.check(hd_server_update_pause(h, pause.clampedMilliseconds, nil, nil)) }
    }
  }

  deinit {
    metricsFollower?.cancel()
    core.stopTakingReports()
    handle.closeNow()
  }

  /// The TCP port the server listens on (the one picked when the address said port 0).
  public var port: Int {
    (try? handle.with { h in Int(try HyperdownError.check(hd_server_port(h))) }) ?? 0
  }

  /// Adds an event for `user` and returns its sequence number once it is durable.
  ///
  /// The event takes the user's next sequence number (from 1, never reused). Concurrent adds share
  /// one transaction and one fsync. A connected user gets the event right after the commit. The
  /// payload is copied before the call suspends, and the add is not undone if the calling task is
  /// cancelled.
  /// - Throws: ``HyperdownError``: `EINVAL` for an empty or oversized payload, `ECLOSED` once the
  ///   server is leaving, `ESTORE`/`EIO`/`ENOSPC` if the commit failed.
  @discardableResult
  public func addEvent(for user: PublicKey, payload: [UInt8]) async throws -> UInt64 {
    let started = ContinuousClock.now
    let seq = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<UInt64, any Error>) in
      let box = Completion(continuation).retainedPointer()
      do {
        try handle.with { h in
          let rc = payload.withUnsafeBytes { bytes in
            hd_server_add_event(h, user.bytes, bytes.baseAddress, bytes.count, { ctx, status, seq in
              Completion<UInt64>.take(ctx)!.resume(status: status, returning: seq)
            }, box)
          }
          try HyperdownError.check(rc)
        }
      } catch {
        Completion<UInt64>.release(box)  // the callback never fires when the call fails
        continuation.resume(throwing: error)
      }
    }
    metricsReporter?.addedDurable(since: started)
    return seq
  }

  /// Adds an event for the user with this 32-byte public key (see ``addEvent(for:payload:)-(PublicKey,[UInt8])``).
  @discardableResult
  public func addEvent(for user: [UInt8], payload: [UInt8]) async throws -> UInt64 {
    try await addEvent(for: try PublicKey(user), payload: payload)
  }

  /// Adds an event whose payload is `data` (see ``addEvent(for:payload:)-(PublicKey,[UInt8])``).
  @discardableResult
  public func addEvent(for user: PublicKey, payload data: Data) async throws -> UInt64 {
    try await addEvent(for: user, payload: Array(data))
  }

  /// Adds an event whose payload is `value` encoded as JSON, as the original's
  /// `server.addEvent(publicKey, { prize: 500 })` does (see ``addEvent(for:payload:)-(PublicKey,[UInt8])``).
  public func addEvent<T: Encodable>(for user: PublicKey, json value: T,
                                     encoder: JSONEncoder = JSONEncoder()) async throws -> UInt64 {
    try await addEvent(for: user, payload: Array(try encoder.encode(value)))
  }

  /// Stores the pause and pushes it to every connected client (new clients get it when they
  /// connect). Clients coalesce events for this long before handling them. Returns once stored.
  public func updatePause(_ pause: Duration) async throws {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
      let box = Completion(continuation).retainedPointer()
      do {
        try handle.with { h in
          try HyperdownError.check(hd_server_update_pause(h, pause.clampedMilliseconds, { ctx, status in
            Completion<Void>.take(ctx)!.resume(status: status, returning: ())
          }, box))
        }
      } catch {
        Completion<Void>.release(box)
        continuation.resume(throwing: error)
      }
    }
  }

  /// The server's counters. A short blocking read (the core answers from its loop thread).
  public func stats() throws -> ServerStats {
    try ServerStats(handle)
  }

  /// The store's epoch and how many clients' resumes met a rollback. A short blocking read.
  public func rollbackStats() throws -> RollbackStats {
    RollbackStats(try handle.stats(hd_server_rollback_stats))
  }

  /// How many events the store holds for `user` (not yet consumed and confirmed).
  public func pending(for user: PublicKey) throws -> UInt64 {
    var n: UInt64 = 0
    try handle.with { h in try HyperdownError.check(hd_server_pending(h, user.bytes, &n)) }
    return n
  }

  /// Every user the store holds events for, with how many, in the order the users were first
  /// seen. Reads the store a page at a time.
  public func pendingUsers() throws -> [(user: PublicKey, pending: UInt64)] {
    try allUsers(hd_server_pending_users).map { (user: $0.0, pending: $0.1) }
  }

  /// Closes every connection of `user` (a key the application no longer admits): an open one
  /// with a goodbye (`EAUTH`), one in its handshake at once. The client dials again and meets
  /// ``ServerConfiguration/authorize``. Returns how many connections it closed.
  @discardableResult
  public func disconnect(user: PublicKey) throws -> Int {
    Int(try handle.with { h in try HyperdownError.check(hd_server_disconnect(h, user.bytes)) })
  }

  /// The users connected now (authenticated).
  public func connectedUsers() throws -> [PublicKey] {
    var capacity = 64
    while true {
      var buffer = [UInt8](repeating: 0, count: capacity * 32)
      let n = Int(try handle.with { h in try HyperdownError.check(hd_server_connected_users(h, &buffer, capacity)) })
      if n <= capacity {
        return (0..<n).map { PublicKey(trusted: Array(buffer[$0 * 32..<($0 + 1) * 32])) }
      }
      capacity = n + 16
    }
  }

  /// Leaves gracefully: waits for consumption callbacks in progress, stops accepting, says
  /// goodbye to every client, flushes the store and closes it. Returns once everything is
  /// released (the folder can be opened again). Calling it again waits for the same close.
  public func leave() async {
    await core.drain()
    metricsFollower?.cancel()
    if let metricsReporter, let last = try? metricsText(handle) { metricsReporter.update(fromText: last) }
    await handle.close()
  }

  /// Runs until the service group shuts down gracefully (or this task is cancelled), then
  /// ``leave()``s. The swift-service-lifecycle entry point.
  public func run() async throws {
    try? await gracefulShutdown()
    await leave()
  }
}

/// The continuation of a call that completes once through a C callback (`cb_data`).
final class Completion<Value: Sendable>: UnmanagedContext {
  let continuation: CheckedContinuation<Value, any Error>
  init(_ continuation: CheckedContinuation<Value, any Error>) { self.continuation = continuation }

  /// Resumes with `value`, or with the error of a negative `status`.
  func resume(status: Int32, returning value: Value) {
    if status < 0 {
      continuation.resume(throwing: HyperdownError.last(status))
    } else {
      continuation.resume(returning: value)
    }
  }
}

extension ServerStats {
  /// The counters of the server `handle` (`hd_server_stats`).
  init(_ handle: CoreHandle) throws {
    let s = try handle.stats(hd_server_stats)
    self.init(eventsAdded: s.events_added, eventsDelivered: s.events_delivered,
              eventsConsumed: s.events_consumed, eventsConfirmed: s.events_confirmed,
              pendingTotal: s.pending_total, connectedUsers: s.connected_users,
              commits: s.commits, eventsTooLarge: s.events_too_large,
              eventsExpired: s.events_expired, eventsDead: s.events_dead,
              eventsRequeued: s.events_requeued, addsDuplicate: s.adds_duplicate,
              eventsReplaced: s.events_replaced, eventsDropped: s.events_dropped,
              addsLimited: s.adds_limited, deadLetters: s.dead_letters)
  }
}

/// A server's own state: the consumption reports in progress. Its handle (`CoreHandle`) holds
/// it for the `on_consumed` callback.
final class ServerCore: Sendable {
  let onClientConsumedEvents: (@Sendable (PublicKey, [ConsumedEvent]) async -> Bool)?
  let authorizeUser: (@Sendable (PublicKey) async -> Bool)?
  let onDeadLetter: (@Sendable (PublicKey, DeadLetter) -> Void)?

  struct State {
    var draining = false
    var inFlight = 0
    var drainWaiters: [CheckedContinuation<Void, Never>] = []
  }
  let state = Mutex(State())

  init(onClientConsumedEvents: (@Sendable (PublicKey, [ConsumedEvent]) async -> Bool)?,
       authorize: (@Sendable (PublicKey) async -> Bool)?,
       onDeadLetter: (@Sendable (PublicKey, DeadLetter) -> Void)?) {
    self.onClientConsumedEvents = onClientConsumedEvents
    self.authorizeUser = authorize
    self.onDeadLetter = onDeadLetter
  }

  /// On the loop thread: asks ``ServerConfiguration/authorize`` in a task and answers the
  /// request with its verdict (always answered once: after the core's timeout or its close the
  /// answer only frees the request).
  func authorize(user: PublicKey, request: OpaquePointer) {
    let transfer = UnsafeTransfer(value: request)
    guard let decide = authorizeUser else {
      _ = hd_authorization_allow(request)
      return
    }
    Task {
      let ok = await decide(user)
      _ = ok ? hd_authorization_allow(transfer.value) : hd_authorization_deny(transfer.value)
    }
  }

  /// On the loop thread: copies the batch and runs the callback in a task that completes it.
  func consumed(user: PublicKey, batch: OpaquePointer) {
    let accepted = state.withLock { s -> Bool in
      if s.draining { return false }
      s.inFlight += 1
      return true
    }
    guard accepted, let handler = onClientConsumedEvents else {
      // Leaving: keep the events; the client reports them again on its next connection.
      _ = hd_consumed_complete_all(batch, 0)
      return
    }
    let count = hd_consumed_count(batch)
    var events: [ConsumedEvent] = []
    events.reserveCapacity(count)
    for i in 0..<count {
      var info = hd_event_info_t()
      if hd_consumed_event(batch, i, &info) == 0 { events.append(ConsumedEvent(info)) }
    }
    let transfer = UnsafeTransfer(value: batch)
    Task {
      let ok = await handler(user, events)
      // Always completed, also after the server closed: then the core only frees the batch (the
      // events stay; the client reports them again to the next server on the folder).
      _ = hd_consumed_complete_all(transfer.value, ok ? 1 : 0)
      let waiters = self.state.withLock { s -> [CheckedContinuation<Void, Never>] in
        s.inFlight -= 1
        guard s.inFlight == 0 else { return [] }
        defer { s.drainWaiters = [] }
        return s.drainWaiters
      }
      waiters.forEach { $0.resume() }
    }
  }

  /// Takes no more reports (they are kept: the client reports them again on its next connection).
  func stopTakingReports() {
    state.withLock { $0.draining = true }
  }

  /// Takes no more reports and waits until those in progress are completed.
  func drain() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let ready = state.withLock { s -> Bool in
        s.draining = true
        if s.inFlight == 0 { return true }
        s.drainWaiters.append(continuation)
        return false
      }
      if ready { continuation.resume() }
    }
  }
}
