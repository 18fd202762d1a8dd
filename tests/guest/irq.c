/* Ember test guest: interrupts, for code that would rather sleep than spin
 * (`net-irq`): the LAPIC enabled with a periodic timer that bounds every
 * sleep, one IOAPIC pin routed to IRQ_VECTOR on this CPU, the 8259s masked.
 * Interrupts are taken only inside irq_wait() (IF is 0 everywhere else); the
 * stub (entry.S, irq_entry) counts the vector and sends the EOI. See guest.h. */
#include "guest.h"
#include "layout.h"

#define LAPIC_ID 0x20
#define LAPIC_SVR 0xf0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3e0
#define LVT_PERIODIC (1u << 17)
#define IOAPIC_BASE 0xfec00000
#define IOAPIC_REDIR(pin) (0x10 + 2 * (pin))

u64 irq_counts[N_VECTORS - 32]; /* bumped by entry.S's irq_entry */

u64 irq_count(u32 vector)
{
	return vector >= 32 && vector < N_VECTORS ? irq_counts[vector - 32] : 0;
}

static void lapic_w(u32 reg, u32 v)
{
	*(volatile u32 *)(uintptr_t)(LAPIC_BASE + reg) = v;
}

static void ioapic_w(u32 reg, u32 v)
{
	*(volatile u32 *)(uintptr_t)IOAPIC_BASE = reg;          /* IOREGSEL */
	*(volatile u32 *)(uintptr_t)(IOAPIC_BASE + 0x10) = v;   /* IOWIN */
}

void irq_route(u32 gsi)
{
	static int lapic_on;
	if (!lapic_on) {
		outb(0x21, 0xff); /* 8259 masks (OCW1): nothing comes as ExtINT */
		outb(0xa1, 0xff);
		lapic_w(LAPIC_SVR, 0x100 | SPURIOUS_VECTOR); /* software-enabled */
		lapic_w(LAPIC_TIMER_DIV, 0xb);               /* divide by 1 */
		lapic_w(LAPIC_LVT_TIMER, LVT_PERIODIC | TIMER_VECTOR);
		lapic_w(LAPIC_TIMER_INIT, 1000000000u); /* KVM's APIC bus is 1 GHz: ~1 s */
		lapic_on = 1;
	}
	u32 me = peek32(LAPIC_BASE + LAPIC_ID) >> 24;
	ioapic_w(IOAPIC_REDIR(gsi) + 1, me << 24);
	ioapic_w(IOAPIC_REDIR(gsi), IRQ_VECTOR); /* fixed, physical, high, edge, unmasked */
}

void irq_wait(void)
{
	sys_simple(SYS_WAIT);
}
