/* Ember test guest: find the CPUs in the MP table and start the APs.
 *
 * The MP floating pointer ("_MP_") is searched in the EBDA (segment at 0x40e),
 * the last KiB of base memory (0x9fc00) and 0xf0000-0xfffff; its "PCMP"
 * configuration table lists one 20-byte processor entry per CPU.  Each AP
 * gets INIT, SIPI, SIPI (vector AP_BASE >> 12) through the LAPIC ICR; the
 * ICR writes happen at CPL0 (SYS_IPI), the scanning and waiting at CPL3. */
#include "guest.h"

extern const char ap_tramp_start[], ap_tramp_end[], ap_count[];

#define LAPIC_ID 0x20
#define ICR_INIT 0x00004500 /* INIT, level assert */
#define ICR_SIPI 0x00004600 /* start-up, level assert */
/* About 10 s of TSC: an AP that has not checked in by then never will, while in the nested
 * machine, with the host busy, an AP's vCPU thread took over a second to be scheduled. */
#define AP_WAIT_CYCLES 30000000000ULL

static int checksum_ok(u64 pa, u32 len)
{
	u8 sum = 0;
	for (u32 i = 0; i < len; i++)
		sum += peek8(pa + i);
	return sum == 0;
}

static u64 find_mpfp(void)
{
	u64 where[3][2] = {
		{(u64)peek16(0x40e) << 4, 1024},
		{0x9fc00, 1024},
		{0xf0000, 0x10000},
	};
	for (int r = 0; r < 3; r++) {
		u64 base = where[r][0];
		if (base == 0 || base >= 0x100000)
			continue;
		for (u64 p = base; p + 16 <= base + where[r][1]; p += 16) {
			if (peek32(p) == 0x5f504d5f /* "_MP_" */ && peek8(p + 8) == 1 &&
			    checksum_ok(p, 16))
				return p;
		}
	}
	return 0;
}

/* Returns the number of enabled CPUs; fills ap_ids (*naps of them) with the
 * others than us: not flagged as boot processor, not our own APIC id (from
 * the LAPIC ID register: CPUID leaf 1 EBX carries the host's on this host). */
u32 mptable_scan(u8 *ap_ids, u32 max_aps, u32 *naps, u32 *lapic_base)
{
	u32 cpus = 0;
	*naps = 0;
	u64 fp = find_mpfp();
	if (!fp)
		return 0;
	u64 ct = peek32(fp + 4);
	if (ct == 0 || ct >= 4 * GiB - 0x10000 || peek32(ct) != 0x504d4350 /* "PCMP" */)
		return 0;
	u32 len = peek16(ct + 4);
	if (len < 44 || !checksum_ok(ct, len))
		return 0;
	if (peek32(ct + 36))
		*lapic_base = peek32(ct + 36);
	u32 own_id = peek32(*lapic_base + LAPIC_ID) >> 24;
	/* Walk by the table length, as Linux does: QEMU's qboot leaves the entry
	 * count (offset 34) at zero. */
	u64 e = ct + 44, end = ct + len;
	while (e < end) {
		u8 type = peek8(e);
		if (type == 0) { /* processor: id, version, flags (bit0 enabled, bit1 BSP) */
			u8 flags = peek8(e + 3);
			if (flags & 1) {
				cpus++;
				u8 id = peek8(e + 1);
				if (!(flags & 2) && id != own_id && *naps < max_aps)
					ap_ids[(*naps)++] = id;
			}
			e += 20;
		} else if (type <= 4) {
			e += 8;
		} else {
			break;
		}
	}
	return cpus;
}

/* Starts the APs; returns how many checked in within about 10 seconds. */
u32 smp_start(u64 lapic, const u8 *ap_ids, u32 n)
{
	size_t size = (size_t)(ap_tramp_end - ap_tramp_start);
	memcpy((void *)(uintptr_t)AP_BASE, ap_tramp_start, size);
	volatile u32 *count = (volatile u32 *)(uintptr_t)(AP_BASE + (ap_count - ap_tramp_start));
	*count = 0;

	/* KVM latches INIT then SIPI in order, so no delays are needed between. */
	for (u32 i = 0; i < n; i++)
		sys_ipi(lapic, ap_ids[i], ICR_INIT);
	for (int round = 0; round < 2; round++)
		for (u32 i = 0; i < n; i++)
			sys_ipi(lapic, ap_ids[i], ICR_SIPI | (AP_BASE >> 12));

	u64 start = rdtsc();
	while (*count < n && rdtsc() - start < AP_WAIT_CYCLES)
		cpu_relax();
	return *count;
}
