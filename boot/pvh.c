/* pvh.c - PVH boot data: hvm_start_info (version 1) at LAYOUT_PVH_INFO, the
 * initrd as module 0, and the memory map (see pvh.h for the placement). */
#include "boot.h"
#include "layout.h"
#include "pvh.h"

#include "../vmm/base/err.h"

#include <errno.h>
#include <string.h>

_Static_assert(LAYOUT_PVH_INFO + sizeof(struct hvm_start_info) <= PVH_MODLIST_ADDR,
               "start_info runs into the module list");
_Static_assert(PVH_MODLIST_ADDR + sizeof(struct hvm_modlist_entry) <= PVH_MEMMAP_ADDR,
               "module list runs into the memmap");
_Static_assert(PVH_MEMMAP_ADDR + PVH_MEMMAP_MAX * sizeof(struct hvm_memmap_table_entry) <=
                   LAYOUT_ZERO_PAGE,
               "PVH memmap runs into the zero page");

int pvh_write(struct guest_mem *gm, uint64_t initrd_addr, uint64_t initrd_size)
{
    struct e820_entry e820[PVH_MEMMAP_MAX];
    int n = e820_build(gm, e820, PVH_MEMMAP_MAX);
    if (n < 0)
        return n;
    struct hvm_memmap_table_entry map[PVH_MEMMAP_MAX];
    memset(map, 0, sizeof(map));
    for (int i = 0; i < n; i++) {
        map[i].addr = e820[i].addr;
        map[i].size = e820[i].size;
        map[i].type =
            e820[i].type == E820_RAM ? XEN_HVM_MEMMAP_TYPE_RAM : XEN_HVM_MEMMAP_TYPE_RESERVED;
    }

    struct hvm_start_info si = {
        .magic = XEN_HVM_START_MAGIC_VALUE,
        .version = 1,
        .cmdline_paddr = LAYOUT_CMDLINE,
        .memmap_paddr = PVH_MEMMAP_ADDR,
        .memmap_entries = (uint32_t)n,
    };
    struct hvm_modlist_entry mod = {.paddr = initrd_addr, .size = initrd_size};
    if (initrd_size) {
        si.nr_modules = 1;
        si.modlist_paddr = PVH_MODLIST_ADDR;
    }
    if (gm_write(gm, LAYOUT_PVH_INFO, &si, sizeof(si)) < 0 ||
        (initrd_size && gm_write(gm, PVH_MODLIST_ADDR, &mod, sizeof(mod)) < 0) ||
        gm_write(gm, PVH_MEMMAP_ADDR, map, (size_t)n * sizeof(map[0])) < 0)
        return err_set(-EFAULT, "PVH start info at 0x%llx is outside guest memory",
                       (unsigned long long)LAYOUT_PVH_INFO);
    return 0;
}
