# libFuzzer targets (docs/FUZZING.md), included by the Makefile. `make fuzz` builds every target
# with clang (ASan, UBSan, libFuzzer) into $(BUILD)/fuzz and runs each for FUZZ_SECONDS from its
# corpus; `make fuzz-smoke` runs each for FUZZ_SMOKE_SECONDS and fails on any finding;
# `make fuzz-seeds` writes the seed corpora fuzz/corpus/<target>/ from the codec's encoders.
# The core is compiled from its sources here, each layer with its own include path, as for the
# library; the targets and their helpers see every layer (like the tests).

FUZZ_CC ?= /opt/swift/usr/bin/clang
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 8
FUZZ_BUILD := $(BUILD)/fuzz
# One file per target, named for what it feeds.
FUZZ_TARGETS := varint messages msg_reader record_reader handshake_responder \
                handshake_initiator hello_welcome keys server_session client_session \
                failed_notices http_request

# UBSan reports stop the run (libFuzzer then saves the input), like ASan's.
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer $(WARN) $(FUZZ_SAN) \
               -fsanitize=fuzzer-no-link $(DEPS_CFLAGS)
FUZZ_INCS := -Iinclude $(CORE_INCS) -Itest/util -Ifuzz

FUZZ_CORE_OBJS := $(patsubst CSources/%.c,$(FUZZ_BUILD)/obj/%.o,$(LIB_SRCS))
FUZZ_UTIL_OBJS := $(FUZZ_BUILD)/util/testutil.o $(FUZZ_BUILD)/util/transport_util.o \
                  $(FUZZ_BUILD)/util/fuzz_util.o
FUZZ_LIB := $(FUZZ_BUILD)/libfuzzcore.a
FUZZ_BINS := $(addprefix $(FUZZ_BUILD)/,$(FUZZ_TARGETS))

.PHONY: fuzz fuzz-build fuzz-smoke fuzz-seeds fuzz-findings

$(FUZZ_BUILD)/obj/%.o: CSources/%.c $(LIB_HDRS) include/hyperdown.h CSources/LAYERS
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -DHD_BUILDING -fvisibility=hidden -Iinclude \
	  $(call layer_incs,$(firstword $(subst /, ,$*))) -c $< -o $@

$(FUZZ_BUILD)/util/%.o: test/util/%.c $(TEST_UTIL_HDRS) $(LIB_HDRS) include/hyperdown.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_INCS) -c $< -o $@

$(FUZZ_BUILD)/util/fuzz_util.o: fuzz/fuzz_util.c fuzz/fuzz_util.h $(TEST_UTIL_HDRS) $(LIB_HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_INCS) -c $< -o $@

# An archive, so that each target links only the objects it uses.
$(FUZZ_LIB): $(FUZZ_UTIL_OBJS) $(FUZZ_CORE_OBJS)
	rm -f $@
	ar rcs $@ $^

$(FUZZ_BINS): $(FUZZ_BUILD)/%: fuzz/%.c fuzz/fuzz_util.h $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -fuse-ld=lld $(FUZZ_INCS) $< -o $@ \
	  $(FUZZ_LIB) $(DEPS_LIBS)

# The seed generator and the findings' reproducers are plain programs (no libFuzzer main) on the
# same objects.
FUZZ_FINDINGS := $(patsubst fuzz/%.c,$(FUZZ_BUILD)/%,$(wildcard fuzz/findings/*.c))
$(FUZZ_BUILD)/gen_seeds $(FUZZ_FINDINGS): $(FUZZ_BUILD)/%: fuzz/%.c fuzz/fuzz_util.h $(FUZZ_LIB)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fuse-ld=lld $(FUZZ_INCS) $< -o $@ $(FUZZ_LIB) $(DEPS_LIBS)

# What fuzzing found and is not fixed yet (fuzz/findings/README.md): each reproducer exits 1 while
# its problem is there.
fuzz-findings: $(FUZZ_FINDINGS)
	@for f in $(FUZZ_FINDINGS); do \
	  if $$f; then echo "fixed: $$f"; else echo "still there: $$f"; fi; done

fuzz-build: $(FUZZ_BINS) $(FUZZ_BUILD)/gen_seeds

fuzz-seeds: $(FUZZ_BUILD)/gen_seeds
	rm -rf fuzz/corpus
	$(FUZZ_BUILD)/gen_seeds fuzz/corpus

# Fresh seeds next to the committed ones (a codec change reaches the fuzzers at once), and a
# note when the committed ones are stale.
FUZZ_FRESH_SEEDS = rm -rf $(FUZZ_BUILD)/seeds && $(FUZZ_BUILD)/gen_seeds $(FUZZ_BUILD)/seeds && \
  { diff -rq fuzz/corpus $(FUZZ_BUILD)/seeds >/dev/null || \
    echo "note: fuzz/corpus is not what the seed generator writes now: run make fuzz-seeds"; }

fuzz: fuzz-build
	@$(FUZZ_FRESH_SEEDS)
	@sh fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) "$(FUZZ_TARGETS)"

fuzz-smoke: fuzz-build
	@$(FUZZ_FRESH_SEEDS)
	@sh fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS) "$(FUZZ_TARGETS)"
