/* Ember test guest: extend the static 0-4 GiB identity map (tables.S) over
 * RAM above 4 GiB.  Runs at CPL3: the page tables are user-accessible, so
 * filling them here costs no interpreted CPL0 instructions; one CR3 reload
 * through the gate then makes the new entries visible. */
#include "guest.h"

#define MAX_HIGH_GIB 60 /* 2 MiB-page directories for 4..64 GiB */

extern u64 pdpt[512];
/* Not in the cleared .bss: each directory is filled completely before use. */
static u64 high_pd[MAX_HIGH_GIB][512] __attribute__((aligned(4096), section(".bss.noclear")));

u64 mapped_top = 4 * GiB;

void paging_map_ram(const struct boot_info *bi)
{
	u64 top = 0;
	for (u32 i = 0; i < bi->nmap; i++) {
		const struct mem_range *r = &bi->map[i];
		if (r->type == 1 && r->addr + r->size > top && r->addr + r->size >= r->addr)
			top = r->addr + r->size;
	}
	if (top <= 4 * GiB)
		return;
	u64 gib = (top + GiB - 1) / GiB;
	if (gib > 4 + MAX_HIGH_GIB)
		gib = 4 + MAX_HIGH_GIB;
	for (u64 g = 4; g < gib; g++) {
		u64 *pd = high_pd[g - 4];
		for (u64 j = 0; j < 512; j++)
			pd[j] = (g * GiB + j * (2ULL << 20)) | 0x87; /* P | W | U | PS */
		pdpt[g] = (u64)(uintptr_t)pd | 0x7;
	}
	sys_simple(SYS_FLUSH_TLB);
	mapped_top = gib * GiB;
}
