import ArgumentParser
import Foundation

/// Where `hyperdown serve` takes its settings from, lowest first: a file (`--config FILE`), the
/// `HYPERDOWN_*` environment variables, the flags (docs/OPERATIONS.md "Configuration").
///
/// The file has one `key = value` per line, the key a flag's long name without its dashes
/// (`max-pending-per-user = 1000`); blank lines and lines that start with `#` are skipped; a value
/// may be put in double quotes (which are removed). A key the tool does not know is an error that
/// names the file and line. A variable's name is the key in capitals with `_` for `-`, after
/// `HYPERDOWN_` (`HYPERDOWN_MAX_PENDING_PER_USER`); variables the tool does not know are left alone
/// (other programs use the prefix too).
struct ConfigLayers {
  /// The keys the file may hold, in the order `--print-config` shows them.
  let keys: [String]
  /// The file's settings: each key's value and line.
  let file: [String: (value: String, line: Int)]
  let filePath: String?
  let environment: [String: String]
  /// What each resolved setting is, and where it came from, in the order resolved.
  private(set) var inForce: [(key: String, value: String, source: String)] = []

  init(keys: [String], filePath: String?, environment: [String: String]) throws {
    self.keys = keys
    self.filePath = filePath
    self.environment = environment
    guard let filePath else {
      file = [:]
      return
    }
    let text: String
    do {
      text = try String(contentsOfFile: filePath, encoding: .utf8)
    } catch {
      throw CLIError("cannot read the config file \(filePath): \(FileManager.default.fileExists(atPath: filePath) ? "cannot read it" : "no such file")")
    }
    file = try Self.parse(text, path: filePath, keys: Set(keys))
  }

  /// The settings of a config file's `text`.
  static func parse(_ text: String, path: String, keys: Set<String>) throws -> [String: (value: String, line: Int)] {
    var settings: [String: (value: String, line: Int)] = [:]
    for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let line = raw.trimmingCharacters(in: .whitespaces)
      if line.isEmpty || line.hasPrefix("#") { continue }
      guard let eq = line.firstIndex(of: "=") else {
        throw CLIError("\(path):\(i + 1): not a `key = value` line: \(line)")
      }
      let key = line[..<eq].trimmingCharacters(in: .whitespaces)
      var value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
      if value.count >= 2 && value.hasPrefix("\"") && value.hasSuffix("\"") {
        value = String(value.dropFirst().dropLast())
      }
      guard keys.contains(key) else {
        throw CLIError("\(path):\(i + 1): unknown setting '\(key)' (known: \(keys.sorted().joined(separator: ", ")))")
      }
      if let earlier = settings[key] {
        throw CLIError("\(path):\(i + 1): '\(key)' is set already on line \(earlier.line)")
      }
      settings[key] = (value, i + 1)
    }
    return settings
  }

  /// The environment variable of `key`: `HYPERDOWN_` and the key in capitals, `_` for `-`.
  static func environmentName(_ key: String) -> String {
    "HYPERDOWN_" + key.uppercased().replacingOccurrences(of: "-", with: "_")
  }

  /// The setting `key`: the flag's value if given, else the environment's, else the file's, else
  /// `defaultValue`. A value from the environment or the file that `parse` refuses is an error
  /// naming where it came from.
  mutating func resolve<T>(_ key: String, flag: T?, default defaultValue: T? = nil,
                           parse: (String) -> T?, show: (T) -> String = { "\($0)" }) throws -> T? {
    precondition(keys.contains(key), "\(key) is not a known setting")
    if let flag {
      inForce.append((key, show(flag), "--\(key)"))
      return flag
    }
    let variable = Self.environmentName(key)
    if let raw = environment[variable] {
      guard let value = parse(raw) else { throw CLIError("\(variable)=\(raw): not a valid \(key)") }
      inForce.append((key, show(value), variable))
      return value
    }
    if let (raw, line) = file[key], let filePath {
      guard let value = parse(raw) else { throw CLIError("\(filePath):\(line): not a valid \(key): \(raw)") }
      inForce.append((key, show(value), "\(filePath):\(line)"))
      return value
    }
    if let defaultValue {
      inForce.append((key, show(defaultValue), "default"))
    }
    return defaultValue
  }

  /// ``resolve(_:flag:default:parse:show:)`` for a value the command line parses too.
  mutating func resolve<T: ExpressibleByArgument>(_ key: String, flag: T?, default defaultValue: T? = nil) throws -> T? {
    try resolve(key, flag: flag, default: defaultValue, parse: { T(argument: $0) },
                show: { $0.defaultValueDescription })
  }

  /// ``resolve(_:flag:default:parse:show:)`` for a switch: `true`/`false`, `yes`/`no`, `1`/`0`,
  /// `on`/`off`.
  mutating func resolve(_ key: String, flag: Bool?, default defaultValue: Bool) throws -> Bool {
    try resolve(key, flag: flag, default: defaultValue, parse: Self.parseSwitch) ?? defaultValue
  }

  static func parseSwitch(_ text: String) -> Bool? {
    switch text.lowercased() {
    case "true", "yes", "1", "on": true
    case "false", "no", "0", "off": false
    default: nil
    }
  }

  /// The settings in force as a config file (what `--print-config` prints): one `key = value`
  /// line each, in the order of ``keys``, after a comment saying where it came from.
  func rendered() -> String {
    var lines = ["# hyperdown serve: the settings in force (flags over HYPERDOWN_* variables over \(filePath ?? "no config file"))"]
    for key in keys {
      guard let setting = inForce.last(where: { $0.key == key }) else { continue }
      let value = setting.value.trimmingCharacters(in: .whitespaces) == setting.value ? setting.value : "\"\(setting.value)\""
      lines.append("# from \(setting.source)")
      lines.append("\(key) = \(value)")
    }
    return lines.joined(separator: "\n")
  }
}
