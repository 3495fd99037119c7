#!/usr/bin/env python3
"""Every public `hd_` function has a counterpart in each binding, or a written reason why not.

Each binding keeps an explicit map (abi/parity/<binding>.txt), one line per function of
include/hyperdown.h:

    hd_server_add_events<TAB>HyperdownServer.addEvents
    hd_keypair_wipe<TAB>-<TAB>keys are wiped by the type's deinit

A name is defined when the binding's sources declare it (a function, method, class, property or,
for Node, an option the constructor reads: `options.authorize`). The check fails when a function of the header has no line (a new C call nobody exposed), when a
line names a function the header does not have, when a mapped function is never called from the
binding's native layer, when the named API is not defined in the binding's sources, or when an
omission gives no reason. So a deliberate omission is written down and an accidental one fails.
"""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# binding -> (native sources that call the C functions, API sources, definition patterns)
BINDINGS = {
    "swift": (
        ["Sources/Hyperdown/*.swift"],
        ["Sources/Hyperdown/*.swift"],
        [r"\bfunc\s+{n}\b", r"\b(?:var|let)\s+{n}\b",
         r"\b(?:struct|class|enum|actor|typealias)\s+{n}\b", r"\bcase\s+{n}\b"],
    ),
    "node": (
        ["bindings/node/src/*.c"],
        ["bindings/node/lib/*.js", "bindings/node/index.js"],
        [r"^\s*(?:async\s+)?(?:static\s+)?(?:get\s+)?{n}\s*\(", r"\bfunction\s+{n}\b",
         r"\bclass\s+{n}\b", r"\b{n}\s*:", r"exports\.{n}\s*=", r"\bthis\.{n}\s*=",
         r"\b(?:const|let|var)\s+{n}\s*=", r"\boptions\.{n}\b"],
    ),
    "python": (
        ["bindings/python/src/hyperdown/*.py"],
        ["bindings/python/src/hyperdown/*.py"],
        [r"^\s*(?:async\s+)?def\s+{n}\b", r"^\s*class\s+{n}\b", r"^\s*{n}\s*[:=]"],
    ),
}


def header_functions():
    text = open(os.path.join(ROOT, "include", "hyperdown.h"), encoding="utf-8").read()
    names = re.findall(r"HD_EXTERN\b[^;(]*?\b(hd_[a-z0-9_]+)\s*\(", text, re.S)
    return sorted(set(names))


def read_sources(patterns):
    out = []
    for pat in patterns:
        for path in sorted(glob.glob(os.path.join(ROOT, pat))):
            with open(path, encoding="utf-8") as f:
                out.append(f.read())
    return "\n".join(out)


def check_binding(name, functions):
    native_pats, api_pats, def_pats = BINDINGS[name]
    path = os.path.join(ROOT, "abi", "parity", f"{name}.txt")
    if not os.path.exists(path):
        return [f"{name}: no map at abi/parity/{name}.txt"]
    native = read_sources(native_pats)
    api = read_sources(api_pats)
    errors, seen = [], {}
    for lineno, line in enumerate(open(path, encoding="utf-8"), 1):
        line = line.rstrip("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = line.split("\t")
        where = f"{name}.txt:{lineno}"
        fn = cols[0].strip()
        if fn in seen:
            errors.append(f"{where}: {fn} listed twice (first at line {seen[fn]})")
            continue
        seen[fn] = lineno
        if fn not in functions:
            errors.append(f"{where}: {fn} is not a function of include/hyperdown.h")
            continue
        if len(cols) < 2 or not cols[1].strip():
            errors.append(f"{where}: {fn} has no counterpart and no '-'")
            continue
        target = cols[1].strip()
        if target == "-":
            if len(cols) < 3 or len(cols[2].strip()) < 10:
                errors.append(f"{where}: {fn} is left out without a reason")
            continue
        if not re.search(r"\b" + re.escape(fn) + r"\b", native):
            errors.append(f"{where}: {fn} is mapped to {target} but never called from "
                          f"{', '.join(native_pats)}")
        last = target.split(".")[-1]
        if last == "init" and name == "swift":
            ok = re.search(r"\binit\s*[(<]", api) is not None
        else:
            ok = any(re.search(p.format(n=re.escape(last)), api, re.M) for p in def_pats)
        if not ok:
            errors.append(f"{where}: {fn} is mapped to {target}, which is not defined in "
                          f"{', '.join(api_pats)}")
    for fn in functions:
        if fn not in seen:
            errors.append(f"{name}: {fn} has no line in abi/parity/{name}.txt (expose it, or "
                          "write '-' and the reason)")
    return errors


def self_test(functions):
    """The check must fail on a map that misses a function, names a wrong one or an undefined
    API: run against a temporary copy of the Python map with those faults."""
    global ROOT
    import shutil
    import tempfile
    real = ROOT
    with tempfile.TemporaryDirectory() as tmp:
        for sub in ("include", "bindings/python/src/hyperdown", "abi/parity"):
            os.makedirs(os.path.join(tmp, sub))
        shutil.copy(os.path.join(real, "include", "hyperdown.h"), os.path.join(tmp, "include"))
        with open(os.path.join(tmp, "bindings/python/src/hyperdown/x.py"), "w") as f:
            f.write("def version():\n    return lib.hd_version()\n")
        with open(os.path.join(tmp, "abi/parity/python.txt"), "w") as f:
            f.write("hd_version\tversion\nhd_init\tinit_everything\nhd_no_such\tx\n"
                    "hd_keypair_wipe\t-\n")
        ROOT = tmp
        try:
            errors = check_binding("python", functions)
        finally:
            ROOT = real
    want = ["hd_init is mapped to init_everything", "hd_no_such is not a function",
            "hd_keypair_wipe is left out without a reason", "hd_strerror has no line"]
    missing = [w for w in want if not any(w in e for e in errors)]
    if missing or any("hd_version" in e and "hd_version_" not in e for e in errors):
        print("parity self-test failed: " + "; ".join(missing or errors))
        return 1
    print("ok parity: the self-test's faulty map fails as it should")
    return 0


def main(argv):
    functions = header_functions()
    if len(functions) < 50:
        print(f"parity: found only {len(functions)} functions in the header: the parser is wrong")
        return 1
    if argv[1:] == ["--self-test"]:
        return self_test(functions)
    names = argv[1:] or list(BINDINGS)
    failed = False
    for name in names:
        errors = check_binding(name, functions)
        if not errors:
            print(f"ok parity: {name}: {len(functions)} functions, each exposed or left out with a reason")
        for e in errors:
            print("parity: " + e)
        failed |= bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
