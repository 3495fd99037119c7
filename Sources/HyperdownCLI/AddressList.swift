import Hyperdown

/// The lists `hyperdown listen` takes in one argument, comma-separated: the server's addresses
/// (`--server a:7000,b:7000`, dialed in turn) and the server keys it accepts (`--server-key
/// OLD,NEW` during a key rollover).
enum AddressList {
  /// The addresses of `text`: each `host:port` or `[v6]:port`, the port 1 to 65535 (spaces around
  /// an entry are dropped). Throws a ``CLIError`` that names the first bad one.
  static func addresses(_ text: String) throws -> [String] {
    let entries = entries(text)
    guard !entries.isEmpty else { throw CLIError("--server: no address given") }
    for entry in entries {
      guard let colon = entry.lastIndex(of: ":") else {
        throw CLIError("--server: '\(entry)' is not HOST:PORT")
      }
      let host = entry[..<colon]
      let port = entry[entry.index(after: colon)...]
      guard !host.isEmpty, let number = Int(port), (1...65535).contains(number) else {
        throw CLIError("--server: '\(entry)' is not HOST:PORT (a port from 1 to 65535)")
      }
      if host.contains(":") && !(host.hasPrefix("[") && host.hasSuffix("]")) {
        throw CLIError("--server: '\(entry)': an IPv6 address goes in brackets, [::1]:7000")
      }
    }
    return entries
  }

  /// The server keys of `text`, each 64 hex digits.
  static func keys(_ text: String) throws -> [PublicKey] {
    let entries = entries(text)
    guard !entries.isEmpty else { throw CLIError("--server-key: no key given") }
    return try entries.map { entry in try hex("--server-key \(entry.prefix(16))") { try PublicKey(hex: entry) } }
  }

  private static func entries(_ text: String) -> [String] {
    text.split(separator: ",", omittingEmptySubsequences: false)
      .map { $0.trimmingCharacters(in: .whitespaces) }
      .filter { !$0.isEmpty }
  }
}
