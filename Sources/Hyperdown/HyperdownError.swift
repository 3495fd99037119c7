import CHyperdown

/// An error from the Hyperdown core: one of the `HD_E*` codes of `hyperdown.h` with the detail
/// message the core recorded on the failing thread.
public struct HyperdownError: Error, Sendable, Equatable, CustomStringConvertible {
  /// The negative `HD_E*` code.
  public let code: Int32
  /// The code's name without prefix, e.g. `"EAUTH"`.
  public var name: String { String(cString: hd_err_name(code)) }
  /// What went wrong, in the core's words.
  public let message: String

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

  public var description: String { "\(name): \(message)" }

  public static let invalidArgument = HD_EINVAL.rawValue
  public static let badKey = HD_EKEY.rawValue
  public static let badHex = HD_EHEX.rawValue
  public static let wrongTopic = HD_ETOPIC.rawValue
  public static let authenticationFailed = HD_EAUTH.rawValue
}
