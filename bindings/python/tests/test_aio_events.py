"""Events through the asyncio API (hyperdown.aio); each test runs its own loop."""
from __future__ import annotations

import asyncio
import collections
import gc
import threading
import time

import pytest

import hyperdown
import hyperdown.aio

from hd_testutil import LONG, ORIGINAL_KEYS, TIMEOUT, original_options, rss_kib

KP0, KP1, KP2 = (hyperdown.KeyPair.from_scalar(*ORIGINAL_KEYS[n])
                 for n in ("server", "online", "offline"))
CYCLES = 1000


def run(coro, timeout: float = TIMEOUT * 3):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(pred, timeout: float = TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def test_async_original_example(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        consumed: list = []
        handled: dict = {"client1": [], "client2": []}
        on_loop: list = []

        async def on_consumed(remote_public_key, events, cb) -> None:
            on_loop.append(asyncio.get_running_loop() is loop)
            await asyncio.sleep(0)
            consumed.extend((remote_public_key, e.id, e.payload) for e in events)
            await cb(True)

        def handler(name):
            async def event_handler(id, data, cb) -> None:  # noqa: A002
                on_loop.append(asyncio.get_running_loop() is loop)
                handled[name].append((id, data))
                await cb(id, True)
            return event_handler

        server = await hyperdown.aio.create({
            "uniqueKeyPair": original_options("server"), "folderName": "topic",
            "testFolder": "server", "isServer": True, "onClientConsumedEvents": on_consumed})
        async with server:
            online = await hyperdown.aio.create({
                "serverPublicKey": KP0.public_key, "uniqueKeyPair": original_options("online"),
                "folderName": "topic", "testFolder": "onlineClient1",
                "eventHandler": handler("client1"), "connect": f"127.0.0.1:{server.port}"})
            e1 = {"prize": 500, "game": "boxing", "note": "user1 is online"}
            e2 = {"prize": -500, "game": "boxing", "note": "user2 is offline"}
            e3 = {"prize": 4500, "game": "boxing2", "note": "user1 is still online"}
            assert await server.addEvent(KP1.public_key, e1) == 1
            assert await server.addEvent(KP2.public_key, e2) == 1
            offline = await hyperdown.aio.create({
                "serverPublicKey": KP0.public_key, "uniqueKeyPair": original_options("offline"),
                "folderName": "topic", "testFolder": "offlineClient2", "offline": True,
                "eventHandler": handler("client2"), "connect": f"127.0.0.1:{server.port}"})
            assert await server.addEvent(KP1.public_key, e3) == 2
            await until(lambda: len(consumed) == 3 and server.stats().pending_total == 0,
                        what="every event consumed")
            for c in (online, offline):
                await until(lambda: c.stats().unhandled == 0 and c.stats().consumed == 0,
                            what="client stores empty")
            await asyncio.sleep(0.2)
            assert handled == {"client1": [(1, e1), (2, e3)], "client2": [(1, e2)]}
            assert sorted(consumed, key=lambda c: (c[0], c[1])) == sorted(
                [(KP1.public_key_hex, 1, e1), (KP1.public_key_hex, 2, e3),
                 (KP2.public_key_hex, 1, e2)],
                key=lambda c: (c[0], c[1]))
            assert all(on_loop)
            await online.leave()
            await offline.leave()

    run(main())


def test_async_raising_coroutine_is_retried(server_kp, user_kp, store) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        caught: list = []
        loop.set_exception_handler(lambda _l, ctx: caught.append(ctx.get("exception")))
        calls: list = []
        consumed_calls: list = []
        done = asyncio.Event()

        async def on_event(ev: hyperdown.Event):
            calls.append(ev.id)
            await asyncio.sleep(0.001)
            if len(calls) == 1:
                raise RuntimeError("first attempt fails on purpose")
            return b"raw data"

        async def on_consumed(user: bytes, events):
            consumed_calls.append([(e.id, e.data) for e in events])
            done.set()
            return True

        async with hyperdown.aio.Server(server_kp, "topic", on_consumed=on_consumed,
                                        **store()) as server:
            async with hyperdown.aio.Client(user_kp, server.public_key, "topic",
                                            f"127.0.0.1:{server.port}", on_event=on_event,
                                            retry_min=0.02, **store()) as client:
                seq = await server.add_event(user_kp.public_key, {"x": 1})
                await asyncio.wait_for(done.wait(), TIMEOUT)
                await until(lambda: server.pending(user_kp.public_key) == 0, what="deletion")
                assert client.stats().events_failed == 1
        assert calls == [seq, seq]
        assert consumed_calls == [[(seq, b"raw data")]]
        assert any(isinstance(e, RuntimeError) for e in caught)

    run(main())


def test_async_iteration_and_update_pause(server_kp, user_kp, store) -> None:
    async def main() -> None:
        async with hyperdown.aio.Server(server_kp, "topic", **store()) as server:
            async with hyperdown.aio.Client(user_kp, server.public_key, "topic",
                                            f"127.0.0.1:{server.port}", **store()) as client:
                await client.connected(timeout=TIMEOUT)
                await server.update_pause(10)
                seqs = [await server.add_event(user_kp.public_key, p)
                        for p in ({"a": 1}, "two", b"\xff3")]
                got = []

                async def consume() -> None:
                    async for ev in client.events():
                        got.append((ev.id, ev.payload))
                        if ev.id == 2:
                            ev.complete(True, {"mine": True})  # completed by hand
                        if len(got) == 3:
                            break  # the third is in hand: failed, handed again

                await asyncio.wait_for(consume(), TIMEOUT)
                assert got == [(seqs[0], {"a": 1}), (seqs[1], "two"), (seqs[2], b"\xff3")]
                again = await client.next_event(timeout=TIMEOUT)
                assert again.id == seqs[2]
                again.complete(True)
                await until(lambda: server.stats().pending_total == 0, what="deletion")
                assert client.stats().pause_ms == 10
                assert client.stats().events_failed == 1
            with pytest.raises(hyperdown.ClosedError):
                client.stats()

    run(main())


def test_async_close_with_events_in_flight_and_reopen(server_kp, user_kp, store) -> None:
    srv_dir, usr_dir = store(), store()
    handled: "collections.Counter[int]" = collections.Counter()

    async def on_event(ev: hyperdown.Event) -> None:
        await asyncio.sleep(0.001)
        handled[ev.id] += 1

    def open_pair():
        server = hyperdown.aio.Server(server_kp, "topic", **srv_dir)
        client = hyperdown.aio.Client(user_kp, server.public_key, "topic",
                                      f"127.0.0.1:{server.port}", on_event=on_event,
                                      reconnect_min=0.02, **usr_dir)
        return server, client

    async def main() -> None:
        server, client = open_pair()
        await asyncio.gather(*(server.add_event(user_kp.public_key, {"n": i})
                               for i in range(200)))
        await until(lambda: sum(handled.values()) >= 30, LONG, "some handled")
        await client.aclose()          # handlers and deliveries in flight
        adds = [asyncio.ensure_future(server.add_event(user_kp.public_key, {"m": i}))
                for i in range(50)]
        await asyncio.sleep(0)
        await server.aclose()          # adds in flight
        results = await asyncio.gather(*adds, return_exceptions=True)
        stored = [r for r in results if isinstance(r, int)]
        assert all(isinstance(r, (int, hyperdown.ClosedError)) for r in results), results
        server, client = open_pair()
        try:
            await until(lambda: server.stats().pending_total == 0, LONG, "server store empty")
            await until(lambda: client.stats().unhandled == 0 and client.stats().consumed == 0,
                        LONG, "client store empty")
            high = client.stats().high_water
        finally:
            await client.aclose()
            await server.aclose()
        assert high >= 200 + len(stored)
        assert set(handled) == set(range(1, high + 1))

    run(main(), LONG * 2)


def test_async_open_close_cycles_do_not_leak(server_kp, user_kp, store, capsys) -> None:
    d_srv, d_usr, d_main = store(), store(), store()

    async def main() -> tuple:
        for _ in range(20):
            async with hyperdown.aio.Server(server_kp, "topic", **d_srv):
                pass
        gc.collect()
        b1, t0 = rss_kib(), time.monotonic()
        for _ in range(CYCLES):
            async with hyperdown.aio.Server(server_kp, "topic", on_consumed=lambda u, e: True,
                                            **d_srv):
                pass
        gc.collect()
        a1, t1 = rss_kib(), time.monotonic() - t0
        async with hyperdown.aio.Server(server_kp, "topic", **d_main) as server:
            async def one() -> None:
                async with hyperdown.aio.Client(user_kp, server.public_key, "topic",
                                                f"127.0.0.1:{server.port}", **d_usr) as c:
                    await c.connected(timeout=TIMEOUT)
            for _ in range(20):
                await one()
            gc.collect()
            b2, t0 = rss_kib(), time.monotonic()
            for _ in range(CYCLES):
                await one()
            gc.collect()
            a2, t2 = rss_kib(), time.monotonic() - t0
        return b1, a1, t1, b2, a2, t2

    b1, a1, t1, b2, a2, t2 = run(main(), 120)
    with capsys.disabled():
        print(f"\n[rss] {CYCLES} aio server open/close cycles: {b1} KiB -> {a1} KiB "
              f"({a1 - b1:+d} KiB) in {t1:.1f}s")
        print(f"[rss] {CYCLES} aio client open/close cycles: {b2} KiB -> {a2} KiB "
              f"({a2 - b2:+d} KiB) in {t2:.1f}s")
    assert a1 - b1 < 50 * 1024 and a2 - b2 < 50 * 1024
    assert threading.active_count() < 50
