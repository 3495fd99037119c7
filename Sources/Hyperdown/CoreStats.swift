import CHyperdown

/// `hd_server_stats_t`, `hd_client_stats_t` and `hd_rollback_stats_t`: a struct the core fills, versioned by its first
/// field (``CoreHandle/stats(_:)``).
protocol CoreStats {
  init()
  var version: UInt32 { get set }
  /// The version this module was built with (`HD_*_STATS_VERSION`).
  static var headerVersion: UInt32 { get }
}

extension hd_server_stats_t: CoreStats {
  static var headerVersion: UInt32 { UInt32(HD_SERVER_STATS_VERSION) }
}

extension hd_client_stats_t: CoreStats {
  static var headerVersion: UInt32 { UInt32(HD_CLIENT_STATS_VERSION) }
}

extension hd_rollback_stats_t: CoreStats {
  static var headerVersion: UInt32 { UInt32(HD_ROLLBACK_STATS_VERSION) }
}
