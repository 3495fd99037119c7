import CHyperdown

extension HyperdownServer {
  /// The server's metrics in the Prometheus text exposition format (version 0.0.4), names
  /// prefixed `hyperdown_` (`hd_server_metrics`): counters since the server was created,
  /// gauges, and the histogram of the time from an add to its commit. Serve it from your own
  /// HTTP route as `text/plain; version=0.0.4`; or let the core serve it
  /// (``ServerConfiguration/metricsListen``); or bootstrap a swift-metrics backend, which gets
  /// the same counters (``ServerConfiguration/metricsInterval``). A short blocking read.
  public func metrics() throws -> String {
    try metricsText(handle)
  }

  /// The port of the core's metrics responder (``ServerConfiguration/metricsListen``, useful
  /// with port 0), or `nil` when the server has none (`hd_server_metrics_port`).
  public var metricsPort: Int? {
    guard let port = try? handle.with({ h in hd_server_metrics_port(h) }), port > 0 else { return nil }
    return Int(port)
  }
}
