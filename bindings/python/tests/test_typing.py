"""create / aio.create are typed by role: a type checker gives server options (isServer: True) a
Server and client options a Client (typing.overload on TypedDicts). Runs mypy when the Python
running the tests has it (pip install mypy); skips otherwise."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SAMPLE = textwrap.dedent('''
    import hyperdown
    import hyperdown.aio

    kp = hyperdown.KeyPair.generate()


    def plain() -> None:
        s = hyperdown.create({"uniqueKeyPair": kp, "folderName": "t", "isServer": True,
                              "onClientConsumedEvents": lambda u, e, cb: cb(True)})
        reveal_type(s)
        print(s.port)
        c = hyperdown.create({"uniqueKeyPair": kp, "folderName": "t",
                              "serverPublicKey": s.public_key, "connect": ["localhost:1"],
                              "eventHandler": lambda i, d, cb: cb(i, True)})
        reveal_type(c)
        print(c.server_public_keys)


    async def aio() -> None:
        s = await hyperdown.aio.create({"uniqueKeyPair": kp, "folderName": "t", "isServer": True,
                                        "onClientConsumedEvents": lambda u, e, cb: cb(True)})
        reveal_type(s)
        c = await hyperdown.aio.create({"uniqueKeyPair": kp, "folderName": "t",
                                        "serverPublicKey": s.public_key, "connect": "localhost:1",
                                        "eventHandler": lambda i, d, cb: cb(i, True)})
        reveal_type(c)
        await c.connected(timeout=1)
''')


def test_create_is_typed_by_role(tmp_path) -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install mypy)")
    path = tmp_path / "sample.py"
    path.write_text(SAMPLE)
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary",
                        "--cache-dir", str(tmp_path / "cache"), str(path)],
                       capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
                       env={k: v for k, v in os.environ.items() if k != "MYPYPATH"})
    revealed = [line.split("Revealed type is ")[1].strip('"') for line in r.stdout.splitlines()
                if "Revealed type is" in line]
    assert revealed == ["hyperdown._handles.Server", "hyperdown._handles.Client",
                        "hyperdown.aio.Server", "hyperdown.aio.Client"], r.stdout + r.stderr
    assert "error" not in r.stdout, r.stdout
