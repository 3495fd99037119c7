"""The original README's example through hyperdown.create, with the original's key pairs."""
from __future__ import annotations

import os
import threading
import time

import pytest

import hyperdown

from hd_testutil import ORIGINAL_KEYS, TIMEOUT, original_options, wait_until

KP0, KP1, KP2 = (hyperdown.KeyPair.from_scalar(*ORIGINAL_KEYS[n])
                 for n in ("server", "online", "offline"))


def test_original_example(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # storage: ./topic/<testFolder>, as in the original
    lock = threading.Lock()
    consumed: list = []
    handled: dict = {"client1": [], "client2": []}
    consumed_calls: list = []

    def on_consumed(remote_public_key, events, cb) -> None:
        with lock:
            consumed_calls.append(remote_public_key)
            consumed.extend((remote_public_key, e.id, e.payload, e.data) for e in events)
        cb(True)

    def handler(name):
        def event_handler(id, data, cb) -> None:  # noqa: A002 - the original's names
            with lock:
                handled[name].append((id, data))
            cb(id, True)
        return event_handler

    server = hyperdown.create({
        "uniqueKeyPair": original_options("server"),
        "folderName": "topic",
        "testFolder": "server",
        "isServer": True,
        "onClientConsumedEvents": on_consumed,
    })
    online = offline = None
    try:
        online = hyperdown.create({
            "serverPublicKey": KP0.public_key,
            "uniqueKeyPair": original_options("online"),
            "folderName": "topic",
            "testFolder": "onlineClient1",
            "eventHandler": handler("client1"),
            "connect": f"127.0.0.1:{server.port}",
        })
        e1 = {"prize": 500, "game": "boxing", "note": "user1 is online"}
        e2 = {"prize": -500, "game": "boxing", "note": "user2 is offline"}
        e3 = {"prize": 4500, "game": "boxing2", "note": "user1 is still online"}
        assert server.addEvent(KP1.public_key, e1) == 1
        assert server.addEvent(KP2.public_key, e2) == 1
        assert server.pending(KP2.public_key) == 1  # kept for the offline user
        offline = hyperdown.create({
            "serverPublicKey": KP0.public_key_hex,
            "uniqueKeyPair": original_options("offline"),
            "folderName": "topic",
            "testFolder": "offlineClient2",
            "offline": True,
            "eventHandler": handler("client2"),
            "connect": f"127.0.0.1:{server.port}",
        })
        assert server.addEvent(KP1.public_key, e3) == 2

        wait_until(lambda: len(consumed) == 3 and server.stats().pending_total == 0,
                   what="every event consumed and deleted")
        for c in (online, offline):
            wait_until(lambda: (lambda s: s.unhandled == 0 and s.consumed == 0)(c.stats()),
                       what="the client stores to empty")
        time.sleep(0.2)  # nothing more arrives: every event once, every callback once
        assert handled == {"client1": [(1, e1), (2, e3)], "client2": [(1, e2)]}
        assert sorted(consumed, key=lambda c: (c[0], c[1])) == sorted([
            (KP1.public_key_hex, 1, e1, None), (KP1.public_key_hex, 2, e3, None),
            (KP2.public_key_hex, 1, e2, None)], key=lambda c: (c[0], c[1]))
        assert server.stats().events_confirmed == 3
        assert len(consumed_calls) <= 3
    finally:
        for h in (offline, online):
            if h is not None:
                h.leave()
        server.leave()
    for folder in ("server", "onlineClient1", "offlineClient2"):
        assert os.path.isdir(tmp_path / "topic" / folder)


def test_create_options() -> None:
    with pytest.raises(TypeError, match="folderName"):
        hyperdown.create({"uniqueKeyPair": original_options("server")})
    with pytest.raises(TypeError, match="eventHandler"):
        hyperdown.create({"uniqueKeyPair": original_options("online"), "folderName": "t",
                          "serverPublicKey": KP0.public_key, "connect": "127.0.0.1:1"})
    with pytest.raises(hyperdown.InvalidKeyError):
        hyperdown.create({"uniqueKeyPair": {"scalar": ORIGINAL_KEYS["server"][0],
                                            "publicKey": ORIGINAL_KEYS["online"][1]},
                          "folderName": "t", "isServer": True})

    async def coro(id, data, cb):  # noqa: A002
        await cb(id, True)

    with pytest.raises(TypeError, match="aio"):
        hyperdown.create({"uniqueKeyPair": original_options("online"), "folderName": "t",
                          "serverPublicKey": KP0.public_key, "connect": "127.0.0.1:1",
                          "eventHandler": coro})
    kp = hyperdown.KeyPair.generate()
    from hyperdown._compat import keypair_from
    assert keypair_from({"seed": "00" * 31 + "01"}).public_key_hex == \
        "4cb5abf6ad79fbf5abbccafcc269d85cd2651ed4b885b5869f241aedf0a5ba29"
    assert keypair_from(kp) is kp
