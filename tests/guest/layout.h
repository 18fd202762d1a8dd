/* Ember test guest: constants shared by the assembly files (and guest.h users). */
#ifndef EMBER_TEST_GUEST_LAYOUT_H
#define EMBER_TEST_GUEST_LAYOUT_H

/* GDT selectors (tables.S) */
#define KERNEL_CS 0x08
#define KERNEL_DS 0x10
#define USER_DS (0x18 | 3)
#define USER_CS (0x20 | 3)
#define KERNEL_CS32 0x28
#define TSS_SEL 0x30

#define CR0_PE 0x1
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100
#define RFLAGS_IOPL3 0x3002 /* IOPL=3, reserved bit 1, IF=0 */

#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310

/* Entry kinds passed by entry.S to guest_main(). */
#define ENTRY_PVH 1
#define ENTRY_LINUX64 2

/* CPL3 -> CPL0 services: int3 through a DPL3 gate, eax = service.  On this
 * host `int n` from CPL3 raises #UD and SYSCALL does not leave CPL3; int3 is
 * delivered through the IDT like an exception. */
#define GATE_VECTOR 3
#define SYS_CPUID 0        /* edi=leaf, esi=subleaf -> eax,ebx,ecx,edx */
#define SYS_IPI 1          /* rdi=LAPIC base, esi=APIC id, edx=ICR low */
#define SYS_FLUSH_TLB 2    /* reload CR3 */
#define SYS_TRIPLE_FAULT 3 /* load an empty IDT and execute ud2 */
#define SYS_HALT 4         /* cli; hlt forever */
#define SYS_WAIT 5         /* sti; hlt; cli: sleep until an interrupt (irq.c) */

/* Interrupts (irq.c): vectors 32-63 all go to one stub (entry.S, irq_entry)
 * that counts the vector and sends the LAPIC its EOI; the code that slept
 * looks at its rings itself. */
#define IRQ_VECTOR 0x30      /* IOAPIC pins we route */
#define TIMER_VECTOR 0x31    /* the LAPIC timer: bounds every sleep */
#define SPURIOUS_VECTOR 0x3f
#define N_VECTORS 64
#define LAPIC_BASE 0xfee00000
#define LAPIC_EOI 0xb0

/* AP trampoline: copied here, started with SIPI vector AP_BASE >> 12. */
#define AP_BASE 0x10000

#endif
