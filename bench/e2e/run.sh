#!/usr/bin/env bash
# bench/e2e/run.sh: issue 6, items 3 (end to end) and 4 (peers). Called by `make bench-e2e`.
#   bash bench/e2e/run.sh deps   install the peers and their C clients from Debian (idempotent),
#                                matplotlib from PyPI (optional: plots are skipped without it)
#   bash bench/e2e/run.sh run    run every scenario; BENCH_QUICK=1 for smaller counts
# Every server runs on 127.0.0.1 with a free port, in a temporary folder, and is stopped by its
# pid (also on failure: trap). Every run is bounded in count and in time.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
OUT=$BUILD/bench/e2e
PLOTS=docs/benchmarks

deps() {
  local need=()
  for p in mosquitto libmosquitto-dev nats-server libnats-dev redis-server libhiredis-dev libuv1-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "bench-e2e: installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  python3 -c 'import matplotlib' 2>/dev/null ||
    pip install -q matplotlib 2>/dev/null || pip install -q --break-system-packages matplotlib 2>/dev/null ||
    echo "bench-e2e: matplotlib unavailable: the plots will be skipped"
}

if [ "${1:-}" = deps ]; then deps; exit 0; fi

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
  DUR=1.5; DRAIN_N=100000; IDLE_N=2000; HS_DUR=2
else
  DUR=4; DRAIN_N=1000000; IDLE_N=10000; HS_DUR=4
fi
INFLIGHTS="1 10 100 1000"
PAYLOAD=100
MAXEV=5000000
mkdir -p "$OUT" "$PLOTS"
RES=$OUT/results.jsonl
: >"$RES"
TMP=$(mktemp -d /tmp/hd-bench-e2e-XXXXXX)
SPID=""
SPORT=""
cleanup() {
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
FAIL=0

freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
stop_server() {
  if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null; for _ in $(seq 1 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; SPID=""; fi
}
start_redis() { # $1: always|everysec
  stop_server; local d; d=$(mktemp -d "$TMP/redis-XXXX"); SPORT=$(freeport)
  redis-server --port "$SPORT" --bind 127.0.0.1 --dir "$d" --appendonly yes --appendfsync "$1" \
    --save '' --maxclients 19000 --daemonize no --logfile "$d/log" &
  SPID=$!; wait_port "$SPORT"
}
start_nats() {
  stop_server; local d; d=$(mktemp -d "$TMP/nats-XXXX"); SPORT=$(freeport)
  nats-server -a 127.0.0.1 -p "$SPORT" -js -sd "$d" -l "$d/log" &
  SPID=$!; wait_port "$SPORT"
}
start_mosquitto() {
  stop_server; local d; d=$(mktemp -d "$TMP/mosq-XXXX"); SPORT=$(freeport)
  cat >"$d/m.conf" <<EOF
listener $SPORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $d/
max_queued_messages 0
max_inflight_messages 0
user root
log_dest file $d/log
EOF
  mosquitto -c "$d/m.conf" &
  SPID=$!; wait_port "$SPORT"
}
run() { # a bounded run: timeout, output relayed
  echo "+ $*" >&2
  timeout -k 5 300 "$@" || { echo "bench-e2e: FAILED: $*" >&2; FAIL=1; }
}

HD=$BUILD/bench/e2e/hd_e2e
T0=$(date +%s)
echo "== Hyperdown (server + client in one process, own loop threads) =="
for sync in full normal; do
  dur="synchronous=$(echo $sync | tr a-z A-Z)"
  for inf in $INFLIGHTS; do
    run $HD --mode tput --sync $sync --inflight $inf --duration $DUR --events $MAXEV --payload $PAYLOAD --durability "$dur" --out "$RES" --dir "$TMP" >/dev/null
  done
  run $HD --mode lat --sync $sync --duration $DUR --events $MAXEV --payload $PAYLOAD --durability "$dur" --out "$RES" --curves "$OUT" --dir "$TMP" >/dev/null
  run $HD --mode paced --rate 5000 --sync $sync --duration $DUR --events $MAXEV --payload $PAYLOAD --durability "$dur" --out "$RES" --curves "$OUT" --dir "$TMP" >/dev/null
  run $HD --mode handshake --inflight 100 --sync $sync --duration $HS_DUR --events $MAXEV --payload $PAYLOAD --durability "$dur" --out "$RES" --dir "$TMP" >/dev/null
done
run $HD --mode idle --clients $IDLE_N --procs 4 --loops 2 --rounds 2 --inflight 2000 --sync full --durability "synchronous=FULL" --out "$RES" --dir "$TMP" >/dev/null
echo "== Hyperdown offline drain (bench/backlog, FULL) =="
timeout -k 5 900 "$BUILD/bench/backlog" $DRAIN_N --sync full --payload $PAYLOAD --dir "$(mktemp -d "$TMP/bl-XXXX")" | tee "$OUT/backlog-full.log" || FAIL=1

peer() { # $1 system label for drivers, $2 driver, $3 durability, $4 conn proto
  local drv=$BUILD/bench/peers/$2 dur=$3
  # idle connections first, on the fresh server (freed memory reused later would hide them)
  run $BUILD/bench/peers/conn_e2e --proto $4 --port $SPORT --server-pid $SPID --mode idle --clients $IDLE_N --durability "$dur" --out "$RES" >/dev/null
  for inf in $INFLIGHTS; do
    run $drv --port $SPORT --mode tput --inflight $inf --duration $DUR --events $MAXEV --payload $PAYLOAD --durability "$dur" --out "$RES" >/dev/null
  done
  run $drv --port $SPORT --mode lat --duration $DUR --events $MAXEV --payload $PAYLOAD --durability "$dur" --out "$RES" --curves "$OUT" >/dev/null
  run $drv --port $SPORT --mode paced --rate 5000 --duration $DUR --events $MAXEV --payload $PAYLOAD --durability "$dur" --out "$RES" --curves "$OUT" >/dev/null
  # handshakes under load: the tput driver (100 in flight) runs meanwhile
  timeout -k 5 120 $drv --port $SPORT --mode tput --inflight 100 --duration $((HS_DUR + 1)) --events $MAXEV --payload $PAYLOAD --durability "$dur" >/dev/null &
  local lp=$!
  sleep 0.5
  run $BUILD/bench/peers/conn_e2e --proto $4 --port $SPORT --mode hs --duration $HS_DUR --concurrency 8 --durability "$dur" --out "$RES" >/dev/null
  wait $lp
}
peer_drain() { # $1 driver, $2 durability, $3 events (default DRAIN_N)
  run $BUILD/bench/peers/$1 --port $SPORT --server-pid $SPID --mode drain --events ${3:-$DRAIN_N} --inflight 16384 --payload $PAYLOAD --drain-timeout 600 --durability "$2" --out "$RES" >/dev/null
}

echo "== Redis Streams =="
for fs in always everysec; do
  start_redis $fs; peer redis redis_e2e "AOF appendfsync $fs" redis
  start_redis $fs; peer_drain redis_e2e "AOF appendfsync $fs"
done
echo "== NATS JetStream $(nats-server --version) =="
NDUR="file store, fsync every 2 min (default; 2.9 has no sync_interval)"
start_nats; peer nats nats_e2e "$NDUR" nats
start_nats; peer_drain nats_e2e "$NDUR"
echo "== Mosquitto =="
MDUR="persistence true, autosave 1800 s: in memory, no fsync"
start_mosquitto; peer mosquitto mqtt_e2e "$MDUR" mqtt
# Mosquitto queues for an offline session in O(N) per message: 1M would take ~20 min, so 200k
start_mosquitto; peer_drain mqtt_e2e "$MDUR" $(( DRAIN_N < 200000 ? DRAIN_N : 200000 ))
stop_server
echo "== report (run took $(( $(date +%s) - T0 )) s) =="
python3 bench/e2e/report.py "$OUT" "$PLOTS" || FAIL=1
exit $FAIL
