/* bzimage.c - bzImage loader (Linux x86 boot protocol >= 2.12, 64-bit entry):
 * parses the setup header, loads the protected-mode part at LAYOUT_KERNEL and
 * checks that the kernel's in-place decompression (init_size) fits in RAM. */
#include "boot.h"
#include "layout.h"

#include "../vmm/base/err.h"

#include <asm/bootparam.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#define BZ_HDR_OFF 0x1f1U         /* struct setup_header in the image and the zero page */
#define BZ_HDRS_MAGIC 0x53726448U /* "HdrS" */
#define BZ_BOOT_FLAG 0xaa55U
#define BZ_MIN_VERSION 0x0206
#define BZ_XLF_VERSION 0x020c /* xloadflags appeared in 2.12 */
#define BZ_ENTRY64_OFF 0x200U /* startup_64 = load address + 0x200 */

_Static_assert(sizeof(struct setup_header) <= sizeof(((struct kernel_info *)0)->setup_header),
               "kernel_info.setup_header too small");

/* Bytes of the image needed to read every header field used here. */
#define BZ_HDR_MIN (BZ_HDR_OFF + offsetof(struct setup_header, init_size) + 4)

int bzimage_load(struct guest_mem *gm, const uint8_t *img, size_t len, const char *name,
                 struct kernel_info *ki)
{
    memset(ki, 0, sizeof(*ki));
    ki->kind = KERNEL_KIND_BZIMAGE;
    if (len < BZ_HDR_MIN)
        return err_set(-EINVAL,
                       "kernel %s: truncated bzImage (%zu bytes, the setup header needs %zu)", name,
                       len, (size_t)BZ_HDR_MIN);
    struct setup_header h;
    memcpy(&h, img + BZ_HDR_OFF, sizeof(h) < len - BZ_HDR_OFF ? sizeof(h) : len - BZ_HDR_OFF);
    if (h.boot_flag != BZ_BOOT_FLAG || h.header != BZ_HDRS_MAGIC)
        return err_set(-EINVAL,
                       "kernel %s: no bzImage setup header (boot_flag 0x%04x, header 0x%08x)", name,
                       h.boot_flag, h.header);
    if (h.version < BZ_MIN_VERSION)
        return err_set(-EINVAL, "kernel %s: boot protocol %u.%02u is older than 2.06", name,
                       h.version >> 8, h.version & 0xff);
    if (h.version < BZ_XLF_VERSION)
        return err_set(-EINVAL,
                       "kernel %s: boot protocol %u.%02u predates xloadflags (2.12): no 64-bit "
                       "entry point",
                       name, h.version >> 8, h.version & 0xff);
    if (!(h.xloadflags & XLF_KERNEL_64))
        return err_set(-EINVAL,
                       "kernel %s: bzImage has no 64-bit entry point (xloadflags 0x%x lacks "
                       "XLF_KERNEL_64)",
                       name, h.xloadflags);

    unsigned sects = h.setup_sects ? h.setup_sects : 4;
    size_t off = ((size_t)sects + 1) * 512;
    if (off >= len)
        return err_set(-EINVAL,
                       "kernel %s: setup_sects %u puts the kernel at 0x%zx, past the end of the "
                       "file (%zu bytes)",
                       name, h.setup_sects, off, len);
    uint64_t pm_size = len - off;
    if (!gm_ptr(gm, LAYOUT_KERNEL, pm_size))
        return err_set(-EINVAL,
                       "kernel %s: %llu bytes at 0x%llx do not fit in guest memory (%llu MiB)",
                       name, (unsigned long long)pm_size, (unsigned long long)LAYOUT_KERNEL,
                       (unsigned long long)(gm->size >> 20));

    /* Where startup_64 decompresses the kernel (arch/x86/boot/compressed/head_64.S):
     * the load address aligned up to kernel_alignment if relocatable, but never
     * below LOAD_PHYSICAL_ADDR (pref_address); init_size bytes from there. */
    uint64_t base = LAYOUT_KERNEL;
    if (h.relocatable_kernel && h.kernel_alignment &&
        !(h.kernel_alignment & (h.kernel_alignment - 1)))
        base = (LAYOUT_KERNEL + h.kernel_alignment - 1) & ~((uint64_t)h.kernel_alignment - 1);
    if (h.pref_address > base)
        base = h.pref_address;
    if (h.init_size == 0 || !gm_ptr(gm, base, h.init_size))
        return err_set(
            -EINVAL, "kernel %s: init_size 0x%x at 0x%llx does not fit in guest RAM below 0x%llx",
            name, h.init_size, (unsigned long long)base, (unsigned long long)gm->low_size);

    if (gm_write(gm, LAYOUT_KERNEL, img + off, pm_size) < 0) /* checked above */
        return err_set(-EFAULT, "kernel %s: cannot write the kernel to guest memory", name);

    ki->entry64 = LAYOUT_KERNEL + BZ_ENTRY64_OFF;
    ki->load_lo = LAYOUT_KERNEL;
    ki->load_hi = LAYOUT_KERNEL + pm_size;
    if (base + h.init_size > ki->load_hi)
        ki->load_hi = base + h.init_size;
    ki->boot_version = h.version;
    ki->initrd_addr_max = h.initrd_addr_max;
    ki->cmdline_size = h.cmdline_size;

    /* The setup header runs from 0x1f1 to 0x202 + the jump offset at 0x201. */
    size_t end = 0x202 + (size_t)img[0x201];
    if (end > BZ_HDR_OFF + sizeof(ki->setup_header))
        end = BZ_HDR_OFF + sizeof(ki->setup_header);
    memcpy(ki->setup_header, img + BZ_HDR_OFF, end - BZ_HDR_OFF);
    ki->setup_header_len = end - BZ_HDR_OFF;
    return 0;
}
