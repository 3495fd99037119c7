import CoreMetrics
import Foundation
import Synchronization
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

@testable import Hyperdown

/// Issue 12 in the Swift API: many events in one call, the metrics (text, the core's responder
/// and swift-metrics), a client with a list of addresses and of server keys (key rollover).
@Suite(.timeLimit(.minutes(1)))
struct OperationsTests {
  @Test func addEventsTakesManyUsersInOneCall() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let server = try HyperdownServer(configuration: ServerConfiguration(
      keyPair: Keys.server, folderName: "topic", dataDirectory: dir.sub("server")))
    let (a, b) = (Keys.user1.identity, Keys.user2.identity)
    let outcomes = try await server.addEvents([
      EventToAdd(user: a, payload: [1]),
      EventToAdd(user: b, payload: [2]),
      EventToAdd(user: a, payload: [3], options: AddOptions(dedupKey: "k")),
      EventToAdd(user: a, payload: [3], options: AddOptions(dedupKey: "k")),  // a duplicate
      EventToAdd(user: b, payload: [5]),
    ])
    #expect(try outcomes.map { try $0.get().seq } == [1, 1, 2, 2, 2])
    #expect(try outcomes.map { try $0.get().isDuplicate } == [false, false, false, true, false])
    #expect(try server.events(for: a).map(\.payload) == [[1], [3]])
    #expect(try server.events(for: b).map(\.payload) == [[2], [5]])
    #expect(try server.stats().addsDuplicate == 1)
    // one user's events keep the order of the call
    #expect(try await server.addEvents(for: a, payloads: [[6], [7], [8]]) == [3, 4, 5])

    // an invalid event fails the whole call: nothing of it is added
    await #expect(throws: HyperdownError.self) {
      try await server.addEvents([EventToAdd(user: b, payload: [6]), EventToAdd(user: b, payload: [])])
    }
    #expect(try server.pending(for: b) == 2)
    #expect(try await server.addEvents([]).isEmpty)
    #expect(HyperdownServer.addEventsMax == 100_000 && Limits.keyMaxBytes == 256)
    await server.leave()
  }

  @Test func anEventPastItsUsersLimitFailsAlone() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    var config = ServerConfiguration(keyPair: Keys.server, folderName: "topic", dataDirectory: dir.sub("server"))
    config.maxPendingPerUser = 2
    let server = try HyperdownServer(configuration: config)
    let (a, b) = (Keys.user1.identity, Keys.user2.identity)
    let outcomes = try await server.addEvents([a, a, a, b].map { EventToAdd(user: $0, payload: [1]) })
    #expect(outcomes.map { (try? $0.get())?.seq } == [1, 2, nil, 1])
    if case .failure(let error) = outcomes[2] { #expect(error.code == HyperdownError.limitReached) }
    #expect(try server.stats().addsLimited == 1)
    await server.leave()
  }

  /// The metrics text, the core's responder serving it, and the same counters through
  /// swift-metrics: a recording factory sees them move as events are added and consumed.
  @Test func metricsMoveInTheTextAndInSwiftMetrics() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let recorder = RecordingMetrics()
    var config = ServerConfiguration(keyPair: Keys.server, folderName: "topic", dataDirectory: dir.sub("server"))
    config.metricsListen = "127.0.0.1:0"
    config.metricsFactory = recorder
    config.metricsInterval = .milliseconds(20)
    config.metricsDimensions = [("topic", "topic")]
    let server = try HyperdownServer(configuration: config)
    let user = Keys.user1.identity
    for i in 1...3 { try await server.addEvent(for: user, payload: [UInt8(i)]) }
    try await server.addEvents(for: user, payloads: [[4], [5]])

    let text = try server.metrics()
    let samples = PrometheusText.samples(text)
    #expect(samples.contains(PrometheusText.Sample(name: "hyperdown_events_added_total", type: .counter, value: 5)))
    #expect(samples.contains(PrometheusText.Sample(name: "hyperdown_events_pending", type: .gauge, value: 5)))
    #expect(text.contains("hyperdown_add_durable_seconds_count 4"))  // one per call

    let port = try #require(server.metricsPort)
    let (body, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/metrics")!)
    #expect((response as? HTTPURLResponse)?.statusCode == 200)
    #expect(String(decoding: body, as: UTF8.self).contains("hyperdown_events_added_total 5"))

    try await eventually("swift-metrics sees the adds") { recorder.counter("hyperdown_events_added_total") == 5 }
    try await eventually("and the pending gauge") { recorder.gauge("hyperdown_events_pending") == 5 }
    #expect(recorder.timerCount(ServerMetrics.addDurableName) == 4)  // one per call
    #expect(recorder.dimensions("hyperdown_events_added_total") == ["topic=topic"])

    // a client takes them: delivered, consumed and confirmed move; pending goes down
    var client = ClientConfiguration(keyPair: Keys.user1, serverPublicKey: Keys.server.identity,
                                     folderName: "topic", dataDirectory: dir.sub("client"),
                                     server: "127.0.0.1:\(server.port)")
    client.eventHandler = { _ in nil }
    let c = try HyperdownClient(configuration: client)
    try await eventually("confirmed") { recorder.counter("hyperdown_events_confirmed_total") == 5 }
    try await eventually("nothing pending") { recorder.gauge("hyperdown_events_pending") == 0 }
    #expect(recorder.counter("hyperdown_events_delivered_total") >= 5)
    #expect(recorder.counter("hyperdown_events_consumed_total") >= 5)
    await c.close()
    try await server.addEvent(for: user, payload: [6])
    await server.leave()  // the last read at leave counts the last add
    #expect(recorder.counter("hyperdown_events_added_total") == 6)
  }

  @Test func prometheusTextKeepsCountersAndGauges() {
    let text = """
      # HELP hyperdown_a_total A.
      # TYPE hyperdown_a_total counter
      hyperdown_a_total 7
      # TYPE hyperdown_g gauge
      hyperdown_g 2.5
      # TYPE hyperdown_h histogram
      hyperdown_h_bucket{le="0.1"} 1
      hyperdown_h_sum 0.05
      hyperdown_h_count 1
      """
    #expect(PrometheusText.samples(text) == [
      PrometheusText.Sample(name: "hyperdown_a_total", type: .counter, value: 7),
      PrometheusText.Sample(name: "hyperdown_g", type: .gauge, value: 2.5),
    ])
  }

  /// A client with three addresses of which two refuse reaches the third; one that trusts only
  /// the server's next key connects while the server answers to both (key rollover).
  @Test func addressListAndKeyRollover() async throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let next = try KeyPair.generate()
    var config = ServerConfiguration(keyPair: Keys.server, folderName: "topic", dataDirectory: dir.sub("server"))
    config.nextKeyPair = next
    let server = try HyperdownServer(configuration: config)
    try await server.addEvent(for: Keys.user1.identity, payload: [1])
    try await server.addEvent(for: Keys.user2.identity, payload: [2])

    func received(_ user: KeyPair, keys: [PublicKey], servers: [String]) async throws -> [UInt8] {
      var c = ClientConfiguration(keyPair: user, serverPublicKeys: keys, folderName: "topic",
                                  dataDirectory: dir.sub(user.identity.hex), servers: servers)
      c.reconnectMin = .milliseconds(10)
      c.reconnectMax = .milliseconds(50)
      let client = try HyperdownClient(configuration: c)
      var iterator = client.events.makeAsyncIterator()
      let event = try #require(try await iterator.next())
      event.complete()
      await client.close()
      return event.payload
    }
    let refusing = ["127.0.0.1:\(try closedPort())", "127.0.0.1:\(try closedPort())"]
    // the old key first, the next one second: the client tries them in turn
    #expect(try await received(Keys.user1, keys: [Keys.server.identity, next.identity],
                               servers: refusing + ["127.0.0.1:\(server.port)"]) == [1])
    #expect(try await received(Keys.user2, keys: [next.identity], servers: ["127.0.0.1:\(server.port)"]) == [2])
    await server.leave()

    #expect(throws: HyperdownError.self) {
      _ = try HyperdownClient(configuration: ClientConfiguration(
        keyPair: Keys.user1, serverPublicKeys: [], folderName: "topic", dataDirectory: dir.sub("c"),
        servers: ["127.0.0.1:1"]))
    }
  }
}

/// A port on 127.0.0.1 that refuses connections (bound, then closed).
func closedPort() throws -> Int {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  defer { close(fd) }
  var addr = sockaddr_in()
  addr.sin_family = sa_family_t(AF_INET)
  addr.sin_addr.s_addr = inet_addr("127.0.0.1")
  var len = socklen_t(MemoryLayout<sockaddr_in>.size)
  let ok = withUnsafeMutablePointer(to: &addr) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
  }
  guard ok else { throw Timeout(description: "no port") }
  return Int(UInt16(bigEndian: addr.sin_port))
}

/// A swift-metrics backend that keeps what it is given, for the tests to read.
final class RecordingMetrics: MetricsFactory, Sendable {
  final class Handler: CounterHandler, FloatingPointCounterHandler, RecorderHandler, MeterHandler,
                       TimerHandler, Sendable {
    let dimensions: [String]
    private let values = Mutex<(total: Double, last: Double, count: Int)>((0, 0, 0))
    init(_ dimensions: [(String, String)]) { self.dimensions = dimensions.map { "\($0)=\($1)" } }
    var total: Double { values.withLock { $0.total } }
    var last: Double { values.withLock { $0.last } }
    var count: Int { values.withLock { $0.count } }
    private func add(_ value: Double) { values.withLock { $0.total += value; $0.last = value; $0.count += 1 } }
    func increment(by amount: Int64) { add(Double(amount)) }
    func increment(by amount: Double) { add(amount) }
    func decrement(by amount: Double) { add(-amount) }
    func reset() { values.withLock { $0 = (0, 0, 0) } }
    func record(_ value: Int64) { add(Double(value)) }
    func record(_ value: Double) { add(value) }
    func set(_ value: Int64) { add(Double(value)) }
    func set(_ value: Double) { add(value) }
    func recordNanoseconds(_ duration: Int64) { add(Double(duration)) }
  }
  private let handlers = Mutex<[String: Handler]>([:])

  private func make(_ label: String, _ dimensions: [(String, String)]) -> Handler {
    handlers.withLock { h in
      if let existing = h[label] { return existing }
      let made = Handler(dimensions)
      h[label] = made
      return made
    }
  }
  func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler { make(label, dimensions) }
  func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
    make(label, dimensions)
  }
  func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler { make(label, dimensions) }
  func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
    make(label, dimensions)
  }
  func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { make(label, dimensions) }
  func destroyCounter(_ handler: any CounterHandler) {}
  func destroyMeter(_ handler: any MeterHandler) {}
  func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
  func destroyRecorder(_ handler: any RecorderHandler) {}
  func destroyTimer(_ handler: any TimerHandler) {}

  private func handler(_ label: String) -> Handler? { handlers.withLock { $0[label] } }
  func counter(_ label: String) -> Double { handler(label)?.total ?? -1 }
  func gauge(_ label: String) -> Double { handler(label)?.last ?? -1 }
  func timerCount(_ label: String) -> Int { handler(label)?.count ?? 0 }
  func dimensions(_ label: String) -> [String] { handler(label)?.dimensions ?? [] }
}
