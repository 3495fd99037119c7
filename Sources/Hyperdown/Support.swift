import CHyperdown
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Guards a C handle against use after close.
///
/// The core's rule is that a handle must not be used once `hd_*_close` returned. Every Swift call
/// into a handle holds the read side of this lock for the duration of the C call; closing takes
/// the write side, clears the pointer and then calls the close function *after* releasing the
/// lock. So a call either runs entirely before the close started or sees the handle closed and
/// throws `ECLOSED`; it never touches a freed handle. Callbacks that run on the core's loop thread
/// never take this lock (the handle is alive while one of its callbacks runs), so a blocking read
/// (stats) that waits for the loop thread cannot deadlock with it. Completions
/// (`hd_event_complete`, `hd_consumed_complete_all`) do not need the handle: the objects they
/// complete outlive it, and completing them after the close only frees them.
final class HandleGuard: @unchecked Sendable {
  // @unchecked: `handle` is only read or written while `lock` is held (read or write side).
  private let lock: UnsafeMutablePointer<pthread_rwlock_t>
  private var handle: OpaquePointer?

  init() {
    lock = .allocate(capacity: 1)
    pthread_rwlock_init(lock, nil)
  }

  deinit {
    pthread_rwlock_destroy(lock)
    lock.deallocate()
  }

  func set(_ h: OpaquePointer) {
    pthread_rwlock_wrlock(lock)
    handle = h
    pthread_rwlock_unlock(lock)
  }

  /// Runs `body` with the open handle; throws `ECLOSED` once the handle is closing.
  @discardableResult
  func with<R>(_ body: (OpaquePointer) throws -> R) throws -> R {
    pthread_rwlock_rdlock(lock)
    defer { pthread_rwlock_unlock(lock) }
    guard let h = handle else {
      throw HyperdownError(code: HD_ECLOSED.rawValue, message: "the handle is closed or closing")
    }
    return try body(h)
  }

  /// Marks the handle closed and returns it (nil if it was closed already). The caller then closes
  /// it; nobody else will use it any more.
  func take() -> OpaquePointer? {
    pthread_rwlock_wrlock(lock)
    defer { pthread_rwlock_unlock(lock) }
    let h = handle
    handle = nil
    return h
  }
}

/// A value that crosses a task boundary although its type is not `Sendable`: a pointer to a core
/// object whose functions are documented as callable from any thread (an `hd_consumed_t` batch).
struct UnsafeTransfer<Value>: @unchecked Sendable {
  let value: Value
}

/// Bridges the core's log lines to swift-log.
enum LogBridge {
  /// The most verbose core level worth producing for a logger.
  static func coreLevel(for level: Logger.Level) -> hd_log_level_t {
    switch level {
    case .trace, .debug: return HD_LOG_DEBUG
    case .info, .notice: return HD_LOG_INFO
    case .warning: return HD_LOG_WARN
    case .error, .critical: return HD_LOG_ERROR
    }
  }

  static func swiftLevel(for level: hd_log_level_t) -> Logger.Level {
    switch level {
    case HD_LOG_ERROR: return .error
    case HD_LOG_WARN: return .warning
    case HD_LOG_INFO: return .info
    default: return .debug
    }
  }
}

/// Copies Swift strings into C strings that live for the duration of `body`.
func withCStrings<R>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) throws -> R) rethrows -> R {
  let copies: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0)! } }
  defer { copies.forEach { free($0) } }
  return try body(copies.map { $0.map { UnsafePointer($0) } })
}

extension Duration {
  /// Whole milliseconds, clamped to `UInt32` (0 for a negative duration).
  var clampedMilliseconds: UInt32 {
    let (seconds, attoseconds) = components
    if seconds < 0 { return 0 }
    let ms = seconds.multipliedReportingOverflow(by: 1000)
    if ms.overflow { return UInt32.max }
    let total = ms.partialValue + attoseconds / 1_000_000_000_000_000
    return total > Int64(UInt32.max) ? UInt32.max : UInt32(total)
  }
}
