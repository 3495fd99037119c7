import CHyperdown
import Logging

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

  /// Passes one of the core's log lines (a `log` callback's arguments) to `logger`.
  static func forward(_ level: hd_log_level_t, _ message: UnsafePointer<CChar>?, to logger: Logger?) {
    guard let logger, let message else { return }
    logger.log(level: swiftLevel(for: level), "\(String(cString: message))")
  }
}
