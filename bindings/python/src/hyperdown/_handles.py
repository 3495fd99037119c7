"""Server and Client handles over hd_server_* / hd_client_* (the plain, thread-based API).

Threading model: each handle runs on its own libuv loop thread owned by the core. Every callback
given to a Server or Client (on_peer_connected, on_disconnected, log...) is called *on that loop
thread*, holding the GIL. Keep callbacks short; do not block in them. A callback that raises does
not reach the core: the exception goes to ``on_callback_error`` (default: logged on the
"hyperdown" logger) and the handle carries on. ``close()`` waits until the handle has released
everything; called from one of the handle's own callbacks it only starts the close.
"""
from __future__ import annotations

import atexit
import dataclasses
import enum
import itertools
import logging
import math
import os
import threading
import weakref
from typing import (Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple,
                    Union)

from ._errors import HyperdownError, _str, check, error_from_code, last_error
from ._events import (DEFER, AddItem, AddResult, ClientStats, ConsumedBatch, ConsumedEvent,
                      DeadLetter, Event, FanoutResult, HeldStore, Notice, Payload, PendingEvent,
                      RollbackStats, ServerStats, _bytes, decode_payload, encode_payload)
from ._hyperdown import ffi, lib
from ._keys import BytesLike, KeyPair, PUBLICKEY_BYTES, check_public_key

__all__ = ["Server", "Client", "Event", "EventHandler", "ConsumedHandler", "AddCallback",
           "AddResultCallback", "NoticeHandler", "DeadLetterCallback", "LogLevel", "PeerCallback",
           "PeerClosedCallback", "LogCallback", "CallbackErrorHandler", "Authorization",
           "AuthorizeCallback", "AddItemLike", "backup_folder"]

logger = logging.getLogger("hyperdown")
core_logger = logging.getLogger("hyperdown.core")


class LogLevel(enum.IntEnum):
    """The core's log levels (hd_log_level_t): the most verbose level passed to ``log``."""

    ERROR = lib.HD_LOG_ERROR
    WARN = lib.HD_LOG_WARN
    INFO = lib.HD_LOG_INFO
    DEBUG = lib.HD_LOG_DEBUG


_PY_LEVEL = {LogLevel.ERROR: logging.ERROR, LogLevel.WARN: logging.WARNING,
             LogLevel.INFO: logging.INFO, LogLevel.DEBUG: logging.DEBUG}

PeerCallback = Callable[[bytes], Any]
"""``(public_key)``: a peer finished the handshake; its authenticated 32-byte key."""
PeerClosedCallback = Callable[[Optional[bytes], Optional[HyperdownError]], Any]
"""``(public_key, error)``: a connection (or an attempt) ended. ``public_key`` is None if the peer
never authenticated; ``error`` is None for an orderly close, else the HyperdownError saying why."""
LogCallback = Callable[[LogLevel, str], Any]
CallbackErrorHandler = Callable[[BaseException], Any]


def _default_log(level: LogLevel, message: str) -> None:
    core_logger.log(_PY_LEVEL.get(level, logging.INFO), "%s", message)


class _State:
    """What the core's user_data points at (through ffi.new_handle). It holds no reference to the
    Server/Client object, so that an abandoned handle can still be collected and closed."""

    __slots__ = ("on_peer", "on_peer_closed", "log", "on_error", "on_event", "on_consumed",
                 "on_notice", "on_dead_letter", "authorize", "cdata", "loop_thread", "warned")

    def __init__(self, on_peer: Optional[PeerCallback], on_peer_closed: Optional[PeerClosedCallback],
                 log: Optional[LogCallback], on_error: Optional[CallbackErrorHandler]) -> None:
        self.on_peer = on_peer
        self.on_peer_closed = on_peer_closed
        self.log = log
        self.on_error = on_error
        self.on_event: Optional[Callable[["Event"], Any]] = None
        self.on_consumed: Optional[Callable[[bytes, ConsumedBatch], Any]] = None
        self.on_notice: Optional[Callable[[Notice], Any]] = None
        self.on_dead_letter: Optional[Callable[[bytes, DeadLetter], Any]] = None
        self.authorize: Optional[Callable[[bytes, "Authorization"], Any]] = None
        self.warned = False
        self.cdata: Any = None
        self.loop_thread: Optional[int] = None

    def report(self, exc: BaseException, what: str) -> None:
        if self.on_error is not None:
            try:
                self.on_error(exc)
                return
            except BaseException as exc2:  # noqa: BLE001 - never let it reach C
                logger.error("hyperdown: on_callback_error raised", exc_info=exc2)
        logger.error("hyperdown: %s callback raised %r", what, exc, exc_info=exc)


# user_data handles alive in the core: released when the core calls destroy
_live: Set[Any] = set()
_live_lock = threading.Lock()


def _unraisable(exc_type: Any, exc: Any, tb: Any) -> None:
    logger.error("hyperdown: error in a callback from the core", exc_info=(exc_type, exc, tb))


@ffi.def_extern(onerror=_unraisable)
def _hd_py_peer(user_data: Any, public_key: Any) -> None:
    st: _State = ffi.from_handle(user_data)
    st.loop_thread = threading.get_ident()
    if st.on_peer is None:
        return
    pk = bytes(ffi.buffer(public_key, PUBLICKEY_BYTES))
    try:
        st.on_peer(pk)
    except BaseException as exc:  # noqa: BLE001
        st.report(exc, "connected")


@ffi.def_extern(onerror=_unraisable)
def _hd_py_peer_closed(user_data: Any, public_key: Any, status: int) -> None:
    st: _State = ffi.from_handle(user_data)
    st.loop_thread = threading.get_ident()
    if st.on_peer_closed is None:
        return
    # hd_last_error_message() explains `status` inside the callback
    err = None if status == 0 else error_from_code(status, _str(lib.hd_last_error_message()))
    pk = None if public_key == ffi.NULL else bytes(ffi.buffer(public_key, PUBLICKEY_BYTES))
    try:
        st.on_peer_closed(pk, err)
    except BaseException as exc:  # noqa: BLE001
        st.report(exc, "disconnected")


@ffi.def_extern(onerror=_unraisable)
def _hd_py_log(user_data: Any, level: int, message: Any) -> None:
    st: _State = ffi.from_handle(user_data)
    st.loop_thread = threading.get_ident()
    if st.log is None:
        return
    try:
        st.log(LogLevel(level), _str(message))
    except BaseException as exc:  # noqa: BLE001
        st.report(exc, "log")


@ffi.def_extern(onerror=_unraisable)
def _hd_py_destroy(user_data: Any) -> None:
    st: _State = ffi.from_handle(user_data)
    with _live_lock:
        _live.discard(st.cdata)
    st.on_peer = st.on_peer_closed = st.log = st.on_error = st.on_event = None
    st.on_consumed = st.on_notice = st.on_dead_letter = st.authorize = None


# ---- Events (present when the core has the event API: hd_event_cb) ---------------------------

def _fields(ctype: str) -> FrozenSet[str]:
    return frozenset(name for name, _ in ffi.typeof(ctype).fields)


_SERVER_FIELDS = _fields("hd_server_options_t")
_CLIENT_FIELDS = _fields("hd_client_options_t")
_SERVER_STATS_FIELDS = _fields("hd_server_stats_t")
HAS_EVENTS = hasattr(lib, "_hd_py_event")
HAS_QUEUES = hasattr(lib, "_hd_py_add_result")  # the queue semantics (docs/QUEUES.md)

DEFERRED: Any = DEFER  # the name used before DEFER was public

EventHandler = Callable[[Event], Any]
"""``(event) -> None | True | False | data | DEFER``: ``None``/``True`` complete with success,
``False`` (or a raise) with failure (handed again after a backoff), any other value is success
with that value as the consumption data reported to the server (bytes as is, else JSON), and
:data:`DEFER` leaves the completion to you (``event.complete()``, any thread)."""

ConsumedHandler = Callable[[bytes, ConsumedBatch], Any]
"""``(user, events) -> None | True | False | DEFER``: ``None``/``True`` delete the events and
confirm them to the client, ``False`` (or a raise) keep them (the client reports them again on its
next connection), :data:`DEFER` leaves the completion to you (``events.complete(ok)`` or
``event.complete(ok)``, any thread, once per event)."""

AddCallback = Callable[[Optional[HyperdownError], int], Any]
"""``(error, seq)``: the completion of :meth:`Server.add_event_nowait`, on the server's loop
thread: ``(None, seq)`` once the event is durable, else ``(error, 0)``."""

AddResultCallback = Callable[[Optional[HyperdownError], Optional[AddResult]], Any]
"""``(error, result)``: the completion of :meth:`Server.add_nowait`, on the server's loop
thread: ``(None, AddResult)`` once durable, else ``(error, None)`` (LimitError at a limit)."""

NoticeHandler = Callable[[Notice], Any]
"""``(notice) -> None | True | False | DEFER``: as an :data:`EventHandler` (``False`` or a raise:
handed again after a backoff)."""

DeadLetterCallback = Callable[[bytes, DeadLetter], Any]
"""``(user, dead_letter)``: an event of ``user`` became a dead letter (durably); on the server's
loop thread, informational."""


def _finish(ev: Any, result: Any) -> None:
    ev._finish(result)


# Completions of asynchronous calls (add_event_nowait, update_pause): cb_data is a key here.
_calls: Dict[int, Tuple[int, Callable[[int, Any], None]]] = {}
_calls_lock = threading.Lock()
_call_ids = itertools.count(1)


def _call_register(owner: int, fn: Callable[[int, Any], None]) -> Any:
    key = next(_call_ids)
    with _calls_lock:
        _calls[key] = (owner, fn)
    return key, ffi.cast("void *", key)


def _call_pop(key: int) -> Optional[Callable[[int, Any], None]]:
    with _calls_lock:
        entry = _calls.pop(key, None)
    return entry[1] if entry else None


def _call_fire(key: int, status: int, value: Any) -> None:
    fn = _call_pop(key)
    if fn is not None:
        try:
            fn(status, value)
        except BaseException as exc:  # noqa: BLE001 - never let it reach C
            logger.error("hyperdown: a completion callback raised", exc_info=exc)


def _calls_abandon(owner: int) -> None:
    """After a close: completions the core will not deliver any more end with ECLOSED."""
    with _calls_lock:
        keys = [k for k, (o, _) in _calls.items() if o == owner]
    for k in keys:
        _call_fire(k, lib.HD_ECLOSED, 0)


if HAS_EVENTS:
    @ffi.def_extern(onerror=_unraisable)
    def _hd_py_event(user_data: Any, event: Any) -> None:
        st: _State = ffi.from_handle(user_data)
        st.loop_thread = threading.get_ident()
        try:
            ev = Event(event)
        except BaseException as exc:  # noqa: BLE001 - the event stays unhandled: fail it
            lib.hd_event_complete(event, 0, ffi.NULL, 0)
            st.report(exc, "event")
            return
        handler = st.on_event
        if handler is None:
            if not st.warned:
                st.warned = True
                logger.warning("hyperdown: a client received events but has no on_event "
                               "handler: they stay stored and are retried")
            ev.complete(False)
            return
        try:
            result = handler(ev)
        except BaseException as exc:  # noqa: BLE001 - a failed attempt, the error its reason
            st.report(exc, "on_event")
            if not ev.completed:
                _fail_quietly(ev, exc)
            return
        try:
            ev._finish(result)
        except BaseException as exc:  # noqa: BLE001 - e.g. data that is not JSON: fail it
            st.report(exc, "on_event")
            if not ev.completed:
                _fail_quietly(ev, exc)

    @ffi.def_extern(onerror=_unraisable)
    def _hd_py_consumed(user_data: Any, user: Any, batch: Any) -> None:
        st: _State = ffi.from_handle(user_data)
        st.loop_thread = threading.get_ident()
        try:
            b = ConsumedBatch(batch, bytes(ffi.buffer(user, PUBLICKEY_BYTES)))
        except BaseException as exc:  # noqa: BLE001 - keep the events: reported again later
            lib.hd_consumed_complete_all(batch, 0)
            st.report(exc, "on_consumed")
            return
        handler = st.on_consumed
        if handler is None:
            b.complete(True)
            return
        try:
            result = handler(b.user, b)
        except BaseException as exc:  # noqa: BLE001 - failure: the events stay
            st.report(exc, "on_consumed")
            result = False
        try:
            b._finish(result)
        except BaseException as exc:  # noqa: BLE001
            st.report(exc, "on_consumed")

    @ffi.def_extern(onerror=_unraisable)
    def _hd_py_added(cb_data: Any, status: int, seq: int) -> None:
        _call_fire(int(ffi.cast("uintptr_t", cb_data)), status, int(seq))

    @ffi.def_extern(onerror=_unraisable)
    def _hd_py_done(cb_data: Any, status: int) -> None:
        _call_fire(int(ffi.cast("uintptr_t", cb_data)), status, 0)


def _fail_quietly(ev: Event, exc: BaseException) -> None:
    """A failed attempt whose reason is the exception (plain failure on a core without reasons)."""
    try:
        if HAS_QUEUES:
            ev.fail(exc)
        else:
            ev.complete(False)
    except HyperdownError:
        pass


if HAS_QUEUES:
    @ffi.def_extern(onerror=_unraisable)
    def _hd_py_notice(user_data: Any, event: Any) -> None:
        st: _State = ffi.from_handle(user_data)
        st.loop_thread = threading.get_ident()
        try:
            notice = Notice(event)
        except BaseException as exc:  # noqa: BLE001 - handed again later
            lib.hd_event_complete(event, 0, ffi.NULL, 0)
            st.report(exc, "on_notice")
            return
        handler = st.on_notice
        try:
            result = handler(notice) if handler is not None else True
        except BaseException as exc:  # noqa: BLE001 - handed again after a backoff
            st.report(exc, "on_notice")
            result = False
        try:
            notice._finish(result)
        except BaseException as exc:  # noqa: BLE001
            st.report(exc, "on_notice")

    @ffi.def_extern(onerror=_unraisable)
    def _hd_py_add_result(cb_data: Any, status: int, result: Any) -> None:
        value = AddResult._from(result) if status == 0 else None
        _call_fire(int(ffi.cast("uintptr_t", cb_data)), status, value)

    @ffi.def_extern(onerror=_unraisable)
    def _hd_py_dead_letter(user_data: Any, user: Any, dead_letter: Any) -> None:
        st: _State = ffi.from_handle(user_data)
        st.loop_thread = threading.get_ident()
        if st.on_dead_letter is None:
            return
        try:
            st.on_dead_letter(bytes(ffi.buffer(user, PUBLICKEY_BYTES)), DeadLetter._from(dead_letter))
        except BaseException as exc:  # noqa: BLE001
            st.report(exc, "on_dead_letter")


def _fanout_results(users: List[bytes], status: int, results: Any) -> Any:
    """Each item's FanoutResult from an hd_fanout_result_t array (status 0), else the error."""
    if status != 0:
        return error_from_code(status, "adding the events failed")
    out = []
    for i, pk in enumerate(users):
        st = int(results[i].status)
        if st == 0:
            out.append(FanoutResult(pk, None, AddResult._from(results[i].result)))
        else:
            out.append(FanoutResult(pk, error_from_code(st), None))
    return out


@ffi.def_extern(onerror=_unraisable)
def _hd_py_fanout(cb_data: Any, status: int, results: Any, n: int) -> None:
    # the registered completion turns the array into FanoutResults while it is valid (this call)
    _call_fire(int(ffi.cast("uintptr_t", cb_data)), status, results)


@ffi.def_extern(onerror=_unraisable)
def _hd_py_count(cb_data: Any, status: int, count: int) -> None:
    _call_fire(int(ffi.cast("uintptr_t", cb_data)), status, int(count))


class Authorization:
    """A client key asking to connect (the server's ``authorize`` callback): answer it once with
    :meth:`allow` or :meth:`deny`, from any thread (an answer after the server's timeout, or a
    second one, changes nothing)."""

    __slots__ = ("public_key", "_req", "_lock")

    def __init__(self, public_key: bytes, req: Any) -> None:
        self.public_key = public_key
        self._req = req
        self._lock = threading.Lock()

    @property
    def answered(self) -> bool:
        return self._req is None

    def _answer(self, fn: Any) -> None:
        with self._lock:
            req, self._req = self._req, None
        if req is not None:
            check(fn(req))

    def allow(self) -> None:
        self._answer(lib.hd_authorization_allow)

    def deny(self) -> None:
        self._answer(lib.hd_authorization_deny)


AuthorizeCallback = Callable[[bytes, Authorization], Any]
"""``(public_key, request) -> True | False | DEFER``: on the server's loop thread, must not
block. ``True`` admits the key, ``DEFER`` leaves the answer to ``request.allow()`` /
``request.deny()`` (any thread, before ``authorize_timeout``; answer a deferred request even
late: the answer is what frees it), anything else (or a raise) refuses it (the client sees
AuthenticationError)."""


@ffi.def_extern(onerror=_unraisable)
def _hd_py_authorize(user_data: Any, public_key: Any, request: Any) -> None:
    st: _State = ffi.from_handle(user_data)
    st.loop_thread = threading.get_ident()
    req = Authorization(bytes(ffi.buffer(public_key, PUBLICKEY_BYTES)), request)
    try:
        result = st.authorize(req.public_key, req) if st.authorize is not None else False
    except BaseException as exc:  # noqa: BLE001 - refused
        st.report(exc, "authorize")
        result = False
    if result is DEFER:
        return
    if result is True:
        req.allow()
    else:
        req.deny()


_UINT64_MAX = 2 ** 64 - 1
_OVERFLOW = {"reject": 0, "drop-oldest": 1}


def _ms64(seconds: Optional[float], what: str) -> int:
    """Seconds (float) as the core's uint64 milliseconds; None: 0 (the default), inf: never."""
    if seconds is None:
        return 0
    if seconds == math.inf:
        return _UINT64_MAX
    ms = int(round(seconds * 1000))
    if ms <= 0 or ms >= _UINT64_MAX:
        raise ValueError(f"{what} must be a positive number of seconds (or math.inf)")
    return ms


def _count(value: Optional[int], what: str, limit: int = _UINT64_MAX) -> int:
    if value is None:
        return 0
    if not 0 < int(value) <= limit:
        raise ValueError(f"{what} must be a positive integer (None: the default)")
    return int(value)


def _key(value: Union[str, bytes, None], what: str) -> Optional[bytes]:
    """A deduplication or collapse key's bytes: a str as its UTF-8."""
    if value is None:
        return None
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if not raw:
        raise ValueError(f"{what} must not be empty")
    return raw


def _add_options(ttl: Optional[float], dedup_key: Union[str, bytes, None],
                 collapse_key: Union[str, bytes, None]) -> Tuple[Any, List[Any]]:
    """hd_add_options_t and the buffers it points into (alive until the call returns)."""
    if not HAS_QUEUES:
        raise TypeError("add options: this build of the core has no queue semantics")
    opts = ffi.new("hd_add_options_t *")
    check(lib.hd_add_options_init(opts, lib.HD_ADD_OPTIONS_VERSION))
    opts.ttl_ms = _ms64(ttl, "ttl")
    keep = []
    for name, value in (("dedup_key", dedup_key), ("collapse_key", collapse_key)):
        raw = _key(value, name)
        if raw is not None:
            buf = ffi.new("uint8_t[]", raw)  # (one NUL more than the key: not counted)
            keep.append(buf)
            setattr(opts, name, buf)
            setattr(opts, name + "_len", len(raw))
    return opts, keep


AddItemLike = Union[AddItem, Tuple[BytesLike, Payload]]
"""An item of :meth:`Server.add_events`: an :class:`AddItem` or a ``(user, payload)`` tuple."""


def _add_items(items: "List[AddItemLike]") -> Tuple[List[bytes], Any, List[Any]]:
    """(users, hd_add_item_t array, what must stay alive while the core reads it)."""
    items = list(items)
    if not 0 < len(items) <= lib.HD_ADD_EVENTS_MAX:
        raise ValueError(f"add_events takes 1 to {lib.HD_ADD_EVENTS_MAX} items")
    arr = ffi.new("hd_add_item_t[]", len(items))
    keep: List[Any] = [arr]
    users: List[bytes] = []
    for i, item in enumerate(items):
        if not isinstance(item, AddItem):
            user, payload = item
            item = AddItem(user, payload)
        pk = check_public_key(item.user)
        raw = encode_payload(item.payload)
        c_pk, c_raw = ffi.new("uint8_t[]", pk), ffi.new("char[]", raw)
        keep += [c_pk, c_raw]
        arr[i].user = c_pk
        arr[i].payload = c_raw
        arr[i].len = len(raw)
        if item.ttl is not None or item.dedup_key is not None or item.collapse_key is not None:
            opts, bufs = _add_options(item.ttl, item.dedup_key, item.collapse_key)
            keep += [opts, bufs]
            arr[i].opts = opts
        users.append(pk)
    return users, arr, keep


def backup_folder(data_dir: Union[str, "os.PathLike[str]"],
                  path: Union[str, "os.PathLike[str]"]) -> None:
    """Backs up the server store in ``data_dir`` while no server has it open (blocking):
    BusyError if a process has it open (use :meth:`Server.backup`), NotFoundError if there is no
    store there."""
    check(lib.hd_server_backup_folder(_text(os.fspath(data_dir), "data_dir"),
                                      _text(os.fspath(path), "path")))


def _ms(seconds: Optional[float], what: str) -> int:
    if seconds is None:
        return 0
    ms = int(round(seconds * 1000))
    if ms <= 0 or ms > 0xFFFFFFFF:
        raise ValueError(f"{what} must be a positive number of seconds")
    return ms


def _u32(value: Optional[int], what: str) -> int:
    if value is None:
        return 0
    if value <= 0 or value > 0xFFFFFFFF:
        raise ValueError(f"{what} must be a positive 32-bit integer")
    return value


def _text(value: str, what: str) -> Any:
    if "\0" in value:
        raise ValueError(f"{what} must not contain NUL")
    return ffi.new("char[]", value.encode("utf-8"))


class _Handle:
    _kind = ""
    _handle: Any

    def __init__(self) -> None:
        self._handle = ffi.NULL
        self._lock = threading.Lock()
        self._state: Optional[_State] = None

    def _attach(self, opts: Any, state: _State) -> Any:
        cdata = ffi.new_handle(state)
        state.cdata = cdata
        opts.user_data = cdata
        opts.destroy = lib._hd_py_destroy
        with _live_lock:
            _live.add(cdata)
        self._state = state
        return cdata

    def _created(self, rc: int, out: Any, cdata: Any) -> None:
        if rc < 0:
            err = last_error(rc)
            with _live_lock:  # the core never calls destroy when create fails
                _live.discard(cdata)
            raise err
        self._handle = out[0]
        _open.add(self)

    @property
    def closed(self) -> bool:
        """True once close() was called (or the handle failed to open)."""
        return self._handle == ffi.NULL

    def close(self) -> None:
        """Closes the handle and waits until the core has released it (no callback runs after
        this returns). Idempotent. From one of this handle's own callbacks (its loop thread), it
        starts the close and returns at once."""
        with self._lock:
            h, self._handle = self._handle, ffi.NULL
        if h == ffi.NULL:
            return
        _open.discard(self)
        rc = self._close_wait(h)  # cffi releases the GIL: callbacks keep running meanwhile
        if rc == lib.HD_ETHREAD:
            rc = self._close_start(h)
        else:
            _calls_abandon(id(self))
        check(rc)

    def _close_nowait(self) -> None:
        with self._lock:
            h, self._handle = self._handle, ffi.NULL
        if h != ffi.NULL:
            self._close_start(h)

    def __del__(self) -> None:
        # never wait here: the last reference may be dropped on the loop thread
        try:
            self._close_nowait()
        except Exception:  # noqa: BLE001
            pass

    def _done_call(self, start: Callable[[Any, Any], int],
                   callback: Optional[Callable[[Optional[HyperdownError]], Any]],
                   what: str) -> None:
        """Runs an hd_done_cb call: waits for it (no callback) or hands its outcome to
        ``callback``."""
        ready = threading.Event()
        result: List[int] = []

        def done(status: int, _value: Any) -> None:
            err = None if status == 0 else error_from_code(status, what)
            if callback is not None:
                callback(err)
            result.append(status)
            ready.set()

        key, cb_data = _call_register(id(self), done)
        rc = start(lib._hd_py_done, cb_data)
        if rc < 0:
            _call_pop(key)
            raise last_error(rc)
        if callback is None:
            if self._on_loop_thread():
                raise error_from_code(lib.HD_ETHREAD, "give a callback on the loop thread")
            ready.wait()
            check(result[0])

    @staticmethod
    def _close_wait(h: Any) -> int:
        raise NotImplementedError

    @staticmethod
    def _close_start(h: Any) -> int:
        raise NotImplementedError

    def _on_loop_thread(self) -> bool:
        st = self._state
        return st is not None and st.loop_thread == threading.get_ident()

    def _require_open(self) -> Any:
        h = self._handle
        if h == ffi.NULL:
            raise error_from_code(lib.HD_ECLOSED, f"the {self._kind} is closed")
        return h


# open handles, weakly: closed at interpreter exit so no callback reaches a finalising Python
_open: "weakref.WeakSet[_Handle]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for h in list(_open):
        try:
            h.close()
        except Exception:  # noqa: BLE001
            pass


def _store_options(opts: Any, fields: FrozenSet[str], data_dir: Any, sync_normal: bool) -> Any:
    """Sets the event-store options the compiled header has; returns what must stay alive."""
    if data_dir is None:
        return None
    if "data_dir" not in fields:
        raise TypeError("data_dir: this build of the core has no event store")
    c_dir = _text(os.fspath(data_dir), "data_dir")
    opts.data_dir = c_dir
    if "sync_normal" in fields:
        opts.sync_normal = 1 if sync_normal else 0
    return c_dir


def _key_list(value: Union[BytesLike, Sequence[BytesLike]]) -> List[bytes]:
    """One public key (bytes or hex) or a non-empty list of them: the keys, checked."""
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return [check_public_key(value)]
    keys = [check_public_key(k) for k in value]
    if not keys:
        raise ValueError("server_public_key: give a key or a non-empty list of keys")
    return keys


def _address_list(value: Union[str, Sequence[str]]) -> List[str]:
    """One "host:port" or a non-empty list of them."""
    if isinstance(value, str):
        return [value]
    addrs = list(value)
    if not addrs or not all(isinstance(a, str) and a for a in addrs):
        raise ValueError("connect: give an address or a non-empty list of addresses")
    return addrs


def _as_keypair(kp: KeyPair) -> KeyPair:
    if not isinstance(kp, KeyPair):
        raise TypeError("keypair must be a hyperdown.KeyPair")
    return kp


class Server(_Handle):
    """A server: listens on ``listen`` and authenticates the users that dial it on ``topic``.

    ``data_dir`` is the event store's folder (required; created 0700, locked while open): a
    server started again on the same folder resumes where it was. ``on_consumed(user, events)``
    (a :data:`ConsumedHandler`) runs when a user reported events consumed; without it every
    report is accepted. The socket listens before the constructor returns, so :attr:`port` is
    known at once (useful with port 0). Callbacks run on the server's loop thread (see the module
    docstring).

    Queue options (docs/QUEUES.md; None: the core's default): ``max_event_bytes`` (the largest
    payload; default ``max_message_bytes`` - 64), ``default_ttl`` (seconds an event may wait
    unsent before it expires; default never), ``max_pending_per_user`` and
    ``max_bytes_per_user`` (limits; default none) with ``overflow`` (``"reject"``: LimitError,
    or ``"drop-oldest"``), ``dedup_window`` (seconds a dedup key is remembered; default 24 h),
    ``dedup_keys_per_user`` (default 100000), ``expiry_batch`` (default 1000) and
    ``on_dead_letter(user, dead_letter)`` (a :data:`DeadLetterCallback`)."""

    _kind = "server"
    _close_wait = staticmethod(lambda h: lib.hd_server_close_wait(h))
    _close_start = staticmethod(lambda h: lib.hd_server_close(h, ffi.NULL, ffi.NULL))

    def __init__(self, keypair: KeyPair, topic: str, listen: str = "127.0.0.1:0", *,
                 on_peer_connected: Optional[PeerCallback] = None,
                 on_peer_disconnected: Optional[PeerClosedCallback] = None,
                 handshake_timeout: Optional[float] = None,
                 keepalive: Optional[float] = None,
                 idle_timeout: Optional[float] = None,
                 max_message_bytes: Optional[int] = None,
                 log: Optional[LogCallback] = _default_log,
                 log_level: LogLevel = LogLevel.ERROR,
                 on_callback_error: Optional[CallbackErrorHandler] = None,
                 data_dir: Union[str, "os.PathLike[str]", None] = None,
                 sync_normal: bool = False,
                 on_consumed: Optional[ConsumedHandler] = None,
                 page_events: Optional[int] = None,
                 max_event_bytes: Optional[int] = None,
                 default_ttl: Optional[float] = None,
                 max_pending_per_user: Optional[int] = None,
                 max_bytes_per_user: Optional[int] = None,
                 overflow: str = "reject",
                 dedup_window: Optional[float] = None,
                 dedup_keys_per_user: Optional[int] = None,
                 expiry_batch: Optional[int] = None,
                 on_dead_letter: Optional[DeadLetterCallback] = None,
                 authorize: Optional[AuthorizeCallback] = None,
                 authorize_timeout: Optional[float] = None,
                 max_handshakes: Optional[int] = None,
                 handshakes_per_address: Optional[int] = None,
                 next_keypair: Optional[KeyPair] = None,
                 metrics_listen: Optional[str] = None) -> None:
        super().__init__()
        self._keypair = _as_keypair(keypair)
        self._next_keypair = _as_keypair(next_keypair) if next_keypair is not None else None
        self._topic = topic
        opts = ffi.new("hd_server_options_t *")
        check(lib.hd_server_options_init(opts, lib.HD_SERVER_OPTIONS_VERSION))
        keep = _store_options(opts, _SERVER_FIELDS, data_dir, sync_normal)  # noqa: F841 - alive until create
        c_topic, c_listen = _text(topic, "topic"), _text(listen, "listen")
        opts.keypair = keypair._kp
        opts.topic = c_topic
        opts.listen = c_listen
        opts.handshake_timeout_ms = _ms(handshake_timeout, "handshake_timeout")
        opts.keepalive_ms = _ms(keepalive, "keepalive")
        opts.idle_timeout_ms = _ms(idle_timeout, "idle_timeout")
        opts.max_message_bytes = _u32(max_message_bytes, "max_message_bytes")
        opts.on_peer_connected = lib._hd_py_peer
        opts.on_peer_disconnected = lib._hd_py_peer_closed
        if log is not None:
            opts.log = lib._hd_py_log
            opts.log_level = int(log_level)
        state = _State(on_peer_connected, on_peer_disconnected, log, on_callback_error)
        if on_consumed is not None:
            if "on_consumed" not in _SERVER_FIELDS:
                raise TypeError("on_consumed: this build of the core has no event API")
            state.on_consumed = on_consumed
            opts.on_consumed = lib._hd_py_consumed
        if page_events is not None:
            opts.page_events = _u32(page_events, "page_events")
        if max_event_bytes is not None:
            opts.max_event_bytes = _u32(max_event_bytes, "max_event_bytes")
        if overflow not in _OVERFLOW:
            raise ValueError('overflow must be "reject" or "drop-oldest"')
        queue_options = (default_ttl, max_pending_per_user, max_bytes_per_user, dedup_window,
                         dedup_keys_per_user, expiry_batch, on_dead_letter)
        if HAS_QUEUES:
            opts.default_ttl_ms = _ms64(default_ttl, "default_ttl")
            opts.max_pending_per_user = _count(max_pending_per_user, "max_pending_per_user")
            opts.max_bytes_per_user = _count(max_bytes_per_user, "max_bytes_per_user")
            opts.overflow = _OVERFLOW[overflow]
            opts.dedup_window_ms = _ms64(dedup_window, "dedup_window")
            opts.dedup_keys_per_user = _count(dedup_keys_per_user, "dedup_keys_per_user", 0xFFFFFFFF)
            opts.expiry_batch = _count(expiry_batch, "expiry_batch", 0xFFFFFFFF)
            if on_dead_letter is not None:
                state.on_dead_letter = on_dead_letter
                opts.on_dead_letter = lib._hd_py_dead_letter
        elif any(v is not None for v in queue_options) or overflow != "reject":
            raise TypeError("queue options: this build of the core has no queue semantics")
        if authorize is not None:
            state.authorize = authorize
            opts.authorize = lib._hd_py_authorize
        opts.authorize_timeout_ms = _ms(authorize_timeout, "authorize_timeout")
        opts.max_handshakes = _u32(max_handshakes, "max_handshakes")
        opts.handshakes_per_address = _u32(handshakes_per_address, "handshakes_per_address")
        if self._next_keypair is not None:
            opts.next_keypair = self._next_keypair._kp
        c_metrics = _text(metrics_listen, "metrics_listen") if metrics_listen is not None else None
        if c_metrics is not None:
            opts.metrics_listen = c_metrics
        cdata = self._attach(opts, state)
        out = ffi.new("hd_server_t **")
        self._created(lib.hd_server_create(out, opts), out, cdata)
        self._port = check(lib.hd_server_port(self._handle))

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._port

    @property
    def public_key(self) -> bytes:
        return self._keypair.public_key

    @property
    def next_public_key(self) -> Optional[bytes]:
        """The key of ``next_keypair`` (key rollover), or None."""
        return self._next_keypair.public_key if self._next_keypair is not None else None

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def metrics_port(self) -> int:
        """The port of the metrics responder (``metrics_listen``, useful with port 0);
        InvalidStateError without one."""
        return check(lib.hd_server_metrics_port(self._require_open()))

    def metrics(self) -> str:
        """The server's metrics in the Prometheus text format (names prefixed ``hyperdown_``),
        for an application's own HTTP server (a short read, any thread)."""
        h = self._require_open()
        cap = 16384
        while True:
            buf = ffi.new("char[]", cap)
            n = check(lib.hd_server_metrics(h, buf, cap))
            if n < cap:
                return ffi.string(buf, n).decode("utf-8")
            cap = n + 1  # snprintf-like: the whole length, then again with room for it

    def disconnect(self, user: BytesLike) -> int:
        """Closes every connection of the client ``user`` (open ones with a BYE saying "no longer
        admitted"); returns how many. A client that dials again meets ``authorize``."""
        return check(lib.hd_server_disconnect(self._require_open(), check_public_key(user)))

    def backup(self, path: Union[str, "os.PathLike[str]"],
               callback: Optional[Callable[[Optional[HyperdownError]], Any]] = None) -> None:
        """Writes a consistent copy of the store to ``path`` (a new file) while the server runs;
        waits until it is complete and durable, unless a ``callback(error)`` is given (run on
        the loop thread). From this server's own callbacks give a callback."""
        c_path = _text(os.fspath(path), "path")
        self._done_call(lambda cb, data: lib.hd_server_backup(self._require_open(), c_path, cb,
                                                              data), callback, "backup failed")

    def add_events(self, items: "List[AddItemLike]") -> List[FanoutResult]:
        """Adds many events (1 to ``ADD_EVENTS_MAX``; any users, a user's events numbered in
        item order) in one transaction and one fsync; each item an :class:`AddItem` or a
        ``(user, payload)`` tuple. Returns each item's :class:`FanoutResult` in order (an item
        that fails, LimitError..., fails alone). Blocks until durable (WrongThreadError from
        this server's own callbacks); nothing is added if an item is invalid."""
        users, arr, keep = _add_items(items)  # noqa: F841 - alive for the call
        out = ffi.new("hd_fanout_result_t[]", len(users))
        check(lib.hd_server_add_events_wait(self._require_open(), arr, len(users), out))
        return _fanout_results(users, 0, out)

    def add_events_nowait(self, items: "List[AddItemLike]",
                          callback: Optional[Callable[[Optional[HyperdownError],
                                                       Optional[List[FanoutResult]]], Any]] = None
                          ) -> None:
        """:meth:`add_events` without waiting: ``callback(error, results)`` on the loop thread
        once durable (``error`` None) or failed as a whole (``results`` None)."""
        users, arr, keep = _add_items(items)  # noqa: F841 - copied by the core before it returns
        self._fanout_call(lambda cb, data: lib.hd_server_add_events(
            self._require_open(), arr, len(users), cb, data), users, callback)

    def add_event_for_users_nowait(self, users: List[BytesLike], payload: Payload,
                                   callback: Optional[Callable[[Optional[HyperdownError],
                                                                Optional[List[FanoutResult]]],
                                                               Any]] = None, *,
                                   ttl: Optional[float] = None,
                                   dedup_key: Union[str, bytes, None] = None,
                                   collapse_key: Union[str, bytes, None] = None) -> None:
        """:meth:`add_event_for_users` without waiting: ``callback(error, results)`` on the loop
        thread once durable or failed as a whole."""
        keys = [check_public_key(u) for u in users]
        if not keys:
            raise ValueError("users must hold at least one public key")
        raw = encode_payload(payload)
        opts, keep = _add_options(ttl, dedup_key, collapse_key)  # noqa: F841 - alive for the call
        joined = b"".join(keys)
        self._fanout_call(lambda cb, data: lib.hd_server_add_fanout(
            self._require_open(), joined, len(keys), raw, len(raw), opts, cb, data), keys, callback)

    def _fanout_call(self, start: Callable[[Any, Any], int], users: List[bytes],
                     callback: Any) -> None:
        def done(status: int, results: Any) -> None:
            value = _fanout_results(users, status, results)  # read while the array is valid
            if callback is not None:
                if isinstance(value, HyperdownError):
                    callback(value, None)
                else:
                    callback(None, value)

        key, cb_data = _call_register(id(self), lambda st, v: done(st, v))
        rc = start(lib._hd_py_fanout, cb_data)
        if rc < 0:
            _call_pop(key)
            raise last_error(rc)

    def count_nowait(self, op: str, user: BytesLike, ids: Optional[List[int]],
                     callback: Callable[[Optional[HyperdownError], int], Any]) -> None:
        """The asynchronous form of :meth:`delete_events` (``op`` "delete_events"),
        :meth:`delete_user`, :meth:`requeue_dead_letters` and :meth:`delete_dead_letters`:
        ``callback(error, count)`` on the loop thread once durable (``hyperdown.aio`` awaits
        it)."""
        pk = check_public_key(user)
        seqs = [int(i) for i in ids] if ids is not None else None
        if seqs is not None and any(not 0 <= i < 2 ** 64 for i in seqs):
            raise ValueError("an event id is 0 or more and below 2**64")
        arr = ffi.new("uint64_t[]", seqs) if seqs else ffi.NULL
        n = len(seqs) if seqs else 0
        h = self._require_open()
        if op == "delete_user":
            start = lambda cb, d: lib.hd_server_delete_user(h, pk, cb, d)  # noqa: E731
        elif op == "delete_events":
            if not seqs:
                callback(None, 0)
                return
            start = lambda cb, d: lib.hd_server_delete_events(h, pk, arr, n, cb, d)  # noqa: E731
        elif op in ("requeue_dead_letters", "delete_dead_letters"):
            if seqs is not None and not seqs:
                callback(None, 0)  # none (the core takes an empty list for all)
                return
            fn = (lib.hd_server_requeue_dead_letters if op == "requeue_dead_letters"
                  else lib.hd_server_delete_dead_letters)
            start = lambda cb, d: fn(h, pk, arr, n, cb, d)  # noqa: E731
        else:
            raise ValueError(f"unknown operation {op!r}")

        def done(status: int, count: int) -> None:
            if status == 0:
                callback(None, count)
            else:
                callback(error_from_code(status, f"{op} failed"), 0)

        key, cb_data = _call_register(id(self), done)
        rc = start(lib._hd_py_count, cb_data)
        if rc < 0:
            _call_pop(key)
            raise last_error(rc)

    def add_event(self, user: BytesLike, payload: Payload) -> int:
        """Stores an event for ``user`` (a public key, bytes or hex) and waits until it is durable;
        returns its sequence number. ``payload``: bytes as is, anything else as UTF-8 JSON (the
        payload rule). Blocks with the GIL released; from this server's own callbacks use
        :meth:`add_event_nowait` (this raises WrongThreadError there)."""
        pk = check_public_key(user)
        raw = encode_payload(payload)
        seq = ffi.new("uint64_t *")
        check(lib.hd_server_add_event_wait(self._require_open(), pk, raw, len(raw), seq))
        return int(seq[0])

    def add_event_nowait(self, user: BytesLike, payload: Payload,
                         callback: Optional[AddCallback] = None) -> None:
        """Stores an event without waiting: ``callback(error, seq)`` runs on the server's loop
        thread once it is durable (``error`` None) or failed. Raises at once for an invalid
        argument or a closed server (the callback then never runs). If the server closes first,
        the callback gets ClosedError (the add may or may not have been stored)."""
        pk = check_public_key(user)
        raw = encode_payload(payload)
        h = self._require_open()
        if callback is None:
            check(lib.hd_server_add_event(h, pk, raw, len(raw), ffi.NULL, ffi.NULL))
            return

        def done(status: int, seq: int) -> None:
            if status == 0:
                callback(None, seq)
            else:
                callback(error_from_code(status, "adding the event failed"), 0)

        key, cb_data = _call_register(id(self), done)
        rc = lib.hd_server_add_event(h, pk, raw, len(raw), lib._hd_py_added, cb_data)
        if rc < 0:
            _call_pop(key)
            raise last_error(rc)

    def add(self, user: BytesLike, payload: Payload, *, ttl: Optional[float] = None,
            dedup_key: Union[str, bytes, None] = None,
            collapse_key: Union[str, bytes, None] = None) -> AddResult:
        """:meth:`add_event` with options, returning what the add did (docs/QUEUES.md), once
        durable. ``ttl`` (seconds; default the server's ``default_ttl``, ``math.inf`` never): not
        sent by then, the event expires and the client gets an ``"expired"`` notice.
        ``dedup_key`` (str or bytes, 1 to 256 bytes): a repeat within the server's
        ``dedup_window`` stores nothing and returns the first add's ``seq`` (``duplicate``).
        ``collapse_key``: replaces the user's unsent event with the same key
        (``replaced_seq``). Raises LimitError at a limit under ``overflow="reject"``.
        :meth:`add_event` is unchanged (it returns the number alone)."""
        pk = check_public_key(user)
        raw = encode_payload(payload)
        opts, keep = _add_options(ttl, dedup_key, collapse_key)  # noqa: F841 - alive for the call
        out = ffi.new("hd_add_result_t *")
        check(lib.hd_server_add_event_v2_wait(self._require_open(), pk, raw, len(raw), opts, out))
        return AddResult._from(out)

    def add_nowait(self, user: BytesLike, payload: Payload,
                   callback: Optional[AddResultCallback] = None, *, ttl: Optional[float] = None,
                   dedup_key: Union[str, bytes, None] = None,
                   collapse_key: Union[str, bytes, None] = None) -> None:
        """:meth:`add` without waiting: ``callback(error, result)`` runs on the server's loop
        thread once the add is durable or failed (see :data:`AddResultCallback`)."""
        pk = check_public_key(user)
        raw = encode_payload(payload)
        opts, keep = _add_options(ttl, dedup_key, collapse_key)  # noqa: F841 - alive for the call
        h = self._require_open()
        if callback is None:
            check(lib.hd_server_add_event_v2(h, pk, raw, len(raw), opts, ffi.NULL, ffi.NULL))
            return

        def done(status: int, result: Optional[AddResult]) -> None:
            if status == 0:
                callback(None, result)
            else:
                callback(error_from_code(status, "adding the event failed"), None)

        key, cb_data = _call_register(id(self), done)
        rc = lib.hd_server_add_event_v2(h, pk, raw, len(raw), opts, lib._hd_py_add_result, cb_data)
        if rc < 0:
            _call_pop(key)
            raise last_error(rc)

    def add_event_for_users(self, users: List[BytesLike], payload: Payload, *,
                            ttl: Optional[float] = None, dedup_key: Union[str, bytes, None] = None,
                            collapse_key: Union[str, bytes, None] = None) -> List[FanoutResult]:
        """One event for many users (1 to 100000) in one transaction, the payload stored once;
        the options as :meth:`add`'s, each user's keys its own. Returns each user's
        :class:`FanoutResult` in order: a user that fails (LimitError, InvalidKeyError...) fails
        alone. Blocks until durable (WrongThreadError from this server's own callbacks)."""
        keys = [check_public_key(u) for u in users]
        if not keys:
            raise ValueError("users must hold at least one public key")
        raw = encode_payload(payload)
        opts, keep = _add_options(ttl, dedup_key, collapse_key)  # noqa: F841 - alive for the call
        out = ffi.new("hd_fanout_result_t[]", len(keys))
        check(lib.hd_server_add_fanout_wait(self._require_open(), b"".join(keys), len(keys), raw,
                                            len(raw), opts, out))
        return _fanout_results(keys, 0, out)

    def list_dead_letters(self, user: BytesLike, after: int = 0,
                          limit: int = 256) -> List[DeadLetter]:
        """A page of ``user``'s dead letters (events its client failed ``max_attempts`` times or
        rejected): at most ``limit`` with an id above ``after``, in order; page on as
        :meth:`list_events` (a short blocking read)."""
        out, n, _buf = self._list_page(lib.hd_server_list_dead_letters, "hd_dead_letter_t[]",
                                       user, after, limit)
        return [DeadLetter._from(out[i]) for i in range(n)]

    def dead_letter_count(self, user: Optional[BytesLike] = None) -> int:
        """How many dead letters the store holds for ``user`` (for every user without one)."""
        out = ffi.new("uint64_t *")
        pk = check_public_key(user) if user is not None else ffi.NULL
        check(lib.hd_server_dead_letter_count(self._require_open(), pk, out))
        return int(out[0])

    def dead_letter_users(self) -> List[Tuple[bytes, int]]:
        """The users holding dead letters, with how many (a short blocking read)."""
        h = self._require_open()
        page = 256
        keys = ffi.new("uint8_t[]", page * PUBLICKEY_BYTES)
        counts = ffi.new("uint64_t[]", page)
        cursor = ffi.new("uint64_t *", 0)
        out: List[Tuple[bytes, int]] = []
        while True:
            n = check(lib.hd_server_dead_letter_users(h, cursor, keys, counts, page))
            raw = bytes(ffi.buffer(keys, n * PUBLICKEY_BYTES))
            out.extend((raw[i * PUBLICKEY_BYTES:(i + 1) * PUBLICKEY_BYTES], int(counts[i]))
                       for i in range(n))
            if n < page:
                return out

    def _dead_call(self, fn: Any, user: BytesLike, ids: Optional[List[int]]) -> int:
        pk = check_public_key(user)
        h = self._require_open()
        count = ffi.new("uint64_t *")
        if ids is None:  # all of them
            check(fn(h, pk, ffi.NULL, 0, count))
            return int(count[0])
        seqs = [int(i) for i in ids]
        if any(not 0 <= i < 2 ** 64 for i in seqs):
            raise ValueError("an event id is 0 or more and below 2**64")
        if not seqs:
            return 0  # none (the core takes an empty list for all)
        check(fn(h, pk, ffi.new("uint64_t[]", seqs), len(seqs), count))
        return int(count[0])

    def requeue_dead_letters(self, user: BytesLike, ids: Optional[List[int]] = None) -> int:
        """Gives ``user``'s dead letters with these ids (all without ids) back as new events
        (new numbers, attempts from 1); the client gets a ``"requeued"`` notice. Waits until
        durable; returns how many."""
        return self._dead_call(lib.hd_server_requeue_dead_letters_wait, user, ids)

    def delete_dead_letters(self, user: BytesLike, ids: Optional[List[int]] = None) -> int:
        """Drops ``user``'s dead letters with these ids (all without ids) for good; waits until
        durable; returns how many."""
        return self._dead_call(lib.hd_server_delete_dead_letters_wait, user, ids)

    def update_pause(self, pause_ms: int, callback: Optional[Callable[[Optional[HyperdownError]], Any]] = None,
                     wait: bool = True) -> None:
        """Stores the pause (milliseconds, the window clients coalesce events over) and pushes it
        to every connected client; new clients get it when they connect. Waits until it is
        stored unless ``wait=False`` or a ``callback(error)`` is given (run on the loop thread),
        or when called from this server's own callbacks."""
        if not 0 <= int(pause_ms) <= 0xFFFFFFFF:
            raise ValueError("pause_ms must be a 32-bit unsigned number of milliseconds")
        h = self._require_open()
        ready = threading.Event()
        result: List[int] = []

        def done(status: int, _value: int) -> None:
            if callback is not None:
                callback(None if status == 0 else error_from_code(status, "update_pause failed"))
            result.append(status)
            ready.set()

        key, cb_data = _call_register(id(self), done)
        rc = lib.hd_server_update_pause(h, int(pause_ms), lib._hd_py_done, cb_data)
        if rc < 0:
            _call_pop(key)
            raise last_error(rc)
        if wait and callback is None and not self._on_loop_thread():
            ready.wait()
            check(result[0])

    def stats(self) -> ServerStats:
        """The server's counters (a short blocking read)."""
        out = ffi.new("hd_server_stats_t *")
        out.version = lib.HD_SERVER_STATS_VERSION
        check(lib.hd_server_stats(self._require_open(), out))
        names = [f.name for f in dataclasses.fields(ServerStats)]
        return ServerStats(*(int(getattr(out, n)) for n in names if n in _SERVER_STATS_FIELDS))

    def rollback_stats(self) -> RollbackStats:
        """The store's epoch and how many clients' resumes met a rollback (a short blocking
        read)."""
        return RollbackStats._read(lib.hd_server_rollback_stats, self._require_open())

    def pending(self, user: BytesLike) -> int:
        """How many events the store holds for ``user`` (a short blocking read)."""
        out = ffi.new("uint64_t *")
        check(lib.hd_server_pending(self._require_open(), check_public_key(user), out))
        return int(out[0])

    def connected_users(self) -> List[bytes]:
        """The public keys of the users connected now."""
        h = self._require_open()
        cap = 64
        while True:
            buf = ffi.new("uint8_t[]", cap * PUBLICKEY_BYTES)
            n = check(lib.hd_server_connected_users(h, buf, cap))
            if n <= cap:
                raw = bytes(ffi.buffer(buf, n * PUBLICKEY_BYTES))
                return [raw[i:i + PUBLICKEY_BYTES] for i in range(0, len(raw), PUBLICKEY_BYTES)]
            cap = n + 16

    def pending_users(self) -> List[Tuple[bytes, int]]:
        """Every user the store holds events for, with how many, in the order the store first saw
        them (a short blocking read, a page at a time)."""
        h = self._require_open()
        page = 256
        keys = ffi.new("uint8_t[]", page * PUBLICKEY_BYTES)
        counts = ffi.new("uint64_t[]", page)
        cursor = ffi.new("uint64_t *", 0)
        out: List[Tuple[bytes, int]] = []
        while True:
            n = check(lib.hd_server_pending_users(h, cursor, keys, counts, page))
            raw = bytes(ffi.buffer(keys, n * PUBLICKEY_BYTES))
            out.extend((raw[i * PUBLICKEY_BYTES:(i + 1) * PUBLICKEY_BYTES], int(counts[i]))
                       for i in range(n))
            if n < page:
                return out

    def list_events(self, user: BytesLike, after: int = 0, limit: int = 256) -> List[PendingEvent]:
        """A page of the events the store holds for ``user``: at most ``limit`` of those with an
        id above ``after``, in order; page on with the last one's id until a page is empty (a
        short blocking read; docs/OPERATIONS.md "Admin")."""
        infos, n, _buf = self._list_page(lib.hd_server_list_events, "hd_event_info_t[]", user,
                                         after, limit)
        events = []
        for i in range(n):
            raw = _bytes(infos[i].payload, infos[i].payload_len)
            events.append(PendingEvent(int(infos[i].seq), decode_payload(raw), raw,
                                       int(infos[i].created_ms)))
        return events

    def _list_page(self, fn: Any, ctype: str, user: BytesLike, after: int, limit: int) -> Any:
        """One page of a cursor listing that copies into a caller's buffer (hd_server_list_events,
        hd_server_list_dead_letters): the entries, how many, and the buffer they point into
        (the caller keeps it while it copies them out); the buffer grows while the page's first
        entry does not fit (HD_EBUFSIZE)."""
        if not 0 < int(limit) <= 65536:
            raise ValueError("limit must be 1 to 65536")
        if not 0 <= int(after) < 2 ** 64:
            raise ValueError("after must be an event id (0 or more)")
        pk = check_public_key(user)
        h = self._require_open()
        out = ffi.new(ctype, int(limit))
        cursor = ffi.new("uint64_t *")
        size = 1 << 20
        while True:
            buf = ffi.new("uint8_t[]", size)
            cursor[0] = int(after)
            rc = fn(h, pk, cursor, out, int(limit), buf, size)
            if rc == lib.HD_EBUFSIZE and size < 1 << 30:
                size *= 4  # the page's first entry is larger: a larger buffer
                continue
            return out, check(rc), buf

    def delete_events(self, user: BytesLike, ids: List[int]) -> int:
        """Deletes ``user``'s events with these ids and waits until that is durable; returns how
        many the store still held. The user's client is not told: what it received already it
        still handles, and its report is answered without ``on_consumed``; an event not sent yet
        never is (docs/OPERATIONS.md "Admin"). Blocks with the GIL released (WrongThreadError
        from this server's own callbacks)."""
        pk = check_public_key(user)
        seqs = [int(i) for i in ids]
        if any(not 0 <= i < 2 ** 64 for i in seqs):
            raise ValueError("an event id is 0 or more and below 2**64")
        arr = ffi.new("uint64_t[]", seqs or [0])
        count = ffi.new("uint64_t *")
        check(lib.hd_server_delete_events_wait(self._require_open(), pk, arr, len(seqs), count))
        return int(count[0])

    def delete_user(self, user: BytesLike) -> int:
        """Deletes every event the store holds for ``user`` (removed) and waits until that is
        durable; returns how many. Numbers are never given again."""
        pk = check_public_key(user)
        count = ffi.new("uint64_t *")
        check(lib.hd_server_delete_user_wait(self._require_open(), pk, count))
        return int(count[0])

    # the original's names
    def addEvent(self, user: BytesLike, payload: Payload) -> int:  # noqa: N802
        """The original's name for :meth:`add_event`."""
        return self.add_event(user, payload)

    def updatePause(self, pause_ms: int) -> None:  # noqa: N802
        """The original's name for :meth:`update_pause`."""
        self.update_pause(pause_ms)

    def leave(self) -> None:
        """The original's name for :meth:`close`."""
        self.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"port={self._port}"
        return f"<hyperdown.Server {self._keypair.public_key_hex[:16]}… {state}>"


class Client(_Handle):
    """A client: dials ``connect`` and authenticates the server holding ``server_public_key``.

    It dials again (doubling back-off from ``reconnect_min`` to ``reconnect_max`` seconds) after
    a failure or a disconnect unless ``reconnect=False``. ``data_dir`` is its event store's
    folder (required): received events are stored before ``on_event`` (an :data:`EventHandler`)
    sees them, one at a time in order, also while the server is away. A failed event is handed
    again after ``retry_min`` seconds, doubling up to ``retry_max``, until ``max_attempts``
    handler calls (default 10, 0 unlimited) make it a dead letter on the server and later events
    flow on (a raise is a failed attempt whose reason is the exception; ``event.fail(reason)``,
    ``event.reject(reason)``). ``on_notice`` (a :data:`NoticeHandler`) gets the notices: events
    that expired or were dropped unsent, dead letters requeued (without it they are confirmed
    unseen). ``window``: how many events the server may send unconfirmed. Callbacks run on the
    client's loop thread (see the module docstring)."""

    _kind = "client"
    _close_wait = staticmethod(lambda h: lib.hd_client_close_wait(h))
    _close_start = staticmethod(lambda h: lib.hd_client_close(h, ffi.NULL, ffi.NULL))

    def __init__(self, keypair: KeyPair,
                 server_public_key: Union[BytesLike, Sequence[BytesLike]], topic: str,
                 connect: Union[str, Sequence[str]], *,
                 on_connected: Optional[PeerCallback] = None,
                 on_disconnected: Optional[PeerClosedCallback] = None,
                 reconnect: bool = True,
                 reconnect_min: Optional[float] = None,
                 reconnect_max: Optional[float] = None,
                 handshake_timeout: Optional[float] = None,
                 keepalive: Optional[float] = None,
                 idle_timeout: Optional[float] = None,
                 max_message_bytes: Optional[int] = None,
                 log: Optional[LogCallback] = _default_log,
                 log_level: LogLevel = LogLevel.ERROR,
                 on_callback_error: Optional[CallbackErrorHandler] = None,
                 data_dir: Union[str, "os.PathLike[str]", None] = None,
                 sync_normal: bool = False,
                 on_event: Optional[EventHandler] = None,
                 window: Optional[int] = None,
                 retry_min: Optional[float] = None,
                 retry_max: Optional[float] = None,
                 max_attempts: Optional[int] = None,
                 on_notice: Optional[NoticeHandler] = None,
                 _on_event_raw: Optional[Callable[[Event], Any]] = None,
                 _on_notice_raw: Optional[Callable[[Notice], Any]] = None) -> None:
        super().__init__()
        self._keypair = _as_keypair(keypair)
        self._server_public_keys = _key_list(server_public_key)
        self._server_public_key = self._server_public_keys[0]
        self._topic = topic
        opts = ffi.new("hd_client_options_t *")
        check(lib.hd_client_options_init(opts, lib.HD_CLIENT_OPTIONS_VERSION))
        keep = _store_options(opts, _CLIENT_FIELDS, data_dir, sync_normal)  # noqa: F841 - alive until create
        c_topic = _text(topic, "topic")
        opts.keypair = keypair._kp
        opts.topic = c_topic
        # one key and one address in the fields every core version has; several in the lists
        c_spk = ffi.new("uint8_t[]", b"".join(self._server_public_keys))
        if len(self._server_public_keys) == 1:
            opts.server_public_key = c_spk
        else:
            opts.server_public_keys = c_spk
            opts.server_public_key_count = len(self._server_public_keys)
        self._connect = _address_list(connect)
        c_addrs = [_text(a, "connect") for a in self._connect]
        c_list = ffi.new("char *[]", c_addrs)
        if len(c_addrs) == 1:
            opts.connect = c_addrs[0]
        else:
            opts.connect_list = c_list
            opts.connect_count = len(c_addrs)
        opts.handshake_timeout_ms = _ms(handshake_timeout, "handshake_timeout")
        opts.keepalive_ms = _ms(keepalive, "keepalive")
        opts.idle_timeout_ms = _ms(idle_timeout, "idle_timeout")
        opts.max_message_bytes = _u32(max_message_bytes, "max_message_bytes")
        opts.reconnect_min_ms = _ms(reconnect_min, "reconnect_min")
        opts.reconnect_max_ms = _ms(reconnect_max, "reconnect_max")
        opts.no_reconnect = 0 if reconnect else 1
        if window is not None:
            opts.window = _u32(window, "window")
        if retry_min is not None:
            opts.retry_min_ms = _ms(retry_min, "retry_min")
        if retry_max is not None:
            opts.retry_max_ms = _ms(retry_max, "retry_max")
        opts.on_connected = lib._hd_py_peer
        opts.on_disconnected = lib._hd_py_peer_closed
        if log is not None:
            opts.log = lib._hd_py_log
            opts.log_level = int(log_level)
        state = _State(on_connected, on_disconnected, log, on_callback_error)
        if on_event is not None or _on_event_raw is not None:
            if not HAS_EVENTS:
                raise TypeError("on_event: this build of the core has no event API")
            state.on_event = _on_event_raw or on_event
        if HAS_EVENTS and "on_event" in _CLIENT_FIELDS:
            opts.on_event = lib._hd_py_event
        if max_attempts is not None or on_notice is not None or _on_notice_raw is not None:
            if not HAS_QUEUES:
                raise TypeError("max_attempts, on_notice: this build of the core has no queue "
                                "semantics")
            if max_attempts is not None:
                if not 0 <= int(max_attempts) <= 0xFFFFFFFF:
                    raise ValueError("max_attempts must be 0 (unlimited) or a positive integer")
                opts.max_attempts = int(max_attempts)
            if on_notice is not None or _on_notice_raw is not None:
                state.on_notice = _on_notice_raw or on_notice
                opts.on_notice = lib._hd_py_notice
        cdata = self._attach(opts, state)
        out = ffi.new("hd_client_t **")
        self._created(lib.hd_client_create(out, opts), out, cdata)

    @property
    def public_key(self) -> bytes:
        return self._keypair.public_key

    @property
    def server_public_key(self) -> bytes:
        """The (first) server key this client accepts."""
        return self._server_public_key

    @property
    def server_public_keys(self) -> List[bytes]:
        """Every server key this client accepts (key rollover), in the order given."""
        return list(self._server_public_keys)

    @property
    def addresses(self) -> List[str]:
        """The server addresses this client dials, in turn."""
        return list(self._connect)

    def held_stores(self) -> List[HeldStore]:
        """The server stores other than the current one this client holds events for (the one
        seen first first), each with how many events are unhandled and how many consumed ones
        wait for it (a short blocking read)."""
        h = self._require_open()
        cap = 16
        while True:
            ids = ffi.new("uint8_t[]", cap * lib.HD_STORE_ID_BYTES)
            unhandled = ffi.new("uint64_t[]", cap)
            consumed = ffi.new("uint64_t[]", cap)
            n = check(lib.hd_client_held_stores(h, ids, unhandled, consumed, cap))
            if n <= cap:
                size = lib.HD_STORE_ID_BYTES
                raw = bytes(ffi.buffer(ids, n * size))
                return [HeldStore(raw[i * size:(i + 1) * size], int(unhandled[i]),
                                  int(consumed[i])) for i in range(n)]
            cap = n + 4

    def purge_store(self, store_id: BytesLike,
                    callback: Optional[Callable[[Optional[HyperdownError]], Any]] = None) -> None:
        """Drops every event this client holds for the server store ``store_id`` (an id of
        :meth:`held_stores`) and forgets it; waits until durable unless a ``callback(error)`` is
        given (run on the loop thread). NotFoundError: an unknown store; BusyError: the current
        server's store."""
        raw = bytes.fromhex(store_id) if isinstance(store_id, str) else bytes(store_id)
        if len(raw) != lib.HD_STORE_ID_BYTES:
            raise ValueError(f"store_id must be {lib.HD_STORE_ID_BYTES} bytes")
        c_id = ffi.new("uint8_t[]", raw)
        self._done_call(lambda cb, data: lib.hd_client_purge_store(
            self._require_open(), c_id, cb, data), callback, "purge_store failed")

    def stats(self) -> ClientStats:
        """The client's counters and what its store holds (a short blocking read)."""
        out = ffi.new("hd_client_stats_t *")
        out.version = lib.HD_CLIENT_STATS_VERSION
        check(lib.hd_client_stats(self._require_open(), out))
        extra = [int(out.events_dead), int(out.notices_received)] if HAS_QUEUES else []
        return ClientStats(int(out.events_received), int(out.events_handled),
                           int(out.events_failed), int(out.events_confirmed), int(out.unhandled),
                           int(out.consumed), int(out.high_water), int(out.pause_ms),
                           bool(out.connected), *extra)

    def rollback_stats(self) -> RollbackStats:
        """What losses of the server store's commits did to this client (a short blocking
        read)."""
        return RollbackStats._read(lib.hd_client_rollback_stats, self._require_open())

    def leave(self) -> None:
        """The original's name for :meth:`close`."""
        self.close()

    @property
    def topic(self) -> str:
        return self._topic

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<hyperdown.Client {self._keypair.public_key_hex[:16]}… {state}>"

