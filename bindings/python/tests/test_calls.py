"""The C calls the binding reaches since issue 12: many events in one call, metrics (text and the
responder), key rollover, server address and key lists, admission, disconnect, backup, stores
held for another server store; plain and asyncio."""
from __future__ import annotations

import asyncio
import os
import socket
import threading
import urllib.request
from typing import Any, List

import pytest

import hyperdown
import hyperdown.aio
from hd_testutil import TIMEOUT, wait_until


def closed_port() -> int:
    """A local port nothing listens on (bound, then closed: a dial there is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_add_events_one_call(server_kp, user_kp, store) -> None:
    other = hyperdown.KeyPair.generate().public_key
    with hyperdown.Server(server_kp, "topic", "localhost:0", **store()) as server:
        results = server.add_events([
            (user_kp.public_key, {"n": 1}),
            hyperdown.AddItem(other, b"\x01"),
            hyperdown.AddItem(user_kp.public_key_hex, {"n": 2}, dedup_key="k"),
            hyperdown.AddItem(user_kp.public_key, {"n": 3}, dedup_key="k"),
        ])
        assert [r.error for r in results] == [None] * 4
        assert [r.seq for r in results] == [1, 1, 2, 2]  # a user's numbers in item order
        assert results[3].result.duplicate and not results[2].result.duplicate
        assert server.pending(user_kp.public_key) == 2 and server.pending(other) == 1
        with pytest.raises(ValueError):
            server.add_events([])
        with pytest.raises(hyperdown.InvalidKeyError):  # nothing added: one item is invalid
            server.add_events([(other, b"x"), (b"\x00" * 31 + b"\x01", b"y")])
        assert server.pending(other) == 1
        got: List[Any] = []
        done = threading.Event()
        server.add_events_nowait([(other, b"z")], lambda err, res: (got.append((err, res)),
                                                                   done.set()))
        assert done.wait(TIMEOUT)
        assert got[0][0] is None and got[0][1][0].seq == 2


def test_add_events_limit_fails_alone(server_kp, user_kp, store) -> None:
    with hyperdown.Server(server_kp, "topic", max_pending_per_user=1, **store()) as server:
        results = server.add_events([(user_kp.public_key, b"a"), (user_kp.public_key, b"b")])
        assert results[0].error is None
        assert isinstance(results[1].error, hyperdown.LimitError) and results[1].result is None


def test_aio_add_events(server_kp, user_kp, store) -> None:
    async def main() -> None:
        async with hyperdown.aio.Server(server_kp, "topic", **store()) as server:
            res = await server.add_events([(user_kp.public_key, {"n": i}) for i in range(5)])
            assert [r.seq for r in res] == [1, 2, 3, 4, 5]
            assert server.pending(user_kp.public_key) == 5
    asyncio.run(asyncio.wait_for(main(), 30))


def test_aio_completions_without_threads(server_kp, user_kp, store) -> None:
    """aio's fan-out, deletes and dead-letter calls await the core's completion callbacks."""
    async def main() -> None:
        async with hyperdown.aio.Server(server_kp, "topic", **store()) as server:
            for i in range(5):
                await server.add_event(user_kp.public_key, {"n": i})
            fan = await server.add_event_for_users([user_kp.public_key], b"f")
            assert fan[0].seq == 6 and fan[0].error is None
            assert await server.delete_events(user_kp.public_key, [1, 2, 99]) == 2
            assert await server.delete_events(user_kp.public_key, []) == 0
            assert await server.delete_user(user_kp.public_key) == 4
            assert await server.requeue_dead_letters(user_kp.public_key) == 0
            assert await server.delete_dead_letters(user_kp.public_key, []) == 0
    asyncio.run(asyncio.wait_for(main(), 30))


def _samples(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_text_and_responder(server_kp, user_kp, store) -> None:
    with hyperdown.Server(server_kp, "topic", metrics_listen="127.0.0.1:0", **store()) as server:
        before = _samples(server.metrics())
        assert before and all(n.startswith("hyperdown_") for n in before)
        server.add_event(user_kp.public_key, b"1")
        server.add_events([(user_kp.public_key, b"2"), (user_kp.public_key, b"3")])
        after = _samples(server.metrics())
        added = [n for n in after if "added" in n and not n.endswith(("_bucket", "_sum", "_count"))
                 and "{" not in n]
        assert added, f"no counter of added events in {sorted(after)}"
        assert after[added[0]] - before.get(added[0], 0) == 3
        port = server.metrics_port
        assert port > 0
        url = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(url + "/metrics", timeout=TIMEOUT) as r:
            assert r.status == 200 and b"hyperdown_" in r.read()
        for path in ("/healthz", "/readyz"):
            with urllib.request.urlopen(url + path, timeout=TIMEOUT) as r:
                assert r.status == 200
    with hyperdown.Server(server_kp, "topic", **store()) as server:
        with pytest.raises(hyperdown.InvalidStateError):
            server.metrics_port  # noqa: B018 - no responder


def test_key_rollover_and_address_list(server_kp, store, rec) -> None:
    new_kp = hyperdown.KeyPair.generate()
    with hyperdown.Server(server_kp, "topic", "localhost:0", next_keypair=new_kp,
                          **store()) as server:
        assert server.next_public_key == new_kp.public_key
        refused = f"127.0.0.1:{closed_port()}"
        clients = []
        try:
            for name, keys in (("old", server_kp.public_key), ("new", [new_kp.public_key_hex]),
                               ("both", [new_kp.public_key, server_kp.public_key])):
                kp = hyperdown.KeyPair.generate()
                clients.append(hyperdown.Client(
                    kp, keys, "topic", [refused, f"localhost:{server.port}"],
                    on_connected=rec.cb(name), reconnect_min=0.05, reconnect_max=0.2,
                    on_event=lambda e: True, **store()))
            got = {name: rec.wait(name)[0][0] for name in ("old", "new", "both")}
            assert got["old"] == server_kp.public_key
            assert got["new"] == new_kp.public_key
            assert got["both"] in (server_kp.public_key, new_kp.public_key)
            assert clients[2].server_public_keys == [new_kp.public_key, server_kp.public_key]
            assert clients[0].addresses == [refused, f"localhost:{server.port}"]
        finally:
            for c in clients:
                c.close()


def test_authorize_and_disconnect(server_kp, user_kp, store, rec) -> None:
    stranger = hyperdown.KeyPair.generate()
    later: List[hyperdown.Authorization] = []

    def authorize(pk: bytes, req: hyperdown.Authorization) -> Any:
        if pk == stranger.public_key:
            return False
        later.append(req)  # answered from another thread
        return hyperdown.DEFER

    with hyperdown.Server(server_kp, "topic", authorize=authorize, **store()) as server:
        with hyperdown.Client(stranger, server_kp.public_key, "topic", f"127.0.0.1:{server.port}",
                              reconnect=False, on_disconnected=rec.cb("refused"),
                              on_event=lambda e: True, **store()):
            err = rec.wait("refused")[0][1]
            assert isinstance(err, hyperdown.AuthenticationError)
        with hyperdown.Client(user_kp, server_kp.public_key, "topic", f"127.0.0.1:{server.port}",
                              on_connected=rec.cb("up"), on_disconnected=rec.cb("down"),
                              reconnect_min=5.0, on_event=lambda e: True, **store()):
            wait_until(lambda: later, what="the authorization request")
            threading.Thread(target=later[0].allow).start()
            rec.wait("up")
            assert server.disconnect(user_kp.public_key) == 1
            rec.wait("down")
            assert server.disconnect(user_kp.public_key) == 0


def test_backup_and_held_stores(server_kp, user_kp, store, tmp_path) -> None:
    s_opts = store()
    with hyperdown.Server(server_kp, "topic", **s_opts) as server:
        server.add_event(user_kp.public_key, b"kept")
        server.backup(tmp_path / "live.db")
        assert os.path.getsize(tmp_path / "live.db") > 0
        with pytest.raises(hyperdown.InvalidArgumentError):
            server.backup(tmp_path / "live.db")  # exists
        with pytest.raises(hyperdown.BusyError):
            hyperdown.backup_folder(s_opts["data_dir"], tmp_path / "busy.db")
        with hyperdown.Client(user_kp, server_kp.public_key, "topic", f"127.0.0.1:{server.port}",
                              on_event=lambda e: True, **store()) as client:
            assert client.held_stores() == []
            with pytest.raises(hyperdown.NotFoundError):
                client.purge_store(b"\x01" * 16)
    hyperdown.backup_folder(s_opts["data_dir"], tmp_path / "offline.db")
    assert os.path.getsize(tmp_path / "offline.db") > 0


def test_keypair_verify() -> None:
    assert hyperdown.KeyPair.generate().verify()


def test_aio_authorize_coroutine(server_kp, user_kp, store) -> None:
    stranger = hyperdown.KeyPair.generate()

    async def authorize(pk: bytes) -> bool:
        await asyncio.sleep(0)
        return pk == user_kp.public_key

    async def main() -> None:
        async with hyperdown.aio.Server(server_kp, "topic", authorize=authorize,
                                        **store()) as server:
            async with hyperdown.aio.Client(stranger, server_kp.public_key, "topic",
                                            f"127.0.0.1:{server.port}", reconnect=False,
                                            **store()) as refused:
                _, err = await refused.disconnected(timeout=TIMEOUT)
                assert isinstance(err, hyperdown.AuthenticationError)
            async with hyperdown.aio.Client(user_kp, server_kp.public_key, "topic",
                                            f"127.0.0.1:{server.port}", **store()) as client:
                assert await client.connected(timeout=TIMEOUT) == server_kp.public_key
                assert server.disconnect(user_kp.public_key) == 1
                await client.disconnected(timeout=TIMEOUT)
    asyncio.run(asyncio.wait_for(main(), 30))
