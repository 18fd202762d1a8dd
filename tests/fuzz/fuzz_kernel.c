/* fuzz_kernel.c - libFuzzer harness: kernel image parsing and loading (ELF
 * with PVH notes, bzImage setup header) into a small guest memory. Any input
 * must either load inside guest RAM or fail with -errno; never crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../boot/boot.h"
#include "../../boot/layout.h"
#include "../../vmm/base/guest_mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct guest_mem gm;
    if (!gm.host && guest_mem_init(&gm, 64 << 20, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END))
        abort();
    struct kernel_info ki;
    if (kernel_load(&gm, data, size, "fuzz", &ki) == 0) {
        if (ki.load_hi > gm.size || ki.load_lo > ki.load_hi)
            abort(); /* a successful load must lie inside guest RAM */
    }
    return 0;
}
