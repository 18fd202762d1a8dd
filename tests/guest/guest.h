/* Ember test guest: shared types, constants and small inline helpers.
 * Everything outside entry.S runs at CPL3 with IOPL=3 (see README.md); the
 * few things that need CPL0 go through the int3 gate (entry.S). */
#ifndef EMBER_TEST_GUEST_H
#define EMBER_TEST_GUEST_H

#include <stdint.h>
#include <stddef.h>

#include "layout.h"

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

#define GiB (1ULL << 30)

#define MAX_MAP 128

struct mem_range {
	u64 addr, size;
	u32 type;
};

struct boot_info {
	int entry;               /* ENTRY_PVH or ENTRY_LINUX64 */
	const char *error;       /* set when the boot structure looks wrong */
	const char *cmdline;     /* NUL-terminated, or NULL */
	u64 initrd_addr, initrd_size;
	u32 nmap;
	struct mem_range map[MAX_MAP];
};

/* Options from the command line (main.c). */
struct options {
	int fault_triple, fault_ud, exit_debug, smp_off;
	int counter_set;
	int fault_panic, quiet;
	int idle; /* idle: halt with interrupts off after the report (density runs) */
	int probe; /* probe: with counter=, write the boot timer every ~0.1 ms between lines */
	u64 counter;
	u64 echo; /* echo=N: read N console bytes, print them back */
};
extern struct options opt;

/* Top of the identity mapping (paging.c). */
extern u64 mapped_top;

static inline void outb(u16 port, u8 v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

static inline int at_cpl0(void)
{
	u16 cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	return (cs & 3) == 0;
}

/* CPUID executed at CPL0: at CPL3 this host reports the outer hypervisor. */
static inline void cpuid0(u32 leaf, u32 sub, u32 r[4])
{
	__asm__ volatile("int3"
			 : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(SYS_CPUID), "D"(leaf), "S"(sub)
			 : "memory");
}

static inline void sys_ipi(u64 lapic, u32 apic_id, u32 icr_lo)
{
	__asm__ volatile("int3"
			 : "+S"(apic_id)
			 : "a"(SYS_IPI), "D"(lapic), "d"(icr_lo)
			 : "memory");
}

static inline void sys_simple(u32 nr)
{
	__asm__ volatile("int3" : "+a"(nr) : : "memory");
}

/* Volatile physical-memory accessors (RAM is identity-mapped). */
static inline u64 peek64(u64 pa) { return *(volatile u64 *)(uintptr_t)pa; }
static inline u32 peek32(u64 pa) { return *(volatile u32 *)(uintptr_t)pa; }
static inline u16 peek16(u64 pa) { return *(volatile u16 *)(uintptr_t)pa; }
static inline u8 peek8(u64 pa) { return *(volatile u8 *)(uintptr_t)pa; }
static inline void poke64(u64 pa, u64 v) { *(volatile u64 *)(uintptr_t)pa = v; }

/* irq.c: route IOAPIC pin `gsi` to this CPU (the first call also enables
 * the LAPIC and its ~1 s periodic timer and masks the 8259s); irq_wait()
 * sleeps until an interrupt or the next timer tick. Vectors: layout.h. */
void irq_route(u32 gsi);
void irq_wait(void);
u64 irq_count(u32 vector); /* interrupts taken on `vector` so far */

/* lib.c */
void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
int strncmp_prefix(const char *s, const char *prefix);

/* serial.c */
void serial_putc(char c);
void serial_write(const char *s, size_t n);
char serial_getc(void);
void print(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* bootinfo.c */
void bootinfo_parse(struct boot_info *bi, u64 ptr, int entry);

/* paging.c */
void paging_map_ram(const struct boot_info *bi);

/* smp.c */
u32 mptable_scan(u8 *ap_ids, u32 max_aps, u32 *naps, u32 *lapic_base);
u32 smp_start(u64 lapic_base, const u8 *ap_ids, u32 n_aps);

/* main.c */
void guest_main(u64 boot_ptr, u32 entry) __attribute__((noreturn));
void guest_exit(void) __attribute__((noreturn));

#endif
