import ArgumentParser
import Foundation
import Hyperdown
import Logging

/// A failure the tool reports as one line on stderr before it exits with status 1.
struct CLIError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}

enum Output {
  /// Writes `line` and a newline to stdout at once (unbuffered: one write(2)).
  static func line(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
  }

  static func error(_ line: String) {
    FileHandle.standardError.write(Data(("hyperdown: error: " + line + "\n").utf8))
  }
}

/// Runs a command body; any error becomes one line on stderr and exit status 1.
func reportingErrors(_ body: () async throws -> Void) async throws {
  do {
    try await body()
  } catch let error as CLIError {
    Output.error(error.description)
    throw ExitCode.failure
  } catch let error as HyperdownError {
    Output.error(error.line)
    throw ExitCode.failure
  } catch let code as ExitCode {
    throw code
  } catch {
    Output.error("\(error)")
    throw ExitCode.failure
  }
}


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

/// Polls `condition` every 10 ms until it holds; throws `CLIError(what)` after `timeout`.
func waitUntil(_ what: String, timeout: Duration = .seconds(15),
               _ condition: () throws -> Bool) async throws {
  let deadline = ContinuousClock.now + timeout
  while try !condition() {
    if ContinuousClock.now >= deadline { throw CLIError("timed out waiting: \(what)") }
    try await Task.sleep(for: .milliseconds(10))
  }
}

enum JSONText {
  /// Whether `bytes` are one JSON value (fragments allowed).
  static func isValid(_ bytes: [UInt8]) -> Bool {
    (try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])) != nil
  }

  /// The payload as it goes into `{"id": N, "data": ...}`: the JSON text itself on one line (a
  /// raw newline can only be whitespace in valid JSON), else a JSON string of the UTF-8 text, else
  /// nil (not text).
  static func dataField(_ payload: [UInt8]) -> (key: String, value: String) {
    if isValid(payload) {
      let text = String(decoding: payload, as: UTF8.self)
        .replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
      return ("data", text)
    }
    if let text = String(validating: payload, as: UTF8.self) {
      return ("data", quote(text))
    }
    return ("dataBase64", quote(Data(payload).base64EncodedString()))
  }

  static func quote(_ s: String) -> String {
    let data = try! JSONSerialization.data(withJSONObject: s, options: [.fragmentsAllowed, .withoutEscapingSlashes])
    return String(decoding: data, as: UTF8.self)
  }
}

extension HyperdownError {
  /// The detail with the code's name once: "connect to ...: connection refused (ECONNREFUSED)".
  var line: String {
    if message.isEmpty { return description }
    return message.contains(name) ? message : "\(message) (\(name))"
  }
}
