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
LIBS := -lpthread -ljson-c

LIB_SRC := $(filter-out vmm/main.c,$(wildcard vmm/*.c boot/*.c virtio/*.c api/*.c jail/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/unit/%)

.PHONY: all ember guest units sanitize images install test test-fast test-slow \
        unit integration-fast integration-slow deps demo bench format clean help fuzz fuzz-smoke

all: ember guest

ember: $(BUILD)/ember

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libember.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/ember: $(BUILD)/obj/vmm/main.o $(BUILD)/libember.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(BUILD)/unit/%: tests/unit/%.c $(BUILD)/libember.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(BUILD)/libember.a $(LIBS) -lcmocka

units: $(UNIT_BIN)

# The freestanding test guest (tests/guest/guest.mk defines GUEST_IMAGES).
include tests/guest/guest.mk
guest: $(GUEST_IMAGES)

# ASan + UBSan variant in build/sanitize (same targets, separate objects).
sanitize:
	$(MAKE) BUILD=build/sanitize OPT="-O1 -g -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -U_FORTIFY_SOURCE" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" ember units

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

unit: units
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration-fast: ember guest
	$(PYTHON) tests/integration/run.py --group fast --ember $(BUILD)/ember --guest-dir $(BUILD)/guest

integration-slow: ember guest images
	$(PYTHON) tests/integration/run.py --group slow --ember $(BUILD)/ember --guest-dir $(BUILD)/guest \
	  --images $(BUILD)/images

# Quick group: units and test-guest integration (well under a minute).
test-fast: all units
	$(MAKE) unit integration-fast

# Everything: dependencies, images, units, fast and slow integration, and the
# same units + fast integration under ASan/UBSan.
test:
	tools/install-deps.sh
	$(MAKE) all units images
	$(MAKE) unit integration-fast integration-slow
	$(MAKE) sanitize
	$(MAKE) BUILD=build/sanitize unit
	$(PYTHON) tests/integration/run.py --group fast --ember build/sanitize/ember --guest-dir $(BUILD)/guest
	$(MAKE) fuzz-smoke

demo: all images
	BUILD=$(BUILD) tools/demo.sh

bench: all
	$(PYTHON) tools/bench_boot.py --ember $(BUILD)/ember --guest-dir $(BUILD)/guest

install: ember
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/ember $(DESTDIR)$(PREFIX)/bin/ember
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
