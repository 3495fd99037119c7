import CHyperdown

/// What `hd_server_options_t` and `hd_client_options_t` have in common, so that one function
/// sets it for either kind of handle (``CoreHandle/create(_:configuration:_:)``).
protocol CoreOptions {
  init()
  /// The options with the core's defaults (`hd_*_options_init`).
  static var defaults: Self { get }
  var keypair: UnsafePointer<hd_keypair_t>! { get set }
  var topic: UnsafePointer<CChar>! { get set }
  /// Where a server listens (`listen`), the server a client dials (`connect`).
  var address: UnsafePointer<CChar>! { get set }
  var data_dir: UnsafePointer<CChar>! { get set }
  var handshake_timeout_ms: UInt32 { get set }
  var keepalive_ms: UInt32 { get set }
  var idle_timeout_ms: UInt32 { get set }
  var max_message_bytes: UInt32 { get set }
  var sync_normal: Int32 { get set }
  var user_data: UnsafeMutableRawPointer! { get set }
  var destroy: hd_destroy_cb! { get set }
  var log: hd_log_cb! { get set }
  var log_level: hd_log_level_t { get set }
  /// A peer authenticated: a user of a server (`on_peer_connected`), a client's server (`on_connected`).
  var peerConnected: hd_peer_cb! { get set }
  /// A connection ended (`on_peer_disconnected`, `on_disconnected`).
  var peerDisconnected: hd_peer_closed_cb! { get set }
}

extension CoreOptions {
  /// Options set to the defaults by `initialize` (`hd_*_options_init`) for `version`.
  static func initialized(by initialize: (UnsafeMutablePointer<Self>?, UInt32) -> Int32, version: Int32) -> Self {
    var options = Self()
    _ = initialize(&options, UInt32(version))
    return options
  }

  /// Sets the fields every handle has from `configuration` and runs `body` with the options: the
  /// C strings and the key pair they point to live for the duration of `body` (the key pair is
  /// wiped after).
  mutating func withSharedFields<R>(from c: some CoreConfiguration, _ body: (inout Self) -> R) -> R {
    handshake_timeout_ms = c.handshakeTimeout?.clampedMilliseconds ?? 0
    keepalive_ms = c.keepalive?.clampedMilliseconds ?? 0
    idle_timeout_ms = c.idleTimeout?.clampedMilliseconds ?? 0
    max_message_bytes = c.maxMessageBytes ?? 0
    sync_normal = c.durability == .normal ? 1 : 0
    log_level = LogBridge.coreLevel(for: c.logger.logLevel)
    return withCStrings([c.folderName, c.address, c.dataDirectory]) { s in
      c.keyPair.withCKeyPair { kp in
        keypair = kp
        topic = s[0]
        address = s[1]
        data_dir = s[2]
        return body(&self)
      }
    }
  }
}

extension hd_server_options_t: CoreOptions {
  static var defaults: Self { initialized(by: hd_server_options_init, version: HD_SERVER_OPTIONS_VERSION) }
  var address: UnsafePointer<CChar>! { get { listen } set { listen = newValue } }
  var peerConnected: hd_peer_cb! { get { on_peer_connected } set { on_peer_connected = newValue } }
  var peerDisconnected: hd_peer_closed_cb! { get { on_peer_disconnected } set { on_peer_disconnected = newValue } }
}

extension hd_client_options_t: CoreOptions {
  static var defaults: Self { initialized(by: hd_client_options_init, version: HD_CLIENT_OPTIONS_VERSION) }
  var address: UnsafePointer<CChar>! { get { connect } set { connect = newValue } }
  var peerConnected: hd_peer_cb! { get { on_connected } set { on_connected = newValue } }
  var peerDisconnected: hd_peer_closed_cb! { get { on_disconnected } set { on_disconnected = newValue } }
}
