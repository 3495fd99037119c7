"""Every public function of the C ABI has a Python counterpart or a written reason (parity.txt):
this fails when include/hyperdown.h gains an HD_EXTERN function parity.txt does not name, or when
a named counterpart is missing from the package's sources."""
from __future__ import annotations

import glob
import os
import re

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)
HEADER = os.path.join(PKG, "..", "..", "include", "hyperdown.h")
SOURCES = os.path.join(PKG, "src", "hyperdown", "*.py")


def _exported() -> list:
    if not os.path.isfile(HEADER):
        pytest.skip("include/hyperdown.h is not beside the package (a copy outside the repository)")
    text = open(HEADER, encoding="utf-8").read()
    # HD_EXTERN <return type> [*]name( : the exported functions, in header order
    return re.findall(r"HD_EXTERN\s[^;(]*?\b(hd_\w+)\s*\(", text)


def _parity() -> dict:
    rows = {}
    with open(os.path.join(PKG, "parity.txt"), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            assert len(fields) in (2, 3), f"parity.txt:{n}: name<TAB>python or name<TAB>-<TAB>why"
            if fields[1] == "-":
                assert len(fields) == 3 and fields[2].strip(), f"parity.txt:{n}: a reason is needed"
            rows[fields[0]] = fields[1]
    return rows


def test_every_exported_function_is_mapped() -> None:
    exported = _exported()
    assert len(exported) > 80
    rows = _parity()
    missing = [f for f in exported if f not in rows]
    assert not missing, f"parity.txt does not name: {missing}"
    stale = [f for f in rows if f not in exported]
    assert not stale, f"parity.txt names functions the header does not export: {stale}"


def test_each_counterpart_calls_and_defines() -> None:
    src = "\n".join(open(p, encoding="utf-8").read() for p in glob.glob(SOURCES))
    for fn, name in _parity().items():
        if name == "-":
            continue
        assert re.search(r"\blib\." + fn + r"\b", src), f"{fn}: no lib.{fn} in the sources"
        last = name.split(".")[-1]
        assert re.search(r"^\s*(def|class)\s+" + re.escape(last) + r"\b", src, re.M), \
            f"{fn}: {name} is not defined in the sources"
