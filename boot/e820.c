/* e820.c - the guest's physical memory map (e820), shared by the zero page
 * and the PVH memmap. */
#include "boot.h"
#include "layout.h"

#include "../vmm/base/err.h"

#include <errno.h>

/* Legacy layout below 1 MiB: conventional memory up to the EBDA, then the
 * EBDA, VGA hole and BIOS area, reported reserved. */
#define E820_LOW_END LAYOUT_EBDA

int e820_build(const struct guest_mem *gm, struct e820_entry *out, int max)
{
    if (gm->low_size <= LAYOUT_HIMEM || gm->size < gm->low_size)
        return err_set(-EINVAL,
                       "guest memory: %llu KiB is too small for an e820 map (needs more than %llu "
                       "KiB)",
                       (unsigned long long)(gm->low_size >> 10),
                       (unsigned long long)(LAYOUT_HIMEM >> 10));
    struct e820_entry e[4];
    int n = 0;
    e[n++] = (struct e820_entry){0, E820_LOW_END, E820_RAM};
    e[n++] = (struct e820_entry){E820_LOW_END, LAYOUT_HIMEM - E820_LOW_END, E820_RESERVED};
    e[n++] = (struct e820_entry){LAYOUT_HIMEM, gm->low_size - LAYOUT_HIMEM, E820_RAM};
    if (gm->size > gm->low_size)
        e[n++] = (struct e820_entry){LAYOUT_MMIO_GAP_END, gm->size - gm->low_size, E820_RAM};
    if (n > max)
        return err_set(-EINVAL, "e820: %d entries do not fit in a table of %d", n, max);
    for (int i = 0; i < n; i++)
        out[i] = e[i];
    return n;
}
