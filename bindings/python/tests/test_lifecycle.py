"""Closing with events in flight and reopening loses nothing; open/close cycles do not leak."""
from __future__ import annotations

import collections
import gc
import threading
import time

import hyperdown

from hd_testutil import LONG, addr, rss_kib, wait_until

CYCLES = 1000
RSS_BOUND_KIB = 50 * 1024


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handled: "collections.Counter[int]" = collections.Counter()
        self.consumed: "collections.Counter[int]" = collections.Counter()

    def on_event(self, ev: hyperdown.Event) -> dict:
        time.sleep(0.001)  # a handler that takes a little time: events stay in flight
        with self.lock:
            self.handled[ev.id] += 1
        return {"ok": ev.id}

    def on_consumed(self, user: bytes, events: hyperdown.ConsumedBatch) -> bool:
        with self.lock:
            for e in events:
                assert e.data == {"ok": e.id}
                self.consumed[e.id] += 1
        return True


def test_close_with_events_in_flight_and_reopen_loses_nothing(server_kp, user_kp, store) -> None:
    t = Tally()
    srv_dir, usr_dir = store(), store()
    user = user_kp.public_key
    total = 0

    def server(port: str = "127.0.0.1:0") -> hyperdown.Server:
        return hyperdown.Server(server_kp, "topic", port, on_consumed=t.on_consumed, **srv_dir)

    def client(s: hyperdown.Server) -> hyperdown.Client:
        return hyperdown.Client(user_kp, s.public_key, "topic", addr(s), on_event=t.on_event,
                                reconnect_min=0.02, reconnect_max=0.2, **usr_dir)

    # 1. the client closes while events are streaming to it
    s = server()
    c = client(s)
    for i in range(300):
        s.add_event(user, {"n": i})
    total += 300
    wait_until(lambda: sum(t.handled.values()) >= 50, LONG, "some events handled")
    c.close()
    assert sum(t.handled.values()) < total, "the close should happen with events in flight"
    # 2. the server closes while adds and deliveries are in flight (client reopened)
    c = client(s)
    adder_done = threading.Event()

    def adder() -> None:
        try:
            for i in range(100):
                s.add_event(user, {"m": i})
        except hyperdown.ClosedError:
            pass
        finally:
            adder_done.set()

    th = threading.Thread(target=adder)
    th.start()
    wait_until(lambda: sum(t.handled.values()) >= 120, LONG, "more events handled")
    s.close()
    assert adder_done.wait(LONG)
    th.join()
    # the client keeps handling what it already holds while the server is away
    time.sleep(0.1)
    c.close()
    # 3. reopen both on the same folders: everything left is delivered and confirmed
    s = server()
    c = client(s)
    try:
        wait_until(lambda: s.stats().pending_total == 0, LONG, "the server store to empty")
        wait_until(lambda: (lambda st: st.unhandled == 0 and st.consumed == 0)(c.stats()), LONG,
                   "the client store to empty")
        high = c.stats().high_water
    finally:
        c.close()
        s.close()
    ids = set(range(1, high + 1))
    assert set(t.handled) == ids, f"missing: {sorted(ids - set(t.handled))[:10]}"
    assert set(t.consumed) == ids
    assert high >= total  # the 300 plus what the adder stored before the close
    repeats = {k: v for k, v in t.handled.items() if v > 1}
    # with both stores intact the handler runs exactly once per event
    assert not repeats, f"handled more than once: {repeats}"
    assert all(v == 1 for v in t.consumed.values())


def _cycle_report(capsys, what: str, before: int, after: int, seconds: float) -> None:
    with capsys.disabled():
        print(f"\n[rss] {CYCLES} {what} open/close cycles: {before} KiB -> {after} KiB "
              f"({after - before:+d} KiB) in {seconds:.1f}s")


def test_server_open_close_cycles_do_not_leak(server_kp, user_kp, store, capsys) -> None:
    d = store()
    threads = threading.active_count()
    for _ in range(20):  # warm-up: allocator pools, SQLite, imports
        hyperdown.Server(server_kp, "topic", **d).close()
    gc.collect()
    before, t0 = rss_kib(), time.monotonic()
    for i in range(CYCLES):
        with hyperdown.Server(server_kp, "topic", on_consumed=lambda u, e: True, **d) as s:
            if i % 100 == 0:
                s.add_event(user_kp.public_key, {"cycle": i})
    gc.collect()
    after = rss_kib()
    _cycle_report(capsys, "server", before, after, time.monotonic() - t0)
    assert after - before < RSS_BOUND_KIB
    assert threading.active_count() == threads


def test_client_open_close_cycles_do_not_leak(server_kp, user_kp, store, capsys) -> None:
    d = store()
    connected = threading.Semaphore(0)
    with hyperdown.Server(server_kp, "topic", **store()) as s:
        def one() -> None:
            with hyperdown.Client(user_kp, s.public_key, "topic", addr(s),
                                  on_event=lambda ev: True,
                                  on_connected=lambda pk: connected.release(), **d):
                assert connected.acquire(timeout=5)

        for _ in range(20):
            one()
        gc.collect()
        before, t0 = rss_kib(), time.monotonic()
        for i in range(CYCLES):
            if i % 100 == 0:
                s.add_event(user_kp.public_key, {"cycle": i})
            one()
        gc.collect()
        after = rss_kib()
        # events caught by a close in flight are finished by the next connection
        with hyperdown.Client(user_kp, s.public_key, "topic", addr(s), on_event=lambda ev: True,
                              **d) as c:
            wait_until(lambda: s.stats().pending_total == 0, LONG,
                       f"every event consumed ({s.stats()}, {c.stats()})")
    _cycle_report(capsys, "client", before, after, time.monotonic() - t0)
    assert after - before < RSS_BOUND_KIB
