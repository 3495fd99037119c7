"""cffi build script for the `hyperdown` Python package (API mode).

It does two things:

1. Turns the project's one public header, ``include/hyperdown.h``, into what ``ffibuilder.cdef``
   receives, through the C preprocessor (``cc -E -dD``), not a hand-written copy and not a parser
   of our own: the header's own lines of the preprocessed output, and its integer macros as
   ``#define NAME ...`` (values from the compiler). See "Header -> cdef" below.
2. Decides how the extension gets the C core (see README.md, "How the extension finds the core"):
   by default the core's sources are compiled into the extension; with ``HYPERDOWN_LINK=shared``
   it links an installed ``libhyperdown`` instead (pkg-config or ``HYPERDOWN_LIB_DIR``).

Where the core's sources are looked for, in order:
  - ``$HYPERDOWN_SOURCE_DIR`` (a checkout: the directory holding ``include/`` and ``CSources/``);
  - ``_core/`` next to this file (filled by ``setup.py sdist`` so that an sdist builds alone);
  - the directories above this file (``bindings/python`` inside a checkout: ``../..``).
"""
from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import sys
import sysconfig
from typing import Dict, List, Optional, Tuple

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER_NAME = "hyperdown.h"
DEP_LIBS = ["uv", "sodium", "sqlite3", "pthread"]


# ---------------------------------------------------------------------------------------------
# Locating the core


def _is_core_root(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "include", HEADER_NAME)) and os.path.isdir(
        os.path.join(path, "CSources")
    )


def find_core_root() -> str:
    env = os.environ.get("HYPERDOWN_SOURCE_DIR")
    if env:
        env = os.path.abspath(env)
        if not _is_core_root(env):
            raise RuntimeError(f"HYPERDOWN_SOURCE_DIR={env} has no include/{HEADER_NAME} and CSources/")
        return env
    candidates = [os.path.join(HERE, "_core")]
    d = HERE
    for _ in range(4):
        d = os.path.dirname(d)
        if d not in candidates:
            candidates.append(d)
    for c in candidates:
        if _is_core_root(c):
            return c
    raise RuntimeError(
        "cannot find the Hyperdown C core (include/hyperdown.h and CSources/): build from a "
        "checkout (pip install ./bindings/python), from an sdist, or set HYPERDOWN_SOURCE_DIR "
        "to the checkout's root. Looked in: " + ", ".join(candidates)
    )


def core_layer_dirs(root: str) -> List[str]:
    """The core's layer folders, bottom up, as CSources/LAYERS lists them (the C build enforces
    the layering; here every layer is simply on the include path)."""
    dirs = []
    with open(os.path.join(root, "CSources", "LAYERS"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                dirs += [os.path.join(root, "CSources", name) for name in line.split("|")]
    return dirs


def _pkg_config(*args: str) -> Optional[List[str]]:
    try:
        out = subprocess.run(["pkg-config", *args], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return shlex.split(out.stdout)


# ---------------------------------------------------------------------------------------------
# Header -> cdef, through the C preprocessor (python-zstandard's way: make_cffi.py runs `cc -E` on
# zstd.h and hands the output to cdef).
#
# `cc -E -dD` expands the header as the compiler sees it (HD_EXTERN empty, no `extern "C"`, the
# error enum's X-macro list expanded) and keeps each #define in place. Its line markers
# (`# 12 "include/hyperdown.h"`) say which file each line comes from: only the header's own
# lines are kept (the system headers' typedefs are cffi's already: size_t, uint8_t...).
#
# Macros: the preprocessor erases them, and cdef cannot evaluate C. Each object-like macro of the
# header becomes `#define NAME ...`: cffi's "the compiler knows the value" form, so the value in
# the extension is what the C compiler computed from the real header, and the build fails if the
# macro is not an integer constant. What cannot be an integer is left out, and said here:
#   - string literals (HD_VERSION_STRING: hd_version_string() gives it);
#   - braced initialisers (HD_*_OPTIONS_INIT: Python fills a struct with hd_*_options_init());
#   - empty macros (the include guard, HD_EXTERN);
#   - function-like macros (HD_CHECK_VERSION: __init__.py calls hd_check_version with the two
#     constants; HD_ERRNO_MAP: its expansion, the hd_errno enum, is in the declarations).

_LINEMARKER = re.compile(r'^#\s*(\d+)\s+"((?:[^"\\]|\\.)*)"')
_DEFINE = re.compile(r"^#\s*define\s+(\w+)(\()?\s*(.*)$")


def _compiler() -> List[str]:
    """The C compiler setuptools would use: $CC, else Python's own configured CC, else cc."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)


def preprocess(header: str, include_dirs: List[str]) -> str:
    """`cc -E -dD` of the header, as C11 (the core's dialect), without HD_BUILDING (a user's
    view: HD_EXTERN is empty)."""
    cmd = _compiler() + ["-E", "-dD", "-std=c11"] + [f"-I{d}" for d in include_dirs] + [header]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    except OSError as exc:
        raise RuntimeError(f"the C preprocessor could not run ({' '.join(cmd)}): {exc}") from exc
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"the C preprocessor failed on {header}:\n{exc.stderr}") from exc
    return out.stdout


def extract(preprocessed: str, header: str) -> Tuple[str, List[str]]:
    """(declarations, integer macro names) of `header` in `cc -E -dD` output."""
    want = os.path.realpath(header)
    current = ""
    decls: List[str] = []
    macros: Dict[str, str] = {}  # name -> value text, in definition order; #undef removes
    for line in preprocessed.splitlines():
        m = _LINEMARKER.match(line)
        if m:
            current = m.group(2)
            continue
        if not current or os.path.realpath(current) != want:
            continue
        if line.startswith("#"):
            d = _DEFINE.match(line)
            if d and not d.group(2):  # object-like only
                macros[d.group(1)] = d.group(3).strip()
            u = re.match(r"^#\s*undef\s+(\w+)", line)
            if u:
                macros.pop(u.group(1), None)
            continue  # other directives (#pragma) declare nothing
        decls.append(line)
    ints = [name for name, value in macros.items()
            if value and value[0] not in '"{']
    text = "\n".join(ln for ln in decls if ln.strip())
    return text, ints


def cdef_of(header: str, include_dirs: List[str]) -> str:
    """What ffibuilder.cdef receives for `header`: its integer macros, then its declarations."""
    decls, ints = extract(preprocess(header, include_dirs), header)
    consts = "\n".join(f"#define {name} ..." for name in ints)
    return consts + "\n" + decls + "\n"


# The callbacks Python gives the core (cffi's extern "Python"): one per kind of hd_*_cb the
# binding passes. The compiler checks each against its typedef where the binding assigns it.
CALLBACKS = """
extern "Python" void _hd_py_peer(void *user_data, const uint8_t *public_key);
extern "Python" void _hd_py_peer_closed(void *user_data, const uint8_t *public_key, int status);
extern "Python" void _hd_py_destroy(void *user_data);
extern "Python" void _hd_py_log(void *user_data, hd_log_level_t level, const char *message);
extern "Python" void _hd_py_event(void *user_data, hd_event_t *event);
extern "Python" void _hd_py_consumed(void *user_data, const uint8_t *user, hd_consumed_t *batch);
extern "Python" void _hd_py_added(void *cb_data, int status, uint64_t seq);
extern "Python" void _hd_py_done(void *cb_data, int status);
extern "Python" void _hd_py_notice(void *user_data, hd_event_t *event);
extern "Python" void _hd_py_add_result(void *cb_data, int status, const hd_add_result_t *result);
extern "Python" void _hd_py_dead_letter(void *user_data, const uint8_t *user,
                                        const hd_dead_letter_t *dead_letter);
extern "Python" void _hd_py_fanout(void *cb_data, int status, const hd_fanout_result_t *results,
                                   size_t n);
extern "Python" void _hd_py_count(void *cb_data, int status, uint64_t count);
extern "Python" void _hd_py_authorize(void *user_data, const uint8_t *public_key,
                                      hd_authorization_t *request);
"""


def build_ffi() -> FFI:
    link = os.environ.get("HYPERDOWN_LINK", "static").lower()
    if link not in ("static", "shared"):
        raise RuntimeError("HYPERDOWN_LINK must be 'static' (compile the core in) or 'shared'")

    kwargs: Dict[str, object] = {}
    dep_cflags = _pkg_config("--cflags", "libuv", "libsodium", "sqlite3") or []
    dep_libs = _pkg_config("--libs", "libuv", "libsodium", "sqlite3")

    if link == "static":
        root = find_core_root()
        header = os.path.join(root, "include", HEADER_NAME)
        sources = sorted(glob.glob(os.path.join(root, "CSources", "**", "*.c"), recursive=True))
        if not sources:
            raise RuntimeError(f"no C sources in {root}/CSources")
        # setuptools wants source paths relative to the setup directory when it can have them
        sources = [os.path.relpath(s, HERE) if s.startswith(HERE + os.sep) else s for s in sources]
        depends = [header] + sorted(
            glob.glob(os.path.join(root, "CSources", "**", "*.h"), recursive=True)
        )
        kwargs.update(
            sources=sources,
            depends=depends,
            include_dirs=[os.path.join(root, "include"), *core_layer_dirs(root)],
            define_macros=[("HD_BUILDING", None), ("_GNU_SOURCE", None)],
            extra_compile_args=["-std=c11", "-fvisibility=hidden", *dep_cflags],
            # the core's symbols bind inside the extension even if another libhyperdown is loaded
            extra_link_args=["-Wl,-Bsymbolic"],
        )
        libs = [a[2:] for a in (dep_libs or []) if a.startswith("-l")] or DEP_LIBS[:-1]
        kwargs["libraries"] = libs + ["pthread"]
        kwargs["library_dirs"] = [a[2:] for a in (dep_libs or []) if a.startswith("-L")]
    else:
        inc_dir = os.environ.get("HYPERDOWN_INCLUDE_DIR")
        lib_dir = os.environ.get("HYPERDOWN_LIB_DIR")
        pc_cflags = _pkg_config("--cflags", "hyperdown") or []
        pc_libs = _pkg_config("--libs", "hyperdown") or []
        include_dirs = [inc_dir] if inc_dir else [a[2:] for a in pc_cflags if a.startswith("-I")]
        if not include_dirs:
            try:
                include_dirs = [os.path.join(find_core_root(), "include")]
            except RuntimeError:
                include_dirs = ["/usr/local/include", "/usr/include"]
        header = next((os.path.join(d, HEADER_NAME) for d in include_dirs
                       if os.path.isfile(os.path.join(d, HEADER_NAME))), None)
        if header is None:
            raise RuntimeError(f"{HEADER_NAME} not found in {include_dirs}; set HYPERDOWN_INCLUDE_DIR")
        library_dirs = [lib_dir] if lib_dir else [a[2:] for a in pc_libs if a.startswith("-L")]
        kwargs.update(
            include_dirs=include_dirs,
            libraries=["hyperdown"],
            library_dirs=library_dirs,
            runtime_library_dirs=library_dirs,
        )

    ffibuilder = FFI()
    ffibuilder.cdef(cdef_of(header, [os.path.dirname(header)]) + CALLBACKS)
    ffibuilder.set_source("hyperdown._hyperdown", f'#include "{HEADER_NAME}"\n', **kwargs)
    return ffibuilder


if __name__ == "__main__" and sys.argv[1:2] == ["--cdef"]:
    # python hyperdown_build.py --cdef: show what cdef receives
    core_header = os.path.join(find_core_root(), "include", HEADER_NAME)
    print(cdef_of(core_header, [os.path.dirname(core_header)]) + CALLBACKS)
else:
    ffibuilder = build_ffi()
    if __name__ == "__main__":
        ffibuilder.compile(verbose=True)
