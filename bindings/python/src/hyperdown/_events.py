"""Event values: the payload rule, client events, server consumption batches, stats.

The payload rule (shared with the Node and Swift APIs):

- On the wire a payload (and a client's consumption data) is raw bytes.
- Sending: ``bytes``/``bytearray``/``memoryview`` go as they are; ``dict``, ``list``, ``tuple``,
  ``str``, ``int``, ``float``, ``bool`` and ``None`` are sent as compact UTF-8 JSON (so the
  string ``"hi"`` is sent as the 4 bytes ``"hi"`` with its quotes).
- Receiving: bytes that are valid UTF-8 JSON are parsed (``{"a": 1}`` -> ``dict``, ``7`` ->
  ``int``); anything else is given as ``bytes``. The raw bytes are always available (``.raw``).
"""
from __future__ import annotations

import datetime as _dt
import json
import threading
from dataclasses import dataclass
from typing import Any, List, Optional, Union

from ._errors import AlreadyDoneError, check
from ._hyperdown import ffi, lib

__all__ = ["encode_payload", "decode_payload", "Payload", "Event", "ConsumedEvent",
           "ConsumedBatch", "PendingEvent", "ServerStats", "ClientStats", "DEFER", "AddResult",
           "FanoutResult", "DeadLetter", "Notice", "AddItem", "HeldStore"]

Payload = Union[bytes, bytearray, memoryview, dict, list, tuple, str, int, float, bool, None]
"""What can be sent as a payload or as consumption data (see the module docstring)."""


class _Defer:
    __slots__ = ()

    def __repr__(self) -> str:
        return "hyperdown.DEFER"


DEFER: Any = _Defer()
"""Return this from ``on_event`` / ``on_consumed`` to complete the event (batch) yourself later,
from any thread, with ``complete()``. Every event must be completed exactly once."""


def encode_payload(value: Payload) -> bytes:
    """The bytes sent for ``value``: bytes-like as is, anything else as compact UTF-8 JSON."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a payload must be bytes or JSON-serialisable: {exc}") from None
    return text.encode("utf-8")


def _strict_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_payload(raw: bytes) -> Any:
    """``raw`` parsed as UTF-8 JSON when it is valid JSON, else ``raw`` itself (bytes)."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_strict_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return raw


def _created(ms: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ms / 1000.0, tz=_dt.timezone.utc)


def _bytes(ptr: Any, n: int) -> bytes:
    return bytes(ffi.buffer(ptr, n)) if n and ptr != ffi.NULL else b""


class Event:
    """One event handed to a client's ``on_event`` (or yielded by ``hyperdown.aio`` iteration).

    ``id`` (also ``seq``): the user's sequence number; ``payload`` (also ``data``, the original's
    name): the decoded payload (see the payload rule); ``raw``: its bytes; ``created_at`` /
    ``created_ms``: when the server stored it; ``possibly_repeated``: True if the server's store
    lost its last commits (a restore, a power loss under ``sync_normal``) and gave this event
    again, and this client may have handled it before (docs/RELIABILITY.md, "Restores and
    rollbacks").

    Complete it exactly once with :meth:`complete` (any thread). Handlers complete it for you
    from their return value: success (``None``/``True``/data), failure (``False`` or a raise:
    handed again after a backoff), or nothing yet (:data:`DEFER`)."""

    __slots__ = ("id", "raw", "payload", "created_ms", "possibly_repeated", "attempt", "_ptr",
                 "_lock")

    def __init__(self, ptr: Any) -> None:
        info = ffi.new("hd_event_info_t *")
        check(lib.hd_event_info(ptr, info))
        self.id: int = int(info.seq)
        self.created_ms: int = int(info.created_ms)
        self.raw: bytes = _bytes(info.payload, info.payload_len)
        self.payload: Any = decode_payload(self.raw)
        self.possibly_repeated: bool = lib.hd_event_possibly_repeated(ptr) != 0
        #: which handler call this is for the event: 1 the first time (counted across restarts)
        self.attempt: int = int(lib.hd_event_attempt(ptr))
        self._ptr = ptr
        self._lock = threading.Lock()

    @property
    def seq(self) -> int:
        return self.id

    @property
    def data(self) -> Any:
        """The decoded payload (the original's ``eventHandler(id, data, cb)`` name)."""
        return self.payload

    @property
    def created_at(self) -> _dt.datetime:
        return _created(self.created_ms)

    @property
    def completed(self) -> bool:
        return self._ptr is None

    def complete(self, ok: bool = True, data: Payload = None) -> None:
        """Success (``ok``): recorded consumed with ``data`` (optional; encoded by the payload
        rule) and reported to the server. Failure: handed to the handler again after a backoff.
        Any thread; AlreadyDoneError the second time."""
        raw = encode_payload(data) if data is not None else b""
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr is None:
            raise AlreadyDoneError(lib.HD_EALREADY, f"event {self.id} was already completed")
        check(lib.hd_event_complete(ptr, 1 if ok else 0, raw if raw else ffi.NULL, len(raw)))

    def _take(self) -> Any:
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr is None:
            raise AlreadyDoneError(lib.HD_EALREADY, f"event {self.id} was already completed")
        return ptr

    def fail(self, reason: Union[str, BaseException] = "handler failed") -> None:
        """A failed attempt with ``reason``: handed again after a backoff until the client's
        ``max_attempts`` make it a dead letter on the server (docs/QUEUES.md). Any thread, once."""
        raw = _reason(reason)
        check(lib.hd_event_fail(self._take(), raw, len(raw)))

    def reject(self, reason: Union[str, BaseException] = "rejected") -> None:
        """Makes the event a dead letter at once with ``reason`` (at most 1024 bytes kept),
        whatever its attempts; later events flow on. Any thread, once."""
        raw = _reason(reason)
        check(lib.hd_event_reject(self._take(), raw, len(raw)))

    def _finish(self, result: Any) -> None:
        """Completes from a handler's return value (no-op if completed or deferred)."""
        if result is DEFER or self.completed:
            return
        if result is None or result is True:
            self.complete(True)
        elif result is False:
            self.complete(False)
        else:
            self.complete(True, result)

    def __repr__(self) -> str:
        mark = " possibly repeated" if self.possibly_repeated else ""
        mark += f" attempt {self.attempt}" if self.attempt > 1 else ""
        return f"<hyperdown.Event id={self.id} {len(self.raw)} bytes{mark}>"


def _reason(reason: Union[str, BaseException]) -> bytes:
    text = reason if isinstance(reason, str) else (str(reason) or type(reason).__name__)
    return text.encode("utf-8", "replace")


_NOTICE_KINDS = {lib.HD_NOTICE_EXPIRED: "expired", lib.HD_NOTICE_DROPPED: "dropped",
                 lib.HD_NOTICE_REQUEUED: "requeued"}


class Notice:
    """What the user's application missed, handed to a client's ``on_notice`` in its place in the
    stream (docs/QUEUES.md): ``kind`` is ``"expired"`` or ``"dropped"`` (``count`` events
    numbered ``first_seq``..``last_seq`` expired unsent or were dropped by a limit) or
    ``"requeued"`` (the dead letter ``first_seq`` comes back as event ``last_seq``); a kind a
    later release adds is its number. Completed like an event: from the handler's return value
    (``False`` or a raise: handed again later), or with :meth:`complete` after :data:`DEFER`."""

    __slots__ = ("kind", "count", "first_seq", "last_seq", "_ptr", "_lock")

    def __init__(self, ptr: Any) -> None:
        n = ffi.new("hd_notice_t *")
        check(lib.hd_event_notice(ptr, n))
        self.kind: Union[str, int] = _NOTICE_KINDS.get(int(n.kind), int(n.kind))
        self.count: int = int(n.count)
        self.first_seq: int = int(n.first_seq)
        self.last_seq: int = int(n.last_seq)
        self._ptr = ptr
        self._lock = threading.Lock()

    @property
    def completed(self) -> bool:
        return self._ptr is None

    def complete(self, ok: bool = True) -> None:
        """Done with it (``ok``), or handed again after a backoff. Any thread, once."""
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr is None:
            raise AlreadyDoneError(lib.HD_EALREADY, "the notice was already completed")
        check(lib.hd_event_complete(ptr, 1 if ok else 0, ffi.NULL, 0))

    def _finish(self, result: Any) -> None:
        if result is DEFER or self.completed:
            return
        self.complete(result is not False)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, tuple):  # (kind, count, first_seq, last_seq)
            return (self.kind, self.count, self.first_seq, self.last_seq) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"<hyperdown.Notice {self.kind} count={self.count} "
                f"seq={self.first_seq}..{self.last_seq}>")


@dataclass(frozen=True)
class AddResult:
    """What :meth:`Server.add` did: ``seq`` (the event's number; a duplicate: the first add's),
    ``duplicate`` (the dedup key was seen within the window: nothing stored), ``conflict`` (with
    duplicate: this payload differs from the first's, which wins), ``replaced_seq`` (the unsent
    event this add replaced by its collapse key, else None), ``dropped`` (older unsent events
    dropped to make room under ``overflow="drop-oldest"``)."""

    seq: int
    duplicate: bool = False
    conflict: bool = False
    replaced_seq: Optional[int] = None
    dropped: int = 0

    @classmethod
    def _from(cls, r: Any) -> "AddResult":
        flags = int(r.flags)
        return cls(int(r.seq), bool(flags & lib.HD_ADD_DUPLICATE), bool(flags & lib.HD_ADD_CONFLICT),
                   int(r.replaced_seq) if flags & lib.HD_ADD_REPLACED else None,
                   int(r.dropped) if flags & lib.HD_ADD_DROPPED else 0)


@dataclass(frozen=True)
class FanoutResult:
    """One user's result of :meth:`Server.add_event_for_users`: ``user``, and ``error`` None and
    ``result`` the :class:`AddResult`, or ``error`` the exception of a user that failed alone
    (:class:`LimitError`, InvalidKeyError...) and ``result`` None."""

    user: bytes
    error: Optional[Exception]
    result: Optional[AddResult]

    @property
    def seq(self) -> Optional[int]:
        return self.result.seq if self.result is not None else None


@dataclass(frozen=True)
class AddItem:
    """One event of :meth:`Server.add_events`: ``user`` (a public key, bytes or hex), ``payload``
    (the payload rule) and the options of :meth:`Server.add` (``ttl``, ``dedup_key``,
    ``collapse_key``). A ``(user, payload)`` tuple is an item without options."""

    user: Any
    payload: Any
    ttl: Optional[float] = None
    dedup_key: Union[str, bytes, None] = None
    collapse_key: Union[str, bytes, None] = None


@dataclass(frozen=True)
class HeldStore:
    """A server store other than the current one that a client holds events for
    (:meth:`Client.held_stores`): its ``id`` (16 bytes), how many of its events are still to
    handle (``unhandled``) and how many wait for that store to be told (``consumed``)."""

    id: bytes
    unhandled: int
    consumed: int


@dataclass(frozen=True)
class DeadLetter:
    """An event its user's client failed ``max_attempts`` times or rejected, as the server holds
    it: ``id`` (its number in the user's queue), ``payload`` (decoded; ``raw``), ``created_ms``,
    ``attempts`` (handler calls made), ``reason`` (the handler's), ``dead_ms`` (when it became a
    dead letter)."""

    id: int
    payload: Any
    raw: bytes
    created_ms: int
    attempts: int
    reason: str
    dead_ms: int

    @classmethod
    def _from(cls, d: Any) -> "DeadLetter":
        raw = _bytes(d.payload, d.payload_len)
        reason = _bytes(d.reason, d.reason_len).decode("utf-8", "replace")
        return cls(int(d.seq), decode_payload(raw), raw, int(d.created_ms), int(d.attempts), reason,
                   int(d.dead_ms))

    @property
    def created_at(self) -> _dt.datetime:
        return _created(self.created_ms)

    @property
    def dead_at(self) -> _dt.datetime:
        return _created(self.dead_ms)


class ConsumedEvent:
    """An event a user reported consumed, as the server's ``on_consumed`` gets it: ``id``,
    ``payload`` (decoded; ``raw``), ``data`` (what the client's handler returned, decoded;
    ``None`` if it returned nothing; ``raw_data``), ``created_at`` / ``created_ms``.
    :meth:`complete` completes this one event (any thread, once)."""

    __slots__ = ("id", "raw", "payload", "raw_data", "data", "created_ms", "_batch", "_index")

    def __init__(self, batch: "ConsumedBatch", index: int, info: Any) -> None:
        self.id: int = int(info.seq)
        self.created_ms: int = int(info.created_ms)
        self.raw: bytes = _bytes(info.payload, info.payload_len)
        self.payload: Any = decode_payload(self.raw)
        self.raw_data: Optional[bytes] = _bytes(info.data, info.data_len) if info.data_len else None
        self.data: Any = decode_payload(self.raw_data) if self.raw_data is not None else None
        self._batch = batch
        self._index = index

    @property
    def seq(self) -> int:
        return self.id

    @property
    def created_at(self) -> _dt.datetime:
        return _created(self.created_ms)

    def complete(self, ok: bool = True) -> None:
        """ok: delete the event and confirm it to the client; not ok: keep it (the client reports
        it again on its next connection)."""
        self._batch._complete_one(self._index, ok)

    def __repr__(self) -> str:
        return f"<hyperdown.ConsumedEvent id={self.id} payload={self.payload!r} data={self.data!r}>"


class ConsumedBatch(List[ConsumedEvent]):
    """The events one user reported consumed (a list, in sequence order) plus ``user`` (the
    user's public key). Complete them all with :meth:`complete` or one by one; any thread, once
    per event. Handlers complete the batch from their return value unless it is :data:`DEFER`."""

    def __init__(self, ptr: Any, user: bytes) -> None:
        super().__init__()
        self.user = user
        self._ptr = ptr
        self._left = int(lib.hd_consumed_count(ptr))
        self._done = [False] * self._left
        self._lock = threading.Lock()
        info = ffi.new("hd_event_info_t *")
        for i in range(self._left):
            check(lib.hd_consumed_event(ptr, i, info))
            self.append(ConsumedEvent(self, i, info))

    @property
    def completed(self) -> bool:
        return self._ptr is None

    def _complete_one(self, index: int, ok: bool) -> None:
        with self._lock:
            ptr = self._ptr
            if ptr is None or self._done[index]:
                raise AlreadyDoneError(lib.HD_EALREADY, "the event was already completed")
            self._done[index] = True
            self._left -= 1
            if self._left == 0:
                self._ptr = None  # the core frees the batch after its last completion
            # called under the lock so that a concurrent complete() cannot free the batch first
            check(lib.hd_consumed_complete(ptr, index, 1 if ok else 0))

    def complete(self, ok: bool = True) -> None:
        """Completes every event not completed yet with ``ok``. AlreadyDoneError if none was left."""
        with self._lock:
            ptr, self._ptr = self._ptr, None
            if ptr is None:
                raise AlreadyDoneError(lib.HD_EALREADY, "the batch was already completed")
            self._left = 0
            self._done = [True] * len(self._done)
            check(lib.hd_consumed_complete_all(ptr, 1 if ok else 0))

    def _finish(self, result: Any) -> None:
        if result is DEFER or self.completed:
            return
        self.complete(result is not False)

    def __repr__(self) -> str:
        return f"<hyperdown.ConsumedBatch user={self.user.hex()[:16]}… {list.__repr__(self)}>"


@dataclass(frozen=True)
class PendingEvent:
    """An event the server's store holds for a user, as ``Server.list_events`` lists it:
    ``id`` (the user's sequence number), ``payload`` (decoded by the payload rule), ``raw`` (its
    bytes), ``created_ms`` (when the server stored it)."""

    id: int
    payload: Any
    raw: bytes
    created_ms: int

    @property
    def created_at(self) -> _dt.datetime:
        return _created(self.created_ms)


@dataclass(frozen=True)
class ServerStats:
    """hd_server_stats_t: counters since the server was created, and what its store holds."""

    events_added: int
    events_delivered: int
    events_consumed: int
    events_confirmed: int
    pending_total: int
    connected_users: int
    commits: int
    events_too_large: int = 0
    """times an event was larger than a client's max_message_bytes (stored under a larger
    max_event_bytes): that connection closed with EMSGSIZE"""
    events_expired: int = 0
    events_dead: int = 0
    events_requeued: int = 0
    adds_duplicate: int = 0
    events_replaced: int = 0
    events_dropped: int = 0
    adds_limited: int = 0
    dead_letters: int = 0
    """dead letters held now (the others count since the server was created)"""


@dataclass(frozen=True)
class ClientStats:
    """hd_client_stats_t."""

    events_received: int
    events_handled: int
    events_failed: int
    events_confirmed: int
    unhandled: int
    consumed: int
    high_water: int
    pause_ms: int
    connected: bool
    events_dead: int = 0
    """reported failed after max_attempts, or rejected"""
    notices_received: int = 0


@dataclass(frozen=True)
class RollbackStats:
    """hd_rollback_stats_t: what losses of the server store's last commits did, counted since the
    handle was created (docs/RELIABILITY.md, "Restores and rollbacks").

    ``epoch``: the server's store epoch (on a client: the epoch of the server store its events
    belong to; 16 zero bytes while none is known); ``rollbacks``: resumes of a client that had
    seen numbers the store lost; ``epoch_resumes``: resumes answered with a new epoch, rollback
    or not. Client only (0 on a server): ``events_repeated`` (handed out marked
    ``possibly_repeated``), ``events_orphaned`` (unhandled events the store lost: handed out,
    never reported), ``consumed_dropped`` (consumed events the store lost: dropped, never
    reported)."""

    epoch: bytes
    rollbacks: int
    epoch_resumes: int
    events_repeated: int
    events_orphaned: int
    consumed_dropped: int

    @classmethod
    def _read(cls, fn: Any, handle: Any) -> "RollbackStats":
        out = ffi.new("hd_rollback_stats_t *")
        out.version = lib.HD_ROLLBACK_STATS_VERSION
        check(fn(handle, out))
        return cls(bytes(out.epoch), int(out.rollbacks), int(out.epoch_resumes),
                   int(out.events_repeated), int(out.events_orphaned), int(out.consumed_dropped))
