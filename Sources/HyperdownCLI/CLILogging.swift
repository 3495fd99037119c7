import Logging

/// One process-wide logger setup: swift-log to stderr at `level`.
enum CLILogging {
  nonisolated(unsafe) private static var bootstrapped = false
  static func logger(_ label: String, level: String) throws -> Logger {
    guard let parsed = Logger.Level(rawValue: level) else {
      throw CLIError("unknown log level '\(level)' (trace, debug, info, notice, warning, error, critical)")
    }
    if !bootstrapped {
      bootstrapped = true
      LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    }
    var logger = Logger(label: label)
    logger.logLevel = parsed
    return logger
  }
}
