#!/bin/sh
# Compatibility across releases, shown rather than claimed: the `hyperdown` CLI built from the
# previous release's commit (test/compat/PREVIOUS) against the one built from this checkout, both
# ways: an old server with a new client, then a new server with an old client. Each way: events
# added while the client is away are delivered when it connects, one added while it is connected
# arrives at once, every one is confirmed (the server ends with nothing pending), and both exit 0.
# Then the queue semantics against the previous release (docs/QUEUES.md "Compatibility"): a
# poison event rejected by a new client of an old server, and a new server's expiry with an old
# client.
#
# Usage: cli_compat.sh NEW_CLI BUILD_DIR
#   NEW_CLI    the hyperdown built from this checkout
#   BUILD_DIR  where the old release is built (kept, so a second run only runs it)
# Prints "compat: N passed, N failed". Every server listens on 127.0.0.1, port chosen by the OS,
# and is stopped by its pid; every wait is bounded.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
new_cli=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
build=$(mkdir -p "$2" && cd "$2" && pwd)
prev=$(sed -n 's/^commit //p' "$root/test/compat/PREVIOUS")
swift=${SWIFT:-$(command -v swift || echo /opt/swift/usr/bin/swift)}

if ! git -C "$root" cat-file -e "$prev^{commit}" 2>/dev/null; then
  echo "compat: the previous release $prev is not in this clone's history" \
       "(a shallow clone? git fetch --unshallow)" >&2
  exit 1
fi

# The old release, from git history, built once per commit.
old_src=$build/compat/$prev/src
old_cli=$build/compat/$prev/.build/debug/hyperdown
if [ ! -x "$old_cli" ]; then
  rm -rf "$old_src"
  mkdir -p "$old_src"
  git -C "$root" archive "$prev" | tar -x -C "$old_src"
  echo "compat: building the CLI of $prev"
  (cd "$old_src" && "$swift" build --product hyperdown --scratch-path "$build/compat/$prev/.build") \
    > "$build/compat/$prev/build.log" 2>&1 || {
    tail -30 "$build/compat/$prev/build.log" >&2
    echo "compat: the previous release does not build" >&2
    exit 1
  }
fi

work=$(mktemp -d)
pids=""
cleanup() {
  for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# wait_for SECONDS PID COMMAND...: until COMMAND succeeds; fails if PID dies or time runs out
wait_for() {
  limit=$(($1 * 10)); pid=$2; shift 2
  i=0
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { echo "  process $pid ended" >&2; return 1; }
    i=$((i + 1))
    [ $i -le $limit ] || { echo "  timed out waiting for: $*" >&2; return 1; }
    sleep 0.1
  done
}

lines_at_least() { [ "$(wc -l < "$1")" -ge "$2" ]; }
pending_zero() { "$1" status --data "$2" | grep -q '"pendingTotal": *0[,}]'; }

# one_way NAME SERVER_CLI CLIENT_CLI
one_way() {
  name=$1; scli=$2; ccli=$3
  d=$work/$name
  mkdir -p "$d"
  server=$("$scli" keygen --out "$d/server.key") || return 1
  user=$("$ccli" keygen --out "$d/user.key") || return 1
  "$scli" serve --topic compat --data "$d/srv" --key "$d/server.key" --listen 127.0.0.1:0 \
    > "$d/serve.out" 2> "$d/serve.err" &
  spid=$!
  pids="$pids $spid"
  wait_for 30 $spid grep -q listening "$d/serve.out" || return 1
  port=$(sed -n 's/.*"port": *\([0-9]*\).*/\1/p' "$d/serve.out")
  "$scli" send --data "$d/srv" "$user" '{"n": 1}' '"two"' > "$d/send.out" || return 1
  "$ccli" listen --topic compat --data "$d/usr" --key "$d/user.key" --server "127.0.0.1:$port" \
    --server-key "$server" > "$d/listen.out" 2> "$d/listen.err" &
  cpid=$!
  pids="$pids $cpid"
  wait_for 30 $cpid lines_at_least "$d/listen.out" 2 || return 1
  "$scli" send --data "$d/srv" "$user" '{"n": 3}' >> "$d/send.out" || return 1
  wait_for 30 $cpid lines_at_least "$d/listen.out" 3 || return 1
  wait_for 30 $spid pending_zero "$scli" "$d/srv" || return 1
  kill -INT $cpid && wait $cpid || { echo "  the client did not exit 0" >&2; return 1; }
  kill -INT $spid && wait $spid || { echo "  the server did not exit 0" >&2; return 1; }
  pids=""
  [ "$(tr '\n' ' ' < "$d/send.out")" = "1 2 3 " ] || { echo "  sequence numbers:" >&2;
    cat "$d/send.out" >&2; return 1; }
  expected='{"id": 1, "data": {"n": 1}}
{"id": 2, "data": "two"}
{"id": 3, "data": {"n": 3}}'
  # the JSON printer may space differently across releases: compare without spaces
  [ "$(tr -d ' ' < "$d/listen.out")" = "$(echo "$expected" | tr -d ' ')" ] || {
    echo "  the client printed:" >&2; cat "$d/listen.out" >&2; return 1; }
}

pending_is() { "$1" status --data "$2" | grep -q "\"pendingTotal\": *$3[,}]"; }

# serve NAME CLI [FLAGS...]: a server on 127.0.0.1, port chosen by the OS; sets d, spid, port
serve() {
  name=$1; scli=$2; shift 2
  d=$work/$name
  mkdir -p "$d"
  server=$("$scli" keygen --out "$d/server.key") || return 1
  "$scli" serve --topic compat --data "$d/srv" --key "$d/server.key" --listen 127.0.0.1:0 "$@" \
    > "$d/serve.out" 2> "$d/serve.err" &
  spid=$!
  pids="$pids $spid"
  wait_for 30 $spid grep -q listening "$d/serve.out" || return 1
  port=$(sed -n 's/.*"port": *\([0-9]*\).*/\1/p' "$d/serve.out")
}

# A poison event from a server of the previous release, which takes no FAILED: the new client's
# command rejects it (exit 100), keeps it for a server that takes FAILED, and handles the events
# after it; the old server still holds the poison event, and only it.
poison_old_server() {
  serve poison-old-server "$old_cli" || return 1
  user=$("$new_cli" keygen --out "$d/user.key") || return 1
  "$old_cli" send --data "$d/srv" "$user" '"poison"' '"one"' '"two"' > "$d/send.out" || return 1
  "$new_cli" listen --topic compat --data "$d/usr" --key "$d/user.key" \
    --server "127.0.0.1:$port" --server-key "$server" --max-attempts 2 \
    --exec 'if grep -q poison; then exit 100; fi' > "$d/listen.out" 2> "$d/listen.err" &
  cpid=$!
  pids="$pids $cpid"
  wait_for 30 $cpid lines_at_least "$d/listen.out" 2 || return 1
  wait_for 30 $spid pending_is "$old_cli" "$d/srv" 1 || return 1
  kill -INT $cpid && wait $cpid || { echo "  the client did not exit 0" >&2; return 1; }
  kill -INT $spid && wait $spid || { echo "  the server did not exit 0" >&2; return 1; }
  pids=""
  grep -q poison "$d/listen.out" && { echo "  the poison event was printed" >&2; return 1; }
  [ "$(grep -c '"id": *[23]' "$d/listen.out")" = 2 ] || { echo "  the client printed:" >&2;
    cat "$d/listen.out" >&2; return 1; }
}

# A server of this release with a default time to live, and a client of the previous release,
# which takes no notices: the event that expired while it was away is never sent, its notice is
# dropped, the one added while it is connected arrives, and nothing stays pending.
ttl_old_client() {
  serve ttl-old-client "$new_cli" --default-ttl 1 || return 1
  user=$("$old_cli" keygen --out "$d/user.key") || return 1
  "$new_cli" send --data "$d/srv" "$user" '"expires"' > "$d/send.out" || return 1
  sleep 2.5 # the time to live runs out; the sweep deletes it and adds a notice
  "$old_cli" listen --topic compat --data "$d/usr" --key "$d/user.key" \
    --server "127.0.0.1:$port" --server-key "$server" > "$d/listen.out" 2> "$d/listen.err" &
  cpid=$!
  pids="$pids $cpid"
  wait_for 30 $spid pending_zero "$new_cli" "$d/srv" || return 1
  "$new_cli" send --data "$d/srv" "$user" '"fresh"' >> "$d/send.out" || return 1
  wait_for 30 $cpid lines_at_least "$d/listen.out" 1 || return 1
  wait_for 30 $spid pending_zero "$new_cli" "$d/srv" || return 1
  kill -INT $cpid && wait $cpid || { echo "  the client did not exit 0" >&2; return 1; }
  kill -INT $spid && wait $spid || { echo "  the server did not exit 0" >&2; return 1; }
  pids=""
  [ "$(tr -d ' \n' < "$d/listen.out")" = '{"id":3,"data":"fresh"}' ] || {
    echo "  the client printed:" >&2; cat "$d/listen.out" >&2; return 1; }
}

passed=0
failed=0
for way in "old-server-new-client $old_cli $new_cli" "new-server-old-client $new_cli $old_cli" \
           "poison-old-server" "ttl-old-client"; do
  set -- $way
  case $1 in
    poison-old-server) run="poison_old_server" ;;
    ttl-old-client) run="ttl_old_client" ;;
    *) run="one_way $1 $2 $3" ;;
  esac
  if $run; then
    echo "ok $1"
    passed=$((passed + 1))
  else
    echo "--- $1 failed; server log:"
    cat "$work/$1/serve.err" 2>/dev/null || true
    echo "--- client log:"
    cat "$work/$1/listen.err" 2>/dev/null || true
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    pids=""
    failed=$((failed + 1))
  fi
done
echo "compat: $passed passed, $failed failed (previous release $prev)"
[ $failed -eq 0 ]
