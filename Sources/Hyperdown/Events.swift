import CHyperdown
import Foundation
import Synchronization

/// An event a user reported consumed, as the server's ``ServerConfiguration/onClientConsumedEvents``
/// receives it.
public struct ConsumedEvent: Sendable, Hashable, PayloadCarrying {
  /// The user's sequence number of the event (from 1, never reused).
  public let id: UInt64
  /// When the server stored the event.
  public let created: Date
  /// What ``HyperdownServer/addEvent(for:payload:)-(PublicKey,[UInt8])`` stored.
  public let payload: [UInt8]
  /// What the client's handler reported with its completion (empty if nothing).
  public let data: [UInt8]

  /// An event with these fields (for tests and adapters).
  public init(id: UInt64, created: Date, payload: [UInt8], data: [UInt8]) {
    self.id = id
    self.created = created
    self.payload = payload
    self.data = data
  }

  init(_ info: hd_event_info_t) {
    id = info.seq
    created = Date(unixMilliseconds: info.created_ms)
    payload = copiedBytes(info.payload, info.payload_len)
    data = copiedBytes(info.data, info.data_len)
  }
}

/// One event handed to a client, from ``HyperdownClient/events`` or to
/// ``ClientConfiguration/eventHandler``.
///
/// Complete it once with ``complete(ok:data:)``: success records it consumed (durably) and
/// reports it to the server; failure has it handed again after the retry delay, before any later
/// event. The client hands the next event only after this one is completed.
///
/// An event that is dropped without completion is never lost: if it was handed out to your code it
/// counts as a failure (handed again after the retry delay); if it was still waiting in a sequence
/// whose iteration ended (the task was cancelled), it goes to the next iteration of
/// ``HyperdownClient/events``; if the client closes first, it comes again when a client opens
/// the same folder.
public final class Event: Sendable, CustomStringConvertible, PayloadCarrying {
  /// The user's sequence number of the event: from 1, strictly increasing, stable across
  /// redeliveries (use it to make a handler idempotent).
  public var id: UInt64 { delivery.seq }
  /// When the server stored the event.
  public var created: Date { Date(unixMilliseconds: delivery.createdMs) }
  /// The bytes the server added.
  public var payload: [UInt8] { delivery.payload }
  /// Whether this client may have handled the event before: the server's store lost its last
  /// commits (restored from a backup, or a power loss under `.normal` durability) and gave the
  /// event again (`hd_event_possibly_repeated`; docs/RELIABILITY.md, "Restores and rollbacks").
  /// An unmarked event is new even if its id was seen before.
  public var possiblyRepeated: Bool { delivery.possiblyRepeated }
  /// Which handler call this is for the event: 1 the first time, counted durably across
  /// restarts (`hd_event_attempt`). After ``ClientConfiguration/maxAttempts`` failed ones the
  /// event becomes a dead letter.
  public var attempt: UInt32 { delivery.attempt }

  let delivery: Delivery
  let core: ClientCore
  /// Whether the event reached user code (an iterator returned it or a handler got it).
  private let seen = Atomic<Bool>(false)

  init(delivery: Delivery, core: ClientCore) {
    self.delivery = delivery
    self.core = core
  }

  func markSeen() { seen.store(true, ordering: .relaxed) }

  /// Completes the event: `ok` records it consumed with `data` (optional, reported to the server's
  /// consumption callback); `!ok` has it handed again after the retry delay. Call it once, from any
  /// thread or task; later calls do nothing and return `false`. After the client closed it does
  /// nothing (the event comes again next time).
  @discardableResult
  public func complete(ok: Bool = true, data: [UInt8]? = nil) -> Bool {
    core.complete(delivery, ok: ok, data: data)
  }

  /// A failed attempt with `reason`: the event is handed again after the retry delay, unless
  /// this was its last attempt (``ClientConfiguration/maxAttempts``): then it is reported failed
  /// and becomes a dead letter on the server with this reason, and later events flow on. Once,
  /// like ``complete(ok:data:)``; returns `false` if the event was completed already.
  @discardableResult
  public func fail(reason: String) -> Bool {
    core.finish(delivery, .failed(reason))
  }

  /// Rejects the event at once, whatever its attempts: it is reported failed and becomes a dead
  /// letter on the server with `reason` (at most 1024 bytes of UTF-8 are kept). For an event
  /// that can never be handled (a poison event). Once; `false` if completed already.
  @discardableResult
  public func reject(reason: String) -> Bool {
    core.finish(delivery, .rejected(reason))
  }

  /// Completes the event with success and `value` encoded as JSON as its data.
  @discardableResult
  public func complete<T: Encodable>(json value: T, encoder: JSONEncoder = JSONEncoder()) throws -> Bool {
    let data = try encoder.encode(value)
    return complete(ok: true, data: Array(data))
  }

  /// Whether the event was completed.
  public var isCompleted: Bool { !delivery.isPending }

  /// `Event(id: N, n bytes)`.
  public var description: String { "Event(id: \(id), \(delivery.payload.count) bytes)" }

  deinit {
    if delivery.isPending {
      core.released(delivery, seen: seen.load(ordering: .relaxed))
    }
  }
}

/// One `hd_event_t` the core handed out, with its fields copied; completed at most once.
final class Delivery: Sendable {
  let seq: UInt64
  let createdMs: Int64
  let payload: [UInt8]
  let possiblyRepeated: Bool
  let attempt: UInt32
  private let pointer: Mutex<UnsafeTransfer<OpaquePointer>?>

  init(_ event: OpaquePointer) {
    var info = hd_event_info_t()
    _ = hd_event_info(event, &info)
    let copied = ConsumedEvent(info)
    seq = copied.id
    createdMs = info.created_ms
    payload = copied.payload
    possiblyRepeated = hd_event_possibly_repeated(event) != 0
    attempt = hd_event_attempt(event)
    pointer = Mutex(UnsafeTransfer(value: event))
  }

  var isPending: Bool { pointer.withLock { $0 != nil } }

  /// The C event, once: nil if it was completed already.
  func take() -> OpaquePointer? { pointer.withLock { p in defer { p = nil }; return p?.value } }
}

/// Counters of a server since it was created (``HyperdownServer/stats()``).
public struct ServerStats: Sendable, Hashable {
  /// Adds that completed durable.
  public var eventsAdded: UInt64
  /// Events sent to clients (a resend after a reconnect counts again).
  public var eventsDelivered: UInt64
  /// Consumption reports received.
  public var eventsConsumed: UInt64
  /// Events completed with success: deleted and confirmed to their client.
  public var eventsConfirmed: UInt64
  /// Events the store holds now, for all users.
  public var pendingTotal: UInt64
  /// Authenticated connections now.
  public var connectedUsers: UInt64
  /// Store transactions (one fsync each).
  public var commits: UInt64
  /// Times an event could not be sent because it is larger than its client's message limit
  /// (that connection closed with `EMSGSIZE`).
  public var eventsTooLarge: UInt64
  /// Events deleted unsent after their time to live.
  public var eventsExpired: UInt64
  /// Events moved to the dead letters (failed or rejected by their client).
  public var eventsDead: UInt64
  /// Dead letters given back to their users.
  public var eventsRequeued: UInt64
  /// Adds answered with an earlier add's number (deduplication key).
  public var addsDuplicate: UInt64
  /// Unsent events replaced by a newer one with their collapse key.
  public var eventsReplaced: UInt64
  /// Unsent events dropped to make room (``OverflowPolicy/dropOldest``).
  public var eventsDropped: UInt64
  /// Adds refused with `ELIMIT`.
  public var addsLimited: UInt64
  /// Dead letters the store holds now.
  public var deadLetters: UInt64
}

/// Counters and state of a client (``HyperdownClient/stats()``).
public struct ClientStats: Sendable, Hashable {
  /// New events stored.
  public var eventsReceived: UInt64
  /// Completions with success.
  public var eventsHandled: UInt64
  /// Completions with failure (handed again later).
  public var eventsFailed: UInt64
  /// Events the server confirmed (forgotten by the client).
  public var eventsConfirmed: UInt64
  /// Events held, not yet consumed.
  public var unhandled: UInt64
  /// Events consumed, not yet confirmed by the server.
  public var consumed: UInt64
  /// The highest sequence number received from the current server store.
  public var highWater: UInt64
  /// The pause in force.
  public var pause: Duration
  /// Whether the client is authenticated to its server now.
  public var isConnected: Bool
  /// Events reported failed after ``ClientConfiguration/maxAttempts``, or rejected.
  public var eventsDead: UInt64
  /// Notices stored.
  public var noticesReceived: UInt64
}

/// What losses of the server store's last commits did, counted since the handle was created
/// (``HyperdownServer/rollbackStats()``, ``HyperdownClient/rollbackStats()``;
/// `hd_rollback_stats_t`, docs/RELIABILITY.md "Restores and rollbacks").
public struct RollbackStats: Sendable, Hashable {
  /// The server store's epoch; on a client, the epoch of the server store its events belong to
  /// (16 zero bytes until its first resume).
  public var epoch: [UInt8]
  /// Resumes of a client that had seen sequence numbers the store lost.
  public var rollbacks: UInt64
  /// Resumes answered with a new epoch, rollback or not (a client's first resume is one).
  public var epochResumes: UInt64
  /// Client: events handed out marked ``Event/possiblyRepeated``.
  public var eventsRepeated: UInt64
  /// Client: unhandled events the store lost: handed out, never reported.
  public var eventsOrphaned: UInt64
  /// Client: consumed events the store lost: dropped, never reported.
  public var consumedDropped: UInt64

  init(_ s: hd_rollback_stats_t) {
    epoch = withUnsafeBytes(of: s.epoch) { Array($0) }
    rollbacks = s.rollbacks
    epochResumes = s.epoch_resumes
    eventsRepeated = s.events_repeated
    eventsOrphaned = s.events_orphaned
    consumedDropped = s.consumed_dropped
  }
}
