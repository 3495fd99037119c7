"""Swift <-> Python over the one wire protocol: events and consumption reports cross each pair,
with the original's key pairs (kp0 server, kp1/kp2 users) and with freshly generated ones."""
from __future__ import annotations

import collections
import json
import subprocess
import threading
from typing import Any, Dict

import hyperdown

from interop_util import TIMEOUT, Identity, wait_until

TOPIC = "topic"


def test_swift_server_python_clients(swift_cli: str, ids: Dict[str, Identity], procs, tmp_path) -> None:
    srv_dir = tmp_path / "swift-server"
    serve = procs([swift_cli, "serve", "--topic", TOPIC, "--data", str(srv_dir),
                   "--key", ids["kp0"].key_file(str(tmp_path)), "--listen", "127.0.0.1:0"])
    hello = serve.next()
    assert isinstance(hello, dict) and hello["publicKey"] == ids["kp0"].hex, hello
    port = hello["port"]

    def send(user: Identity, *payloads: str) -> list:
        out = subprocess.run([swift_cli, "send", "--data", str(srv_dir), user.hex, *payloads],
                             capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 0, out.stderr
        return [int(x) for x in out.stdout.split()]

    lock = threading.Lock()
    handled: Dict[str, list] = collections.defaultdict(list)

    def handler(name: str):
        def on_event(ev: hyperdown.Event) -> Any:
            with lock:
                handled[name].append((ev.id, ev.payload))
            return {"by": "python", "id": ev.id}
        return on_event

    def client(name: str) -> hyperdown.Client:
        return hyperdown.Client(ids[name].kp, ids["kp0"].kp.public_key, TOPIC,
                                f"127.0.0.1:{port}", on_event=handler(name),
                                data_dir=str(tmp_path / f"py-{name}"))

    with client("kp1") as c1:
        s1 = send(ids["kp1"], '{"prize": 500, "game": "boxing", "note": "user1 is online"}')
        s2 = send(ids["kp2"], '{"prize": -500, "game": "boxing", "note": "user2 is offline"}')
        with client("kp2") as c2:
            s3 = send(ids["kp1"], '{"prize": 4500, "game": "boxing2"}', '"plain string"')
            want = {ids["kp1"].hex: set(s1 + s3), ids["kp2"].hex: set(s2)}

            def reported(seen: list) -> bool:
                got: Dict[str, set] = collections.defaultdict(set)
                for line in seen:
                    if isinstance(line, dict) and "consumed" in line:
                        got[line["user"]].update(line["consumed"])
                return got == want

            serve.wait_for(reported, what="consumption reports from both Python clients")
            for c in (c1, c2):
                wait_until(lambda: (lambda s: s.unhandled == 0 and s.consumed == 0)(c.stats()),
                           what="the Python client's store to empty (DONE from Swift)")
    assert handled["kp1"] == [(s1[0], {"prize": 500, "game": "boxing", "note": "user1 is online"}),
                              (s3[0], {"prize": 4500, "game": "boxing2"}),
                              (s3[1], "plain string")]
    assert handled["kp2"] == [(s2[0], {"prize": -500, "game": "boxing",
                                       "note": "user2 is offline"})]
    status = subprocess.run([swift_cli, "status", "--data", str(srv_dir), ids["kp1"].hex,
                             ids["kp2"].hex], capture_output=True, text=True, timeout=TIMEOUT)
    assert status.returncode == 0, status.stderr
    st = json.loads(status.stdout)
    assert st["pendingTotal"] == 0, st
    assert serve.stop() == 0


def test_python_server_swift_client(swift_cli: str, ids: Dict[str, Identity], procs,
                                    tmp_path) -> None:
    lock = threading.Lock()
    consumed: Dict[bytes, list] = collections.defaultdict(list)

    def on_consumed(user: bytes, events: hyperdown.ConsumedBatch) -> bool:
        with lock:
            consumed[user].extend((e.id, e.payload) for e in events)
        return True

    kp1, kp2 = ids["kp1"], ids["kp2"]
    with hyperdown.Server(ids["kp0"].kp, TOPIC, "127.0.0.1:0", on_consumed=on_consumed,
                          data_dir=str(tmp_path / "py-server")) as server:
        # kp2 is offline when its events are added
        e_off = [server.add_event(kp2.kp.public_key, {"prize": -500, "note": "user2 is offline"}),
                 server.add_event(kp2.kp.public_key, b"\xffnot utf-8")]

        def listen(who: Identity) -> Any:
            return procs([swift_cli, "listen", "--topic", TOPIC,
                          "--data", str(tmp_path / f"swift-{who.name}"),
                          "--key", who.key_file(str(tmp_path)),
                          "--server", f"127.0.0.1:{server.port}",
                          "--server-key", ids["kp0"].hex])

        l1 = listen(kp1)
        wait_until(lambda: kp1.kp.public_key in server.connected_users(),
                   what="the Swift client to connect")
        e_on = [server.add_event(kp1.kp.public_key, {"prize": 500, "note": "user1 is online"}),
                server.add_event(kp1.kp.public_key, "just a string")]
        l2 = listen(kp2)
        l1.wait_for(lambda seen: len(seen) >= 2, what="kp1's events")
        l2.wait_for(lambda seen: len(seen) >= 2, what="kp2's events")
        wait_until(lambda: len(consumed[kp1.kp.public_key]) == 2
                   and len(consumed[kp2.kp.public_key]) == 2, what="consumption reports")
        wait_until(lambda: server.stats().pending_total == 0, what="the Python store to empty")
        assert l1.stop() == 0 and l2.stop() == 0
    assert l1.seen == [{"id": e_on[0], "data": {"prize": 500, "note": "user1 is online"}},
                       {"id": e_on[1], "data": "just a string"}]
    assert l2.seen[0] == {"id": e_off[0], "data": {"prize": -500, "note": "user2 is offline"}}
    assert l2.seen[1]["id"] == e_off[1] and "dataBase64" in l2.seen[1]
    assert consumed[kp1.kp.public_key] == [(e_on[0], {"prize": 500, "note": "user1 is online"}),
                                           (e_on[1], "just a string")]
    assert [i for i, _ in consumed[kp2.kp.public_key]] == e_off
