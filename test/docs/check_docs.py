#!/usr/bin/env python3
"""Docs that run: checks every fenced code block of README.md and docs/**/*.md.

Every fenced block carries a tag in its info string, after the language (docs/docs-checks.md):

    ```c run                 compile against the installed library (pkg-config), run, exit 0
    ```c compile             compile and link only
    ```js run                node, `require('hyperdown')` is bindings/node
    ```python run            the venv that has the binding installed
    ```sh run [cwd=DIR]      bash -eu -o pipefail, the `hyperdown` CLI on PATH
    ```swift compile         type-checked against the Hyperdown module of the Swift build
    ```sql schema server     equals the schema of a store the library creates (or `client`)
    ```hex example NAME      golden bytes, checked by the C test test_protocol_examples.c
    ```text output           the stdout of the file's previous `run` block
    ```LANG skip="REASON"    not checked, and why

A block without a tag, or with an unknown one, fails. Every block runs in a fresh temporary
folder, in its own process group, and is killed and failed after the timeout. One line per
block, then `docs: N passed, N failed, N skipped`; the exit status is 1 if anything failed.

Python 3 standard library only. `--self-test` checks the parser and the harness itself.
"""
import argparse
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Languages by canonical name; the first word of the info string may be any alias.
LANG_ALIASES = {
    "c": "c", "h": "c",
    "js": "js", "javascript": "js", "node": "js", "cjs": "js",
    "ts": "ts", "typescript": "ts",
    "python": "python", "py": "python", "python3": "python",
    "sh": "sh", "bash": "sh", "shell": "sh", "console": "sh",
    "swift": "swift",
    "sql": "sql",
    "hex": "hex",
}

# What each tag accepts: the languages (None: any) and the attributes (key=value) allowed.
TAGS = {
    "run": ({"c", "js", "python", "sh"}, {"cwd", "timeout"}),
    "compile": ({"c", "swift"}, {"timeout"}),
    "skip": (None, set()),
    "example": ({"hex"}, set()),
    "schema": ({"sql"}, set()),
    "output": (None, set()),
}

TAG_HELP = ('a fenced block needs a tag after its language: run, compile, skip="reason", '
            'output, example NAME (hex), schema server|client (sql); see docs/docs-checks.md')


class Block:
    """One fenced block: where it is, its info string parsed, its text."""

    def __init__(self, path, line, info, text):
        self.path = path        # relative to the root
        self.line = line        # the opening fence, from 1
        self.info = info
        self.text = text
        self.lang = None        # canonical language, or the word as written if unknown
        self.tag = None
        self.arg = None         # example NAME, schema server|client, skip reason
        self.attrs = {}
        self.error = None       # why the tag is missing or wrong

    def where(self):
        return f"{self.path}:{self.line}"

    def label(self):
        if self.error is not None:
            return self.info or "(no language)"
        words = [self.lang, self.tag]
        if self.tag in ("example", "schema"):
            words.append(self.arg)
        return " ".join(words)


def parse_info(info):
    """(lang, tag, arg, attrs) of an info string; raises ValueError with the reason."""
    try:
        words = shlex.split(info)
    except ValueError as exc:
        raise ValueError(f"cannot parse the info string ({exc})")
    if not words:
        raise ValueError("untagged block without a language; " + TAG_HELP)
    word = words[0].lower()
    lang = LANG_ALIASES.get(word, word)
    if len(words) == 1:
        raise ValueError("untagged block; " + TAG_HELP)
    head, rest = words[1], words[2:]
    tag, _, value = head.partition("=")
    if tag not in TAGS:
        raise ValueError(f"unknown tag {head!r}; " + TAG_HELP)
    langs, allowed = TAGS[tag]
    if langs is not None and lang not in langs:
        raise ValueError(f"tag {tag!r} is not for {word!r} blocks (only {', '.join(sorted(langs))})")
    arg = None
    if tag == "skip":
        if "=" not in head or not value.strip():
            raise ValueError('skip needs a reason: skip="why this block is not checked"')
        arg = value.strip()
    elif "=" in head:
        raise ValueError(f"tag {tag!r} takes no value")
    elif tag == "example":
        if not rest or "=" in rest[0]:
            raise ValueError("example needs a NAME: hex example NAME")
        arg, rest = rest[0], rest[1:]
    elif tag == "schema":
        if not rest or rest[0] not in ("server", "client"):
            raise ValueError("schema needs the store: sql schema server|client")
        arg, rest = rest[0], rest[1:]
    attrs = {}
    for word in rest:
        key, eq, val = word.partition("=")
        if not eq or key not in allowed:
            raise ValueError(f"unknown attribute {word!r} for {tag!r}"
                             + (f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""))
        attrs[key] = val
    if "timeout" in attrs:
        try:
            if float(attrs["timeout"]) <= 0:
                raise ValueError
        except ValueError:
            raise ValueError("timeout must be a positive number of seconds")
    if "cwd" in attrs and (os.path.isabs(attrs["cwd"]) or ".." in attrs["cwd"].split("/")):
        raise ValueError("cwd must be a folder inside the checkout, relative to its root")
    return lang, tag, arg, attrs


FENCE_RE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")


def parse_markdown(path, text):
    """(blocks, problems): every fenced block with its tag parsed, and what is wrong outside
    blocks (an unterminated fence, an indented code block, which cannot carry a tag)."""
    blocks, problems = [], []
    lines = text.split("\n")
    i, prev_blank, last_text = 0, True, ""
    while i < len(lines):
        line = lines[i]
        m = FENCE_RE.match(line)
        if m and not (m.group(2)[0] == "`" and "`" in m.group(3)):
            indent, fence, info = len(m.group(1)), m.group(2), m.group(3).strip()
            body, j, closed = [], i + 1, False
            while j < len(lines):
                c = lines[j]
                cm = re.match(r"^ {0,3}(`{3,}|~{3,})\s*$", c)
                if cm and cm.group(1)[0] == fence[0] and len(cm.group(1)) >= len(fence):
                    closed = True
                    break
                # content lines lose up to the fence's own indentation
                k = 0
                while k < indent and k < len(c) and c[k] == " ":
                    k += 1
                body.append(c[k:])
                j += 1
            block = Block(path, i + 1, info, "\n".join(body) + ("\n" if body else ""))
            try:
                block.lang, block.tag, block.arg, block.attrs = parse_info(info)
            except ValueError as exc:
                block.error = str(exc)
            if not closed:
                block.error = "unterminated fenced block (no closing fence)"
            blocks.append(block)
            i, prev_blank, last_text = j + 1, False, "```"
            continue
        stripped = line.strip()
        if (prev_blank and (line.startswith("    ") or line.startswith("\t")) and stripped
                and last_text and not last_text.startswith((" ", "\t"))
                and not re.match(r"^([-*+]|\d+[.)])\s", last_text)):
            problems.append((i + 1, "indented code block: write it as a fenced block with a "
                             "tag (e.g. ```text skip=\"...\")"))
        if stripped:
            if not prev_blank or not (line.startswith("    ") or line.startswith("\t")):
                last_text = line
        prev_blank = not stripped
        i += 1
    return blocks, problems


def find_docs(root):
    files = []
    # the repository's README and the packages' own (npm and PyPI show them)
    for readme in ("README.md", "bindings/node/README.md", "bindings/python/README.md"):
        if os.path.exists(os.path.join(root, readme)):
            files.append(readme)
    docs = os.path.join(root, "docs")
    for dirpath, dirnames, filenames in os.walk(docs):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(".md"):
                files.append(os.path.relpath(os.path.join(dirpath, name), root))
    return files


class Failure(Exception):
    pass


class Result:
    def __init__(self, status, note="", detail="", stdout=None):
        self.status = status    # "ok", "FAILED", "skipped"
        self.note = note
        self.detail = detail
        self.stdout = stdout


def tail(text, n=40):
    lines = text.rstrip("\n").split("\n")
    if len(lines) > n:
        lines = [f"... ({len(lines) - n} lines left out)"] + lines[-n:]
    return "\n".join(lines)


def run_proc(argv, cwd, env, timeout):
    """Runs argv in its own process group; kills the group after `timeout` seconds, and kills
    what the block left behind once it ended. Output goes to files, so a leftover background
    process holding them cannot stall the check. (returncode or None on timeout, out, err)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True)
        except OSError as exc:
            return 127, "", f"cannot run {argv[0]}: {exc}\n"
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        out.seek(0)
        err.seek(0)
        return (rc, out.read().decode("utf-8", "replace"),
                err.read().decode("utf-8", "replace"))


def check_proc(argv, cwd, env, timeout, what):
    rc, out, err = run_proc(argv, cwd, env, timeout)
    if rc is None:
        raise Failure(f"{what}: timed out after {timeout:g} s (killed)", out + err)
    if rc != 0:
        raise Failure(f"{what}: exit status {rc}", out + err)
    return out, err


# Runs a Python block: top-level `await` is allowed (as in `python -m asyncio`).
PY_RUNNER = """\
import ast, asyncio, inspect, sys
path = sys.argv[1]
with open(path) as f:
    code = compile(f.read(), path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
sys.argv = [path]
g = {"__name__": "__main__", "__file__": path}
if code.co_flags & inspect.CO_COROUTINE:
    asyncio.run(eval(code, g))
else:
    exec(code, g)
"""

# Creates a fresh server store and a fresh client store with the Python binding.
PY_STORES = """\
import os, sys, hyperdown
d = sys.argv[1]
kp = hyperdown.KeyPair.generate()
hyperdown.Server(kp, "topic", data_dir=os.path.join(d, "server")).close()
hyperdown.Client(hyperdown.KeyPair.generate(), kp.public_key, "topic", "127.0.0.1:1",
                 data_dir=os.path.join(d, "client")).close()
"""


def schema_of(conn):
    """{(type, name): normalized sql} of a database's tables and indexes."""
    out = {}
    for kind, name, sql in conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"):
        sql = re.sub(r"--[^\n]*", "", sql)
        sql = re.sub(r"\s+", " ", sql).strip()
        sql = re.sub(r"\s*([(),;])\s*", r"\1", sql)
        out[(kind, name)] = sql
    return out


class Checker:
    def __init__(self, args):
        self.root = os.path.abspath(args.root)
        self.timeout = args.timeout
        self.keep = args.keep
        self.python = os.path.abspath(
            args.python or os.path.join(self.root, "build", "venv", "bin", "python"))
        self.cli_dir = os.path.abspath(args.cli_dir or os.path.join(self.root, ".build", "debug"))
        self.swift = args.swift
        self.prefix_arg = args.prefix
        self.tmp = tempfile.mkdtemp(prefix="hd-docs-")
        self.count = 0
        self._prefix = None          # (prefix, error)
        self._stores = None          # ({"server": schema, "client": schema}, error)
        self._swift_flags = None     # (argv prefix, error)
        self.last_run = {}           # path -> Result of the file's last run block

    def close(self):
        if self.keep:
            print(f"(temporary files kept in {self.tmp})")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def env(self, **extra):
        env = dict(os.environ)
        env["PATH"] = self.cli_dir + os.pathsep + env.get("PATH", "")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(extra)
        return env

    def workdir(self, block):
        self.count += 1
        d = os.path.join(self.tmp, "%03d-%s-%d" % (
            self.count, re.sub(r"[^A-Za-z0-9]+", "_", block.path), block.line))
        os.makedirs(d)
        return d

    def timeout_of(self, block):
        return float(block.attrs.get("timeout", self.timeout))

    # ---- shared set-up, done once and only when a block needs it ----

    def prefix(self):
        """The library installed by `make install PREFIX=<tmp>` (or --prefix), with its .pc."""
        if self._prefix is None:
            try:
                if self.prefix_arg:
                    prefix = os.path.abspath(self.prefix_arg)
                else:
                    prefix = os.path.join(self.tmp, "prefix")
                    check_proc(["make", "-s", "install", f"PREFIX={prefix}"], self.root,
                               self.env(), 600, f"make install PREFIX={prefix}")
                pc = os.path.join(prefix, "lib", "pkgconfig")
                env = self.env(PKG_CONFIG_PATH=pc)
                out, _ = check_proc(["pkg-config", "--variable=prefix", "hyperdown"], self.root,
                                    env, 60, "pkg-config --variable=prefix hyperdown")
                if out.strip() != prefix:
                    raise Failure(f"the installed hyperdown.pc says prefix={out.strip()}, "
                                  f"not the install PREFIX {prefix}")
                self._prefix = (prefix, None)
            except Failure as exc:
                self._prefix = (None, exc)
        if self._prefix[1] is not None:
            raise Failure(f"set-up failed: {self._prefix[1].args[0]}", *self._prefix[1].args[1:])
        return self._prefix[0]

    def need_python(self):
        if not os.access(self.python, os.X_OK):
            raise Failure(f"no Python venv at {self.python} (make test-docs creates build/venv "
                          "with the binding installed)")

    def stores(self):
        if self._stores is None:
            try:
                self.need_python()
                d = os.path.join(self.tmp, "stores")
                os.makedirs(d)
                script = os.path.join(d, "stores.py")
                with open(script, "w") as f:
                    f.write(PY_STORES)
                check_proc([self.python, script, d], d, self.env(), self.timeout,
                           "creating a server and a client store with the Python binding")
                schemas = {}
                for side in ("server", "client"):
                    conn = sqlite3.connect(os.path.join(d, side, "hyperdown.db"))
                    schemas[side] = schema_of(conn)
                    conn.close()
                self._stores = (schemas, None)
            except Failure as exc:
                self._stores = (None, exc)
        if self._stores[1] is not None:
            raise self._stores[1]
        return self._stores[0]

    def swift_flags(self):
        """swiftc and the flags that make the package's modules importable (from the build's
        own module folder and the C target's module map)."""
        if self._swift_flags is None:
            try:
                swiftc = None
                if self.swift:
                    cand = os.path.join(os.path.dirname(self.swift), "swiftc")
                    swiftc = cand if os.access(cand, os.X_OK) else None
                swiftc = swiftc or shutil.which("swiftc") or (
                    "/opt/swift/usr/bin/swiftc" if os.access("/opt/swift/usr/bin/swiftc", os.X_OK)
                    else None)
                if swiftc is None:
                    raise Failure("no swiftc (pass --swift /path/to/swift)")
                modules = os.path.join(self.cli_dir, "Modules")
                if not os.path.exists(os.path.join(modules, "Hyperdown.swiftmodule")):
                    raise Failure(f"no Hyperdown.swiftmodule in {modules}: build the package "
                                  "first (swift build --product hyperdown)")
                flags = [swiftc, "-typecheck", "-I", modules,
                         "-I", os.path.join(self.root, "include")]
                for dirpath, _, filenames in os.walk(self.cli_dir):
                    if "module.modulemap" in filenames and dirpath.endswith(".build"):
                        flags += ["-Xcc", "-fmodule-map-file=" +
                                  os.path.join(dirpath, "module.modulemap")]
                self._swift_flags = (flags, None)
            except Failure as exc:
                self._swift_flags = (None, exc)
        if self._swift_flags[1] is not None:
            raise self._swift_flags[1]
        return self._swift_flags[0]

    # ---- one block ----

    def check(self, block):
        if block.error is not None:
            return Result("FAILED", block.error)
        if block.tag == "skip":
            return Result("skipped", block.arg)
        try:
            fn = getattr(self, f"do_{block.tag}_{block.lang}", None) or getattr(
                self, f"do_{block.tag}")
            result = fn(block)
        except Failure as exc:
            result = Result("FAILED", exc.args[0], exc.args[1] if len(exc.args) > 1 else "")
        if block.tag == "run":
            self.last_run[block.path] = result
        return result

    def do_compile_c(self, block, run=False):
        prefix = self.prefix()
        d = self.workdir(block)
        src = os.path.join(d, "snippet.c")
        with open(src, "w") as f:
            f.write(block.text)
        env = self.env(PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
        out, _ = check_proc(["pkg-config", "--cflags", "--libs", "hyperdown"], d, env, 60,
                            "pkg-config --cflags --libs hyperdown")
        cc = os.environ.get("CC", "cc")
        check_proc([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "snippet.c", "-o", "snippet"]
                   + shlex.split(out), d, env, self.timeout_of(block),
                   "cc snippet.c $(pkg-config --cflags --libs hyperdown)")
        if not run:
            return Result("ok")
        env["LD_LIBRARY_PATH"] = os.path.join(prefix, "lib")
        out, _ = check_proc(["./snippet"], d, env, self.timeout_of(block), "./snippet")
        return Result("ok", stdout=out)

    def do_run_c(self, block):
        return self.do_compile_c(block, run=True)

    def do_run_js(self, block):
        addon = os.path.join(self.root, "bindings", "node", "build", "Release", "hyperdown.node")
        if not os.path.exists(addon):
            raise Failure("the Node addon is not built (cd bindings/node && npm install)")
        d = self.workdir(block)
        os.makedirs(os.path.join(d, "node_modules"))
        os.symlink(os.path.join(self.root, "bindings", "node"),
                   os.path.join(d, "node_modules", "hyperdown"))
        # the block is the body of an async function (top-level await), one line down
        with open(os.path.join(d, "snippet.js"), "w") as f:
            f.write("(async () => {\n" + block.text +
                    "\n})().catch((err) => { console.error(err); process.exitCode = 1 })\n")
        out, _ = check_proc(["node", "snippet.js"], d, self.env(), self.timeout_of(block),
                            "node snippet.js")
        return Result("ok", stdout=out)

    def do_run_python(self, block):
        self.need_python()
        d = self.workdir(block)
        with open(os.path.join(d, "run.py"), "w") as f:
            f.write(PY_RUNNER)
        with open(os.path.join(d, "snippet.py"), "w") as f:
            f.write(block.text)
        out, _ = check_proc([self.python, "run.py", "snippet.py"], d, self.env(),
                            self.timeout_of(block), "python snippet.py")
        return Result("ok", stdout=out)

    def do_run_sh(self, block):
        d = self.workdir(block)
        script = os.path.join(d, "snippet.sh")
        with open(script, "w") as f:
            f.write(block.text)
        cwd = os.path.join(self.root, block.attrs["cwd"]) if "cwd" in block.attrs else d
        if not os.path.isdir(cwd):
            raise Failure(f"cwd={block.attrs['cwd']}: no such folder")
        out, _ = check_proc(["bash", "-eu", "-o", "pipefail", script], cwd, self.env(),
                            self.timeout_of(block), "bash snippet.sh")
        return Result("ok", stdout=out)

    def do_compile_swift(self, block):
        flags = self.swift_flags()
        d = self.workdir(block)
        with open(os.path.join(d, "main.swift"), "w") as f:
            f.write(block.text)
        check_proc(flags + ["main.swift"], d, self.env(), max(self.timeout_of(block), 120),
                   "swiftc -typecheck main.swift")
        return Result("ok", "type-checked")

    def do_schema(self, block):
        want = self.stores()[block.arg]
        conn = sqlite3.connect(":memory:")
        try:
            conn.executescript(block.text)
        except sqlite3.Error as exc:
            raise Failure(f"the block is not valid SQL: {exc}")
        got = schema_of(conn)
        conn.close()
        if got != want:
            diff = []
            for key in sorted(set(got) | set(want)):
                if got.get(key) != want.get(key):
                    diff.append(f"{key[0]} {key[1]}:\n  doc:   {got.get(key)}\n"
                                f"  store: {want.get(key)}")
            raise Failure(f"not the schema of a new {block.arg} store", "\n".join(diff))
        return Result("ok")

    def do_example(self, block):
        digits = re.sub(r"\s", "", block.text)
        if not digits or len(digits) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", digits):
            raise Failure("not an even number of hex digits")
        tests = []
        for base in ("test", "tests"):
            for dirpath, dirnames, filenames in os.walk(os.path.join(self.root, base)):
                if "test_protocol_examples.c" in filenames:
                    tests.append(os.path.join(dirpath, "test_protocol_examples.c"))
        if not tests:
            raise Failure("test_protocol_examples.c not found under test/ or tests/")
        for t in tests:
            with open(t) as f:
                if f'"{block.arg}"' in f.read():
                    return Result("ok", "bytes checked by " + os.path.relpath(t, self.root))
        raise Failure(f"no test checks example {block.arg!r} ({', '.join(tests)})")

    def do_output(self, block):
        prev = self.last_run.get(block.path)
        if prev is None:
            raise Failure("no `run` block before it in this file")
        if prev.status != "ok":
            raise Failure("the `run` block before it failed")

        def norm(text):
            return "\n".join(line.rstrip() for line in text.rstrip().split("\n"))
        if norm(prev.stdout or "") != norm(block.text):
            raise Failure("the previous run block printed something else",
                          "printed:\n" + (prev.stdout or ""))
        return Result("ok")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="only these files (relative to the root)")
    ap.add_argument("--root", default=ROOT, help="the checkout (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per block")
    ap.add_argument("--python", help="the venv's python (default: ROOT/build/venv/bin/python)")
    ap.add_argument("--cli-dir", help="the Swift build folder with `hyperdown` and Modules/ "
                    "(default: ROOT/.build/debug)")
    ap.add_argument("--swift", help="the swift driver; swiftc is taken beside it")
    ap.add_argument("--prefix", help="an installed PREFIX to use instead of `make install`")
    ap.add_argument("--list", action="store_true", help="parse and list the blocks, run none")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    ap.add_argument("--self-test", action="store_true", help="test the checker itself")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test()

    files = args.files or find_docs(args.root)
    checker = Checker(args)
    passed = failed = skipped = 0
    try:
        for path in files:
            with open(os.path.join(args.root, path), encoding="utf-8") as f:
                blocks, problems = parse_markdown(path, f.read())
            items = [(line, None, message) for line, message in problems]
            items += [(block.line, block, None) for block in blocks]
            for line, block, message in sorted(items, key=lambda item: item[0]):
                if block is None:
                    print(f"{path}:{line} (no fence) FAILED: {message}")
                    failed += 1
                    continue
                if args.list:
                    print(f"{block.where()} {block.label()}"
                          + (f" FAILED: {block.error}" if block.error else ""))
                    failed += block.error is not None
                    continue
                t0 = time.monotonic()
                r = checker.check(block)
                secs = time.monotonic() - t0
                if r.status == "ok":
                    passed += 1
                    note = f" ({r.note})" if r.note else ""
                    print(f"{block.where()} {block.label()} ok{note} [{secs:.1f} s]")
                elif r.status == "skipped":
                    skipped += 1
                    print(f"{block.where()} {block.label()} skipped ({r.note})")
                else:
                    failed += 1
                    print(f"{block.where()} {block.label()} FAILED: {r.note}")
                    if r.detail:
                        print(textwrap.indent(tail(r.detail), "    | "))
                sys.stdout.flush()
    finally:
        checker.close()
    print(f"docs: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


# ---- self-test ------------------------------------------------------------------------------

class ParserTest(unittest.TestCase):
    def parse(self, text):
        return parse_markdown("x.md", textwrap.dedent(text))

    def test_untagged_is_an_error(self):
        blocks, _ = self.parse("""\
            ```c
            int x;
            ```
            ```
            plain
            ```
            """)
        self.assertEqual(len(blocks), 2)
        self.assertIn("untagged", blocks[0].error)
        self.assertIn("untagged", blocks[1].error)

    def test_tags(self):
        blocks, problems = self.parse("""\
            ```c run
            int main(void) { return 0; }
            ```
            ```js run timeout=5
            ```
            ```sh skip="installs packages with apt-get"
            make deps
            ```
            ```hex example topic-key
            da 88
            ```
            ```sql schema client
            ```
            ```sh run cwd=bindings/node
            ls
            ```
            ```text output
            ```
            """)
        self.assertEqual(problems, [])
        got = [(b.lang, b.tag, b.arg, b.attrs, b.error) for b in blocks]
        self.assertEqual(got, [
            ("c", "run", None, {}, None),
            ("js", "run", None, {"timeout": "5"}, None),
            ("sh", "skip", "installs packages with apt-get", {}, None),
            ("hex", "example", "topic-key", {}, None),
            ("sql", "schema", "client", {}, None),
            ("sh", "run", None, {"cwd": "bindings/node"}, None),
            ("text", "output", None, {}, None),
        ])
        self.assertEqual(blocks[0].text, "int main(void) { return 0; }\n")
        self.assertEqual(blocks[0].line, 1)
        self.assertEqual(blocks[2].line, 6)

    def test_bad_tags(self):
        for info, why in [("c runn", "unknown tag"), ("text run", "not for"),
                          ("sh skip", "needs a reason"), ('sh skip=""', "needs a reason"),
                          ("hex example", "needs a NAME"), ("sql schema", "schema needs"),
                          ("c run foo=1", "unknown attribute"), ("c compile cwd=x", "unknown"),
                          ("sh run cwd=../x", "inside the checkout"),
                          ("sh run timeout=0", "positive"), ('sh skip="open', "cannot parse"),
                          ("ts run", "not for")]:
            with self.subTest(info=info):
                with self.assertRaises(ValueError) as cm:
                    parse_info(info)
                self.assertIn(why, str(cm.exception))

    def test_fences(self):
        blocks, problems = self.parse("""\
            ~~~~python run
            ```
            not a fence end
            ~~~
            ~~~~
              ```sh run
              echo indented
              ```
            ````text skip="unterminated"
            """)
        self.assertEqual(problems, [])
        self.assertEqual(blocks[0].text, "```\nnot a fence end\n~~~\n")
        self.assertEqual(blocks[1].text, "echo indented\n")
        self.assertIn("unterminated", blocks[2].error)

    def test_inline_backticks_are_not_fences(self):
        blocks, _ = self.parse("``` `code` ``` in a paragraph\n")
        self.assertEqual(blocks, [])

    def test_indented_code_block(self):
        _, problems = self.parse("""\
            A paragraph:

                an indented code block

            - a list item

                  its continuation, not code
            """)
        self.assertEqual([p[0] for p in problems], [3])


class HarnessTest(unittest.TestCase):
    """main() on a scratch checkout: an untagged block fails the run; run, output, skip and the
    timeout behave as documented (bash only: no build needed)."""

    def run_main(self, files, *extra):
        root = tempfile.mkdtemp(prefix="hd-docs-self-")
        try:
            for name, text in files.items():
                path = os.path.join(root, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(textwrap.dedent(text))
            out = os.path.join(root, "out.txt")
            with open(out, "w") as f:
                saved, sys.stdout = sys.stdout, f
                try:
                    rc = main(["--root", root, "--cli-dir", root, *extra])
                finally:
                    sys.stdout = saved
            with open(out) as f:
                return rc, f.read()
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def test_untagged_block_fails(self):
        rc, out = self.run_main({"README.md": """\
            ```sh skip="an example"
            make
            ```

            ```c
            int main(void) { return 0; }
            ```
            """})
        self.assertEqual(rc, 1, out)
        self.assertIn("README.md:5 c FAILED: untagged block", out)
        self.assertTrue(out.endswith("docs: 0 passed, 1 failed, 1 skipped\n"), out)

    def test_run_output_and_failures(self):
        rc, out = self.run_main({"docs/sub/a.md": """\
            ```sh run
            echo hello; echo world
            ```
            ```text output
            hello
            world
            ```
            ```sh run
            echo other
            ```
            ```text output
            hello
            ```
            ```sh run
            false
            echo not reached
            ```
            """, "README.md": "no blocks\n\n    indented\n"})
        self.assertEqual(rc, 1, out)
        self.assertIn("README.md:3 (no fence) FAILED: indented code block", out)
        self.assertIn("docs/sub/a.md:1 sh run ok", out)
        self.assertIn("docs/sub/a.md:4 text output ok", out)
        self.assertIn("docs/sub/a.md:11 text output FAILED", out)
        self.assertIn("docs/sub/a.md:14 sh run FAILED: bash snippet.sh: exit status 1", out)
        self.assertNotIn("not reached", out)
        self.assertTrue(out.endswith("docs: 3 passed, 3 failed, 0 skipped\n"), out)

    def test_leftovers_are_killed(self):
        t0 = time.monotonic()
        rc, out = self.run_main({"README.md": """\
            ```sh run
            sleep 30 &
            echo started
            ```
            ```text output
            started
            ```
            """})
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(rc, 0, out)

    def test_timeout_kills_the_block(self):
        t0 = time.monotonic()
        rc, out = self.run_main({"README.md": """\
            ```sh run timeout=1
            sleep 30 &
            sleep 30
            ```
            """})
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(rc, 1)
        self.assertIn("timed out after 1 s", out)


def self_test():
    suite = unittest.TestSuite()
    for case in (ParserTest, HarnessTest):
        suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(case))
    ok = unittest.TextTestRunner(verbosity=1).run(suite).wasSuccessful()
    print("self-test: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
