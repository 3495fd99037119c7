import CHyperdown

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
