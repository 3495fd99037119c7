#!/bin/sh
# Runs each fuzz target for SECONDS, one at a time, and prints one line per target (runs, exec/s
# and libFuzzer's cov/ft at the end) and a closing "fuzz: N passed, N failed" line. A target
# fails on any crash, failed check, hang (-timeout: 60 s for one input), leak or sanitizer
# report; its log and the input that did it (libFuzzer's artifact) stay under BUILD/fuzz. Exit
# status 1 if any failed.
#
# Each target starts from three corpus folders: BUILD/fuzz/corpus/<target> (scratch: new inputs
# go there, kept between runs), fuzz/corpus/<target> (the committed seeds) and
# BUILD/fuzz/seeds/<target> (the seeds the generator writes now). The committed corpus is only read.
#
# Usage: run.sh FUZZ_BUILD SECONDS "TARGETS"
fb=$1
seconds=$2
targets=$3
# what a sanitizer, libFuzzer or a target's check prints when it finds something
findings='ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:'
findings="$findings|fuzz check failed|^SUMMARY:"
passed=0
failed=0
mkdir -p "$fb/logs" "$fb/artifacts"
export UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
for t in $targets; do
  mkdir -p "$fb/corpus/$t" "$fb/seeds/$t" "fuzz/corpus/$t"
  log="$fb/logs/$t.log"
  "$fb/$t" -max_total_time="$seconds" -timeout=60 -print_final_stats=1 \
    -artifact_prefix="$fb/artifacts/$t-" \
    "$fb/corpus/$t" "fuzz/corpus/$t" "$fb/seeds/$t" >"$log" 2>&1
  rc=$?
  if [ $rc -eq 0 ] && ! grep -qE "$findings" "$log"; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 |
      sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/cov \1, ft \2, corpus \3/p')
    echo "ok $t: $runs runs in ${seconds}s, $rate exec/s, $cov"
    passed=$((passed + 1))
  else
    echo "--- $t failed (exit $rc; log $log):"
    grep -E "$findings|ERROR:|Test unit written to|neither PONG" "$log" | head -20
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ $failed -eq 0 ]
