"""Node <-> Python over the one wire protocol, with the original's key pairs (kp0 server, kp1/kp2
users) and with freshly generated ones:
- a Node server (test/interop/node/peer.js over bindings/node) with Python clients: events
  Node -> Python, consumption reports with the Python handler's data Python -> Node;
- a Python server (hyperdown.Server) with Node clients: the same the other way.
Every event is handled exactly once and every server callback sees it exactly once."""
from __future__ import annotations

import base64
import collections
import threading
import time
from typing import Any, Dict, List

import hyperdown

from interop_util import Identity, lines_with, node_peer, wait_until

TOPIC = "topic"


def test_node_server_python_clients(node_bin: str, ids: Dict[str, Identity], procs,
                                    tmp_path) -> None:
    kp0, kp1, kp2 = ids["kp0"], ids["kp1"], ids["kp2"]
    server = node_peer(procs, node_bin, role="server", keyPair=kp0.file_fields, topic=TOPIC,
                       dataDir=str(tmp_path / "node-server"), listen="127.0.0.1:0")
    hello = server.seen[0]
    assert hello["publicKey"] == kp0.hex, hello
    port = hello["port"]

    def add(user: Identity, payload: Any) -> int:
        if isinstance(payload, bytes):
            cmd = {"op": "add", "user": user.hex,
                   "dataBase64": base64.b64encode(payload).decode()}
        else:
            cmd = {"op": "add", "user": user.hex, "data": payload}
        return server.request(cmd)["id"]

    def node_stats() -> Dict[str, Any]:
        return server.request({"op": "stats"})

    lock = threading.Lock()
    handled: Dict[str, list] = collections.defaultdict(list)

    def handler(name: str):
        def on_event(ev: hyperdown.Event) -> Any:
            with lock:
                handled[name].append((ev.id, ev.payload))
            return {"by": "python", "id": ev.id}
        return on_event

    def client(who: Identity) -> hyperdown.Client:
        return hyperdown.Client(who.kp, bytes.fromhex(hello["publicKey"]), TOPIC,
                                f"127.0.0.1:{port}", on_event=handler(who.name),
                                data_dir=str(tmp_path / f"py-{who.name}"))

    # kp2 is offline when its events are added
    p2 = [{"prize": -500, "game": "boxing", "note": "user2 is offline"}, b"\xffnot utf-8"]
    e2 = [add(kp2, p) for p in p2]
    with client(kp1) as c1:
        wait_until(lambda: kp1.hex in node_stats()["connected"],
                   what="the Python client to connect to the Node server")
        p1 = [{"prize": 500, "game": "boxing", "note": "user1 is online"}, "just a string",
              [1, 2.5, None, True]]
        e1 = [add(kp1, p) for p in p1]
        with client(kp2) as c2:
            want = {kp1.hex: e1, kp2.hex: e2}

            def reports(seen: List[Any]) -> Dict[str, List[Dict[str, Any]]]:
                got: Dict[str, List[Dict[str, Any]]] = collections.defaultdict(list)
                for line in lines_with(seen, "consumed"):
                    got[line["user"]].extend(line["consumed"])
                return got

            server.wait_for(lambda seen: {u: sorted(e["id"] for e in v)
                                          for u, v in reports(seen).items()} == want,
                            what="consumption reports from both Python clients")
            for c in (c1, c2):
                wait_until(lambda: (lambda s: s.unhandled == 0 and s.consumed == 0)(c.stats()),
                           what="the Python client's store to empty (DONE from Node)")
            wait_until(lambda: node_stats()["stats"]["pendingTotal"] == 0,
                       what="the Node server's store to empty")
            time.sleep(0.3)  # anything repeated would show up now
            server.drain()

    assert handled[kp1.name] == list(zip(e1, p1))
    assert handled[kp2.name] == list(zip(e2, p2))
    got = reports(server.seen)
    # one callback per event: each id once, with the payload stored and the client's data
    assert sorted(e["id"] for e in got[kp1.hex]) == e1
    for e, p in zip(sorted(got[kp1.hex], key=lambda e: e["id"]), p1):
        assert e == {"id": e["id"], "data": {"by": "python", "id": e["id"]}, "payload": p}, e
    r2 = sorted(got[kp2.hex], key=lambda e: e["id"])
    assert [e["id"] for e in r2] == e2
    assert r2[0] == {"id": e2[0], "data": {"by": "python", "id": e2[0]}, "payload": p2[0]}
    assert r2[1] == {"id": e2[1], "data": {"by": "python", "id": e2[1]},
                     "payloadBase64": base64.b64encode(p2[1]).decode()}
    assert not lines_with(server.seen, "callbackError"), server.seen
    assert server.stop() == 0
    server.wait_for(lambda s: bool(lines_with(s, "closed")), what="its orderly close")


def test_python_server_node_clients(node_bin: str, ids: Dict[str, Identity], procs,
                                    tmp_path) -> None:
    kp0, kp1, kp2 = ids["kp0"], ids["kp1"], ids["kp2"]
    lock = threading.Lock()
    consumed: Dict[bytes, list] = collections.defaultdict(list)

    def on_consumed(user: bytes, events: hyperdown.ConsumedBatch) -> bool:
        with lock:
            consumed[user].extend((e.id, e.payload, e.data) for e in events)
        return True

    with hyperdown.Server(kp0.kp, TOPIC, "127.0.0.1:0", on_consumed=on_consumed,
                          data_dir=str(tmp_path / "py-server")) as server:
        # kp2 is offline when its events are added
        p2 = [{"prize": -500, "note": "user2 is offline"}, b"\xffnot utf-8"]
        e2 = [server.add_event(kp2.kp.public_key, p) for p in p2]

        def listen(who: Identity) -> Any:
            return node_peer(procs, node_bin, role="client", keyPair=who.file_fields,
                             topic=TOPIC, dataDir=str(tmp_path / f"node-{who.name}"),
                             connect=f"127.0.0.1:{server.port}", serverPublicKey=kp0.hex)

        n1 = listen(kp1)
        wait_until(lambda: kp1.kp.public_key in server.connected_users(),
                   what="the Node client to connect")
        p1 = [{"prize": 500, "note": "user1 is online"}, "just a string", [1, 2, 3]]
        e1 = [server.add_event(kp1.kp.public_key, p) for p in p1]
        n2 = listen(kp2)
        n1.wait_for(lambda seen: len(lines_with(seen, "event")) >= 3, what="kp1's events")
        n2.wait_for(lambda seen: len(lines_with(seen, "event")) >= 2, what="kp2's events")
        wait_until(lambda: len(consumed[kp1.kp.public_key]) >= 3
                   and len(consumed[kp2.kp.public_key]) >= 2, what="consumption reports")
        wait_until(lambda: server.stats().pending_total == 0, what="the Python store to empty")
        for n in (n1, n2):
            wait_until(lambda: (lambda s: s["unhandled"] == 0 and s["consumed"] == 0)(
                n.request({"op": "stats"})["stats"]),
                what="the Node client's store to empty (DONE from Python)")
        time.sleep(0.3)  # anything repeated would show up now
        for n in (n1, n2):
            n.drain()
            assert n.stop() == 0
            n.wait_for(lambda s: bool(lines_with(s, "closed")), what="its orderly close")

    assert [(x["event"], x["data"]) for x in lines_with(n1.seen, "event")] == list(zip(e1, p1))
    ev2 = lines_with(n2.seen, "event")
    assert ev2 == [{"event": e2[0], "data": p2[0]},
                   {"event": e2[1], "dataBase64": base64.b64encode(p2[1]).decode()}]
    # one callback per event, with the payload stored and the Node handler's data
    assert consumed[kp1.kp.public_key] == [(i, p, {"by": "node", "id": i}) for i, p in zip(e1, p1)]
    assert consumed[kp2.kp.public_key] == [(i, p, {"by": "node", "id": i}) for i, p in zip(e2, p2)]
    assert not lines_with(n1.seen + n2.seen, "callbackError")
