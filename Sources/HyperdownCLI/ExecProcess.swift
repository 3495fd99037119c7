import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One run of `/bin/sh -c COMMAND` in a process group of its own, its stdin fed from memory, its
/// stdout sent to ours' stderr and its stderr both forwarded there and kept (its first line
/// names why it failed). Bounded by a timeout, after which the whole group is killed, so that
/// a command's own children cannot keep it alive.
enum ExecProcess {
  enum Status: Equatable, Sendable {
    case exited(Int32)
    case signaled(Int32)
    case timedOut
    /// The calling task was cancelled: the group was killed.
    case cancelled
    case spawnFailed(String)
  }

  struct Outcome: Sendable {
    var status: Status
    var stderrFirstLine: String
  }

  /// Most stderr bytes kept to find the first line (the rest is only forwarded).
  static let keptStderr = 4096

  /// Runs the command on a thread of its own (it blocks in poll); a cancellation of the calling
  /// task kills the command's group.
  static func run(_ command: String, input: [UInt8], timeout: Duration) async -> Outcome {
    let box = CancelFlag()
    return await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
        let thread = Thread {
          continuation.resume(returning: runBlocking(command, input: input, timeout: timeout, cancelled: box))
        }
        thread.name = "hyperdown-exec"
        thread.start()
      }
    } onCancel: {
      box.flag.store(true, ordering: .relaxed)
    }
  }

  /// A flag a thread polls (Atomic is not copyable: shared through a class).
  final class CancelFlag: Sendable {
    let flag = Atomic<Bool>(false)
  }

  static func runBlocking(_ command: String, input: [UInt8], timeout: Duration,
                          cancelled: CancelFlag) -> Outcome {
    var stdinPipe: [Int32] = [-1, -1]
    var stderrPipe: [Int32] = [-1, -1]
    guard pipe(&stdinPipe) == 0 else { return failed("pipe: \(errnoText())") }
    guard pipe(&stderrPipe) == 0 else {
      close(stdinPipe[0]); close(stdinPipe[1])
      return failed("pipe: \(errnoText())")
    }
    // only the copies the child gets (dup2) stay open across its exec
    for fd in stdinPipe + stderrPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, stdinPipe[0], 0)
    posix_spawn_file_actions_adddup2(&actions, 2, 1)  // its stdout: our stderr (ours is JSON lines)
    posix_spawn_file_actions_adddup2(&actions, stderrPipe[1], 2)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    // A group of its own (killed whole on a timeout); the signals this process ignores or
    // blocks (SIGPIPE, and those ServiceLifecycle handles) back to their defaults for it.
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for signal in [SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT] { sigaddset(&defaults, signal) }
    var noMask = sigset_t()
    sigemptyset(&noMask)
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setsigmask(&attributes, &noMask)
    posix_spawnattr_setpgroup(&attributes, 0)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup("sh"), strdup("-c"), strdup(command), nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, environ)
    close(stdinPipe[0])
    close(stderrPipe[1])
    let stdinFd = stdinPipe[1], stderrFd = stderrPipe[0]
    if rc != 0 {
      close(stdinFd); close(stderrFd)
      return failed(String(cString: strerror(rc)))
    }
    _ = fcntl(stdinFd, F_SETFL, fcntl(stdinFd, F_GETFL) | O_NONBLOCK)
    _ = fcntl(stderrFd, F_SETFL, fcntl(stderrFd, F_GETFL) | O_NONBLOCK)

    var writeFd: Int32 = stdinFd
    var written = 0
    if input.isEmpty { close(writeFd); writeFd = -1 }
    var kept: [UInt8] = []
    var readOpen = true
    let deadline = ContinuousClock.now + timeout
    var status: Status?
    var chunk = [UInt8](repeating: 0, count: 65536)

    func drainStderr() {
      while readOpen {
        let n = chunk.withUnsafeMutableBytes { read(stderrFd, $0.baseAddress, $0.count) }
        if n > 0 {
          if kept.count < keptStderr { kept += chunk[..<min(n, keptStderr - kept.count)] }
          _ = chunk.withUnsafeBytes { write(2, $0.baseAddress, n) }  // forwarded
        } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
          readOpen = false
        } else if errno == EAGAIN {
          return
        }
      }
    }

    while status == nil {
      var waitStatus: Int32 = 0
      let done = waitpid(pid, &waitStatus, WNOHANG)
      if done == pid {
        drainStderr()
        status = exitStatus(waitStatus)
        break
      }
      let now = ContinuousClock.now
      if now >= deadline || cancelled.flag.load(ordering: .relaxed) {
        kill(-pid, SIGKILL)
        while waitpid(pid, &waitStatus, 0) < 0 && errno == EINTR {}
        drainStderr()
        status = now >= deadline ? .timedOut : .cancelled
        break
      }
      var fds: [pollfd] = []
      if readOpen { fds.append(pollfd(fd: stderrFd, events: Int16(POLLIN), revents: 0)) }
      if writeFd >= 0 { fds.append(pollfd(fd: writeFd, events: Int16(POLLOUT), revents: 0)) }
      _ = poll(&fds, nfds_t(fds.count), 20)  // short: the exit is seen by waitpid
      if readOpen { drainStderr() }
      if writeFd >= 0 {
        let n = input[written...].withUnsafeBytes { write(writeFd, $0.baseAddress, $0.count) }
        if n > 0 { written += n }
        // all written, or the command closed its stdin (EPIPE): it gets an end of file
        if written == input.count || (n < 0 && errno != EAGAIN && errno != EINTR) {
          close(writeFd)
          writeFd = -1
        }
      }
    }
    if writeFd >= 0 { close(writeFd) }
    close(stderrFd)
    let text = String(decoding: kept, as: UTF8.self)
    let first = text.split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? ""
    return Outcome(status: status!, stderrFirstLine: first.trimmingCharacters(in: .whitespacesAndNewlines))
  }

  static func exitStatus(_ s: Int32) -> Status {
    // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import (macros)
    let signal = s & 0x7f
    if signal == 0 { return .exited((s >> 8) & 0xff) }
    return .signaled(signal)
  }

  static func failed(_ why: String) -> Outcome { Outcome(status: .spawnFailed(why), stderrFirstLine: "") }

  static func errnoText() -> String { String(cString: strerror(errno)) }
}
