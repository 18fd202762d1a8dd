# Ember - top-level build. `make help` lists the targets.
SHELL := /bin/bash

PREFIX ?= /usr/local
CC ?= gcc
BUILD ?= build
PYTHON ?= /usr/bin/python3

HARDEN := -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-missing-field-initializers
OPT ?= -O2 -g
CFLAGS_ALL := -std=gnu11 $(OPT) $(WARN) $(HARDEN) -MMD -MP $(EXTRA_CFLAGS)
LDFLAGS_ALL := -pie -Wl,-z,relro,-z,now -Wl,--as-needed $(EXTRA_LDFLAGS)
LIBS := -lpthread -ljson-c -luring -lseccomp
# ember and ember-jailer are static PIEs: nothing to load at exec (faster
# start, less memory) and nothing but the binary to place inside a jail.
# The sanitizer build links dynamically (STATIC empty).
STATIC ?= -static-pie

LIB_SRC := $(filter-out vmm/main.c jail/jailer.c jail/seccomp_gen.c,$(wildcard vmm/*.c boot/*.c virtio/*.c api/*.c jail/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/unit/%)

.PHONY: all ember jailer guest units testhooks sanitize images install test test-fast test-slow \
        unit integration-fast integration-slow integration-nested integration-sanitize deps demo \
        bench format clean help fuzz fuzz-smoke fuzz-merge

all: ember jailer guest

ember: $(BUILD)/ember
jailer: $(BUILD)/ember-jailer

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libember.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The seccomp filters are compiled at build time (seccomp-gen runs the same
# tables through libseccomp) and linked into ember, which then installs them
# without compiling anything at start.
$(BUILD)/seccomp-gen: $(BUILD)/obj/jail/seccomp_gen.o $(BUILD)/libember.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)
$(BUILD)/gen/seccomp_blob.c: $(BUILD)/seccomp-gen
	@mkdir -p $(dir $@)
	$< $@
$(BUILD)/obj/gen/seccomp_blob.o: $(BUILD)/gen/seccomp_blob.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/ember: $(BUILD)/obj/vmm/main.o $(BUILD)/obj/gen/seccomp_blob.o $(BUILD)/libember.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) $(STATIC) -o $@ $^ $(LIBS)

$(BUILD)/ember-jailer: $(BUILD)/obj/jail/jailer.o $(BUILD)/libember.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) $(STATIC) -o $@ $^ $(LIBS)

# test_net makes the tap refuse writes through a link-time wrap of writev.
$(BUILD)/unit/test_net: UNIT_LDFLAGS := -Wl,--wrap=writev
$(BUILD)/unit/%: tests/unit/%.c $(BUILD)/libember.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) $(UNIT_LDFLAGS) -o $@ $< $(BUILD)/libember.a $(LIBS) -lcmocka

units: $(UNIT_BIN)

# ---- seccomp test hooks (issue 5) ----
# $(BUILD)/ember-testhooks: ember with main.c, vcpu.c and seccomp.c compiled
# with -DEMBER_TEST_HOOKS (EMBER_TEST_SECCOMP_TRIGGER=vmm|vcpu makes that
# thread call a forbidden syscall). Only tests use it; the objects listed
# before libember.a take precedence over the archive's copies.
TESTHOOKS_SRC := vmm/main.c vmm/vcpu.c jail/seccomp.c
TESTHOOKS_OBJ := $(TESTHOOKS_SRC:%.c=$(BUILD)/obj-testhooks/%.o)
$(BUILD)/obj-testhooks/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DEMBER_TEST_HOOKS -c $< -o $@
$(BUILD)/ember-testhooks: $(TESTHOOKS_OBJ) $(BUILD)/obj/gen/seccomp_blob.o $(BUILD)/libember.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)
testhooks: $(BUILD)/ember-testhooks
-include $(shell find $(BUILD)/obj-testhooks -name '*.d' 2>/dev/null)
# ---- end seccomp test hooks ----

# The freestanding test guest (tests/guest/guest.mk defines GUEST_IMAGES).
include tests/guest/guest.mk
guest: $(GUEST_IMAGES)

# ASan + UBSan variant in build/sanitize (same targets, separate objects).
sanitize:
	$(MAKE) BUILD=build/sanitize STATIC= OPT="-O1 -g -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -U_FORTIFY_SOURCE" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" ember jailer units testhooks

# Linux guest images from Debian's linux-source and busybox-static, cached
# outside the checkout (resources/build-images.sh says where).
images:
	resources/build-images.sh $(BUILD)/images

deps:
	tools/install-deps.sh

# libFuzzer harnesses (clang), in build/fuzz/; `make fuzz-smoke` runs each
# one for FUZZ_SECONDS on the committed seed corpus (tests/fuzz/corpus/).
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_FLAGS := -fsanitize=fuzzer-no-link,address,undefined -Wno-gnu-variable-sized-type-not-at-end
FUZZ_SECONDS ?= 20
fuzz:
	$(MAKE) BUILD=build/fuzz CC=clang OPT="-O1 -g" EXTRA_CFLAGS="$(FUZZ_FLAGS)" build/fuzz/libember.a
	$(MAKE) $(FUZZ_BIN)
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/libember.a
	clang -std=gnu11 -O1 -g -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined -o $@ $< \
	  build/fuzz/libember.a $(LIBS)
fuzz-smoke: fuzz
	@set -e; for f in $(FUZZ_BIN); do n=$${f##*/fuzz_}; mkdir -p build/fuzz/corpus-$$n; \
	  t=$(FUZZ_SECONDS); case $$n in api|http) t=$$((3 * $(FUZZ_SECONDS)));; esac; \
	  echo "== $$f ($$t s)"; \
	  $$f -max_total_time=$$t -print_final_stats=1 -artifact_prefix=build/fuzz/ \
	    build/fuzz/corpus-$$n tests/fuzz/corpus/$$n 2>&1 | grep -E "stat::number_of_executed_units|ERROR|SUMMARY|Done" ; \
	  test $${PIPESTATUS[0]} -eq 0; done

# Fold what fuzz-smoke found (build/fuzz/corpus-NAME) into the committed
# corpus, keeping only inputs that add coverage (libFuzzer -merge=1).
fuzz-merge: fuzz
	@set -e; for f in $(FUZZ_BIN); do n=$${f##*/fuzz_}; mkdir -p tests/fuzz/corpus/$$n build/fuzz/corpus-$$n; \
	  $$f -merge=1 tests/fuzz/corpus/$$n build/fuzz/corpus-$$n 2>&1 | grep -E "MERGE-OUTER: [0-9]+ new files" || true; done

unit: units
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# Everything that needs KVM runs through tools/with-kvm: directly where /dev/kvm works, else in a
# nested KVM machine (QEMU TCG with an SVM CPU, kvm_amd inside), started once per group.
# Units, fuzzers and image builds stay on the host.
WITH_KVM ?= tools/with-kvm
KVM_LIMIT ?= 3600
RUN_KVM = $(WITH_KVM) -t $(KVM_LIMIT) --
IT = $(PYTHON) tests/integration/run.py
STAGE = tools/stage

integration-fast: ember jailer guest testhooks
	$(RUN_KVM) $(IT) --group fast --ember $(BUILD)/ember --guest-dir $(BUILD)/guest

integration-slow: ember guest images
	$(RUN_KVM) $(IT) --group slow --ember $(BUILD)/ember --guest-dir $(BUILD)/guest \
	  --images $(BUILD)/images

# Tests that start the nested machine themselves (with-kvm, power cuts): run on the host.
integration-nested: ember guest
	$(IT) --group nested --ember $(BUILD)/ember --guest-dir $(BUILD)/guest

integration-sanitize: sanitize guest
	$(RUN_KVM) $(IT) --group fast --ember build/sanitize/ember --guest-dir $(BUILD)/guest

# Quick group: units and test-guest integration.
test-fast: all units
	$(MAKE) unit integration-fast

# Everything: dependencies, images, units, fast, slow and nested integration, the units and
# fast integration again under ASan/UBSan, the fuzzers; each stage timed (build/stages.txt).
test:
	@rm -f $(BUILD)/stages.txt
	@$(STAGE) deps -- tools/install-deps.sh
	@$(STAGE) build -- $(MAKE) all units testhooks
	@$(STAGE) images -- $(MAKE) images
	@$(STAGE) units -- $(MAKE) unit
	@$(STAGE) integration-fast -- $(MAKE) integration-fast
	@$(STAGE) integration-slow -- $(MAKE) integration-slow
	@$(STAGE) integration-nested -- $(MAKE) integration-nested
	@$(STAGE) sanitize-build -- $(MAKE) sanitize
	@$(STAGE) sanitize-units -- $(MAKE) BUILD=build/sanitize unit
	@$(STAGE) sanitize-integration -- $(MAKE) integration-sanitize
	@$(STAGE) fuzz-smoke -- $(MAKE) fuzz-smoke
	@echo "== stages (seconds):"; awk '{t += $$2; printf "   %-22s %5d s\n", $$1, $$2} END {printf "   %-22s %5d s\n", "total", t}' $(BUILD)/stages.txt

demo: all images
	BUILD=$(BUILD) tools/demo.sh

bench: all images
	$(RUN_KVM) $(PYTHON) tools/bench_boot.py --ember $(BUILD)/ember --guest-dir $(BUILD)/guest \
	  --images $(BUILD)/images --linux
	$(PYTHON) tools/bench_nested.py

install: ember jailer
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/ember $(DESTDIR)$(PREFIX)/bin/ember
	install -m 0755 $(BUILD)/ember-jailer $(DESTDIR)$(PREFIX)/bin/ember-jailer
	install -m 0755 tools/emberctl $(DESTDIR)$(PREFIX)/bin/emberctl

format:
	clang-format -i $$(git ls-files '*.c' '*.h' | grep -v '^tests/guest/')

clean:
	rm -rf build

help:
	@echo "make            build build/ember and the test guest"
	@echo "make test-fast  unit tests + test-guest integration (< 1 min)"
	@echo "make test       install deps, build images, run every test (also under ASan/UBSan)"
	@echo "make sanitize   ASan+UBSan build in build/sanitize"
	@echo "make images     build the Linux guest images (cached outside the checkout)"
	@echo "make demo       build everything and boot a demo guest"
	@echo "make bench      boot benchmark against QEMU microvm"
	@echo "make install PREFIX=/usr/local"

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
