#!/bin/sh
# The long runs of `make soak` (docs/RELIABILITY.md, "Soak"): each C program that reads one of the
# long counts (HD_KILLS, HD_CUTS, HD_FAULTS, set by the caller) runs once with them, then the
# fuzzing command (unless it is empty). Every part's output goes to <out>/<part>.log; the figures
# each program prints (its indented lines) and the fuzzers' closing line go into the summary,
# with each part's time. Exit status 1 if any part failed.
#   sh test/soak.sh OUT "PROGRAMS" "FUZZ COMMAND"
out=$1
bins=$2
fuzz=$3
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
status=0
started=$(date +%s)

# run NAME FIGURES COMMAND...: runs the part, logs it, adds its line and the log's lines that
# match the extended regular expression FIGURES to the summary
run() {
  name=$1
  figures=$2
  shift 2
  log="$out/$name.log"
  t0=$(date +%s)
  "$@" >"$log" 2>&1
  rc=$?
  t1=$(date +%s)
  if [ $rc -eq 0 ]; then verdict=ok; else verdict="FAILED (exit $rc)"; status=1; fi
  echo "$verdict $name in $((t1 - t0)) s (log: $log)" | tee -a "$summary"
  grep -E "$figures" "$log" | tail -40 | sed 's/^/    /' | tee -a "$summary"
}

echo "soak: HD_KILLS=${HD_KILLS:-} HD_CUTS=${HD_CUTS:-} HD_FAULTS=${HD_FAULTS:-} HD_SEED=${HD_SEED:-}" \
  | tee -a "$summary"
# a program's figures and failures are its indented lines (not the log tails a failure dumps)
for bin in $bins; do
  run "$(basename "$bin")" '^  [a-zA-Z]' "$bin"
done
if [ -n "$fuzz" ]; then
  run fuzz '^(ok|FAIL|fuzz:) ' sh -c "$fuzz"
fi
ended=$(date +%s)
echo
echo "soak summary ($((ended - started)) s in all):"
cat "$summary"
[ $status -eq 0 ] && echo "soak: every part passed" || echo "soak: a part FAILED"
exit $status
