import CHyperdown

/// An error from the Hyperdown core: one of the `HD_E*` codes of `hyperdown.h` with the detail
/// message the core recorded on the failing thread.
///
/// Compare ``code`` with the constants below (`error.code == HyperdownError.busy`) or read
/// ``name`` (`"EBUSY"`).
public struct HyperdownError: Error, Sendable, Equatable, CustomStringConvertible {
  /// The negative `HD_E*` code.
  public let code: Int32
  /// The code's name without prefix, e.g. `"EAUTH"`.
  public var name: String { String(cString: hd_err_name(code)) }
  /// What went wrong, in the core's words (which key, which address, which byte).
  public let message: String

  /// An error with this code and message.
  public init(code: Int32, message: String) {
    self.code = code
    self.message = message
  }

  /// Builds the error for `code` from the calling thread's last error detail.
  static func last(_ code: Int32) -> HyperdownError {
    let detail = String(cString: hd_last_error_message())
    return HyperdownError(code: code, message: detail.isEmpty ? String(cString: hd_strerror(code)) : detail)
  }

  /// Runs a core call and throws its error when it returns a negative code.
  @discardableResult
  static func check(_ rc: Int32) throws -> Int32 {
    if rc < 0 { throw HyperdownError.last(rc) }
    return rc
  }

  /// `NAME: message`.
  public var description: String { "\(name): \(message)" }

  /// `EINVAL`: an invalid argument.
  public static let invalidArgument = HD_EINVAL.rawValue
  /// `EKEY`: a key pair that does not verify, or an invalid public key.
  public static let badKey = HD_EKEY.rawValue
  /// `EHEX`: not valid hexadecimal of the expected length.
  public static let badHex = HD_EHEX.rawValue
  /// `ETOPIC`: the peer is on another topic (folder name).
  public static let wrongTopic = HD_ETOPIC.rawValue
  /// `EAUTH`: the handshake failed (for a client: the server has another key).
  public static let authenticationFailed = HD_EAUTH.rawValue
  /// `EPROTO`: a protocol violation.
  public static let protocolViolation = HD_EPROTO.rawValue
  /// `ETIMEDOUT`: a handshake or a silent peer timed out.
  public static let timedOut = HD_ETIMEDOUT.rawValue
  /// `ECONNREFUSED`: nobody listens at the address.
  public static let connectionRefused = HD_ECONNREFUSED.rawValue
  /// `ECONNRESET`: the peer reset the connection.
  public static let connectionReset = HD_ECONNRESET.rawValue
  /// `EADDRINUSE`: the listen address is taken.
  public static let addressInUse = HD_EADDRINUSE.rawValue
  /// `EADDR`: a malformed address.
  public static let badAddress = HD_EADDR.rawValue
  /// `EIO`: an input/output error.
  public static let io = HD_EIO.rawValue
  /// `ECLOSED`: the server or client is closed or closing.
  public static let closed = HD_ECLOSED.rawValue
  /// `EBUSY`: the storage folder is used by another process (or another handle).
  public static let busy = HD_EBUSY.rawValue
  /// `ENOSPC`: no space left on the device.
  public static let noSpace = HD_ENOSPC.rawValue
  /// `ESTORE`: a storage error.
  public static let storage = HD_ESTORE.rawValue
  /// `ECORRUPT`: stored data is corrupt.
  public static let corrupt = HD_ECORRUPT.rawValue
  /// `EVERSION`: a library or protocol version mismatch.
  public static let versionMismatch = HD_EVERSION.rawValue
  /// `EBYE`: the peer closed the connection.
  public static let bye = HD_EBYE.rawValue
  /// `EBUFSIZE`: a buffer too small for what was to go into it.
  public static let bufferTooSmall = HD_EBUFSIZE.rawValue
  /// `EREPLACED`: a newer connection with the same key took this one's place.
  public static let replaced = HD_EREPLACED.rawValue
  /// `ENOMEM`: out of memory.
  public static let outOfMemory = HD_ENOMEM.rawValue
  /// `EINIT`: the library's initialisation failed (libsodium, SQLite).
  public static let initializationFailed = HD_EINIT.rawValue
  /// `EMSGSIZE`: a message or an event too large for the peer's limit.
  public static let messageTooLarge = HD_EMSGSIZE.rawValue
  /// `ECANCELED`: the operation was canceled.
  public static let canceled = HD_ECANCELED.rawValue
  /// `ENOTFOUND`: not found (a store id the client never saw...).
  public static let notFound = HD_ENOTFOUND.rawValue
  /// `EALREADY`: already done (an event or a request answered twice).
  public static let alreadyDone = HD_EALREADY.rawValue
  /// `ESTATE`: the operation is not valid in the current state.
  public static let invalidState = HD_ESTATE.rawValue
  /// `ETHREAD`: a blocking call on the handle's own loop thread.
  public static let wrongThread = HD_ETHREAD.rawValue
  /// `ELIMIT`: the user is at its limit of held events or bytes
  /// (``ServerConfiguration/maxPendingPerUser``, ``ServerConfiguration/maxBytesPerUser``) under
  /// ``OverflowPolicy/reject``.
  public static let limitReached = HD_ELIMIT.rawValue

  /// Every code the core had when this module was built, each with its constant above.
  public static let knownCodes: [Int32] = [
    invalidArgument, outOfMemory, initializationFailed, versionMismatch, badKey, badHex,
    wrongTopic, authenticationFailed, protocolViolation, messageTooLarge, timedOut,
    connectionRefused, connectionReset, addressInUse, badAddress, io, closed, busy, noSpace,
    storage, corrupt, canceled, notFound, alreadyDone, bufferTooSmall, invalidState, bye,
    wrongThread, replaced, limitReached,
  ]
}
