"""The admin calls (docs/OPERATIONS.md "Admin"): pending_users, list_events in pages,
delete_events and delete_user, plain and asyncio, for an offline user and a connected one."""
from __future__ import annotations

import asyncio
import threading

import pytest

import hyperdown
import hyperdown.aio

from hd_testutil import TIMEOUT, addr, wait_until


def test_list_and_delete_an_offline_users_events(server_kp, user_kp, store) -> None:
    other = hyperdown.KeyPair.generate().public_key
    with hyperdown.Server(server_kp, "topic", **store()) as server:
        for i in range(1, 6):
            assert server.add_event(user_kp.public_key, {"n": i}) == i
        server.add_event(other, b"\xff\x01")
        assert server.pending_users() == [(user_kp.public_key, 5), (other, 1)]
        first = server.list_events(user_kp.public_key, limit=2)
        assert [e.id for e in first] == [1, 2]
        assert first[1].payload == {"n": 2} and first[1].raw == b'{"n":2}'
        assert first[0].created_ms > 0 and first[0].created_at.year >= 2024
        assert [e.id for e in server.list_events(user_kp.public_key_hex, after=2)] == [3, 4, 5]
        assert server.list_events(user_kp.public_key, after=5) == []
        assert server.list_events(other)[0].payload == b"\xff\x01"
        assert server.delete_events(user_kp.public_key, [2, 4, 77]) == 2
        assert [e.id for e in server.list_events(user_kp.public_key)] == [1, 3, 5]
        assert server.delete_events(user_kp.public_key, []) == 0
        assert server.delete_user(user_kp.public_key) == 3
        assert server.pending(user_kp.public_key) == 0
        assert server.pending_users() == [(other, 1)]
        assert server.add_event(user_kp.public_key, {"n": 6}) == 6  # numbers go on
        with pytest.raises(ValueError):
            server.list_events(user_kp.public_key, limit=0)
        with pytest.raises(ValueError):
            server.delete_events(user_kp.public_key, [-1])
        with pytest.raises(hyperdown.HyperdownError):
            server.delete_user(b"\x01\x02")
    with pytest.raises(hyperdown.ClosedError):
        server.delete_user(user_kp.public_key)


def test_a_connected_client_keeps_going_after_its_events_are_deleted(server_kp, user_kp,
                                                                     store) -> None:
    got: list = []
    reported: list = []
    gate = threading.Event()
    first = threading.Event()

    def on_event(ev: hyperdown.Event):
        got.append(ev.id)
        first.set()
        gate.wait(TIMEOUT)
        return True

    def on_consumed(user: bytes, events: hyperdown.ConsumedBatch) -> bool:
        reported.extend(e.id for e in events)
        return True

    with hyperdown.Server(server_kp, "topic", on_consumed=on_consumed, **store()) as server:
        with hyperdown.Client(user_kp, server.public_key, "topic", addr(server), on_event=on_event,
                              **store()) as client:
            server.add_event(user_kp.public_key, {"n": 1})
            server.add_event(user_kp.public_key, {"n": 2})
            assert first.wait(TIMEOUT)
            assert server.delete_user(user_kp.public_key) == 2  # delivered: still handled
            gate.set()
            assert server.add_event(user_kp.public_key, {"n": 3}) == 3
            wait_until(lambda: len(got) == 3 and client.stats().consumed == 0
                       and client.stats().unhandled == 0, what="every event handled and confirmed")
            assert got == [1, 2, 3]
            assert reported == [3]  # the deleted ones are confirmed without on_consumed
            # the delete of 3 follows on_consumed's return (a commit of its own)
            wait_until(lambda: server.stats().pending_total == 0, what="event 3 deleted")


def test_aio_admin_calls(server_kp, user_kp, store) -> None:
    async def main() -> None:
        async with hyperdown.aio.Server(server_kp, "topic", **store()) as server:
            for i in range(3):
                await server.add_event(user_kp.public_key, {"n": i})
            assert server.pending_users() == [(user_kp.public_key, 3)]
            assert [e.id for e in server.list_events(user_kp.public_key, after=1)] == [2, 3]
            assert await server.delete_events(user_kp.public_key, [1]) == 1
            assert await server.delete_user(user_kp.public_key) == 2
            assert server.pending(user_kp.public_key) == 0

    asyncio.run(main())
