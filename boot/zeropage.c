/* zeropage.c - the Linux 64-bit boot protocol's zero page (struct boot_params)
 * at LAYOUT_ZERO_PAGE: setup header, command line, initrd and e820 map. */
#include "boot.h"
#include "layout.h"

#include "../vmm/base/err.h"

#include <asm/bootparam.h>
#include <errno.h>
#include <string.h>

#define ZP_HDR_OFF 0x1f1U

_Static_assert(sizeof(struct boot_params) == 4096, "boot_params layout");
_Static_assert(offsetof(struct boot_params, hdr) == ZP_HDR_OFF, "boot_params.hdr offset");
_Static_assert(sizeof(struct e820_entry) == sizeof(struct boot_e820_entry), "e820 entry layout");
_Static_assert(ZP_HDR_OFF + sizeof(((struct kernel_info *)0)->setup_header) <=
                   offsetof(struct boot_params, edd_mbr_sig_buffer),
               "setup header copy overruns the zero page's header area");

int zeropage_write(struct guest_mem *gm, const struct kernel_info *ki, uint64_t initrd_addr,
                   uint64_t initrd_size)
{
    struct boot_params bp;
    memset(&bp, 0, sizeof(bp));
    struct setup_header *h = &bp.hdr;
    if (ki->kind == KERNEL_KIND_BZIMAGE) {
        memcpy((uint8_t *)&bp + ZP_HDR_OFF, ki->setup_header, ki->setup_header_len);
    } else {
        /* A vmlinux has no setup header: synthesize what the kernel reads. */
        h->boot_flag = 0xaa55;
        h->header = 0x53726448; /* "HdrS" */
        h->version = 0x020f;
        h->kernel_alignment = 0x1000000;
        h->cmdline_size = LAYOUT_CMDLINE_MAX - 1;
        h->initrd_addr_max = BOOT_INITRD_ADDR_MAX_DEFAULT;
    }
    h->type_of_loader = 0xff; /* undefined boot loader */
    h->loadflags |= LOADED_HIGH;
    h->cmd_line_ptr = (uint32_t)LAYOUT_CMDLINE;
    bp.ext_cmd_line_ptr = (uint32_t)(LAYOUT_CMDLINE >> 32);
    h->ramdisk_image = (uint32_t)initrd_addr;
    h->ramdisk_size = (uint32_t)initrd_size;
    bp.ext_ramdisk_image = (uint32_t)(initrd_addr >> 32);
    bp.ext_ramdisk_size = (uint32_t)(initrd_size >> 32);

    struct e820_entry e820[E820_MAX_ENTRIES_ZEROPAGE];
    int n = e820_build(gm, e820, E820_MAX_ENTRIES_ZEROPAGE);
    if (n < 0)
        return n;
    memcpy(bp.e820_table, e820, (size_t)n * sizeof(e820[0]));
    bp.e820_entries = (uint8_t)n;

    if (gm_write(gm, LAYOUT_ZERO_PAGE, &bp, sizeof(bp)) < 0)
        return err_set(-EFAULT, "zero page at 0x%llx is outside guest memory",
                       (unsigned long long)LAYOUT_ZERO_PAGE);
    return 0;
}
