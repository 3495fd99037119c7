#!/bin/sh
# Installs the Debian packages the build, the tests and the demo need, if any is missing.
# Safe to run again: it does nothing when everything is there.
set -eu
# build-essential's gcc also brings the sanitizer runtimes that `make test-c-asan` and
# `make test-c-tsan` link (libasan8, liblsan0, libubsan1, libtsan2: hard dependencies of
# libgcc-12-dev, which gcc-12 depends on), so they need no line of their own.
# systemd: its systemd-analyze verifies the example unit (test/systemd/verify.sh).
packages="build-essential pkg-config libuv1-dev libsodium-dev libsqlite3-dev valgrind abigail-tools python3-venv nodejs systemd"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq $missing >/dev/null
