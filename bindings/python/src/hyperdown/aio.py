"""The asyncio API: the same Server and Client, with every callback handed to an event loop.

The core calls back on its own loop thread; this module passes each event to the asyncio loop
with ``loop.call_soon_threadsafe`` and exposes awaitables::

    async with hyperdown.aio.Server(kp, "topic") as server:
        async with hyperdown.aio.Client(kp1, server.public_key, "topic",
                                        f"127.0.0.1:{server.port}") as client:
            server_key = await client.connected(timeout=5)
            user_key = await server.peer_connected(timeout=5)

Each awaitable returns the oldest event of its kind not yet returned (events are queued from the
moment the handle is created, so none is missed by awaiting late). Optional callbacks given to the
constructors run on the event loop; they may be plain functions or coroutine functions (run as
tasks). A callback that raises goes to the loop's exception handler; the handle carries on.
``aclose()`` (and ``async with``) closes without blocking the event loop.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import os
from typing import Any, Awaitable, Callable, Optional, Set, Tuple, TypeVar, Union

from . import _handles
from ._errors import HyperdownError
from ._handles import DEFERRED, Event, LogCallback, LogLevel, _finish
from ._keys import BytesLike, KeyPair

__all__ = ["Server", "Client", "Disconnect", "AsyncPeerCallback", "AsyncPeerClosedCallback",
           "AsyncEventHandler"]

T = TypeVar("T")
Disconnect = Tuple[Optional[bytes], Optional[HyperdownError]]
"""``(public_key, error)`` of a connection that ended (see hyperdown.PeerClosedCallback)."""
AsyncPeerCallback = Callable[[bytes], Union[None, Awaitable[None]]]
AsyncPeerClosedCallback = Callable[[Optional[bytes], Optional[HyperdownError]],
                                   Union[None, Awaitable[None]]]
AsyncEventHandler = Callable[[Event], Union[None, bool, bytes, Awaitable[Union[None, bool, bytes]]]]
"""Runs on the event loop; its (awaited) result completes the event as in hyperdown.Event."""


class _Bridge:
    """Moves events from the core's thread to one asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.tasks: Set["asyncio.Task[Any]"] = set()

    def post(self, fn: Callable[..., None], *args: Any) -> bool:
        # runs on the core's loop thread
        try:
            self.loop.call_soon_threadsafe(fn, *args)
            return True
        except RuntimeError:
            return False  # the event loop is closed: nobody is left to tell

    def handle_event(self, handler: AsyncEventHandler, ev: Event) -> None:
        # runs on the event loop; completes `ev` exactly once, failure if the handler raises
        def fail(exc: BaseException) -> None:
            self.loop.call_exception_handler({"message": "hyperdown: on_event raised",
                                              "exception": exc})
            if not ev.completed:
                ev.complete(False)

        try:
            result = handler(ev)
        except Exception as exc:  # noqa: BLE001
            fail(exc)
            return
        if not inspect.isawaitable(result):
            _finish(ev, result)
            return

        async def wait() -> None:
            try:
                value = await result  # type: ignore[misc]
            except BaseException as exc:  # noqa: BLE001 - includes cancellation at close
                fail(exc)
                return
            _finish(ev, value)

        task = asyncio.ensure_future(wait())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def call_user(self, cb: Optional[Callable[..., Any]], *args: Any) -> None:
        # runs on the event loop
        if cb is None:
            return
        try:
            result = cb(*args)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self.tasks.add(task)
                task.add_done_callback(self._task_done)
        except Exception as exc:  # noqa: BLE001
            self.loop.call_exception_handler(
                {"message": "hyperdown: callback raised", "exception": exc})

    def _task_done(self, task: "asyncio.Task[Any]") -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.loop.call_exception_handler(
                {"message": "hyperdown: callback raised", "exception": task.exception(),
                 "task": task})


async def _get(queue: "asyncio.Queue[T]", timeout: Optional[float]) -> T:
    if timeout is None:
        return await queue.get()
    return await asyncio.wait_for(queue.get(), timeout)


class _AsyncHandle:
    _inner: Any

    async def aclose(self) -> None:
        """Closes and waits (in a worker thread) until the core has released the handle."""
        await asyncio.get_running_loop().run_in_executor(None, self._inner.close)

    def close(self) -> None:
        """Blocking close (see hyperdown.Server.close)."""
        self._inner.close()

    @property
    def closed(self) -> bool:
        return bool(self._inner.closed)

    @property
    def public_key(self) -> bytes:
        return bytes(self._inner.public_key)

    @property
    def topic(self) -> str:
        return str(self._inner.topic)


class Server(_AsyncHandle):
    """hyperdown.Server for asyncio. Create it inside a running loop (or pass ``loop``)."""

    def __init__(self, keypair: KeyPair, topic: str, listen: str = "127.0.0.1:0", *,
                 on_peer_connected: Optional[AsyncPeerCallback] = None,
                 on_peer_disconnected: Optional[AsyncPeerClosedCallback] = None,
                 loop: Optional[asyncio.AbstractEventLoop] = None,
                 handshake_timeout: Optional[float] = None,
                 keepalive: Optional[float] = None,
                 idle_timeout: Optional[float] = None,
                 max_message_bytes: Optional[int] = None,
                 log: Optional[LogCallback] = _handles._default_log,
                 log_level: LogLevel = LogLevel.ERROR,
                 data_dir: Union[str, "os.PathLike[str]", None] = None,
                 sync_normal: bool = False) -> None:
        self._bridge = b = _Bridge(loop or asyncio.get_running_loop())
        self._connected: "asyncio.Queue[bytes]" = asyncio.Queue()
        self._disconnected: "asyncio.Queue[Disconnect]" = asyncio.Queue()
        self._peers: Set[bytes] = set()
        self._on_peer_connected = on_peer_connected
        self._on_peer_disconnected = on_peer_disconnected
        self._inner = _handles.Server(
            keypair, topic, listen,
            on_peer_connected=lambda pk: b.post(self._peer_connected, pk),
            on_peer_disconnected=lambda pk, err: b.post(self._peer_disconnected, pk, err),
            handshake_timeout=handshake_timeout, keepalive=keepalive, idle_timeout=idle_timeout,
            max_message_bytes=max_message_bytes, log=log, log_level=log_level,
            data_dir=data_dir, sync_normal=sync_normal)

    def _peer_connected(self, pk: bytes) -> None:
        self._peers.add(pk)
        self._connected.put_nowait(pk)
        self._bridge.call_user(self._on_peer_connected, pk)

    def _peer_disconnected(self, pk: Optional[bytes], err: Optional[HyperdownError]) -> None:
        if pk is not None:
            self._peers.discard(pk)
        self._disconnected.put_nowait((pk, err))
        self._bridge.call_user(self._on_peer_disconnected, pk, err)

    @property
    def port(self) -> int:
        return int(self._inner.port)

    @property
    def peers(self) -> Set[bytes]:
        """The public keys of the peers connected now (as seen by the event loop)."""
        return set(self._peers)

    async def add_event(self, user: BytesLike, payload: bytes) -> int:
        """hyperdown.Server.add_event, awaited in a worker thread: the sequence number."""
        return int(await asyncio.get_running_loop().run_in_executor(
            None, self._inner.add_event, user, payload))

    async def peer_connected(self, timeout: Optional[float] = None) -> bytes:
        """The next peer that finished the handshake: its public key."""
        return await _get(self._connected, timeout)

    async def peer_disconnected(self, timeout: Optional[float] = None) -> Disconnect:
        """The next connection that ended: ``(public_key or None, error or None)``."""
        return await _get(self._disconnected, timeout)

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class Client(_AsyncHandle):
    """hyperdown.Client for asyncio. Create it inside a running loop (or pass ``loop``)."""

    def __init__(self, keypair: KeyPair, server_public_key: BytesLike, topic: str, connect: str, *,
                 on_connected: Optional[AsyncPeerCallback] = None,
                 on_disconnected: Optional[AsyncPeerClosedCallback] = None,
                 loop: Optional[asyncio.AbstractEventLoop] = None,
                 reconnect: bool = True,
                 reconnect_min: Optional[float] = None,
                 reconnect_max: Optional[float] = None,
                 handshake_timeout: Optional[float] = None,
                 keepalive: Optional[float] = None,
                 idle_timeout: Optional[float] = None,
                 max_message_bytes: Optional[int] = None,
                 log: Optional[LogCallback] = _handles._default_log,
                 log_level: LogLevel = LogLevel.ERROR,
                 data_dir: Union[str, "os.PathLike[str]", None] = None,
                 sync_normal: bool = False,
                 on_event: Optional[AsyncEventHandler] = None) -> None:
        self._bridge = b = _Bridge(loop or asyncio.get_running_loop())
        self._connected: "asyncio.Queue[bytes]" = asyncio.Queue()
        self._disconnected: "asyncio.Queue[Disconnect]" = asyncio.Queue()
        self._is_connected = False
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._inner = _handles.Client(
            keypair, server_public_key, topic, connect,
            on_connected=lambda pk: b.post(self._conn_up, pk),
            on_disconnected=lambda pk, err: b.post(self._conn_down, pk, err),
            reconnect=reconnect, reconnect_min=reconnect_min, reconnect_max=reconnect_max,
            handshake_timeout=handshake_timeout, keepalive=keepalive, idle_timeout=idle_timeout,
            max_message_bytes=max_message_bytes, log=log, log_level=log_level,
            data_dir=data_dir, sync_normal=sync_normal,
            _on_event_raw=(lambda ev: self._post_event(on_event, ev)) if on_event else None)

    def _post_event(self, handler: AsyncEventHandler, ev: Event) -> Any:
        # on the core's thread: hand the event to the loop, which completes it
        return DEFERRED if self._bridge.post(self._bridge.handle_event, handler, ev) else False

    def _conn_up(self, pk: bytes) -> None:
        self._is_connected = True
        self._connected.put_nowait(pk)
        self._bridge.call_user(self._on_connected, pk)

    def _conn_down(self, pk: Optional[bytes], err: Optional[HyperdownError]) -> None:
        self._is_connected = False
        self._disconnected.put_nowait((pk, err))
        self._bridge.call_user(self._on_disconnected, pk, err)

    @property
    def is_connected(self) -> bool:
        return self._is_connected

    @property
    def server_public_key(self) -> bytes:
        return bytes(self._inner.server_public_key)

    async def connected(self, timeout: Optional[float] = None) -> bytes:
        """The next successful handshake: the server's authenticated public key."""
        return await _get(self._connected, timeout)

    async def disconnected(self, timeout: Optional[float] = None) -> Disconnect:
        """The next connection or attempt that ended: ``(server key or None, error or None)``."""
        return await _get(self._disconnected, timeout)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


logging.getLogger("hyperdown").addHandler(logging.NullHandler())
