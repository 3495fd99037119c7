import ArgumentParser
import Foundation
import Logging

/// How the tool writes its log lines on stderr (`--log-format`).
enum LogFormat: String, ExpressibleByArgument, CaseIterable {
  /// swift-log's own lines, for people.
  case text
  /// One JSON object per line, for collectors: `{"time", "level", "label", "message", "fields"}`.
  case json
}

/// One process-wide logger setup: swift-log to stderr at `level`, as text or JSON.
enum CLILogging {
  nonisolated(unsafe) private static var bootstrapped = false
  static func logger(_ label: String, level: String, format: LogFormat = .text) throws -> Logger {
    guard let parsed = Logger.Level(rawValue: level) else {
      throw CLIError("unknown log level '\(level)' (trace, debug, info, notice, warning, error, critical)")
    }
    if !bootstrapped {
      bootstrapped = true
      switch format {
      case .text: LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
      case .json: LoggingSystem.bootstrap { JSONLogHandler(label: $0) }
      }
    }
    var logger = Logger(label: label)
    logger.logLevel = parsed
    return logger
  }
}

/// A swift-log handler that writes one JSON object per line on stderr:
/// `{"time": "2026-12-02T18:20:00.123Z", "level": "info", "label": "hyperdown.serve",
/// "message": "...", "fields": {...}}` (`fields`: the metadata, present when there is some).
struct JSONLogHandler: LogHandler {
  let label: String
  var logLevel: Logger.Level = .info
  var metadata: Logger.Metadata = [:]

  init(label: String) { self.label = label }

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  func log(event: LogEvent) {
    let fields = metadata.merging(event.metadata ?? [:]) { _, new in new }
    FileHandle.standardError.write(Data((Self.line(time: Date(), level: event.level, label: label,
                                                   message: "\(event.message)", fields: fields) + "\n").utf8))
  }

  /// One log line's JSON (keys in a fixed order, no newline inside).
  static func line(time: Date, level: Logger.Level, label: String, message: String, fields: Logger.Metadata) -> String {
    var parts = ["\"time\": \(JSONText.quote(timestamp(time)))", "\"level\": \(JSONText.quote(level.rawValue))",
                 "\"label\": \(JSONText.quote(label))", "\"message\": \(JSONText.quote(message))"]
    if !fields.isEmpty {
      let entries = fields.sorted { $0.key < $1.key }.map { "\(JSONText.quote($0.key)): \(json($0.value))" }
      parts.append("\"fields\": {" + entries.joined(separator: ", ") + "}")
    }
    return "{" + parts.joined(separator: ", ") + "}"
  }

  private static func json(_ value: Logger.Metadata.Value) -> String {
    switch value {
    case .string(let s): JSONText.quote(s)
    case .stringConvertible(let c): JSONText.quote(c.description)
    case .array(let a): "[" + a.map(json).joined(separator: ", ") + "]"
    case .dictionary(let d): "{" + d.sorted { $0.key < $1.key }.map { "\(JSONText.quote($0.key)): \(json($0.value))" }.joined(separator: ", ") + "}"
    }
  }

  /// RFC 3339 in UTC with milliseconds.
  private static func timestamp(_ date: Date) -> String {
    var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
    let millis = Int((date.timeIntervalSince1970 - Double(seconds)) * 1000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                  Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), millis)
  }
}
