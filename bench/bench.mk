# Benchmarks: not part of the test suite. The top Makefile includes this file with
#   -include bench/bench.mk
# (or use it as is: make -f Makefile -f bench/bench.mk bench-backlog). bench/README.md explains.
.PHONY: bench-build bench-backlog

BENCH_BINS := $(BUILD)/bench/backlog $(BUILD)/bench/queues

bench-build: $(BENCH_BINS)

$(BUILD)/bench/%: bench/%.c $(SHLIB)
	@mkdir -p $(@D)
	$(CC) -std=c11 $(OPT) -Wall -Wextra -Iinclude $< -o $@ -L$(BUILD) -lhyperdown -lpthread \
	  -Wl,-rpath,'$$ORIGIN/..'

# ---- bench-queues: the queue semantics' costs (docs/BENCHMARKS.md, "Queue semantics") ---------
# make bench-queues QUEUES_ARGS="adds --events 200000"
.PHONY: bench-queues
QUEUES_ARGS ?= all
bench-queues: $(BUILD)/bench/queues
	$(BUILD)/bench/queues $(QUEUES_ARGS)

# make bench-backlog BACKLOG_ARGS="1000000 --payload 100 --sync full"
BACKLOG_ARGS ?= 1000000
bench-backlog: $(BUILD)/bench/backlog
	$(BUILD)/bench/backlog $(BACKLOG_ARGS)

# ---- bench-micro: hot-path micro-benchmarks (bench/micro/, docs/benchmarks/hot-path.md) -------
# Each figure beside its physical reference, in the same run. They reach internals (CSources/
# headers) and link the static library, as the tests do. Results: build/bench/micro.csv; plots:
# docs/benchmarks/*.png. Knobs: MB_REPS (default 5), MB_SECONDS (per measurement),
# MB_STORE_SECONDS, MB_DIR (scratch folder for the stores; default under /tmp).
.PHONY: bench-micro bench-micro-build

MICRO_BINS := $(BUILD)/bench/micro/crypto $(BUILD)/bench/micro/codec $(BUILD)/bench/micro/store
MICRO_CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) -Wall -Wextra -Wno-unused-parameter \
                -Wno-unused-function -Iinclude $(CORE_INCS) $(DEPS_CFLAGS)

bench-micro-build: $(MICRO_BINS)

$(BUILD)/bench/micro/%: bench/micro/%.c bench/micro/micro.h $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(MICRO_CFLAGS) $< -o $@ $(STLIB) $(DEPS_LIBS)

bench-micro: $(MICRO_BINS)
	@sh bench/micro/run.sh $(BUILD)
# ---- end of bench-micro ---------------------------------------------------------------------

# ---- bench-e2e (issue 6, items 3 and 4: end to end and peers) -- begin -----------------------
# make bench-e2e             build everything, run every scenario (~15 min), write
#                            build/bench/e2e/results.jsonl + .csv and docs/benchmarks/*.png
# make bench-e2e BENCH_QUICK=1   smaller counts and shorter runs (~4 min)
# bench/e2e/run.sh installs the peers from Debian (idempotent) and starts each server on
# 127.0.0.1 with a free port in a temporary folder, stopping it by its pid (trap).
.PHONY: bench-e2e bench-e2e-build
E2E_BINS := $(BUILD)/bench/e2e/hd_e2e $(BUILD)/bench/peers/redis_e2e $(BUILD)/bench/peers/nats_e2e \
            $(BUILD)/bench/peers/mqtt_e2e $(BUILD)/bench/peers/conn_e2e
E2E_CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) -Wall -Wextra -Wno-unused-parameter -Iinclude -Ibench/e2e

bench-e2e-build: $(BUILD)/bench/backlog $(E2E_BINS)

$(BUILD)/bench/e2e/hd_e2e: bench/e2e/hd_e2e.c bench/e2e/harness.h $(SHLIB)
	@mkdir -p $(@D)
	$(CC) $(E2E_CFLAGS) $(DEPS_CFLAGS) $< -o $@ -L$(BUILD) -lhyperdown -luv -lpthread \
	  -Wl,-rpath,'$$ORIGIN/../..'
$(BUILD)/bench/peers/redis_e2e: bench/peers/redis_e2e.c bench/e2e/harness.h
	@mkdir -p $(@D)
	$(CC) $(E2E_CFLAGS) $< -o $@ -lhiredis -lpthread
$(BUILD)/bench/peers/nats_e2e: bench/peers/nats_e2e.c bench/e2e/harness.h
	@mkdir -p $(@D)
	$(CC) $(E2E_CFLAGS) $< -o $@ -lnats -lpthread
$(BUILD)/bench/peers/mqtt_e2e: bench/peers/mqtt_e2e.c bench/e2e/harness.h
	@mkdir -p $(@D)
	$(CC) $(E2E_CFLAGS) $< -o $@ -lmosquitto -lpthread
$(BUILD)/bench/peers/conn_e2e: bench/peers/conn_e2e.c bench/e2e/harness.h
	@mkdir -p $(@D)
	$(CC) $(E2E_CFLAGS) $< -o $@ -lpthread

bench-e2e:
	bash bench/e2e/run.sh deps
	$(MAKE) lib bench-e2e-build
	BUILD=$(BUILD) bash bench/e2e/run.sh run
# ---- bench-e2e -- end ---------------------------------------------------------------------

# ---- bench-connections: what one connection costs the server, by kind -----------------------
# (docs/RELIABILITY.md, "Memory per connection"). A server in a child process, connections from
# this one over loopback (raw clients of test/util), the server's VmRSS before and after.
# make bench-connections CONNECTIONS=2000
.PHONY: bench-connections
CONNECTIONS ?= 2000
$(BUILD)/bench/connections: bench/connections.c $(TEST_UTIL_HDRS) $(TEST_UTIL_LIB) $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_TEST) $< -o $@ $(TEST_UTIL_LIB) $(STLIB) $(DEPS_LIBS)

bench-connections: $(BUILD)/bench/connections
	$(BUILD)/bench/connections $(CONNECTIONS)

# ---- bench-redial: the first redials of N clients after their server restarts -------------------
# (docs/BENCHMARKS.md, "Redial after a restart"): N bare clients (client.h) on one loop in this
# process, the server in a child that is killed and started again on the same port; prints the
# busiest 10 ms of the first redials against the uniform share, and a histogram.
# make bench-redial REDIAL_ARGS="10000 100"   (clients, reconnect_min_ms)
.PHONY: bench-redial
REDIAL_ARGS ?= 10000
$(BUILD)/bench/redial: bench/redial.c $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_TEST) $< -o $@ $(STLIB) $(DEPS_LIBS)

bench-redial: $(BUILD)/bench/redial
	$(BUILD)/bench/redial $(REDIAL_ARGS)
