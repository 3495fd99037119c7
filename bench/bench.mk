# Benchmarks: not part of the test suite. The top Makefile includes this file with
#   -include bench/bench.mk
# (or use it as is: make -f Makefile -f bench/bench.mk bench-backlog). bench/README.md explains.
.PHONY: bench-build bench-backlog

BENCH_BINS := $(BUILD)/bench/backlog

bench-build: $(BENCH_BINS)

$(BUILD)/bench/%: bench/%.c $(SHLIB)
	@mkdir -p $(@D)
	$(CC) -std=c11 $(OPT) -Wall -Wextra -Iinclude $< -o $@ -L$(BUILD) -lhyperdown -lpthread \
	  -Wl,-rpath,'$$ORIGIN/..'

# make bench-backlog BACKLOG_ARGS="1000000 --payload 100 --sync full"
BACKLOG_ARGS ?= 1000000
bench-backlog: $(BUILD)/bench/backlog
	$(BUILD)/bench/backlog $(BACKLOG_ARGS)
