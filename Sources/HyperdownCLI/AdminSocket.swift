import Foundation
import Hyperdown
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The admin socket of `hyperdown serve`: a Unix domain socket `DIR/admin/hyperdown.sock`, mode
/// 0600 inside a folder of mode 0700, and a check of the peer's uid (SO_PEERCRED): only the
/// owner of the server process can use it. One JSON request line, one JSON response line.
enum Admin {
  static func folder(dataDirectory: String) -> String { dataDirectory + "/admin" }
  static func socketPath(dataDirectory: String) -> String { folder(dataDirectory: dataDirectory) + "/hyperdown.sock" }

  struct Request: Codable {
    var op: String              // "add", "add2", "status", "backup", "events", "delete",
                                // "deadLetters", "deadLetterUsers", "requeue", "deleteDeadLetters"
    var user: String?           // add, add2, events, delete, deadLetters, requeue,
                                // deleteDeadLetters: the user's public key (hex)
    var payloads: [String]?     // add, add2: the events (JSON text each)
    var users: [String]?        // status: users to count too (0 if none held)
    var path: String?           // backup: the file to write (absolute)
    var after: UInt64?          // events, deadLetters: the page starts after this id (default 0)
    var ids: [UInt64]?          // delete, requeue, deleteDeadLetters: the events (nil: every one)
    var ttlMs: UInt64?          // add2: time to live (nil: the server's default)
    var dedupKey: String?       // add2: deduplication key
    var collapseKey: String?    // add2: collapse key
  }

  struct Response: Codable {
    var ok: Bool
    var error: String?
    var seqs: [UInt64]?
    var status: Status?
    var events: [Event]?        // events: a page (empty: no more)
    var deleted: UInt64?        // delete, deleteDeadLetters: how many
    var deadLetters: [DeadLetter]?  // deadLetters: a page (empty: no more)
    var deadLetterUsers: [UserCount]?  // deadLetterUsers
    var requeued: UInt64?       // requeue: how many
  }

  /// A dead letter in a `deadLetters` answer.
  struct DeadLetter: Codable {
    var id: UInt64
    var createdMs: Int64
    var payload: Data
    var attempts: UInt32
    var reason: String
    var deadMs: Int64
  }

  /// A user and a count, in a `deadLetterUsers` answer.
  struct UserCount: Codable {
    var user: String
    var count: UInt64
  }

  /// A pending event in an `events` answer.
  struct Event: Codable {
    var id: UInt64
    var createdMs: Int64
    var payload: Data
  }

  struct Status: Codable {
    var pendingTotal: UInt64
    var pending: [String: UInt64]
    var connected: [String]
    var eventsAdded: UInt64
    var eventsDelivered: UInt64
    var eventsConfirmed: UInt64
    var commits: UInt64
    var deadLetters: UInt64?    // these four: absent from a server before the queue semantics
    var eventsExpired: UInt64?
    var eventsDropped: UInt64?
    var eventsDead: UInt64?
  }

  static func makeAddress(_ path: String) throws -> sockaddr_un {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: addr.sun_path)
    guard bytes.count < capacity else {
      throw CLIError("admin socket path \(path) is too long (\(bytes.count) bytes, at most \(capacity - 1)); use a shorter --data")
    }
    withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
    return addr
  }

  static func errnoText(_ e: Int32 = errno) -> String { String(cString: strerror(e)) }

  // MARK: the client side (send, status)

  static func call(dataDirectory: String, _ request: Request, timeout: Int = 120) throws -> Response {
    let path = socketPath(dataDirectory: dataDirectory)
    var addr = try makeAddress(path)
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw CLIError("cannot create a socket: \(errnoText())") }
    defer { close(fd) }
    let rc = withUnsafePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    if rc != 0 {
      let e = errno
      switch e {
      case ENOENT, ECONNREFUSED:
        throw CLIError("no server is running on \(dataDirectory) (cannot connect to \(path): \(errnoText(e)))")
      case EACCES, EPERM:
        throw CLIError("permission denied on \(path): only the server's owner may use it")
      default:
        throw CLIError("cannot connect to \(path): \(errnoText(e))")
      }
    }
    var tv = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    try writeLine(fd, try JSONEncoder().encode(request))
    guard let line = try readLine(fd) else {
      throw CLIError("the server on \(dataDirectory) closed the admin connection without an answer")
    }
    do {
      return try JSONDecoder().decode(Response.self, from: line)
    } catch {
      throw CLIError("the server on \(dataDirectory) answered something unreadable")
    }
  }

  static func writeLine(_ fd: Int32, _ data: Data) throws {
    let bytes = Array(data) + [0x0A]
    var offset = 0
    while offset < bytes.count {
      let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      if n < 0 {
        if errno == EINTR { continue }
        throw CLIError("admin socket write failed: \(errnoText())")
      }
      offset += n
    }
  }

  /// Reads up to a newline (nil at end of stream); 64 MiB at most.
  static func readLine(_ fd: Int32) throws -> Data? {
    var buffer = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
      if let nl = buffer.firstIndex(of: 0x0A) { return Data(buffer[..<nl]) }
      if buffer.count > 64 << 20 { throw CLIError("admin message too large") }
      let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      if n < 0 {
        let e = errno
        if e == EINTR { continue }
        if e == EAGAIN || e == EWOULDBLOCK { throw CLIError("the server did not answer in time") }
        throw CLIError("admin socket read failed: \(errnoText(e))")
      }
      if n == 0 { return buffer.isEmpty ? nil : Data(buffer) }
      buffer.append(contentsOf: chunk[..<n])
    }
  }
}

/// The listening side, run by `hyperdown serve`: one thread accepts, one thread per connection.
final class AdminServer: Sendable {
  let path: String
  let fd: Int32
  let server: HyperdownServer
  let acceptDone = Mutex<Bool>(false)

  init(dataDirectory: String, server: HyperdownServer) throws {
    self.server = server
    let folder = Admin.folder(dataDirectory: dataDirectory)
    path = Admin.socketPath(dataDirectory: dataDirectory)
    var addr = try Admin.makeAddress(path)
    if mkdir(folder, 0o700) != 0 && errno != EEXIST {
      throw CLIError("cannot create \(folder): \(Admin.errnoText())")
    }
    var st = stat()
    guard lstat(folder, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == geteuid() else {
      throw CLIError("\(folder) is not a folder owned by this user")
    }
    guard chmod(folder, 0o700) == 0 else { throw CLIError("cannot chmod \(folder): \(Admin.errnoText())") }
    // The store lock is held (the server is open), so a socket left here is stale.
    unlink(path)
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw CLIError("cannot create a socket: \(Admin.errnoText())") }
    let rc = withUnsafePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard rc == 0, chmod(path, 0o600) == 0, listen(fd, 64) == 0 else {
      let text = Admin.errnoText()
      close(fd)
      throw CLIError("cannot listen on \(path): \(text)")
    }
    self.fd = fd
  }

  func start() {
    let thread = Thread { [self] in acceptLoop() }
    thread.name = "hyperdown-admin"
    thread.start()
  }

  /// Stops accepting and removes the socket.
  func stop() {
    shutdown(fd, Int32(SHUT_RDWR))
    unlink(path)
  }

  private func acceptLoop() {
    while true {
      let conn = accept(fd, nil, nil)
      if conn < 0 {
        if errno == EINTR || errno == ECONNABORTED { continue }
        break
      }
      _ = fcntl(conn, F_SETFD, FD_CLOEXEC)
      let thread = Thread { [self] in handle(conn) }
      thread.start()
    }
    close(fd)
    acceptDone.withLock { $0 = true }
  }

  private func handle(_ conn: Int32) {
    defer { close(conn) }
    var cred = PeerCredentials()
    var len = socklen_t(MemoryLayout<PeerCredentials>.size)
    guard getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0, cred.uid == geteuid() else {
      try? Admin.writeLine(conn, try! JSONEncoder().encode(Admin.Response(ok: false, error: "permission denied")))
      return
    }
    var tv = timeval(tv_sec: 30, tv_usec: 0)
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let response: Admin.Response
    do {
      guard let line = try Admin.readLine(conn) else { return }
      let request = try JSONDecoder().decode(Admin.Request.self, from: line)
      response = try blockingAnswer(request)
    } catch let error as CLIError {
      response = Admin.Response(ok: false, error: error.description)
    } catch let error as HyperdownError {
      response = Admin.Response(ok: false, error: "\(error.line)")
    } catch {
      response = Admin.Response(ok: false, error: "bad request: \(error)")
    }
    try? Admin.writeLine(conn, try! JSONEncoder().encode(response))
  }

  /// Runs the async answer on this (non-pool) thread and waits for it.
  private func blockingAnswer(_ request: Admin.Request) throws -> Admin.Response {
    let result = Mutex<Result<Admin.Response, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
      do {
        let answer = try await self.answer(request)
        result.withLock { $0 = .success(answer) }
      } catch {
        result.withLock { $0 = .failure(error) }
      }
      done.signal()
    }
    done.wait()
    return try result.withLock { $0! }.get()
  }

  private func answer(_ request: Admin.Request) async throws -> Admin.Response {
    switch request.op {
    case "add":
      guard let userHex = request.user, let payloads = request.payloads, !payloads.isEmpty else {
        throw CLIError("add needs a user and at least one payload")
      }
      let user = try PublicKey(hex: userHex)
      // In order, sharing commits, under the server's limits and default time to live.
      let results = try await server.addEvents(for: user, payloads: payloads.map { Array($0.utf8) },
                                               options: AddOptions())
      return Admin.Response(ok: true, seqs: results.map(\.seq))
    case "add2":  // with options: a server that does not know it refuses it (never adds without them)
      guard let userHex = request.user, let payloads = request.payloads, !payloads.isEmpty else {
        throw CLIError("add needs a user and at least one payload")
      }
      let user = try PublicKey(hex: userHex)
      var ttl = TimeToLive.serverDefault
      if let ms = request.ttlMs { ttl = .after(.milliseconds(Int64(clamping: ms))) }
      let options = AddOptions(ttl: ttl, dedupKey: request.dedupKey, collapseKey: request.collapseKey)
      let results = try await server.addEvents(for: user, payloads: payloads.map { Array($0.utf8) },
                                               options: options)
      return Admin.Response(ok: true, seqs: results.map(\.seq))
    case "status":
      let stats = try server.stats()
      let connected = try server.connectedUsers()
      // every user the store holds events for, plus the connected and the named ones (0 or more)
      var pending: [String: UInt64] = [:]
      for (user, n) in try server.pendingUsers() { pending[user.hex] = n }
      var others = Set(connected)
      for hex in request.users ?? [] { others.insert(try PublicKey(hex: hex)) }
      for user in others where pending[user.hex] == nil { pending[user.hex] = try server.pending(for: user) }
      let status = Admin.Status(pendingTotal: stats.pendingTotal, pending: pending,
                                connected: connected.map(\.hex).sorted(),
                                eventsAdded: stats.eventsAdded, eventsDelivered: stats.eventsDelivered,
                                eventsConfirmed: stats.eventsConfirmed, commits: stats.commits,
                                deadLetters: stats.deadLetters, eventsExpired: stats.eventsExpired,
                                eventsDropped: stats.eventsDropped, eventsDead: stats.eventsDead)
      return Admin.Response(ok: true, status: status)
    case "backup":
      guard let path = request.path, path.hasPrefix("/") else {
        throw CLIError("backup needs an absolute path")
      }
      try await server.backup(to: path)
      return Admin.Response(ok: true)
    case "events":
      let user = try PublicKey(hex: request.user ?? "")
      let page = try server.events(for: user, after: request.after ?? 0, limit: Admin.eventsPage)
      return Admin.Response(ok: true, events: page.map(Admin.Event.init))
    case "delete":
      let user = try PublicKey(hex: request.user ?? "")
      let n = try await Admin.delete(server, user: user, ids: request.ids)
      return Admin.Response(ok: true, deleted: n)
    case "deadLetters":
      let user = try PublicKey(hex: request.user ?? "")
      let page = try server.deadLetters(for: user, after: request.after ?? 0, limit: Admin.eventsPage)
      return Admin.Response(ok: true, deadLetters: page.map(Admin.DeadLetter.init))
    case "deadLetterUsers":
      let users = try server.deadLetterUsers()
      return Admin.Response(ok: true, deadLetterUsers: users.map { Admin.UserCount(user: $0.user.hex, count: $0.count) })
    case "requeue":
      let user = try PublicKey(hex: request.user ?? "")
      return Admin.Response(ok: true, requeued: try await server.requeueDeadLetters(for: user, ids: request.ids))
    case "deleteDeadLetters":
      let user = try PublicKey(hex: request.user ?? "")
      return Admin.Response(ok: true, deleted: try await server.deleteDeadLetters(for: user, ids: request.ids))
    default:
      throw CLIError("unknown admin operation '\(request.op)'")
    }
  }
}

/// Linux's `struct ucred` (not exported by the Glibc module): what SO_PEERCRED returns.
struct PeerCredentials {
  var pid: pid_t = 0
  var uid: uid_t = 0
  var gid: gid_t = 0
}
