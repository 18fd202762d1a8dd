# Ember - top-level build. `make help` lists the targets.
SHELL := /bin/bash

PREFIX ?= /usr/local
CC ?= gcc
BUILD ?= build
PYTHON ?= /usr/bin/python3
# The layer archives' rules come before `all`; a bare `make` still builds everything.
.DEFAULT_GOAL := all

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

# Layers (README, "Layout"), each its own archive; tests/check_layers.py checks the includes, and
# `make check-layers` links every layer whole with only the layers below it, so a call that
# points up a layer does not link:
#   base    vmm/base/: errors, logging, metrics, event loop, buses, guest memory, configuration,
#           rate limiter (uses nothing above it)
#   boot, virtio, api, jail: each uses base and itself
#   top     vmm/*.c: the VM, vCPUs, devices registry, legacy devices, main
BASE_SRC := $(wildcard vmm/base/*.c)
BOOT_SRC := $(wildcard boot/*.c)
VIRTIO_SRC := $(wildcard virtio/*.c)
API_SRC := $(wildcard api/*.c)
JAIL_SRC := $(filter-out jail/jailer.c jail/seccomp_gen.c,$(wildcard jail/*.c))
TOP_SRC := $(filter-out vmm/main.c,$(wildcard vmm/*.c))
LAYERS := top api jail virtio boot base
layer_objs = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
$(BUILD)/libbase.a: $(call layer_objs,$(BASE_SRC))
$(BUILD)/libboot.a: $(call layer_objs,$(BOOT_SRC))
$(BUILD)/libvirtio.a: $(call layer_objs,$(VIRTIO_SRC))
$(BUILD)/libapi.a: $(call layer_objs,$(API_SRC))
$(BUILD)/libjail.a: $(call layer_objs,$(JAIL_SRC))
$(BUILD)/libtop.a: $(call layer_objs,$(TOP_SRC))
$(BUILD)/lib%.a:
	@rm -f $@
	ar rcs $@ $^
# Everything, top first (single-pass static linking).
LIBS_ALL := $(foreach l,$(LAYERS),$(BUILD)/lib$(l).a)
LIB_SRC := $(BASE_SRC) $(BOOT_SRC) $(VIRTIO_SRC) $(API_SRC) $(JAIL_SRC) $(TOP_SRC)

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/unit/%)

.PHONY: all ember jailer guest snap-tools units testhooks sanitize images install test test-fast test-slow \
        unit integration-fast integration-slow integration-nested integration-sanitize deps demo \
        bench bench-snapshot bench-density floor format clean help fuzz fuzz-smoke fuzz-merge

all: ember jailer guest snap-tools

ember: $(BUILD)/ember
jailer: $(BUILD)/ember-jailer

# Snapshot tools: the example Uffd page-fault handler, and Diff-onto-base merging.
SNAP_TOOLS := $(BUILD)/uffd_handler $(BUILD)/rebase-snap
snap-tools: $(SNAP_TOOLS)
$(BUILD)/uffd_handler: tools/uffd_handler.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $<
$(BUILD)/rebase-snap: tools/rebase-snap.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $<

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# The seccomp filters are compiled at build time (seccomp-gen runs the same
# tables through libseccomp) and linked into ember, which then installs them
# without compiling anything at start.
$(BUILD)/seccomp-gen: $(BUILD)/obj/jail/seccomp_gen.o $(BUILD)/libjail.a $(BUILD)/libbase.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)
$(BUILD)/gen/seccomp_blob.c: $(BUILD)/seccomp-gen
	@mkdir -p $(dir $@)
	$< $@
$(BUILD)/obj/gen/seccomp_blob.o: $(BUILD)/gen/seccomp_blob.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/ember: $(BUILD)/obj/vmm/main.o $(BUILD)/obj/gen/seccomp_blob.o $(LIBS_ALL)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) $(STATIC) -o $@ $^ $(LIBS)

$(BUILD)/ember-jailer: $(BUILD)/obj/jail/jailer.o $(BUILD)/libjail.a $(BUILD)/libbase.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) $(STATIC) -o $@ $^ $(LIBS)

# Link-time wraps the unit tests observe the system through: test_net makes the tap refuse
# writes (writev); test_blk counts the Sync engine's fdatasync calls and the IORING_OP_FSYNC
# requests the Async engine submits, so a flush that does not reach the file fails a test.
$(BUILD)/unit/test_net: UNIT_LDFLAGS := -Wl,--wrap=writev
$(BUILD)/unit/test_blk: UNIT_LDFLAGS := -Wl,--wrap=fdatasync -Wl,--wrap=io_uring_submit \
    -Wl,--wrap=io_uring_submit_and_wait
$(BUILD)/unit/%: tests/unit/%.c $(LIBS_ALL)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) $(UNIT_LDFLAGS) -o $@ $< $(LIBS_ALL) $(LIBS) -lcmocka

units: $(UNIT_BIN)

# The raw-KVM floor (tools/kvm_floor.c), static like ember: what exec -> exit costs at least.
$(BUILD)/kvm-floor: tools/kvm_floor.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) $(STATIC) -o $@ $<
floor: $(BUILD)/kvm-floor

# The layer check: includes (tests/check_layers.py), then each layer linked whole with only the
# layers below it into a throwaway program (an upward call is an undefined symbol).
check-layers: $(LIBS_ALL)
	$(PYTHON) tests/check_layers.py
	@set -e; for l in base boot virtio api jail; do \
	  below=""; case $$l in base) ;; *) below=$(BUILD)/libbase.a;; esac; \
	  echo 'int main(void) { return 0; }' | $(CC) -x c - -x none -o $(BUILD)/.layer-$$l \
	    -Wl,--whole-archive $(BUILD)/lib$$l.a -Wl,--no-whole-archive $$below $(LIBS) \
	    || { echo "check-layers: layer $$l uses something above it (undefined symbols above)"; exit 1; }; \
	  rm -f $(BUILD)/.layer-$$l; echo "check-layers: $$l links with only: $${below:-(nothing)}"; done

# ember-testhooks: ember plus tests/hooks/seccomp_trigger.c, wrapped around seccomp_install at
# link time (EMBER_TEST_SECCOMP_TRIGGER=vmm|vcpu makes that thread call a forbidden syscall
# once its filter is in). Only tests use it; ember itself carries no hook.
$(BUILD)/ember-testhooks: $(BUILD)/obj/vmm/main.o $(BUILD)/obj/gen/seccomp_blob.o \
    $(BUILD)/obj/tests/hooks/seccomp_trigger.o $(LIBS_ALL)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -Wl,--wrap=seccomp_install -o $@ $^ $(LIBS)
testhooks: $(BUILD)/ember-testhooks

# The freestanding test guest (tests/guest/guest.mk defines GUEST_IMAGES).
include tests/guest/guest.mk
guest: $(GUEST_IMAGES)

# ASan + UBSan variant in build/sanitize (same targets, separate objects).
sanitize:
	$(MAKE) BUILD=build/sanitize STATIC= OPT="-O1 -g -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -U_FORTIFY_SOURCE" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" ember jailer units testhooks snap-tools

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
	$(MAKE) BUILD=build/fuzz CC=clang OPT="-O1 -g" EXTRA_CFLAGS="$(FUZZ_FLAGS)" $(LIBS_ALL:$(BUILD)/%=build/fuzz/%)
	$(MAKE) $(FUZZ_BIN)
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIBS_ALL:$(BUILD)/%=build/fuzz/%)
	clang -std=gnu11 -O1 -g -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined -o $@ $< \
	  $(LIBS_ALL:$(BUILD)/%=build/fuzz/%) $(LIBS)
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
# A test group runs again from its start if the nested machine wedges under it (with-kvm's 123:
# its init stopped answering, which the emulator does now and then); every test makes its own
# scratch, so a second run is a clean one. Benchmarks are not retried.
RUN_TESTS_KVM = $(WITH_KVM) -t $(KVM_LIMIT) --retry-wedged 1 --
IT = $(PYTHON) tests/integration/run.py
STAGE = tools/stage

integration-fast: ember jailer guest testhooks
	$(RUN_TESTS_KVM) $(IT) --group fast --ember $(BUILD)/ember --guest-dir $(BUILD)/guest

integration-slow: ember guest images
	$(RUN_TESTS_KVM) $(IT) --group slow --ember $(BUILD)/ember --guest-dir $(BUILD)/guest \
	  --images $(BUILD)/images

# Tests that start the nested machine themselves (with-kvm, power cuts): run on the host.
integration-nested: ember guest
	$(IT) --group nested --ember $(BUILD)/ember --guest-dir $(BUILD)/guest

integration-sanitize: sanitize guest
	$(RUN_TESTS_KVM) $(IT) --group fast --ember build/sanitize/ember --guest-dir $(BUILD)/guest

# Quick group: the layer check, units and test-guest integration.
test-fast: all units
	$(MAKE) check-layers unit integration-fast

# Everything: dependencies, images, units, fast, slow and nested integration, the units and
# fast integration again under ASan/UBSan, the fuzzers; each stage timed (build/stages.txt).
test:
	@rm -f $(BUILD)/stages.txt
	@$(STAGE) deps -- tools/install-deps.sh
	@$(STAGE) build -- $(MAKE) all units testhooks
	@$(STAGE) images -- $(MAKE) images
	@$(STAGE) units -- $(MAKE) check-layers unit
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

# Density (tools/bench_density.py): N idle test guests at once, Ember through the API and the
# jailer next to QEMU's microvm and a trivial process, in one nested machine of DENSITY_MEM MiB;
# the floor, and churn. JSON in $(BUILD)/density/, the plot in docs/density.png. QEMU runs at
# every N (13.3 MiB of host memory per QEMU VM: 13 GiB at N = 1000, so the machine has 20 GiB).
DENSITY_N ?= 10,100,500,1000
DENSITY_QEMU_MAX ?= 1000
DENSITY_CYCLES ?= 1000
DENSITY_MEM ?= 20480
DENSITY = $(PYTHON) tools/bench_density.py
DENSITY_ARGS = --ember $(BUILD)/ember --guest-dir $(BUILD)/guest
# Snapshots: create, load, load -> first guest write vs cold boots and QEMU's -incoming restore,
# and host memory for N clones of one snapshot vs N cold boots (tools/bench_snapshot.py).
SNAP_CLONES ?= 1,10,100
bench-snapshot: all images
	@mkdir -p $(BUILD)/bench
	$(WITH_KVM) -t $(KVM_LIMIT) -m 16384 -- $(PYTHON) tools/bench_snapshot.py --ember $(BUILD)/ember \
	  --guest-dir $(BUILD)/guest --images $(BUILD)/images --clones $(SNAP_CLONES) \
	  --json $(BUILD)/bench/snapshot.json \
	  --png $(BUILD)/bench/snapshot-memory.png

bench-density: all floor
	@mkdir -p $(BUILD)/density
	$(WITH_KVM) -t $(KVM_LIMIT) -m $(DENSITY_MEM) -- bash -c '\
	  $(DENSITY) floor $(DENSITY_ARGS) --floor $(BUILD)/kvm-floor --json $(BUILD)/density/floor.json && \
	  $(DENSITY) density $(DENSITY_ARGS) -N $(DENSITY_N) --qemu-max $(DENSITY_QEMU_MAX) \
	    --json $(BUILD)/density/density.json && \
	  $(DENSITY) churn $(DENSITY_ARGS) --cycles $(DENSITY_CYCLES) --json $(BUILD)/density/churn.json'
	$(DENSITY) plot $(BUILD)/density/density.json --png docs/density.png

install: ember jailer
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/ember $(DESTDIR)$(PREFIX)/bin/ember
	install -m 0755 $(BUILD)/ember-jailer $(DESTDIR)$(PREFIX)/bin/ember-jailer
	install -m 0755 tools/emberctl $(DESTDIR)$(PREFIX)/bin/emberctl
ifneq ($(FC_LINKS),0)
	# Firecracker's names, for clients that run `firecracker` and `jailer` (Kata, firectl):
	# invoked under these names Ember and its jailer use Firecracker's defaults. FC_LINKS=0
	# skips them.
	ln -sf ember $(DESTDIR)$(PREFIX)/bin/firecracker
	ln -sf ember-jailer $(DESTDIR)$(PREFIX)/bin/jailer
endif

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
	@echo "make bench-snapshot  snapshot create/restore vs cold boot and QEMU; clone memory"
	@echo "make bench-density  N idle VMs at once, the raw-KVM floor, churn (tools/bench_density.py)"
	@echo "make install PREFIX=/usr/local   (also links firecracker and jailer; FC_LINKS=0: not)"

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
