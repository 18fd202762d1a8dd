# Ember test guest (tests/guest/): three images of one freestanding guest.
#   guest-pvh.elf   ELF with the PVH note (XEN_ELFNOTE_PHYS32_ENTRY)
#   guest-64.elf    the same without the note: Linux 64-bit boot protocol
#   guest.bzImage   guest-64.elf's flat binary behind a bzImage setup header
# Included by the top Makefile; `make guest` builds them.

BUILD ?= build
GUEST_DIR := tests/guest
GUEST_OUT := $(BUILD)/guest
GUEST_IMAGES := $(GUEST_OUT)/guest-pvh.elf $(GUEST_OUT)/guest-64.elf $(GUEST_OUT)/guest.bzImage

GUEST_CC ?= gcc
GUEST_OBJCOPY ?= objcopy
GUEST_PYTHON ?= python3
GUEST_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -Werror -ffreestanding -nostdlib -fno-pic -fno-pie \
	-mno-red-zone -mgeneral-regs-only -fno-stack-protector -fcf-protection=none \
	-fno-asynchronous-unwind-tables -fno-tree-loop-distribute-patterns \
	-fno-delete-null-pointer-checks --param=min-pagesize=0 -MMD -MP
GUEST_LDFLAGS := -static -no-pie -nostdlib -Wl,-T,$(GUEST_DIR)/guest.ld -Wl,--build-id=none \
	-Wl,-z,noexecstack -Wl,-z,max-page-size=0x1000 -Wl,--no-warn-rwx-segments

GUEST_OBJ := $(patsubst $(GUEST_DIR)/%,$(GUEST_OUT)/obj/%.o,\
	$(GUEST_DIR)/entry.S $(GUEST_DIR)/tables.S $(GUEST_DIR)/trampoline.S \
	$(wildcard $(GUEST_DIR)/*.c))
GUEST_NOTE_OBJ := $(GUEST_OUT)/obj/pvhnote.S.o

$(GUEST_OUT)/obj/%.c.o: $(GUEST_DIR)/%.c
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -c $< -o $@

$(GUEST_OUT)/obj/%.S.o: $(GUEST_DIR)/%.S
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -c $< -o $@

$(GUEST_OUT)/guest-pvh.elf: $(GUEST_OBJ) $(GUEST_NOTE_OBJ) $(GUEST_DIR)/guest.ld
	$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@ $(GUEST_OBJ) $(GUEST_NOTE_OBJ)

$(GUEST_OUT)/guest-64.elf: $(GUEST_OBJ) $(GUEST_DIR)/guest.ld
	$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@ $(GUEST_OBJ)

$(GUEST_OUT)/guest-64.bin: $(GUEST_OUT)/guest-64.elf
	$(GUEST_OBJCOPY) -O binary $< $@

$(GUEST_OUT)/guest.bzImage: $(GUEST_OUT)/guest-64.bin $(GUEST_OUT)/guest-64.elf $(GUEST_DIR)/mkbzimage.py
	$(GUEST_PYTHON) $(GUEST_DIR)/mkbzimage.py $(GUEST_OUT)/guest-64.elf $(GUEST_OUT)/guest-64.bin $@

-include $(wildcard $(GUEST_OUT)/obj/*.d)
