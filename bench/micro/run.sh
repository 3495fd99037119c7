#!/bin/sh
# make bench-micro: runs the hot-path micro-benchmarks (built by the make rule) and writes
#   $BUILD/bench/micro.csv          every figure with its reference and the ratio (CSV)
#   $BUILD/bench/micro-machine.txt  the machine (lscpu, kernel, disk of the scratch folder)
#   docs/benchmarks/*.png           throughput vs batch size for the store (needs matplotlib;
#                                   skipped with a message otherwise)
# Each binary is bounded in time (timeout); knobs: MB_REPS, MB_SECONDS, MB_STORE_SECONDS,
# MB_DIR, STORE_ARGS (extra options of bench/micro/store, e.g. "--sync full --batches 1,1000").
set -eu
BUILD=${1:-build}
BIN=$BUILD/bench/micro
OUT=$BUILD/bench/micro.csv
MACHINE=$BUILD/bench/micro-machine.txt
mkdir -p "$BUILD/bench"
: "${MB_REPS:=5}"
export MB_REPS

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "kernel: $(uname -srm)"
  lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|L1d|L2|L3|Hypervisor|Flags)' |
    sed 's/^Flags:.*\(avx512f\).*/Flags: ... avx2 avx512f ... (abridged)/'
  grep MemTotal /proc/meminfo
  dir=${MB_DIR:-/tmp}
  echo "scratch folder: $dir on $(df -P "$dir" | awk 'NR==2 {print $1}')," \
    "$(findmnt -no FSTYPE,OPTIONS -T "$dir" 2>/dev/null || echo '?')"
  dev=$(df -P "$dir" | awk 'NR==2 {print $1}' | sed 's|/dev/||')
  [ -r "/sys/block/$dev/queue/rotational" ] &&
    echo "disk $dev: rotational=$(cat /sys/block/$dev/queue/rotational)," \
      "scheduler=$(cat /sys/block/$dev/queue/scheduler 2>/dev/null)"
  echo "libsodium $(pkg-config --modversion libsodium 2>/dev/null), SQLite" \
    "$(pkg-config --modversion sqlite3 2>/dev/null), libuv $(pkg-config --modversion libuv 2>/dev/null)"
  echo "reps: $MB_REPS (medians)"
} > "$MACHINE"
cat "$MACHINE"

echo "bench,case,param,size,unit,value,ref_name,ref_value,ratio,reps,note" > "$OUT.tmp"
echo "== record layer and handshakes"
timeout 600 "$BIN/crypto" | tee -a "$OUT.tmp"
echo "== message codec"
timeout 600 "$BIN/codec" | tee -a "$OUT.tmp"
echo "== store append (progress on stderr)"
# shellcheck disable=SC2086
timeout 1800 "$BIN/store" ${STORE_ARGS:-} | tee -a "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "results: $OUT"
python3 bench/micro/plot.py "$OUT" docs/benchmarks || echo "plots: skipped (plot.py failed)"
