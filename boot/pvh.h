/* pvh.h - Xen PVH boot ABI structures (xen/include/public/arch-x86/hvm/start_info.h),
 * our own definitions, version 1, and where Ember puts them. */
#ifndef EMBER_PVH_H
#define EMBER_PVH_H

#include <stdint.h>

#include "layout.h"

#define XEN_HVM_START_MAGIC_VALUE 0x336ec578U
#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* hvm_memmap_table_entry.type values (same numbering as e820). */
#define XEN_HVM_MEMMAP_TYPE_RAM 1
#define XEN_HVM_MEMMAP_TYPE_RESERVED 2

struct hvm_start_info {
    uint32_t magic;          /* XEN_HVM_START_MAGIC_VALUE */
    uint32_t version;        /* 1 */
    uint32_t flags;          /* SIF_xxx, 0 */
    uint32_t nr_modules;     /* entries at modlist_paddr */
    uint64_t modlist_paddr;  /* struct hvm_modlist_entry[nr_modules] */
    uint64_t cmdline_paddr;  /* NUL-terminated kernel command line */
    uint64_t rsdp_paddr;     /* ACPI RSDP, 0: none */
    uint64_t memmap_paddr;   /* struct hvm_memmap_table_entry[memmap_entries] (v1) */
    uint32_t memmap_entries; /* (v1) */
    uint32_t reserved;       /* must be zero */
};

struct hvm_modlist_entry {
    uint64_t paddr;
    uint64_t size;
    uint64_t cmdline_paddr;
    uint64_t reserved;
};

struct hvm_memmap_table_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t reserved;
};

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info layout");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry layout");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry layout");

/* Placement inside the PVH page at LAYOUT_PVH_INFO (the zero page follows at 0x7000). */
#define PVH_MODLIST_ADDR (LAYOUT_PVH_INFO + 0x40)
#define PVH_MEMMAP_ADDR (LAYOUT_PVH_INFO + 0x80)
#define PVH_MEMMAP_MAX 16

#endif
