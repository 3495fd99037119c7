"""The asyncio API: the same Server and Client, with every callback handed to an event loop.

The core calls back on its own loop thread; this module passes each callback to the asyncio loop
with ``loop.call_soon_threadsafe`` and exposes awaitables::

    async with hyperdown.aio.Server(kp, "topic", data_dir="srv") as server:
        async with hyperdown.aio.Client(kp1, server.public_key, "topic",
                                        f"127.0.0.1:{server.port}", data_dir="usr") as client:
            server_key = await client.connected(timeout=5)
            seq = await server.add_event(kp1.public_key, {"prize": 500})
            async for event in client.events():
                print(event.id, event.payload)   # completed (success) when the loop goes on
                break

``await server.add_event(...)`` is a future resolved from the core's completion callback (no
thread waits). Event handlers (``on_event``, ``on_consumed``) run on the event loop and may be
coroutine functions: the event (batch) is completed when the coroutine finishes, from its result
(see hyperdown.EventHandler / hyperdown.ConsumedHandler); a raise is a failure.

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
from typing import (Any, Awaitable, Callable, Dict, List, Optional, Sequence, Set, Tuple, TypeVar,
                    Union, overload)

from . import _handles
from ._errors import HyperdownError, error_from_code
from ._events import (DEFER, AddResult, ClientStats, ConsumedBatch, DeadLetter, Event, FanoutResult,
                      HeldStore, Notice, Payload, PendingEvent, RollbackStats, ServerStats)
from ._handles import LogCallback, LogLevel
from ._keys import BytesLike, KeyPair
from ._options import ClientOptions, ServerOptions

__all__ = ["Server", "Client", "Disconnect", "AsyncPeerCallback", "AsyncPeerClosedCallback",
           "AsyncEventHandler", "AsyncConsumedHandler", "create"]

T = TypeVar("T")
Disconnect = Tuple[Optional[bytes], Optional[HyperdownError]]
"""``(public_key, error)`` of a connection that ended (see hyperdown.PeerClosedCallback)."""
AsyncPeerCallback = Callable[[bytes], Union[None, Awaitable[None]]]
AsyncPeerClosedCallback = Callable[[Optional[bytes], Optional[HyperdownError]],
                                   Union[None, Awaitable[None]]]
AsyncEventHandler = Callable[[Event], Any]
"""Runs on the event loop; its (awaited) result completes the event as in
hyperdown.EventHandler."""
AsyncConsumedHandler = Callable[[bytes, ConsumedBatch], Any]
"""Runs on the event loop; its (awaited) result completes the batch as in
hyperdown.ConsumedHandler."""


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

    def handle(self, what: str, target: Any, handler: Callable[..., Any], *args: Any) -> None:
        # runs on the event loop; completes `target` (an Event or a ConsumedBatch) exactly once
        # from the handler's result, failure if it raises
        def fail(exc: BaseException) -> None:
            if not isinstance(exc, asyncio.CancelledError):
                self.loop.call_exception_handler({"message": f"hyperdown: {what} raised",
                                                  "exception": exc})
            if not target.completed:
                if isinstance(target, Event) and isinstance(exc, Exception):
                    _handles._fail_quietly(target, exc)  # a failed attempt, the error its reason
                else:
                    target._finish(False)

        def finish(value: Any) -> None:
            try:
                target._finish(value)
            except Exception as exc:  # noqa: BLE001 - e.g. data that is not JSON
                fail(exc)

        try:
            result = handler(*args)
        except Exception as exc:  # noqa: BLE001
            fail(exc)
            return
        if not inspect.isawaitable(result):
            finish(result)
            return

        async def wait() -> None:
            try:
                value = await result  # type: ignore[misc]
            except BaseException as exc:  # noqa: BLE001 - includes cancellation at loop end
                fail(exc)
                return
            finish(value)

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


async def _completion(start: Callable[[Callable[..., None]], None]) -> Any:
    """Awaits a core completion: ``start(done)`` starts the call with ``done(error, value)`` as
    its callback (run on the core's thread); no thread waits."""
    loop = asyncio.get_running_loop()
    fut: "asyncio.Future[Any]" = loop.create_future()

    def settle(err: Optional[BaseException], value: Any) -> None:  # on the event loop
        if not fut.done():
            fut.set_exception(err) if err is not None else fut.set_result(value)

    def done(err: Optional[BaseException] = None, value: Any = None) -> None:  # core's thread
        try:
            loop.call_soon_threadsafe(settle, err, value)
        except RuntimeError:
            pass  # the event loop is closed: nobody awaits any more

    start(done)
    return await fut


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
                 sync_normal: bool = False,
                 on_consumed: Optional[AsyncConsumedHandler] = None,
                 page_events: Optional[int] = None,
                 max_event_bytes: Optional[int] = None,
                 default_ttl: Optional[float] = None,
                 max_pending_per_user: Optional[int] = None,
                 max_bytes_per_user: Optional[int] = None,
                 overflow: str = "reject",
                 dedup_window: Optional[float] = None,
                 dedup_keys_per_user: Optional[int] = None,
                 expiry_batch: Optional[int] = None,
                 on_dead_letter: Optional[Callable[[bytes, DeadLetter], Any]] = None,
                 authorize: Optional[Callable[[bytes], Any]] = None,
                 authorize_timeout: Optional[float] = None,
                 max_handshakes: Optional[int] = None,
                 handshakes_per_address: Optional[int] = None,
                 next_keypair: Optional[KeyPair] = None,
                 metrics_listen: Optional[str] = None) -> None:
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
            data_dir=data_dir, sync_normal=sync_normal, page_events=page_events,
            on_consumed=(lambda user, batch: self._post_consumed(on_consumed, batch))
            if on_consumed is not None else None,
            max_event_bytes=max_event_bytes, default_ttl=default_ttl,
            max_pending_per_user=max_pending_per_user, max_bytes_per_user=max_bytes_per_user,
            overflow=overflow, dedup_window=dedup_window, dedup_keys_per_user=dedup_keys_per_user,
            expiry_batch=expiry_batch,
            # on the event loop (a coroutine function runs as a task); informational
            on_dead_letter=(lambda user, d: b.post(b.call_user, on_dead_letter, user, d))
            if on_dead_letter is not None else None,
            # on the event loop: `authorize(public_key)` returns (or its coroutine returns)
            # True to admit; the request is answered from there
            authorize=(lambda pk, req: DEFER if b.post(self._authorize, authorize, req) else False)
            if authorize is not None else None,
            authorize_timeout=authorize_timeout, max_handshakes=max_handshakes,
            handshakes_per_address=handshakes_per_address, next_keypair=next_keypair,
            metrics_listen=metrics_listen)

    def _authorize(self, fn: Callable[[bytes], Any], req: _handles.Authorization) -> None:
        # on the event loop: True (awaited if a coroutine) admits, anything else or a raise refuses
        def answer(result: Any) -> None:
            try:
                req.allow() if result is True else req.deny()
            except HyperdownError:
                pass  # the server closed meanwhile

        try:
            result = fn(req.public_key)
        except Exception as exc:  # noqa: BLE001
            self._bridge.loop.call_exception_handler({"message": "hyperdown: authorize raised",
                                                      "exception": exc})
            answer(False)
            return
        if not inspect.isawaitable(result):
            answer(result)
            return

        async def wait() -> None:
            try:
                value = await result  # type: ignore[misc]
            except BaseException as exc:  # noqa: BLE001
                if not isinstance(exc, asyncio.CancelledError):
                    self._bridge.loop.call_exception_handler(
                        {"message": "hyperdown: authorize raised", "exception": exc})
                value = False
            answer(value)

        task = asyncio.ensure_future(wait())
        self._bridge.tasks.add(task)
        task.add_done_callback(self._bridge.tasks.discard)

    @property
    def metrics_port(self) -> int:
        """The port of the metrics responder (``metrics_listen``)."""
        return int(self._inner.metrics_port)

    @property
    def next_public_key(self) -> Optional[bytes]:
        return self._inner.next_public_key

    def metrics(self) -> str:
        """The metrics in the Prometheus text format (a short read; see
        :meth:`hyperdown.Server.metrics`)."""
        return self._inner.metrics()

    def disconnect(self, user: BytesLike) -> int:
        """Closes every connection of ``user``; how many (see hyperdown.Server.disconnect)."""
        return self._inner.disconnect(user)

    async def backup(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """A consistent copy of the running store into ``path`` (a new file), once durable."""
        await _completion(lambda done: self._inner.backup(path, callback=lambda err: done(err)))

    async def add_events(self, items: "List[_handles.AddItemLike]") -> List[FanoutResult]:
        """Many events in one transaction; each item's result (see
        :meth:`hyperdown.Server.add_events`). No thread waits."""
        return await _completion(lambda done: self._inner.add_events_nowait(items, done))

    def _post_consumed(self, handler: AsyncConsumedHandler, batch: ConsumedBatch) -> Any:
        # on the core's thread: the loop completes the batch; a closed loop keeps the events
        posted = self._bridge.post(self._bridge.handle, "on_consumed", batch, handler,
                                   batch.user, batch)
        return DEFER if posted else False

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

    async def add_event(self, user: BytesLike, payload: Payload) -> int:
        """Stores an event for ``user`` and returns its sequence number once it is durable.
        ``payload``: bytes as is, anything else as UTF-8 JSON. The result comes from the core's
        completion callback through ``call_soon_threadsafe``; no thread waits. Cancelling the
        await does not undo the add."""
        loop = asyncio.get_running_loop()
        fut: "asyncio.Future[int]" = loop.create_future()

        def settle(err: Optional[HyperdownError], seq: int) -> None:  # on the event loop
            if fut.done():
                return
            if err is not None:
                fut.set_exception(err)
            else:
                fut.set_result(seq)

        def done(err: Optional[HyperdownError], seq: int) -> None:  # on the core's thread
            try:
                loop.call_soon_threadsafe(settle, err, seq)
            except RuntimeError:
                pass  # the event loop is closed: nobody awaits any more

        self._inner.add_event_nowait(user, payload, done)
        return await fut

    async def add(self, user: BytesLike, payload: Payload, *, ttl: Optional[float] = None,
                  dedup_key: Union[str, bytes, None] = None,
                  collapse_key: Union[str, bytes, None] = None) -> AddResult:
        """:meth:`add_event` with options, returning what the add did once durable (see
        :meth:`hyperdown.Server.add`); LimitError at a limit. No thread waits."""
        loop = asyncio.get_running_loop()
        fut: "asyncio.Future[AddResult]" = loop.create_future()

        def settle(err: Optional[HyperdownError], result: Optional[AddResult]) -> None:
            if not fut.done():
                fut.set_exception(err) if err is not None else fut.set_result(result)  # type: ignore[arg-type]

        def done(err: Optional[HyperdownError], result: Optional[AddResult]) -> None:
            try:
                loop.call_soon_threadsafe(settle, err, result)
            except RuntimeError:
                pass  # the event loop is closed: nobody awaits any more

        self._inner.add_nowait(user, payload, done, ttl=ttl, dedup_key=dedup_key,
                               collapse_key=collapse_key)
        return await fut

    async def add_event_for_users(self, users: List[BytesLike], payload: Payload, *,
                                  ttl: Optional[float] = None,
                                  dedup_key: Union[str, bytes, None] = None,
                                  collapse_key: Union[str, bytes, None] = None) -> List[FanoutResult]:
        """One event for many users in one transaction; each user's result (see
        :meth:`hyperdown.Server.add_event_for_users`)."""
        return await _completion(lambda done: self._inner.add_event_for_users_nowait(
            list(users), payload, done, ttl=ttl, dedup_key=dedup_key, collapse_key=collapse_key))

    def list_dead_letters(self, user: BytesLike, after: int = 0,
                          limit: int = 256) -> List[DeadLetter]:
        """A page of ``user``'s dead letters (a short blocking read)."""
        return self._inner.list_dead_letters(user, after, limit)

    def dead_letter_count(self, user: Optional[BytesLike] = None) -> int:
        """Dead letters held for ``user`` (every user without one; a short blocking read)."""
        return self._inner.dead_letter_count(user)

    def dead_letter_users(self) -> List[Tuple[bytes, int]]:
        """The users holding dead letters, with how many (a short blocking read)."""
        return self._inner.dead_letter_users()

    async def requeue_dead_letters(self, user: BytesLike, ids: Optional[List[int]] = None) -> int:
        """Gives these dead letters (all without ids) back as new events; how many, once durable."""
        return await _completion(lambda done: self._inner.count_nowait(
            "requeue_dead_letters", user, None if ids is None else list(ids), done))

    async def delete_dead_letters(self, user: BytesLike, ids: Optional[List[int]] = None) -> int:
        """Drops these dead letters (all without ids) for good; how many, once durable."""
        return await _completion(lambda done: self._inner.count_nowait(
            "delete_dead_letters", user, None if ids is None else list(ids), done))

    async def update_pause(self, pause_ms: int) -> None:
        """Stores the pause (ms) and pushes it to every connected client; returns once stored."""
        loop = asyncio.get_running_loop()
        fut: "asyncio.Future[None]" = loop.create_future()

        def settle(err: Optional[HyperdownError]) -> None:
            if not fut.done():
                fut.set_exception(err) if err is not None else fut.set_result(None)

        def done(err: Optional[HyperdownError]) -> None:
            try:
                loop.call_soon_threadsafe(settle, err)
            except RuntimeError:
                pass

        self._inner.update_pause(pause_ms, callback=done)
        await fut

    def stats(self) -> ServerStats:
        """The server's counters (a short blocking read)."""
        return self._inner.stats()

    def rollback_stats(self) -> RollbackStats:
        """The store's epoch and the rollbacks its clients met (a short blocking read)."""
        return self._inner.rollback_stats()

    def pending(self, user: BytesLike) -> int:
        """How many events the store holds for ``user`` (a short blocking read)."""
        return int(self._inner.pending(user))

    def connected_users(self) -> List[bytes]:
        """The public keys of the users connected now (a short blocking read)."""
        return list(self._inner.connected_users())

    def pending_users(self) -> List[Tuple[bytes, int]]:
        """Every user the store holds events for, with how many (a short blocking read)."""
        return self._inner.pending_users()

    def list_events(self, user: BytesLike, after: int = 0, limit: int = 256) -> List[PendingEvent]:
        """A page of ``user``'s pending events (a short blocking read); see
        :meth:`hyperdown.Server.list_events`."""
        return self._inner.list_events(user, after, limit)

    async def delete_events(self, user: BytesLike, ids: List[int]) -> int:
        """Deletes ``user``'s events with these ids; returns how many were held, once durable."""
        return await _completion(lambda done: self._inner.count_nowait(
            "delete_events", user, list(ids), done))

    async def delete_user(self, user: BytesLike) -> int:
        """Deletes every event of ``user``; returns how many, once durable."""
        return await _completion(lambda done: self._inner.count_nowait(
            "delete_user", user, None, done))

    # the original's names
    async def addEvent(self, user: BytesLike, payload: Payload) -> int:  # noqa: N802
        return await self.add_event(user, payload)

    async def updatePause(self, pause_ms: int) -> None:  # noqa: N802
        await self.update_pause(pause_ms)

    async def leave(self) -> None:
        await self.aclose()

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

    def __init__(self, keypair: KeyPair,
                 server_public_key: Union[BytesLike, Sequence[BytesLike]], topic: str,
                 connect: Union[str, Sequence[str]], *,
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
                 on_event: Optional[AsyncEventHandler] = None,
                 window: Optional[int] = None,
                 retry_min: Optional[float] = None,
                 retry_max: Optional[float] = None,
                 max_attempts: Optional[int] = None,
                 on_notice: Optional[Callable[[Notice], Any]] = None) -> None:
        self._bridge = b = _Bridge(loop or asyncio.get_running_loop())
        self._events: "asyncio.Queue[Optional[Event]]" = asyncio.Queue()
        self._held: Set[Event] = set()  # handed out by events()/next_event(), maybe not completed
        self._has_handler = on_event is not None
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
            data_dir=data_dir, sync_normal=sync_normal, window=window, retry_min=retry_min,
            retry_max=retry_max, max_attempts=max_attempts,
            # notices run on the event loop like on_event (a coroutine function is awaited)
            _on_notice_raw=(lambda n: DEFER if b.post(b.handle, "on_notice", n, on_notice, n)
                            else False) if on_notice is not None else None,
            _on_event_raw=(lambda ev: self._post_event(on_event, ev)))

    def _post_event(self, handler: Optional[AsyncEventHandler], ev: Event) -> Any:
        # on the core's thread: hand the event to the loop, which completes it
        if handler is not None:
            posted = self._bridge.post(self._bridge.handle, "on_event", ev, handler, ev)
        else:
            posted = self._bridge.post(self._queue_event, ev)
        return DEFER if posted else False

    def _queue_event(self, ev: Event) -> None:
        self._held = {e for e in self._held if not e.completed}
        self._held.add(ev)
        self._events.put_nowait(ev)

    async def next_event(self, timeout: Optional[float] = None) -> Event:
        """The next event (for a client without ``on_event``). Complete it yourself with
        ``event.complete(ok, data)``: the core hands the next one only after that."""
        if self._has_handler:
            raise RuntimeError("this client has an on_event handler: events go there")
        ev = await _get(self._events, timeout)
        if ev is None:
            self._events.put_nowait(None)
            raise error_from_code(_handles.lib.HD_ECLOSED, "the client is closed")
        return ev

    def events(self) -> "_EventIterator":
        """Async iteration over the events (for a client without ``on_event``)::

            async for event in client.events():
                ...   # completed with success when the loop asks for the next one

        An event you completed yourself (``event.complete(ok, data)``) is left as it is; the one
        in hand when the loop ends by ``break`` or a raise is completed as a failure (handed again
        after the retry delay). The iteration ends when the client closes."""
        if self._has_handler:
            raise RuntimeError("this client has an on_event handler: events go there")
        return _EventIterator(self)

    def stats(self) -> ClientStats:
        """The client's counters (a short blocking read)."""
        return self._inner.stats()

    def rollback_stats(self) -> RollbackStats:
        """What losses of the server store's commits did to this client (a short blocking read)."""
        return self._inner.rollback_stats()

    async def aclose(self) -> None:
        """Closes and waits (in a worker thread) until the core has released the client; ends
        any iteration. Events handed out and not completed are failed (handed again next time)."""
        await super().aclose()
        self._events.put_nowait(None)
        for ev in list(self._held):
            if not ev.completed:
                try:
                    ev.complete(False)
                except HyperdownError:
                    pass
        self._held.clear()

    async def leave(self) -> None:
        await self.aclose()

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

    @property
    def server_public_keys(self) -> List[bytes]:
        return self._inner.server_public_keys

    @property
    def addresses(self) -> List[str]:
        return self._inner.addresses

    def held_stores(self) -> List[HeldStore]:
        """The other server stores this client holds events for (a short blocking read)."""
        return self._inner.held_stores()

    async def purge_store(self, store_id: BytesLike) -> None:
        """Drops the events held for the store ``store_id``, once durable (see
        :meth:`hyperdown.Client.purge_store`)."""
        await _completion(lambda done: self._inner.purge_store(store_id,
                                                               callback=lambda err: done(err)))

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


class _EventIterator:
    """``async for event in client.events()`` (see Client.events)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._last: Optional[Event] = None

    def __aiter__(self) -> "_EventIterator":
        return self

    def _settle_last(self, ok: bool) -> None:
        last, self._last = self._last, None
        if last is not None:
            self._client._held.discard(last)
            if not last.completed:
                try:
                    last.complete(ok)
                except HyperdownError:
                    pass

    async def __anext__(self) -> Event:
        self._settle_last(True)
        ev = await self._client._events.get()
        if ev is None:
            self._client._events.put_nowait(None)  # every iteration ends
            raise StopAsyncIteration
        self._last = ev
        return ev

    def __del__(self) -> None:
        # the loop ended (break, raise) with an event in hand: failure, handed again later
        self._settle_last(False)


@overload
async def create(options: ServerOptions) -> Server: ...
@overload
async def create(options: ClientOptions) -> Client: ...
@overload
async def create(options: Dict[str, Any]) -> Union[Server, Client]: ...


async def create(options: Any) -> Union[Server, Client]:
    """The original's ``await require('hyperdown')(options)`` for asyncio: a
    :class:`Server` (``isServer``) or a :class:`Client` from the original's option names (see
    hyperdown.create). ``eventHandler`` and ``onClientConsumedEvents`` may be coroutine
    functions; their ``cb`` returns an awaitable, as in the original (``await cb(id, True)``)."""
    from ._compat import resolve
    kind, args, kwargs = resolve(options, aio=True)
    return Server(*args, **kwargs) if kind == "server" else Client(*args, **kwargs)


logging.getLogger("hyperdown").addHandler(logging.NullHandler())
