"""Shared helpers of the cross-language interop tests (pytest).

The peers in other languages are driven as processes:
- Swift: the `hyperdown` command-line tool (`swift build` at the project root; docs/swift.md).
  Found through $HYPERDOWN_CLI, else `swift build --show-bin-path` (with /opt/swift/usr/bin on
  PATH). Tests skip with the reason when it is not built.
- Node: `node test/interop/node/peer.js '<options JSON>'` (the binding in bindings/node, built
  by `npm install` there), speaking line-delimited JSON on stdout and taking commands on stdin
  (see that script). Tests skip with the reason when `node` or the built addon is missing.
Everything listens on 127.0.0.1 with port 0, uses temporary folders, and every wait is bounded.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import pytest

import hyperdown

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TIMEOUT = 20.0  # the bound of every wait on another process

# The original README's key pairs (keypear form): kp0 the server, kp1 and kp2 users.
ORIGINAL = {
    "kp0": ("808a6e175b246bc93d4adaada45d49c031296efb36da7fdf3c5128d3eb46fd5e",
            "9b0e5bf749a3fd55ca5d08b225962bae6c0c826d9822a79e36b1871b50da82fe"),
    "kp1": ("684e14316d8f379829ee5d1b883dffd2cf123f2987b8658353ae740ed8758565",
            "09f9cb2e6097bab4936696c7fb2e80c52ecc7e7a0dfe67274d93198e785c1558"),
    "kp2": ("b0cf93c3f3589ea5e7a09b752e7b6492e6e331661da8fe88854d692aec59114f",
            "4cce6d17f4000b19b9f752fb7c185a56cff16d86f0cda8673e5ab6baed9e7171"),
}


class Identity:
    """A key pair plus the key file the Swift tool reads (docs/swift.md, "The key file")."""

    def __init__(self, name: str, kp: hyperdown.KeyPair, file_fields: Dict[str, str]) -> None:
        self.name, self.kp, self.file_fields = name, kp, file_fields

    @property
    def hex(self) -> str:
        return self.kp.public_key_hex

    def key_file(self, folder: str) -> str:
        path = os.path.join(folder, f"{self.name}.key.json")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(self.file_fields, f)
        return path


def original_identities() -> Dict[str, Identity]:
    return {n: Identity(n, hyperdown.KeyPair.from_scalar(s, p), {"scalar": s, "publicKey": p})
            for n, (s, p) in ORIGINAL.items()}


def fresh_identities() -> Dict[str, Identity]:
    out = {}
    for n in ORIGINAL:
        seed = os.urandom(32)
        kp = hyperdown.KeyPair.from_seed(seed)
        out[n] = Identity(n, kp, {"seed": seed.hex(), "publicKey": kp.public_key_hex,
                                  "type": "hyperdown-keypair"})
    return out


@pytest.fixture(params=["original-keys", "fresh-keys"])
def ids(request: Any) -> Dict[str, Identity]:
    return original_identities() if request.param == "original-keys" else fresh_identities()


def _find_swift_cli() -> Optional[str]:
    env = os.environ.get("HYPERDOWN_CLI")
    if env:
        return env if os.access(env, os.X_OK) else None
    path = os.environ.get("PATH", "") + os.pathsep + "/opt/swift/usr/bin"
    swift = shutil.which("swift", path=path)
    if swift is None:
        return None
    try:
        out = subprocess.run([swift, "build", "--show-bin-path"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, env={**os.environ, "PATH": path})
    except (OSError, subprocess.TimeoutExpired):
        return None
    cli = os.path.join(out.stdout.strip(), "hyperdown")
    return cli if out.returncode == 0 and os.access(cli, os.X_OK) else None


@pytest.fixture(scope="session")
def swift_cli() -> str:
    cli = _find_swift_cli()
    if cli is None:
        pytest.skip("the Swift `hyperdown` tool is not built (run `swift build` at the project "
                    "root with /opt/swift/usr/bin on PATH, or set HYPERDOWN_CLI)")
    return cli


class Proc:
    """A child process whose stdout lines are read (as JSON when they parse) on a thread."""

    def __init__(self, argv: List[str], stdin: bool = False) -> None:
        self.argv = argv
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True)
        self._tag = 0
        self.lines: "queue.Queue[Any]" = queue.Queue()
        self.seen: List[Any] = []
        self.stderr: List[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put(line.rstrip("\n"))

    def _read_err(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            self.stderr.append(line)

    def next(self, timeout: float = TIMEOUT) -> Any:
        try:
            item = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.argv[1]}: no output line within {timeout}s; "
                                 f"stderr: {''.join(self.stderr)[-2000:]}") from None
        self.seen.append(item)
        return item

    def wait_for(self, pred: Callable[[List[Any]], bool], timeout: float = TIMEOUT,
                 what: str = "output") -> List[Any]:
        deadline = time.monotonic() + timeout
        while not pred(self.seen):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.argv[1]}: timed out waiting for {what}; seen "
                                     f"{self.seen}; stderr: {''.join(self.stderr)[-2000:]}")
            try:
                self.seen.append(self.lines.get(timeout=min(left, 0.2)))
            except queue.Empty:
                pass
        return self.seen

    def drain(self, settle: float = 0.0) -> List[Any]:
        """Waits `settle` seconds, then moves every line already read into `seen`."""
        time.sleep(settle)
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return self.seen

    def send(self, obj: Any) -> None:
        """Writes one JSON command line to the child's stdin (Proc(..., stdin=True))."""
        assert self.p.stdin is not None, "started without stdin=True"
        self.p.stdin.write(json.dumps(obj) + "\n")
        self.p.stdin.flush()

    def request(self, obj: Dict[str, Any], timeout: float = TIMEOUT) -> Dict[str, Any]:
        """Sends a command with a fresh "tag" and returns the line answering it ({"re": tag})."""
        self._tag += 1
        tag = self._tag
        self.send({**obj, "tag": tag})
        seen = self.wait_for(lambda s: any(isinstance(x, dict) and x.get("re") == tag for x in s),
                             timeout=timeout, what=f"the answer to {obj}")
        answer = next(x for x in seen if isinstance(x, dict) and x.get("re") == tag)
        assert "error" not in answer, answer
        return answer

    def stop(self, timeout: float = TIMEOUT) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(timeout=timeout)
            raise AssertionError(f"{self.argv[1]} did not stop on SIGTERM")


@pytest.fixture
def procs() -> Any:
    started: List[Proc] = []

    def start(argv: List[str], stdin: bool = False) -> Proc:
        pr = Proc(argv, stdin=stdin)
        started.append(pr)
        return pr

    yield start
    for pr in started:  # only the processes this test started
        if pr.p.poll() is None:
            pr.p.kill()
            pr.p.wait(timeout=TIMEOUT)
        if pr.p.stdin is not None:
            try:
                pr.p.stdin.close()
            except OSError:
                pass


NODE_PEER = os.path.join(ROOT, "test", "interop", "node", "peer.js")
NODE_ADDON_DIR = os.path.join(ROOT, "bindings", "node", "build")


@pytest.fixture(scope="session")
def node_bin() -> str:
    """`node`, once the addon of bindings/node is built; skips with the reason otherwise."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("`node` is not on PATH (the Node interop tests need Node >= 18)")
    built = [os.path.join(NODE_ADDON_DIR, t, "hyperdown.node") for t in ("Release", "Debug")]
    if not any(os.path.exists(f) for f in built):
        pytest.skip("the Node addon is not built (run `npm install` in bindings/node); "
                    f"looked for {', '.join(built)}")
    return node


def node_peer(procs: Any, node: str, **options: Any) -> Proc:
    """Starts test/interop/node/peer.js with these options (role, keyPair, topic, dataDir,
    listen | connect + serverPublicKey) and returns it once it printed its first line."""
    pr = procs([node, NODE_PEER, json.dumps(options)], stdin=True)
    first = pr.next()
    assert isinstance(first, dict) and ("listening" in first or "started" in first), first
    return pr


def lines_with(seen: List[Any], key: str) -> List[Dict[str, Any]]:
    """The JSON lines (dicts) of `seen` that have `key`."""
    return [x for x in seen if isinstance(x, dict) and key in x]


def wait_until(pred: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
