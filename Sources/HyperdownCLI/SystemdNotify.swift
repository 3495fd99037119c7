import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The service manager's readiness protocol (sd_notify(3)), spoken without libsystemd: one
/// datagram to the socket `NOTIFY_SOCKET` names, when it names one (systemd sets it for a
/// `Type=notify` service). `READY=1` once the server listens, `STOPPING=1` when it leaves.
enum SystemdNotify {
  /// Sends `state`; false when there is no socket to tell or the send failed (nothing else to do:
  /// a manager that waits for it times out and says so).
  @discardableResult
  static func send(_ state: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
    guard var path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return false }
    let abstract = path.hasPrefix("@")  // Linux's abstract namespace: a NUL first byte
    if abstract { path.removeFirst() }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard bytes.count + (abstract ? 1 : 0) < capacity else { return false }
    withUnsafeMutableBytes(of: &address.sun_path) { sunPath in
      sunPath.copyBytes(from: (abstract ? [0] : []) + bytes)
    }
    let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 1 : 0))
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    let message = Array(state.utf8)
    let sent = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sockaddr in
        message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sockaddr, length) }
      }
    }
    return sent == message.count
  }
}
