/* Ember test guest: read what the VMM handed over, for either entry path,
 * into one struct boot_info: command line, memory map, initrd.
 *   PVH:     struct hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h)
 *   linux64: struct boot_params, the "zero page" (asm/bootparam.h) */
#include "guest.h"

/* struct hvm_start_info */
#define HVM_START_MAGIC 0x336ec578
#define SI_MAGIC 0
#define SI_VERSION 4
#define SI_NR_MODULES 12
#define SI_MODLIST_PADDR 16
#define SI_CMDLINE_PADDR 24
#define SI_MEMMAP_PADDR 40
#define SI_MEMMAP_ENTRIES 48
/* struct hvm_modlist_entry: u64 paddr, size, cmdline_paddr, reserved */
/* struct hvm_memmap_table_entry: u64 addr, size; u32 type, reserved */
#define SI_MEMMAP_ENTRY_SIZE 24

/* struct boot_params */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_CMD_LINE_PTR 0x228
#define BP_E820_TABLE 0x2d0
#define BP_E820_ENTRY_SIZE 20 /* packed: u64 addr, u64 size, u32 type */

/* Boot structures must sit below 4 GiB: only that much is mapped so far. */
static int low(u64 pa, u64 len)
{
	return pa != 0 && pa < 4 * GiB && len <= 4 * GiB - pa;
}

static void add_range(struct boot_info *bi, u64 addr, u64 size, u32 type)
{
	if (bi->nmap < MAX_MAP)
		bi->map[bi->nmap++] = (struct mem_range){addr, size, type};
}

static void parse_pvh(struct boot_info *bi, u64 si)
{
	if (!low(si, 56) || peek32(si + SI_MAGIC) != HVM_START_MAGIC) {
		bi->error = "bad hvm_start_info magic";
		return;
	}
	u64 cmdline = peek64(si + SI_CMDLINE_PADDR);
	if (low(cmdline, 1))
		bi->cmdline = (const char *)(uintptr_t)cmdline;

	u64 mods = peek64(si + SI_MODLIST_PADDR);
	if (peek32(si + SI_NR_MODULES) >= 1 && low(mods, 32)) {
		bi->initrd_addr = peek64(mods);
		bi->initrd_size = peek64(mods + 8);
	}

	if (peek32(si + SI_VERSION) < 1)
		return; /* no memory map before version 1 */
	u64 map = peek64(si + SI_MEMMAP_PADDR);
	u32 n = peek32(si + SI_MEMMAP_ENTRIES);
	if (n > MAX_MAP)
		n = MAX_MAP;
	if (!low(map, (u64)n * SI_MEMMAP_ENTRY_SIZE))
		return;
	for (u32 i = 0; i < n; i++) {
		u64 e = map + (u64)i * SI_MEMMAP_ENTRY_SIZE;
		add_range(bi, peek64(e), peek64(e + 8), peek32(e + 16));
	}
}

static void parse_zero_page(struct boot_info *bi, u64 bp)
{
	if (!low(bp, 4096)) {
		bi->error = "bad boot_params pointer";
		return;
	}
	u64 cmdline = peek32(bp + BP_CMD_LINE_PTR) | (u64)peek32(bp + BP_EXT_CMD_LINE_PTR) << 32;
	if (low(cmdline, 1))
		bi->cmdline = (const char *)(uintptr_t)cmdline;

	bi->initrd_addr = peek32(bp + BP_RAMDISK_IMAGE) | (u64)peek32(bp + BP_EXT_RAMDISK_IMAGE) << 32;
	bi->initrd_size = peek32(bp + BP_RAMDISK_SIZE) | (u64)peek32(bp + BP_EXT_RAMDISK_SIZE) << 32;

	u32 n = peek8(bp + BP_E820_ENTRIES);
	if (n > MAX_MAP)
		n = MAX_MAP;
	for (u32 i = 0; i < n; i++) {
		u64 e = bp + BP_E820_TABLE + (u64)i * BP_E820_ENTRY_SIZE;
		add_range(bi, peek64(e), peek64(e + 8), peek32(e + 16));
	}
}

void bootinfo_parse(struct boot_info *bi, u64 ptr, int entry)
{
	bi->entry = entry;
	if (entry == ENTRY_PVH)
		parse_pvh(bi, ptr);
	else
		parse_zero_page(bi, ptr);
	if (bi->initrd_size == 0)
		bi->initrd_addr = 0;
}
