#!/bin/sh
# The example unit contrib/systemd/hyperdown.service passes `systemd-analyze verify` with nothing
# to say. verify needs the unit's ExecStart binary to exist: a copy of the unit in a temporary
# folder points at the hyperdown built here (the first argument, else .build/debug/hyperdown).
# Exits 77 (skipped) when systemd-analyze is missing (Debian's package `systemd` provides it).
#
# Usage: test/systemd/verify.sh [HYPERDOWN_BINARY]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "systemd verify: skipped: systemd-analyze is missing (apt-get install systemd)"
  exit 77
fi
binary=${1:-$root/.build/debug/hyperdown}
if [ ! -x "$binary" ]; then
  echo "systemd verify: no hyperdown binary at $binary (swift build first, or pass its path)" >&2
  exit 1
fi
binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s|/usr/local/bin/hyperdown|$binary|" "$root/contrib/systemd/hyperdown.service" > "$work/hyperdown.service"
grep -q "ExecStart=$binary serve" "$work/hyperdown.service" || {
  echo "systemd verify: the unit's ExecStart is not /usr/local/bin/hyperdown serve ..." >&2
  exit 1
}

# verify prints a line for each problem it finds (and exits non-zero for some): both fail here.
status=0
systemd-analyze verify --man=no "$work/hyperdown.service" > "$work/out" 2>&1 || status=$?
if [ "$status" -ne 0 ] || [ -s "$work/out" ]; then
  sed "s|$work/||g" "$work/out" >&2
  echo "systemd verify: 0 passed, 1 failed (exit $status)"
  exit 1
fi
echo "systemd verify: 1 passed, 0 failed"
