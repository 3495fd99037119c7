import CHyperdown
import CoreMetrics
import Synchronization

/// A server's metrics through swift-metrics: every counter and gauge of `hd_server_metrics`,
/// under the same names, and the time from an add to its durability as a `Timer`, so that a
/// service that bootstraps a backend (swift-prometheus, say) exports them with no code of its own.
///
/// The core counts; this reads its metrics every ``ServerConfiguration/metricsInterval`` and
/// hands swift-metrics the increase since the last read (counters) or the value (gauges). The
/// core's histogram is not replayed (a backend records single values): the timer records each
/// add made through this API, from the call to its durability.
final class ServerMetrics: Sendable {
  /// The timer's name, the core's histogram's: seconds from an add's call to its commit.
  static let addDurableName = "hyperdown_add_durable_seconds"

  let factory: any MetricsFactory
  let dimensions: [(String, String)]
  let addDurable: CoreMetrics.Timer

  private struct State {
    /// Each counter and the value handed on so far.
    var counters: [String: (counter: CoreMetrics.Counter, handedOn: UInt64)] = [:]
    var gauges: [String: Gauge] = [:]
  }
  private let state = Mutex(State())

  init(factory: any MetricsFactory, dimensions: [(String, String)]) {
    self.factory = factory
    self.dimensions = dimensions
    addDurable = CoreMetrics.Timer(label: Self.addDurableName, dimensions: dimensions, factory: factory)
  }

  /// Hands on what the core's metrics `text` adds to the last read. Reads may race (the
  /// periodic one, the last one at leave): a counter only moves up to the highest value seen, so
  /// nothing counts twice.
  func update(fromText text: String) {
    var increases: [(CoreMetrics.Counter, UInt64)] = []
    var levels: [(Gauge, Double)] = []
    state.withLock { s in
      for sample in PrometheusText.samples(text) {
        switch sample.type {
        case .counter:
          let now = UInt64(exactly: sample.value.rounded(.down)) ?? 0
          var entry = s.counters[sample.name]
            ?? (CoreMetrics.Counter(label: sample.name, dimensions: dimensions, factory: factory), 0)
          if now > entry.handedOn {
            increases.append((entry.counter, now - entry.handedOn))
            entry.handedOn = now
          }
          s.counters[sample.name] = entry
        case .gauge:
          let gauge = s.gauges[sample.name] ?? Gauge(label: sample.name, dimensions: dimensions, factory: factory)
          s.gauges[sample.name] = gauge
          levels.append((gauge, sample.value))
        }
      }
    }
    for (counter, increase) in increases { counter.increment(by: Int64(clamping: increase)) }
    for (gauge, value) in levels { gauge.record(value) }
  }

  /// An add made through the API became durable.
  func addedDurable(since start: ContinuousClock.Instant) {
    let (seconds, attoseconds) = (ContinuousClock.now - start).components
    addDurable.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
  }

  /// Reads the server's metrics every `interval` and hands them on, until the task is cancelled
  /// or the handle closes.
  static func follow(_ handle: CoreHandle, into metrics: ServerMetrics, every interval: Duration) -> Task<Void, Never> {
    Task.detached {
      while !Task.isCancelled {
        do {
          try await Task.sleep(for: interval)
          metrics.update(fromText: try metricsText(handle))
        } catch {
          return  // cancelled, or the handle closed
        }
      }
    }
  }
}

/// The metrics text of the server `handle` (`hd_server_metrics`).
func metricsText(_ handle: CoreHandle) throws -> String {
  var capacity = 8192
  while true {
    var buffer = [CChar](repeating: 0, count: capacity)
    let length = Int(try handle.with { h in try HyperdownError.check(hd_server_metrics(h, &buffer, capacity)) })
    if length < capacity {
      return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    capacity = length + 1024  // the whole text's length, and room for it to grow meanwhile
  }
}

/// What swift-metrics takes of the Prometheus text format: the samples of the counters and
/// gauges (a `# TYPE` line names a family's type; histograms and untyped families are left out).
enum PrometheusText {
  enum SampleType { case counter, gauge }
  struct Sample: Equatable {
    var name: String
    var type: SampleType
    var value: Double
  }

  static func samples(_ text: String) -> [Sample] {
    var types: [Substring: SampleType] = [:]
    var samples: [Sample] = []
    for line in text.split(separator: "\n") {
      let fields = line.split(separator: " ")
      if fields.first == "#" {
        if fields.count == 4, fields[1] == "TYPE" {
          types[fields[2]] = fields[3] == "counter" ? .counter : fields[3] == "gauge" ? .gauge : nil
        }
        continue
      }
      // `name value` (a sample with labels belongs to a histogram here: left out)
      guard fields.count >= 2, let type = types[fields[0]], let value = Double(fields[1]) else { continue }
      samples.append(Sample(name: String(fields[0]), type: type, value: value))
    }
    return samples
  }
}
