#!/bin/sh
# Runs every C test program (under valgrind's memcheck when HD_VALGRIND=1) and prints one closing
# "c: N passed, N failed" line that adds them up (", N skipped" when a test skipped: each skip's
# reason is printed under its program). Exit status 1 if any test failed.
build=$1
bins=$2
passed=0
failed=0
skipped=0
status=0
for bin in $bins; do
  name=$(basename "$bin")
  args=""
  # the vector runner is a tool anyone can point at other files; here it checks the vectors we ship
  [ "$name" = hd-noise-vectors ] && args=$(ls test/vectors/noise/*.json)
  out=$(mktemp)
  if [ "${HD_VALGRIND:-0}" = 1 ]; then
    HD_TEST_SLOW=1 valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible \
      --show-leak-kinds=definite,indirect,possible --track-fds=no "$bin" $args >"$out" 2>&1
  else
    "$bin" $args >"$out" 2>&1
  fi
  rc=$?
  full=$(grep -E '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$out" | tail -1)
  line=$(echo "$full" | sed 's/, [0-9]* skipped$//')
  s=$(echo "$full" | sed -n 's/.*, \([0-9]*\) skipped$/\1/p')
  p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
  f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed$/\1/p')
  [ -n "$p" ] || p=0
  [ -n "$f" ] || f=0
  if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; fi
  passed=$((passed + p))
  failed=$((failed + f))
  if [ $rc -ne 0 ]; then
    status=1
    echo "--- $name failed (exit $rc):"
    cat "$out"
  else
    if [ -n "$s" ]; then
      echo "ok $name ($p passed, $s skipped)"
      grep '^  SKIP ' "$out"
      skipped=$((skipped + s))
    else
      echo "ok $name ($p passed)"
    fi
  fi
  rm -f "$out"
done
if [ "$skipped" -gt 0 ]; then
  echo "c: $passed passed, $failed failed, $skipped skipped"
else
  echo "c: $passed passed, $failed failed"
fi
exit $status
