"""Event delivery through the plain API: payload rule, handlers, consumption, stats."""
from __future__ import annotations

import threading

import pytest

import hyperdown
from hyperdown import _lib

from hd_testutil import TIMEOUT, Recorder, addr, wait_until


def test_payload_rule_round_trip() -> None:
    enc, dec = hyperdown.encode_payload, hyperdown.decode_payload
    assert enc(b"\x00\xff") == b"\x00\xff"
    assert enc({"prize": 500, "note": "é"}) == '{"prize":500,"note":"é"}'.encode()
    assert enc("hi") == b'"hi"' and enc(7) == b"7" and enc(None) == b"null" and enc(True) == b"true"
    assert enc([1, 2.5]) == b"[1,2.5]"
    assert dec(b'{"a": [1, null]}') == {"a": [1, None]}
    assert dec(b'"hi"') == "hi" and dec(b"7") == 7
    assert dec(b"hello") == b"hello"          # not JSON: bytes
    assert dec(b"\xff\xfe") == b"\xff\xfe"    # not UTF-8: bytes
    assert dec(b"NaN") == b"NaN"              # Python's json extensions are not JSON
    with pytest.raises(TypeError):
        enc(object())


def test_event_fields_data_and_consumption(server_kp, user_kp, store) -> None:
    got: list = []
    reports: list = []
    done = threading.Event()

    def on_event(ev: hyperdown.Event):
        got.append((ev.id, ev.seq, ev.payload, ev.data, ev.raw, ev.created_at.year))
        return {"handled": ev.id}             # data reported to the server (JSON)

    def on_consumed(user: bytes, events: hyperdown.ConsumedBatch) -> bool:
        reports.append((user, [(e.id, e.payload, e.data, e.raw_data, e.created_ms > 0)
                               for e in events]))
        done.set()
        return True

    with hyperdown.Server(server_kp, "topic", on_consumed=on_consumed, **store()) as server:
        with hyperdown.Client(user_kp, server.public_key, "topic", addr(server), on_event=on_event,
                              **store()) as client:
            seq = server.add_event(user_kp.public_key_hex, {"prize": 500})
            assert done.wait(TIMEOUT)
            wait_until(lambda: server.stats().pending_total == 0, what="the store to empty")
            wait_until(lambda: client.stats().consumed == 0 and client.stats().unhandled == 0,
                       what="the client to forget the event")
            st = server.stats()
            assert st.events_added == 1 and st.events_confirmed == 1 and st.connected_users == 1
            assert server.connected_users() == [user_kp.public_key]
            assert server.pending(user_kp.public_key) == 0
            cs = client.stats()
            assert cs.events_received == 1 and cs.events_handled == 1 and cs.connected
            assert cs.high_water == seq
    assert got[0][:5] == (seq, seq, {"prize": 500}, {"prize": 500}, b'{"prize":500}')
    assert reports == [(user_kp.public_key,
                        [(seq, {"prize": 500}, {"handled": seq}, b'{"handled":' + str(seq).encode()
                          + b"}", True)])]


def test_raising_handler_is_retried_and_loses_nothing(server_kp, user_kp, rec: Recorder,
                                                     store) -> None:
    calls: list = []

    def on_event(ev: hyperdown.Event) -> bytes:
        calls.append(ev.seq)
        if len(calls) <= 2:
            raise RuntimeError("the first attempts fail on purpose")
        rec.cb("handled")(ev.seq, ev.payload)
        return b"ok"

    errors: list = []
    with hyperdown.Server(server_kp, "topic", **store()) as server:
        with hyperdown.Client(user_kp, server.public_key, "topic", addr(server), on_event=on_event,
                              retry_min=0.02, on_callback_error=errors.append,
                              **store()) as client:
            seq = server.add_event(user_kp.public_key, b'{"prize": 500}')
            assert seq >= 1
            handled = rec.wait("handled", timeout=TIMEOUT)
            wait_until(lambda: server.pending(user_kp.public_key) == 0, what="deletion")
            assert client.stats().events_failed == 2
    assert handled[0] == (seq, {"prize": 500})
    assert calls == [seq, seq, seq]
    assert len(errors) == 2 and all(isinstance(e, RuntimeError) for e in errors)


def test_raising_consumed_callback_keeps_the_events_until_the_next_report(server_kp, user_kp,
                                                                         store) -> None:
    calls: list = []
    errors: list = []

    def on_consumed(user: bytes, events: hyperdown.ConsumedBatch) -> None:
        calls.append([e.id for e in events])
        if len(calls) == 1:
            raise ValueError("the first report fails on purpose")

    srv_store, usr_store = store(), store()
    with hyperdown.Server(server_kp, "topic", on_consumed=on_consumed,
                          on_callback_error=errors.append, **srv_store) as server:
        with hyperdown.Client(user_kp, server.public_key, "topic", addr(server),
                              on_event=lambda ev: True, **usr_store) as client:
            seq = server.add_event(user_kp.public_key, "one")
            wait_until(lambda: calls, what="the first report")
            assert server.pending(user_kp.public_key) == 1      # kept
            assert client.stats().consumed == 1                  # not confirmed
        # the client reports it again on its next connection
        with hyperdown.Client(user_kp, server.public_key, "topic", addr(server),
                              on_event=lambda ev: True, **usr_store) as client:
            wait_until(lambda: server.pending(user_kp.public_key) == 0, what="the retry")
            wait_until(lambda: client.stats().consumed == 0, what="the DONE")
    assert calls == [[seq], [seq]]
    assert len(errors) == 1 and isinstance(errors[0], ValueError)


def test_deferred_completion_from_other_threads(server_kp, user_kp, store) -> None:
    done = threading.Event()

    def on_event(ev: hyperdown.Event):
        threading.Timer(0.01, ev.complete, args=(True, {"late": ev.id})).start()
        return hyperdown.DEFER

    def on_consumed(user: bytes, events: hyperdown.ConsumedBatch):
        def later() -> None:
            for e in events:
                assert e.data == {"late": e.id}
                e.complete(True)
            with pytest.raises(hyperdown.AlreadyDoneError):
                events.complete(True)
            done.set()
        threading.Thread(target=later).start()
        return hyperdown.DEFER

    with hyperdown.Server(server_kp, "topic", on_consumed=on_consumed, **store()) as server:
        with hyperdown.Client(user_kp, server.public_key, "topic", addr(server), on_event=on_event,
                              **store()):
            server.add_event(user_kp.public_key, [1, 2, 3])
            assert done.wait(TIMEOUT)
            wait_until(lambda: server.stats().pending_total == 0, what="deletion")


def test_update_pause_reaches_the_client_and_add_event_nowait(server_kp, user_kp, store) -> None:
    results: list = []
    added = threading.Event()
    with hyperdown.Server(server_kp, "topic", **store()) as server:
        with hyperdown.Client(user_kp, server.public_key, "topic", addr(server),
                              on_event=lambda ev: None, **store()) as client:
            wait_until(lambda: client.stats().connected, what="the connection")
            server.update_pause(25)
            wait_until(lambda: client.stats().pause_ms == 25, what="the pause")
            server.add_event_nowait(user_kp.public_key, b"x",
                                    lambda err, seq: (results.append((err, seq)), added.set()))
            assert added.wait(TIMEOUT)
            assert results == [(None, 1)]
            with pytest.raises(hyperdown.InvalidKeyError):
                server.add_event(bytes(31) + b"\x02", b"x")
            with pytest.raises(hyperdown.InvalidArgumentError):
                server.add_event(user_kp.public_key, b"")
    with pytest.raises(hyperdown.ClosedError):
        server.add_event(user_kp.public_key, b"x")
    assert _lib.HD_ECLOSED < 0
