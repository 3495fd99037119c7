"""Helpers and fixtures of the Python binding's test suite (see conftest.py)."""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, List, Optional, Tuple

import pytest

import hyperdown

TIMEOUT = 5.0  # every wait in the suite is bounded by this
LONG = 30.0  # the bound for waits over many events


def wait_until(pred: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition",
               interval: float = 0.01) -> Any:
    """Polls ``pred`` until it returns a true value (returned) or fails after ``timeout``."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def rss_kib() -> int:
    """This process's resident set size (VmRSS, KiB)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def original_options(name: str) -> dict:
    """The original example's uniqueKeyPair (keypear form, hex)."""
    scalar, public = ORIGINAL_KEYS[name]
    return {"scalar": scalar, "publicKey": public}

# The original example's keypear key pairs (/work/shared/reference/hyperdown-original-README.md)
ORIGINAL_KEYS = {
    "server": ("808a6e175b246bc93d4adaada45d49c031296efb36da7fdf3c5128d3eb46fd5e",
               "9b0e5bf749a3fd55ca5d08b225962bae6c0c826d9822a79e36b1871b50da82fe"),
    "online": ("684e14316d8f379829ee5d1b883dffd2cf123f2987b8658353ae740ed8758565",
               "09f9cb2e6097bab4936696c7fb2e80c52ecc7e7a0dfe67274d93198e785c1558"),
    "offline": ("b0cf93c3f3589ea5e7a09b752e7b6492e6e331661da8fe88854d692aec59114f",
                "4cce6d17f4000b19b9f752fb7c185a56cff16d86f0cda8673e5ab6baed9e7171"),
}

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
HEADER = os.path.join(REPO_ROOT, "include", "hyperdown.h")


@pytest.fixture
def server_kp() -> hyperdown.KeyPair:
    return hyperdown.KeyPair.from_scalar(*ORIGINAL_KEYS["server"])


@pytest.fixture
def user_kp() -> hyperdown.KeyPair:
    return hyperdown.KeyPair.from_scalar(*ORIGINAL_KEYS["online"])


class Recorder:
    """Collects (kind, args) from callbacks on the core's thread; waits with a bound."""

    def __init__(self) -> None:
        self.events: List[Tuple[str, Tuple[Any, ...]]] = []
        self.threads: List[int] = []
        self.cond = threading.Condition()

    def cb(self, kind: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            with self.cond:
                self.events.append((kind, args))
                self.threads.append(threading.get_ident())
                self.cond.notify_all()
        return record

    def wait(self, kind: str, count: int = 1, timeout: float = TIMEOUT) -> List[Tuple[Any, ...]]:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.of(kind)) >= count, timeout)
            assert ok, f"timed out waiting for {count} {kind!r}; got {self.events}"
            return self.of(kind)

    def of(self, kind: str) -> List[Tuple[Any, ...]]:
        return [a for k, a in self.events if k == kind]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def addr(server: Any) -> str:
    return f"127.0.0.1:{server.port}"


def find_in(events: List[Tuple[Any, ...]], code: int) -> Optional[Tuple[Any, ...]]:
    for ev in events:
        err = ev[-1]
        if err is not None and err.code == code:
            return ev
    return None


@pytest.fixture
def store(tmp_path: Any) -> Callable[[], dict]:
    """store() -> the keyword arguments that give a handle its own event-store folder, when the
    compiled core has one ({} for a core without the event store)."""
    from hyperdown._handles import _SERVER_FIELDS

    counter = iter(range(1_000_000))

    def make() -> dict:
        if "data_dir" not in _SERVER_FIELDS:
            return {}
        return {"data_dir": str(tmp_path / f"store{next(counter)}")}

    return make
