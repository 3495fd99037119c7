"""A Swift server (the `hyperdown` tool) with a Node client and a Python client connected at once:
events cross Swift -> Node/Python, consumption reports Node/Python -> Swift, with the original's
key pairs (kp0 server, kp1/kp2 users) and with freshly generated ones. Every event is handled
exactly once and reported to the server exactly once."""
from __future__ import annotations

import collections
import json
import subprocess
import threading
import time
from typing import Any, Dict, List

import hyperdown

from interop_util import TIMEOUT, Identity, lines_with, node_peer, wait_until

TOPIC = "topic"


def test_swift_server_node_and_python_clients(swift_cli: str, node_bin: str,
                                              ids: Dict[str, Identity], procs, tmp_path) -> None:
    kp0, kp1, kp2 = ids["kp0"], ids["kp1"], ids["kp2"]
    srv_dir = tmp_path / "swift-server"
    serve = procs([swift_cli, "serve", "--topic", TOPIC, "--data", str(srv_dir),
                   "--key", kp0.key_file(str(tmp_path)), "--listen", "127.0.0.1:0"])
    hello = serve.next()
    assert isinstance(hello, dict) and hello["publicKey"] == kp0.hex, hello
    port = hello["port"]

    def swift(*args: str) -> str:
        out = subprocess.run([swift_cli, *args], capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def send(user: Identity, *payloads: Any) -> List[int]:
        return [int(x) for x in swift("send", "--data", str(srv_dir), user.hex,
                                      *(json.dumps(p) for p in payloads)).split()]

    def status() -> Dict[str, Any]:
        return json.loads(swift("status", "--data", str(srv_dir), kp1.hex, kp2.hex))

    # Both users are offline when their first events are added.
    p_off1 = [{"prize": 500, "game": "boxing", "note": "user1 (node) is offline"}, "plain string"]
    p_off2 = [{"prize": -500, "game": "boxing", "note": "user2 (python) is offline"}]
    s_off1, s_off2 = send(kp1, *p_off1), send(kp2, *p_off2)

    lock = threading.Lock()
    py_handled: List[Any] = []

    def on_event(ev: hyperdown.Event) -> Any:
        with lock:
            py_handled.append((ev.id, ev.payload))
        return {"by": "python", "id": ev.id}

    node = node_peer(procs, node_bin, role="client", keyPair=kp1.file_fields, topic=TOPIC,
                     dataDir=str(tmp_path / "node-kp1"), connect=f"127.0.0.1:{port}",
                     serverPublicKey=kp0.hex)
    with hyperdown.Client(kp2.kp, kp0.kp.public_key, TOPIC, f"127.0.0.1:{port}",
                          on_event=on_event, data_dir=str(tmp_path / "py-kp2")) as py:
        wait_until(lambda: set(status()["connected"]) >= {kp1.hex, kp2.hex},
                   what="the Node and the Python client both connected to the Swift server")
        # Both online now: events to each while the other is connected too.
        p_on1 = [{"prize": 4500, "game": "boxing2"}, [1, 2, 3]]
        p_on2 = [{"prize": 7, "game": "chess"}, "another string"]
        s_on1, s_on2 = send(kp1, *p_on1), send(kp2, *p_on2)
        want = {kp1.hex: s_off1 + s_on1, kp2.hex: s_off2 + s_on2}

        def reports(seen: List[Any]) -> Dict[str, List[int]]:
            got: Dict[str, List[int]] = collections.defaultdict(list)
            for line in lines_with(seen, "consumed"):
                got[line["user"]].extend(line["consumed"])
            return got

        serve.wait_for(lambda seen: {u: sorted(v) for u, v in reports(seen).items()} == want,
                       what="consumption reports from the Node and the Python client")
        node.wait_for(lambda seen: len(lines_with(seen, "event")) >= len(want[kp1.hex]),
                      what="the Node client's events")
        wait_until(lambda: (lambda s: s.unhandled == 0 and s.consumed == 0)(py.stats()),
                   what="the Python client's store to empty (DONE from Swift)")
        wait_until(lambda: (lambda s: s["unhandled"] == 0 and s["consumed"] == 0)(
            node.request({"op": "stats"})["stats"]),
            what="the Node client's store to empty (DONE from Swift)")
        wait_until(lambda: status()["pendingTotal"] == 0, what="the Swift store to empty")
        time.sleep(0.3)  # anything repeated would show up now
        node.drain()
        serve.drain()

    # Each event handled once, in order, with its payload as sent.
    assert [(x["event"], x["data"]) for x in lines_with(node.seen, "event")] == \
        list(zip(want[kp1.hex], p_off1 + p_on1))
    assert py_handled == list(zip(want[kp2.hex], p_off2 + p_on2))
    # Each event reported to the server once (one report line may carry several ids).
    got = reports(serve.seen)
    for user in (kp1.hex, kp2.hex):
        assert sorted(got[user]) == want[user], (user, got[user])
    # ... with what each client's handler reported, as the Swift server received it.
    by = {kp1.hex: "node", kp2.hex: "python"}
    for line in lines_with(serve.seen, "consumed"):
        for ev in line["events"]:
            assert ev["data"] == {"by": by[line["user"]], "id": ev["id"]}, line
    assert not lines_with(node.seen, "callbackError"), node.seen
    assert node.stop() == 0
    node.wait_for(lambda s: bool(lines_with(s, "closed")), what="its orderly close")
    assert serve.stop() == 0
