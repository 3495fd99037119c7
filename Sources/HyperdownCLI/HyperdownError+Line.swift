import Hyperdown

extension HyperdownError {
  /// The detail with the code's name once: "connect to ...: connection refused (ECONNREFUSED)".
  var line: String {
    if message.isEmpty { return description }
    return message.contains(name) ? message : "\(message) (\(name))"
  }
}
