/* paging.c - boot GDT/IDT at LAYOUT_GDT/LAYOUT_IDT and identity page tables
 * (PML4 -> PDPT -> PD, 512 x 2 MiB pages = first 1 GiB) for the 64-bit entry. */
#include "boot.h"
#include "layout.h"

#include "../vmm/base/err.h"

#include <errno.h>
#include <string.h>

#define PTE_P 0x1ULL
#define PTE_RW 0x2ULL
#define PTE_PS 0x80ULL

_Static_assert(LAYOUT_GDT + BOOT_GDT_ENTRIES * 8 <= LAYOUT_IDT, "GDT runs into the IDT");

int gdt_write(struct guest_mem *gm, enum boot_protocol proto)
{
    uint64_t gdt[BOOT_GDT_ENTRIES] = {
        0,
        0,
        proto == BOOT_PROTO_PVH ? BOOT_GDT_CODE32 : BOOT_GDT_CODE64,
        BOOT_GDT_DATA,
    };
    uint64_t idt = 0;
    if (gm_write(gm, LAYOUT_GDT, gdt, sizeof(gdt)) < 0 ||
        gm_write(gm, LAYOUT_IDT, &idt, sizeof(idt)) < 0)
        return err_set(-EFAULT, "boot GDT at 0x%llx is outside guest memory",
                       (unsigned long long)LAYOUT_GDT);
    return 0;
}

int paging_write(struct guest_mem *gm)
{
    uint64_t *pml4 = gm_ptr(gm, LAYOUT_PML4, 4096);
    uint64_t *pdpt = gm_ptr(gm, LAYOUT_PDPT, 4096);
    uint64_t *pd = gm_ptr(gm, LAYOUT_PD, 4096);
    if (!pml4 || !pdpt || !pd)
        return err_set(-EFAULT, "boot page tables at 0x%llx are outside guest memory",
                       (unsigned long long)LAYOUT_PML4);
    memset(pml4, 0, 4096);
    memset(pdpt, 0, 4096);
    pml4[0] = LAYOUT_PDPT | PTE_P | PTE_RW;
    pdpt[0] = LAYOUT_PD | PTE_P | PTE_RW;
    for (uint64_t i = 0; i < 512; i++)
        pd[i] = (i << 21) | PTE_P | PTE_RW | PTE_PS;
    return 0;
}
