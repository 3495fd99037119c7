#!/bin/sh
# The C library as a user outside the repository gets it: `make install PREFIX=<scratch>`, then
# the original example built in a scratch folder through pkg-config alone (shared, then static
# with `--static`), and run. Fails if the installed hyperdown.pc names another prefix.
#   usage: test/install/c_library.sh   (from the repository root; needs `make lib` done)
set -eu
root=$(pwd)
scratch=$(mktemp -d /tmp/hd-install.XXXXXX)
trap 'rm -rf "$scratch"' EXIT INT TERM
prefix="$scratch/prefix"
make -s install PREFIX="$prefix" >/dev/null

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
got=$(pkg-config --variable=prefix hyperdown)
[ "$got" = "$prefix" ] || { echo "install: hyperdown.pc says prefix=$got, not $prefix"; exit 1; }
echo "ok install: hyperdown.pc carries PREFIX"

mkdir "$scratch/app"
cp "$root/examples/original.c" "$scratch/app/main.c"
cd "$scratch/app"
# shellcheck disable=SC2046
cc -std=c11 -O1 main.c -o original-shared $(pkg-config --cflags --libs hyperdown) \
  -Wl,-rpath,"$prefix/lib"
# shellcheck disable=SC2046
cc -std=c11 -O1 main.c -o original-static $(pkg-config --cflags hyperdown) \
  "$prefix/lib/libhyperdown.a" $(pkg-config --libs-only-l --static hyperdown | sed 's/-lhyperdown//')
ldd ./original-shared | grep -q "$prefix/lib/libhyperdown.so" \
  || { echo "install: the program does not load the installed library"; ldd ./original-shared; exit 1; }
ldd ./original-static | grep -q libhyperdown && { echo "install: the static build loads libhyperdown.so"; exit 1; }
for kind in shared static; do
  timeout 120 "./original-$kind" "$scratch/run-$kind" >"$scratch/$kind.log" 2>&1 \
    || { echo "install: original-$kind failed"; cat "$scratch/$kind.log"; exit 1; }
  echo "ok install: the original example built through pkg-config ($kind) runs"
done
