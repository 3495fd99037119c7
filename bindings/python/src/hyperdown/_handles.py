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
import enum
import logging
import os
import threading
import weakref
from typing import Any, Callable, FrozenSet, Optional, Set, Union

from ._errors import AlreadyDoneError, HyperdownError, _str, check, error_from_code, last_error
from ._hyperdown import ffi, lib
from ._keys import BytesLike, KeyPair, PUBLICKEY_BYTES, check_public_key

__all__ = ["Server", "Client", "Event", "EventHandler", "LogLevel", "PeerCallback", "PeerClosedCallback", "LogCallback",
           "CallbackErrorHandler"]

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

    __slots__ = ("on_peer", "on_peer_closed", "log", "on_error", "on_event", "cdata",
                 "loop_thread", "warned")

    def __init__(self, on_peer: Optional[PeerCallback], on_peer_closed: Optional[PeerClosedCallback],
                 log: Optional[LogCallback], on_error: Optional[CallbackErrorHandler]) -> None:
        self.on_peer = on_peer
        self.on_peer_closed = on_peer_closed
        self.log = log
        self.on_error = on_error
        self.on_event: Optional[Callable[["Event"], Any]] = None
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


# ---- Events (present when the core has the event API: hd_event_cb) ---------------------------

def _fields(ctype: str) -> FrozenSet[str]:
    return frozenset(name for name, _ in ffi.typeof(ctype).fields)


_SERVER_FIELDS = _fields("hd_server_options_t")
_CLIENT_FIELDS = _fields("hd_client_options_t")
HAS_EVENTS = hasattr(lib, "_hd_py_event")

DEFERRED: Any = object()
"""Returned by an internal event handler that completes the event later (the asyncio API)."""


class Event:
    """One event handed to a client's ``on_event``: ``seq``, ``payload`` (bytes), ``created_ms``.

    Complete it exactly once with :meth:`complete` (any thread). The plain API completes it for
    you when the handler returns: success, unless the handler returns ``False`` (failure: handed
    again after a backoff) or raises (failure too); a bytes return value is sent to the server as
    the consumption data."""

    __slots__ = ("seq", "payload", "created_ms", "_ptr", "_lock")

    def __init__(self, ptr: Any) -> None:
        info = ffi.new("hd_event_info_t *")
        check(lib.hd_event_info(ptr, info))
        self.seq: int = int(info.seq)
        self.created_ms: int = int(info.created_ms)
        self.payload: bytes = bytes(ffi.buffer(info.payload, info.payload_len)) \
            if info.payload_len else b""
        self._ptr = ptr
        self._lock = threading.Lock()

    @property
    def completed(self) -> bool:
        return self._ptr is None

    def complete(self, ok: bool = True, data: Optional[bytes] = None) -> None:
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr is None:
            raise AlreadyDoneError(lib.HD_EALREADY, f"event {self.seq} was already completed")
        raw = bytes(data) if data is not None else b""
        check(lib.hd_event_complete(ptr, 1 if ok else 0, raw if raw else ffi.NULL, len(raw)))

    def __repr__(self) -> str:
        return f"<hyperdown.Event seq={self.seq} {len(self.payload)} bytes>"


EventHandler = Callable[[Event], Union[None, bool, bytes]]
"""``(event) -> None | bool | bytes``: see :class:`Event`."""


def _finish(ev: Event, result: Any) -> None:
    if result is DEFERRED or ev.completed:
        return
    if isinstance(result, (bytes, bytearray, memoryview)):
        ev.complete(True, bytes(result))
    else:
        ev.complete(result is not False)


if HAS_EVENTS:
    @ffi.def_extern(onerror=_unraisable)
    def _hd_py_event(user_data: Any, event: Any) -> None:
        st: _State = ffi.from_handle(user_data)
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
        except BaseException as exc:  # noqa: BLE001 - a failure: the core hands it again later
            st.report(exc, "on_event")
            result = False
        try:
            _finish(ev, result)
        except BaseException as exc:  # noqa: BLE001
            st.report(exc, "on_event")


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
        close_wait = getattr(lib, f"hd_{self._kind}_close_wait")
        rc = close_wait(h)  # cffi releases the GIL: callbacks keep running meanwhile
        if rc == lib.HD_ETHREAD:
            rc = getattr(lib, f"hd_{self._kind}_close")(h, ffi.NULL, ffi.NULL)
        check(rc)

    def _close_nowait(self) -> None:
        with self._lock:
            h, self._handle = self._handle, ffi.NULL
        if h != ffi.NULL:
            getattr(lib, f"hd_{self._kind}_close")(h, ffi.NULL, ffi.NULL)

    def __del__(self) -> None:
        # never wait here: the last reference may be dropped on the loop thread
        try:
            self._close_nowait()
        except Exception:  # noqa: BLE001
            pass

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


def _as_keypair(kp: KeyPair) -> KeyPair:
    if not isinstance(kp, KeyPair):
        raise TypeError("keypair must be a hyperdown.KeyPair")
    return kp


class Server(_Handle):
    """A server: listens on ``listen`` and authenticates the users that dial it on ``topic``.

    The socket listens before the constructor returns, so :attr:`port` is known at once (useful
    with port 0). Callbacks run on the server's loop thread (see the module docstring)."""

    _kind = "server"

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
                 sync_normal: bool = False) -> None:
        super().__init__()
        self._keypair = _as_keypair(keypair)
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
        cdata = self._attach(opts, _State(on_peer_connected, on_peer_disconnected, log,
                                          on_callback_error))
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
    def topic(self) -> str:
        return self._topic

    def add_event(self, user: BytesLike, payload: Union[bytes, bytearray, memoryview]) -> int:
        """Stores an event for ``user`` (a public key) and waits until it is durable; returns its
        sequence number. Blocks (GIL released); WrongThreadError from this server's callbacks.
        Requires a core with the event store (``data_dir``)."""
        if not hasattr(lib, "hd_server_add_event_wait"):
            raise NotImplementedError("this build of the core has no event store")
        pk = check_public_key(user)
        raw = bytes(payload)
        seq = ffi.new("uint64_t *")
        check(lib.hd_server_add_event_wait(self._require_open(), pk, raw, len(raw), seq))
        return int(seq[0])

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
    a failure or a disconnect unless ``reconnect=False``. Callbacks run on the client's loop
    thread (see the module docstring)."""

    _kind = "client"

    def __init__(self, keypair: KeyPair, server_public_key: BytesLike, topic: str, connect: str, *,
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
                 _on_event_raw: Optional[Callable[[Event], Any]] = None) -> None:
        super().__init__()
        self._keypair = _as_keypair(keypair)
        self._server_public_key = check_public_key(server_public_key)
        self._topic = topic
        opts = ffi.new("hd_client_options_t *")
        check(lib.hd_client_options_init(opts, lib.HD_CLIENT_OPTIONS_VERSION))
        keep = _store_options(opts, _CLIENT_FIELDS, data_dir, sync_normal)  # noqa: F841 - alive until create
        c_topic, c_connect = _text(topic, "topic"), _text(connect, "connect")
        c_spk = ffi.new("uint8_t[]", self._server_public_key)
        opts.keypair = keypair._kp
        opts.server_public_key = c_spk
        opts.topic = c_topic
        opts.connect = c_connect
        opts.handshake_timeout_ms = _ms(handshake_timeout, "handshake_timeout")
        opts.keepalive_ms = _ms(keepalive, "keepalive")
        opts.idle_timeout_ms = _ms(idle_timeout, "idle_timeout")
        opts.max_message_bytes = _u32(max_message_bytes, "max_message_bytes")
        opts.reconnect_min_ms = _ms(reconnect_min, "reconnect_min")
        opts.reconnect_max_ms = _ms(reconnect_max, "reconnect_max")
        opts.no_reconnect = 0 if reconnect else 1
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
        cdata = self._attach(opts, state)
        out = ffi.new("hd_client_t **")
        self._created(lib.hd_client_create(out, opts), out, cdata)

    @property
    def public_key(self) -> bytes:
        return self._keypair.public_key

    @property
    def server_public_key(self) -> bytes:
        return self._server_public_key

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

