import CHyperdown
import Logging
import Synchronization

/// The C handle of a server or a client, and all that both do with it: create it, answer the
/// callbacks every handle has (log lines, peers coming and going, `destroy`), guard its use
/// (`HandleGuard`), close it once and let every caller wait for that close.
///
/// It is the handle's `user_data`: retained for the core by ``create(_:configuration:_:)`` and
/// released by `destroy`. It holds the kind's own state (`ServerCore`, `ClientCore`) for
/// the kind's own callbacks (`on_consumed`, `on_event`), which find it with ``context(_:as:)``.
/// A kind brings only its close functions, its create function and its own options.
final class CoreHandle: Sendable, UnmanagedContext {
  typealias Close = @Sendable (OpaquePointer?, hd_close_cb?, UnsafeMutableRawPointer?) -> Int32
  typealias CloseWait = @Sendable (OpaquePointer?) -> Int32

  private let context: any AnyObject & Sendable
  private let logger: Logger
  private let onPeerConnected: (@Sendable (PublicKey) -> Void)?
  private let onPeerDisconnected: (@Sendable (PublicKey?, HyperdownError?) -> Void)?
  private let closeFunction: Close
  private let closeWaitFunction: CloseWait
  private let guarded = HandleGuard()

  private struct CloseState {
    var closed = false
    var waiters: [CheckedContinuation<Void, Never>] = []
  }
  private let closeState = Mutex(CloseState())

  /// A handle not created yet.
  /// - Parameters:
  ///   - context: the kind's own state, for its own callbacks.
  ///   - logger: receives the core's log lines.
  ///   - onPeerConnected: a peer authenticated (its key).
  ///   - onPeerDisconnected: a connection ended: the peer's key if it had authenticated, and why
  ///     (`nil` for an orderly close).
  ///   - close, closeWait: the kind's `hd_*_close` and `hd_*_close_wait`.
  init(context: some AnyObject & Sendable, logger: Logger,
       onPeerConnected: (@Sendable (PublicKey) -> Void)?,
       onPeerDisconnected: (@Sendable (PublicKey?, HyperdownError?) -> Void)?,
       close: @escaping Close, closeWait: @escaping CloseWait) {
    self.context = context
    self.logger = logger
    self.onPeerConnected = onPeerConnected
    self.onPeerDisconnected = onPeerDisconnected
    closeFunction = close
    closeWaitFunction = closeWait
  }

  /// The kind's own state behind a callback's `user_data` (nil for a null pointer).
  static func context<Context: AnyObject>(_ userData: UnsafeMutableRawPointer?, as type: Context.Type) -> Context? {
    unretained(userData).map { $0.context as! Context }
  }

  /// Creates the C handle: sets the fields every handle has in `options` (from `configuration`,
  /// and the callbacks above), hands itself to the core retained as `user_data` and calls `create`
  /// (the kind's `hd_*_create`) with the options and the handle to fill.
  /// - Throws: the create's ``HyperdownError``.
  func create<Options: CoreOptions>(_ options: Options, configuration: some CoreConfiguration,
                                    _ create: (inout Options, inout OpaquePointer?) -> Int32) throws {
    var options = options
    options.log = CoreHandle.log
    options.destroy = CoreHandle.destroy
    options.peerConnected = CoreHandle.peerConnected
    options.peerDisconnected = CoreHandle.peerDisconnected
    let userData = retainedPointer()
    var handle: OpaquePointer?
    let rc = options.withSharedFields(from: configuration) { options in
      options.user_data = userData
      return create(&options, &handle)
    }
    guard rc >= 0, let handle else {
      let error = HyperdownError.last(rc)
      CoreHandle.release(userData)  // a failed create never calls `destroy`
      throw error
    }
    guarded.set(handle)
  }

  private static let log: hd_log_cb = { ud, level, message in
    LogBridge.forward(level, message, to: CoreHandle.unretained(ud)?.logger)
  }

  private static let destroy: hd_destroy_cb = { ud in CoreHandle.release(ud) }

  private static let peerConnected: hd_peer_cb = { ud, key in
    guard let handle = CoreHandle.unretained(ud), let key else { return }
    handle.onPeerConnected?(PublicKey(pointer: key))
  }

  private static let peerDisconnected: hd_peer_closed_cb = { ud, key, status in
    guard let handle = CoreHandle.unretained(ud) else { return }
    let error = status < 0 ? HyperdownError.last(status) : nil
    handle.onPeerDisconnected?(key.map { PublicKey(pointer: $0) }, error)
  }

  /// Runs `body` with the open handle; throws `ECLOSED` once the handle is closing.
  @discardableResult
  func with<R>(_ body: (OpaquePointer) throws -> R) throws -> R {
    try guarded.with(body)
  }

  /// Reads the kind's counters with `read` (`hd_*_stats`). A short blocking read.
  func stats<Stats: CoreStats>(_ read: (OpaquePointer?, UnsafeMutablePointer<Stats>?) -> Int32) throws -> Stats {
    var stats = Stats()
    stats.version = Stats.headerVersion
    try with { h in try HyperdownError.check(read(h, &stats)) }
    return stats
  }

  /// Closes the handle and returns once the core released it. A second call (or one after
  /// ``closeNow()``) waits for the same close.
  func close() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let closed = closeState.withLock { s -> Bool in
        if s.closed { return true }
        s.waiters.append(continuation)
        return false
      }
      if closed { continuation.resume(); return }
      guard let h = guarded.take() else { return }  // another close started
      if !startClose(h) { didClose() }
    }
  }

  /// Closes the handle and blocks until the core released it, so that its folder is free when
  /// this returns (for a `deinit`). On the core's own loop thread, which cannot wait for itself,
  /// it only starts the close.
  func closeNow() {
    guard let h = guarded.take() else { return }
    if closeWaitFunction(h) == HD_ETHREAD.rawValue {
      _ = startClose(h)
    } else {
      didClose()
    }
  }

  /// Starts the close of `h`, retained until the close callback. False if the core refused
  /// (then no callback comes).
  private func startClose(_ h: OpaquePointer) -> Bool {
    let context = retainedPointer()
    if closeFunction(h, { ctx in CoreHandle.take(ctx)!.didClose() }, context) < 0 {
      CoreHandle.release(context)
      return false
    }
    return true
  }

  private func didClose() {
    let waiters = closeState.withLock { s -> [CheckedContinuation<Void, Never>] in
      s.closed = true
      defer { s.waiters = [] }
      return s.waiters
    }
    waiters.forEach { $0.resume() }
  }
}
