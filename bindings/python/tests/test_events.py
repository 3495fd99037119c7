"""Event delivery through the binding (skipped on a core without the event API)."""
from __future__ import annotations

import asyncio

import pytest

import hyperdown
import hyperdown.aio
from hyperdown import _lib
from hyperdown._handles import HAS_EVENTS

from conftest import TIMEOUT, Recorder, addr

pytestmark = pytest.mark.skipif(not HAS_EVENTS or not hasattr(_lib, "hd_server_add_event_wait"),
                                reason="the compiled core has no event API yet")


def test_raising_handler_is_retried_and_loses_nothing(server_kp, user_kp, rec: Recorder,
                                                     store) -> None:
    calls: list = []

    def on_event(ev: hyperdown.Event) -> bytes:
        calls.append(ev.seq)
        if len(calls) == 1:
            raise RuntimeError("first attempt fails on purpose")
        rec.cb("handled")(ev.seq, ev.payload)
        return b"ok"

    errors: list = []
    with hyperdown.Server(server_kp, "topic", **store()) as server:
        with hyperdown.Client(user_kp, server.public_key, "topic", addr(server), on_event=on_event,
                              reconnect_min=0.05, on_callback_error=errors.append, **store()):
            seq = server.add_event(user_kp.public_key, b'{"prize": 500}')
            assert seq >= 1
            handled = rec.wait("handled", timeout=TIMEOUT)
    assert handled[0] == (seq, b'{"prize": 500}')
    assert calls[:2] == [seq, seq]
    assert errors and isinstance(errors[0], RuntimeError)


def test_async_event_handler(server_kp, user_kp, store) -> None:
    async def main() -> None:
        got: asyncio.Queue = asyncio.Queue()

        async def on_event(ev: hyperdown.Event) -> None:
            await got.put((ev.seq, ev.payload))

        async with hyperdown.aio.Server(server_kp, "topic", **store()) as server:
            async with hyperdown.aio.Client(user_kp, server.public_key, "topic",
                                            f"127.0.0.1:{server.port}", on_event=on_event,
                                            **store()):
                seq = await server.add_event(user_kp.public_key, b"hello")
                assert await asyncio.wait_for(got.get(), TIMEOUT) == (seq, b"hello")

    asyncio.run(asyncio.wait_for(main(), TIMEOUT * 3))
