#!/usr/bin/env python3
"""Ember test guest: wrap the guest's flat binary as a bzImage.

usage: mkbzimage.py GUEST.elf GUEST.bin OUT.bzImage

GUEST.bin is `objcopy -O binary` of GUEST.elf (linked at 0x100000, 64-bit entry
at 0x100200).  The output is a boot sector plus one setup sector carrying a
boot protocol 2.15 setup header, followed by GUEST.bin as the protected-mode
part.  The 16-bit code is only a halt loop: VMMs enter at code32_start + 0x200
in long mode (64-bit boot protocol).  init_size is taken from the ELF's
program headers (image + .bss + stacks).
"""
import struct
import sys

LOAD_ADDR = 0x100000
SETUP_SECTS = 1
START_OF_SETUP = 0x26C  # first byte after the 2.15 setup header


def elf_extent(path):
    """Lowest p_paddr and highest p_paddr + p_memsz of the PT_LOAD segments."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        sys.exit(f"{path}: not an ELF64 file")
    e_entry, e_phoff = struct.unpack_from("<QQ", data, 0x18)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
    lo, hi = None, 0
    for i in range(e_phnum):
        p_type, _, _, _, p_paddr, _, p_memsz, _ = struct.unpack_from(
            "<IIQQQQQQ", data, e_phoff + i * e_phentsize)
        if p_type == 1:  # PT_LOAD
            lo = p_paddr if lo is None else min(lo, p_paddr)
            hi = max(hi, p_paddr + p_memsz)
    return e_entry, lo, hi


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    elf, binary, out = sys.argv[1:]
    entry, lo, hi = elf_extent(elf)
    if lo != LOAD_ADDR or entry != LOAD_ADDR + 0x200:
        sys.exit(f"{elf}: must load at {LOAD_ADDR:#x} with entry at +0x200 "
                 f"(lowest {lo:#x}, entry {entry:#x})")
    with open(binary, "rb") as f:
        pm = f.read()
    init_size = (max(hi - LOAD_ADDR, len(pm)) + 0xFFF) & ~0xFFF

    setup = bytearray(512 * (1 + SETUP_SECTS))
    setup[0:4] = b"\xfa\xf4\xeb\xfd"  # boot sector: cli; hlt; jmp (back to hlt)

    def put(off, fmt, *vals):
        struct.pack_into("<" + fmt, setup, off, *vals)

    put(0x1F1, "B", SETUP_SECTS)               # setup_sects
    put(0x1F4, "I", (len(pm) + 15) // 16)      # syssize (16-byte units)
    put(0x1FE, "H", 0xAA55)                    # boot_flag
    put(0x1FA, "H", 0xFFFF)                    # vid_mode: normal
    put(0x200, "BB", 0xEB, START_OF_SETUP - 0x202)  # jmp start_of_setup
    put(0x202, "4s", b"HdrS")                  # header magic
    put(0x206, "H", 0x020F)                    # boot protocol version 2.15
    put(0x211, "B", 0x01)                      # loadflags: LOADED_HIGH
    put(0x214, "I", LOAD_ADDR)                 # code32_start
    put(0x22C, "I", 0x7FFFFFFF)                # initrd_addr_max
    put(0x230, "I", LOAD_ADDR)                 # kernel_alignment
    put(0x234, "B", 0)                         # relocatable_kernel: no
    put(0x235, "B", 12)                        # min_alignment (log2)
    put(0x236, "H", 0x3)                       # xloadflags: KERNEL_64 | CAN_BE_LOADED_ABOVE_4G
    put(0x238, "I", 4095)                      # cmdline_size
    put(0x258, "Q", LOAD_ADDR)                 # pref_address
    put(0x260, "I", init_size)                 # init_size
    setup[START_OF_SETUP:START_OF_SETUP + 4] = b"\xfa\xf4\xeb\xfd"  # cli; hlt; jmp


    with open(out, "wb") as f:
        f.write(setup)
        f.write(pm)


if __name__ == "__main__":
    main()
