import Foundation

/// The tool's lines on stdout and stderr.
enum Output {
  /// Writes `line` and a newline to stdout at once (unbuffered: one write(2)).
  static func line(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
  }

  static func error(_ line: String) {
    FileHandle.standardError.write(Data(("hyperdown: error: " + line + "\n").utf8))
  }
}
