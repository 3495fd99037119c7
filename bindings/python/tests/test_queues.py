"""The queue semantics through the Python binding (docs/QUEUES.md): add options and their results,
limits, fan-out, dead letters in a round trip with a real client, requeue, notices,
max_event_bytes and events_too_large; plain and asyncio. Every wait is bounded."""
from __future__ import annotations

import asyncio
import math
import threading

import pytest

import hyperdown
import hyperdown.aio

from hd_testutil import LONG, TIMEOUT, addr, wait_until


def test_add_options_dedup_collapse_and_the_plain_add(server_kp, user_kp, store) -> None:
    u = user_kp.public_key
    with hyperdown.Server(server_kp, "topic", **store()) as server:
        assert server.add_event(u, {"n": 0}) == 1  # the plain add still returns the number
        first = server.add(u, {"n": 1}, dedup_key="order-7")
        assert first == hyperdown.AddResult(seq=2)
        again = server.add(u, {"n": 1}, dedup_key="order-7")
        assert again == hyperdown.AddResult(seq=2, duplicate=True)
        other = server.add(u, {"n": 2}, dedup_key=b"order-7")
        assert (other.seq, other.duplicate, other.conflict) == (2, True, True)  # the first wins
        assert server.pending(u) == 2

        a = server.add(u, {"score": 1}, collapse_key="score")
        b = server.add(u, {"score": 2}, collapse_key="score")
        assert b.replaced_seq == a.seq and b.seq > a.seq
        assert [e.payload for e in server.list_events(u)] == [{"n": 0}, {"n": 1}, {"score": 2}]
        assert server.add(hyperdown.KeyPair.generate().public_key, "x", ttl=math.inf).seq == 1
        with pytest.raises(hyperdown.InvalidArgumentError):
            server.add(u, "x", dedup_key=b"k" * 300)
        with pytest.raises(ValueError):
            server.add(u, "x", dedup_key="")
        st = server.stats()
        assert (st.adds_duplicate, st.events_replaced) == (2, 1)

        done = threading.Event()
        got: list = []
        server.add_nowait(u, "later", lambda err, r: (got.append((err, r)), done.set()),
                          dedup_key="order-7")
        assert done.wait(TIMEOUT)
        assert got[0][0] is None and got[0][1].duplicate
    with pytest.raises(hyperdown.ClosedError):
        server.add(u, "x")


def test_limits_reject_raises_limit_error_and_drop_oldest_makes_room(server_kp, user_kp,
                                                                     store) -> None:
    u = user_kp.public_key
    with hyperdown.Server(server_kp, "topic", max_pending_per_user=2, **store()) as server:
        server.add(u, 1)
        server.add(u, 2)
        with pytest.raises(hyperdown.LimitError) as info:
            server.add(u, 3)
        assert info.value.code == -30 and info.value.name == "ELIMIT"
        with pytest.raises(hyperdown.LimitError):
            server.add_event(u, 3)  # the plain add is limited too
        assert server.stats().adds_limited == 2 and server.pending(u) == 2
    with hyperdown.Server(server_kp, "topic", max_bytes_per_user=20, overflow="drop-oldest",
                          **store()) as server:
        server.add(u, b"\0" * 8)
        server.add(u, b"\0" * 8)
        r = server.add(u, b"\0" * 8)
        assert r.dropped == 1 and r.seq > 2  # (the dropped notice takes its place in the stream)
        ids = [e.id for e in server.list_events(u)]
        assert 1 not in ids and 2 in ids and r.seq in ids
        assert server.stats().events_dropped == 1
    with pytest.raises(ValueError):
        hyperdown.Server(server_kp, "topic", overflow="sometimes", **store())


def test_fan_out_each_user_its_result_and_a_user_at_its_limit_fails_alone(server_kp, user_kp,
                                                                        store) -> None:
    u1, u2, u3 = (user_kp.public_key, hyperdown.KeyPair.generate().public_key,
                  hyperdown.KeyPair.generate().public_key)
    with hyperdown.Server(server_kp, "topic", max_pending_per_user=1, **store()) as server:
        server.add_event(u2, "already one")
        results = server.add_event_for_users([u1, u2.hex(), u3], {"sale": 50}, dedup_key="sale-1")
        assert [r.user for r in results] == [u1, u2, u3]
        assert results[0].error is None and results[0].seq == 1
        assert isinstance(results[1].error, hyperdown.LimitError) and results[1].result is None
        assert results[2].seq == 1
        assert server.list_events(u3)[0].payload == {"sale": 50}
        repeat = server.add_event_for_users([u1, u3], {"sale": 50}, dedup_key="sale-1")
        assert all(r.result.duplicate and r.seq == 1 for r in repeat)
        assert server.pending_users() == [(u2, 1), (u1, 1), (u3, 1)]
        with pytest.raises(ValueError):
            server.add_event_for_users([], "x")
        with pytest.raises(hyperdown.HyperdownError):
            server.add_event_for_users([b"\x01\x02"], "x")


def test_dead_letters_round_trip_requeue_with_a_notice_and_delete(server_kp, user_kp,
                                                                   store) -> None:
    u = user_kp.public_key
    reported: list = []
    attempts: list = []
    notices: list = []
    handled: list = []
    requeued = threading.Event()

    def on_event(ev: hyperdown.Event):
        kind = ev.payload["kind"]
        if kind == "poison" and not requeued.is_set():
            ev.reject("cannot parse")
            return hyperdown.DEFER  # completed already
        if kind == "flaky" and not requeued.is_set():
            attempts.append(ev.attempt)
            raise RuntimeError("backend down")  # a failed attempt, the error its reason
        handled.append((ev.id, kind))
        return True

    def on_notice(n: hyperdown.Notice):
        notices.append(n)

    with hyperdown.Server(server_kp, "topic", on_dead_letter=lambda user, d: reported.append(
            (user, d.id, d.reason)), **store()) as server:
        with hyperdown.Client(user_kp, server.public_key, "topic", addr(server), max_attempts=2,
                              retry_min=0.01, retry_max=0.04, on_event=on_event,
                              on_notice=on_notice, on_callback_error=lambda exc: None,
                              **store()) as client:
            for kind in ("poison", "flaky", "fine"):
                server.add_event(u, {"kind": kind})
            wait_until(lambda: server.dead_letter_count(u) == 2 and len(handled) == 1, LONG,
                       "two dead letters and the third event handled")
            assert handled == [(3, "fine")]  # later events flow on
            assert attempts == [1, 2]
            assert reported == [(u, 1, "cannot parse"), (u, 2, "backend down")]
            letters = server.list_dead_letters(u)
            assert [(d.id, d.payload["kind"], d.reason, d.attempts) for d in letters] == [
                (1, "poison", "cannot parse", 1), (2, "flaky", "backend down", 2)]
            assert letters[0].dead_ms >= letters[0].created_ms
            assert [d.id for d in server.list_dead_letters(u, after=1, limit=1)] == [2]
            assert server.dead_letter_count() == 2
            assert server.dead_letter_users() == [(u, 2)]
            wait_until(lambda: client.stats().events_dead == 2, what="the client counts them dead")
            st = server.stats()
            assert (st.events_dead, st.dead_letters) == (2, 2)

            requeued.set()
            assert server.requeue_dead_letters(u, [1]) == 1
            wait_until(lambda: len(handled) == 2 and notices, LONG, "the requeued event and its notice")
            new_id, kind = handled[1]
            assert kind == "poison" and new_id > 3  # a requeued dead letter takes a new number
            assert notices[0] == ("requeued", 1, 1, new_id)
            assert server.stats().events_requeued == 1
            assert server.delete_dead_letters(u, []) == 0
            assert server.delete_dead_letters(u) == 1
            assert server.dead_letter_count(u) == 0 and server.dead_letter_users() == []
            wait_until(lambda: client.stats().notices_received >= 1, what="the notice counted")


def test_a_ttl_expired_event_reaches_the_client_as_a_notice(server_kp, user_kp, store) -> None:
    u = user_kp.public_key
    notices: list = []
    got: list = []
    with hyperdown.Server(server_kp, "topic", **store()) as server:
        late = server.add(u, {"late": True}, ttl=0.1)
        server.add_event(u, {"on_time": True})
        wait_until(lambda: server.stats().events_expired >= 1, LONG, "the expiry sweep")
        with hyperdown.Client(user_kp, server.public_key, "topic", addr(server),
                              on_event=lambda ev: got.append(ev.id),
                              on_notice=notices.append, **store()) as client:
            wait_until(lambda: notices and got, LONG, "the notice and the live event")
            assert notices[0] == ("expired", 1, late.seq, late.seq)
            assert got == [2]  # the expired one only as the notice
            assert client.stats().notices_received == 1


def test_max_event_bytes_and_events_too_large(server_kp, user_kp, store) -> None:
    u = user_kp.public_key
    folder = store()
    with hyperdown.Server(server_kp, "topic", max_event_bytes=4000, **folder) as server:
        with pytest.raises(hyperdown.InvalidArgumentError):
            server.add_event(u, b"\0" * 4001)
        assert server.add_event(u, b"\0" * 3000) == 1
    with hyperdown.Server(server_kp, "topic", max_event_bytes=1000, **folder) as server:
        with hyperdown.Client(user_kp, server.public_key, "topic", addr(server),
                              max_message_bytes=2000, reconnect=False, on_event=lambda ev: True,
                              **store()):
            wait_until(lambda: server.stats().events_too_large >= 1, what="the too-large event")
            assert server.pending(u) == 1


def test_aio_queue_calls(server_kp, user_kp, store) -> None:
    u = user_kp.public_key

    async def main() -> None:
        dead: "asyncio.Queue" = asyncio.Queue()
        async with hyperdown.aio.Server(server_kp, "topic", max_pending_per_user=5,
                                        on_dead_letter=lambda user, d: dead.put_nowait(d),
                                        **store()) as server:
            r = await server.add(u, {"n": 1}, dedup_key="a")
            assert (await server.add(u, {"n": 1}, dedup_key="a")).seq == r.seq
            results = await server.add_event_for_users([u], {"n": 2})
            assert results[0].seq == r.seq + 1

            async def on_event(ev: hyperdown.Event):
                await asyncio.sleep(0)
                ev.reject("no")
                return hyperdown.DEFER

            notices: "asyncio.Queue" = asyncio.Queue()
            refused = []

            async def on_notice(n: hyperdown.Notice):  # a coroutine, awaited on the loop
                if not refused:
                    refused.append(n)
                    raise RuntimeError("not yet")  # handed again later
                notices.put_nowait(n)

            async with hyperdown.aio.Client(user_kp, server.public_key, "topic",
                                            f"127.0.0.1:{server.port}", on_event=on_event,
                                            on_notice=on_notice, retry_min=0.01, retry_max=0.04,
                                            **store()):
                letter = await asyncio.wait_for(dead.get(), TIMEOUT)
                assert letter.reason == "no" and letter.id == 1
                await asyncio.wait_for(dead.get(), TIMEOUT)
                assert server.dead_letter_count(u) == 2
                assert await server.delete_dead_letters(u, [1]) == 1
                assert await server.requeue_dead_letters(u) == 1
                n = await asyncio.wait_for(notices.get(), TIMEOUT)
                assert (n.kind, n.count, n.first_seq) == ("requeued", 1, 2)
                assert refused and refused[0] == (n.kind, n.count, n.first_seq, n.last_seq)

    asyncio.run(main())
