import Logging

/// What ``ServerConfiguration`` and ``ClientConfiguration`` share: the settings every handle
/// has (``CoreOptions``).
protocol CoreConfiguration {
  var keyPair: KeyPair { get }
  var folderName: String { get }
  var dataDirectory: String { get }
  /// Where a server listens, the server a client dials.
  var address: String { get }
  var durability: Durability { get }
  var handshakeTimeout: Duration? { get }
  var keepalive: Duration? { get }
  var idleTimeout: Duration? { get }
  var maxMessageBytes: UInt32? { get }
  var logger: Logger { get }
}

extension ServerConfiguration: CoreConfiguration {
  var address: String { listen }
}

extension ClientConfiguration: CoreConfiguration {
  var address: String { server }
}
