/* boot.h - put a kernel into guest memory and say how to enter it.
 *
 * boot_load() reads the kernel (ELF vmlinux or bzImage) and optional initrd,
 * and writes everything the guest needs before its first instruction: kernel,
 * initrd (page-aligned at the top of low RAM), command line, e820 map,
 * zero page (Linux 64-bit protocol) or hvm_start_info + memmap (PVH), MP
 * table, GDT and identity page tables. The caller (vmm/cpu.c) then loads the
 * registers described by struct boot_entry.
 *
 * On failure every function returns -errno and records one line with
 * err_set() that names the file or field at fault.
 */
#ifndef EMBER_BOOT_H
#define EMBER_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "../vmm/base/guest_mem.h"

enum boot_protocol {
    BOOT_PROTO_AUTO = 0, /* PVH if the ELF has the note, else Linux 64-bit */
    BOOT_PROTO_PVH,      /* 32-bit protected mode, rbx = hvm_start_info */
    BOOT_PROTO_LINUX64,  /* long mode, rsi = zero page */
};

struct boot_spec {
    const char *kernel_path;
    const char *initrd_path; /* NULL: none */
    const char *cmdline;     /* full command line, already assembled */
    enum boot_protocol proto;
    unsigned vcpus; /* for the MP table */
};

/* How the BSP must be started. GDT, page tables and boot data are already in
 * guest memory when boot_load() returns. */
struct boot_entry {
    enum boot_protocol proto; /* PVH or LINUX64, never AUTO */
    uint64_t rip;
    uint64_t rsi; /* LINUX64: zero page */
    uint64_t rbx; /* PVH: hvm_start_info */
    uint64_t rsp;
    uint64_t kernel_end;  /* first byte after the loaded kernel image */
    uint64_t initrd_addr; /* 0 if none */
    uint64_t initrd_size;
};

int boot_load(struct guest_mem *gm, const struct boot_spec *spec, struct boot_entry *out);

/* ---- The BSP state vmm/cpu.c must load (KVM_SET_SREGS / KVM_SET_REGS). ----
 *
 * GDT at LAYOUT_GDT, 4 entries (GDTR base LAYOUT_GDT, limit BOOT_GDT_LIMIT):
 *   0x00 null, 0x08 null, 0x10 code (BOOT_SEL_CODE), 0x18 data (BOOT_SEL_DATA).
 * Linux's __BOOT_CS/__BOOT_DS are 0x10/0x18. There is no room for a TSS slot
 * (the IDT follows at LAYOUT_IDT); TR only needs valid hidden state.
 * IDTR: base LAYOUT_IDT, limit 0 (no handlers; the guest installs its own).
 *
 * All segments: base 0, limit 0xffffffff (G=1, 4 KiB granularity), S=1,
 * DPL 0, present. Code type 0xb (execute/read, accessed), data type 0x3
 * (read/write, accessed). DS = ES = FS = GS = SS = BOOT_SEL_DATA, D/B=1.
 * TR: base 0, limit 0x67, type 0xb (busy TSS), present, S=0; no GDT slot
 * backs it (vmm/vcpu.c uses selector 0x20), only the hidden state matters.
 * LDTR: selector 0, unusable. RFLAGS = 0x2 (IF clear). Other GPRs 0.
 *
 * BOOT_PROTO_LINUX64 (Linux 64-bit boot protocol):
 *   CR0  = BOOT_CR0_LINUX64  (PE | ET | PG; NE may be added)
 *   CR3  = LAYOUT_PML4       (PML4 -> PDPT -> PD: 512 x 2 MiB, identity 0..1 GiB)
 *   CR4  = BOOT_CR4_LINUX64  (PAE)
 *   EFER = BOOT_EFER_LINUX64 (LME | LMA)
 *   CS   = 0x10, L=1, D/B=0 (GDT entry BOOT_GDT_CODE64)
 *   RIP = entry.rip, RSI = entry.rsi (zero page), RSP = RBP = entry.rsp.
 *
 * BOOT_PROTO_PVH (Xen PVH entry, 32-bit protected mode, paging off):
 *   CR0  = BOOT_CR0_PVH (PE | ET), CR3 = 0, CR4 = 0, EFER = 0
 *   CS   = 0x10, L=0, D/B=1 (GDT entry BOOT_GDT_CODE32)
 *   RIP = entry.rip (32-bit), RBX = entry.rbx (hvm_start_info), RSP = entry.rsp.
 *
 * The identity page tables are written for both protocols (PVH ignores them).
 */
#define BOOT_SEL_CODE 0x10
#define BOOT_SEL_DATA 0x18
#define BOOT_GDT_ENTRIES 4
#define BOOT_GDT_LIMIT (BOOT_GDT_ENTRIES * 8 - 1)
#define BOOT_GDT_CODE64 0x00af9b000000ffffULL /* 64-bit code, G, L */
#define BOOT_GDT_CODE32 0x00cf9b000000ffffULL /* 32-bit flat code, G, D/B */
#define BOOT_GDT_DATA 0x00cf93000000ffffULL   /* flat data, G, D/B */

#define BOOT_CR0_LINUX64 0x80000011ULL /* PG | ET | PE */
#define BOOT_CR4_LINUX64 0x20ULL       /* PAE */
#define BOOT_EFER_LINUX64 0x500ULL     /* LMA | LME */
#define BOOT_CR0_PVH 0x11ULL           /* ET | PE */
#define BOOT_RFLAGS 0x2ULL

/* Guests need at least this much RAM (boot data below 1 MiB, kernel at 1 MiB). */
#define BOOT_MIN_MEM (2ULL << 20)
/* Largest kernel file boot_load() reads. */
#define BOOT_KERNEL_MAX (512ULL << 20)
/* Highest initrd byte when the kernel does not say (boot protocol default). */
#define BOOT_INITRD_ADDR_MAX_DEFAULT 0x37ffffffULL
/* The identity map covers [0, BOOT_IDENTITY_MAP_END). */
#define BOOT_IDENTITY_MAP_END (1ULL << 30)

/* ---- Pieces, exposed for unit tests and fuzzing. ---- */

#define KERNEL_KIND_ELF 1
#define KERNEL_KIND_BZIMAGE 2

struct kernel_info {
    int kind;
    uint64_t entry64;   /* 64-bit entry (ELF e_entry, or bzImage load + 0x200) */
    uint64_t pvh_entry; /* 32-bit PVH entry from XEN_ELFNOTE_PHYS32_ENTRY, 0 if absent */
    uint64_t load_lo;   /* lowest guest-physical byte written */
    uint64_t load_hi;   /* first guest-physical byte after the image */
    /* bzImage only: */
    uint16_t boot_version;
    uint32_t initrd_addr_max;
    uint32_t cmdline_size;      /* max command line length the kernel accepts */
    uint8_t setup_header[0x80]; /* bytes 0x1f1..0x270 of the image, for the zero page */
    size_t setup_header_len;
};

/* Identify and load a kernel image held in memory. `name` names it in errors. */
int kernel_load(struct guest_mem *gm, const uint8_t *img, size_t len, const char *name,
                struct kernel_info *ki);
int elf_load(struct guest_mem *gm, const uint8_t *img, size_t len, const char *name,
             struct kernel_info *ki);
int bzimage_load(struct guest_mem *gm, const uint8_t *img, size_t len, const char *name,
                 struct kernel_info *ki);

#define E820_RAM 1
#define E820_RESERVED 2
struct e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
} __attribute__((packed));

/* The e820 map for guest memory `gm`; returns the entry count (<= max) or -errno. */
int e820_build(const struct guest_mem *gm, struct e820_entry *out, int max);

/* Check and copy the command line to LAYOUT_CMDLINE. `limit` is the longest
 * accepted length excluding NUL (LAYOUT_CMDLINE_MAX - 1, or less if the kernel
 * says so). */
int cmdline_write(struct guest_mem *gm, const char *cmdline, size_t limit);

/* Append " word" to a command line buffer of capacity `cap`; -E2BIG if it
 * would not fit. Used to add virtio_mmio.device=... and root= entries. */
int cmdline_append(char *buf, size_t cap, const char *word);

/* Write an Intel MP table (floating pointer + config table) for `vcpus`
 * processors, one IOAPIC and ISA interrupt routing, at LAYOUT_EBDA. */
int mptable_write(struct guest_mem *gm, unsigned vcpus);

/* Where an initrd of `size` bytes goes: page-aligned, as high as possible
 * below min(low RAM end, initrd_addr_max + 1), not below ki->load_hi.
 * `name` (the initrd path) names it in errors. */
int initrd_place(const struct guest_mem *gm, const struct kernel_info *ki, uint64_t size,
                 const char *name, uint64_t *addr);

/* Linux 64-bit protocol: the zero page (struct boot_params) at
 * LAYOUT_ZERO_PAGE, with the kernel's setup header (bzImage) or a synthesized
 * one (ELF), command line pointer, initrd and e820 map. */
int zeropage_write(struct guest_mem *gm, const struct kernel_info *ki, uint64_t initrd_addr,
                   uint64_t initrd_size);

/* PVH: hvm_start_info at LAYOUT_PVH_INFO, then the module list (if an initrd)
 * and the memory map (see pvh.h for the exact addresses). */
int pvh_write(struct guest_mem *gm, uint64_t initrd_addr, uint64_t initrd_size);

/* The 4-entry GDT at LAYOUT_GDT (code segment per protocol) and an empty IDT. */
int gdt_write(struct guest_mem *gm, enum boot_protocol proto);

/* PML4/PDPT/PD identity-mapping [0, 1 GiB) with 2 MiB pages. */
int paging_write(struct guest_mem *gm);

#endif
