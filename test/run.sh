#!/bin/sh
# Runs every C test program (under valgrind's memcheck when HD_VALGRIND=1) and prints one closing
# "c: N passed, N failed" line that adds them up. Exit status 1 if any test failed.
build=$1
bins=$2
passed=0
failed=0
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
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$out" | tail -1 | sed 's/, [0-9]* skipped$//')
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
    echo "ok $name ($p passed)"
  fi
  rm -f "$out"
done
echo "c: $passed passed, $failed failed"
exit $status
