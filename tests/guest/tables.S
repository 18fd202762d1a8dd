/* Ember test guest: static descriptor tables and page tables.
 *
 * Built at link time so that no interpreted CPL0 instruction is spent filling
 * them.  Address fields the assembler cannot split (IDT handler offsets, TSS
 * base) come from absolute symbols computed in guest.ld.  The identity map
 * covers 0-4 GiB with 2 MiB pages, U/W/P set; paging.c extends it at CPL3 for
 * RAM above 4 GiB (the tables are user-accessible on purpose). */
#include "layout.h"

	.data
	.balign 16
	.globl gdt, gdt_end
gdt:
	.quad	0
	.quad	0x00af9a000000ffff		/* 0x08 kernel code, 64-bit */
	.quad	0x00cf92000000ffff		/* 0x10 kernel data */
	.quad	0x00cff2000000ffff		/* 0x18 user data, DPL3 */
	.quad	0x00affa000000ffff		/* 0x20 user code, 64-bit, DPL3 */
	.quad	0x00cf9a000000ffff		/* 0x28 kernel code, 32-bit (AP trampoline) */
	.word	tss_end - tss - 1		/* 0x30 64-bit TSS (available) */
	.word	__tss_b0
	.byte	__tss_b16, 0x89, 0x00, __tss_b24
	.long	0, 0
gdt_end:

	.balign 8
	.word	0
	.globl gdtr
gdtr:
	.word	gdt_end - gdt - 1
	.quad	gdt

	.word	0, 0, 0
idtr:
	.word	idt_end - idt - 1
	.quad	idt
	.globl idtr

/* Interrupt gates: vectors 0-63 -> isr_table + 16 * vector.  Vector 3 (int3)
 * has DPL3: it is the CPL3 -> CPL0 service gate (entry.S, gate_entry); 32-63
 * are device and timer interrupts (entry.S, irq_entry). */
	.balign 16
idt:
	.set vec, 0
	.rept N_VECTORS
	.word	__isr_lo + 16 * vec, KERNEL_CS
	.byte	0, 0x8e | ((vec == GATE_VECTOR) & 0x60)	/* gas: true == -1 */
	.word	__isr_hi
	.long	0, 0
	.set vec, vec + 1
	.endr
idt_end:

/* TSS: rsp0 for traps from CPL3, and an all-zero I/O bitmap (every port
 * allowed) as a second guarantee besides IOPL=3. */
	.balign 16
tss:
	.long	0
	.quad	kstack_top			/* rsp0 */
	.fill	11, 8, 0			/* rsp1, rsp2, ist1-7, reserved */
	.word	0
	.word	iopb - tss			/* I/O bitmap base */
iopb:
	.fill	65536 / 8, 1, 0
	.byte	0xff
tss_end:
	.globl tss

	.section .data.pagetables, "aw"
	.balign 4096
	.globl pml4, pdpt
pml4:
	.quad	pdpt + 0x7			/* P | W | U */
	.fill	511, 8, 0
pdpt:
	.quad	pd + 0x0007, pd + 0x1007, pd + 0x2007, pd + 0x3007
	.fill	508, 8, 0
pd:
	.set addr, 0
	.rept	2048
	.quad	addr + 0x87			/* P | W | U | PS (2 MiB) */
	.set addr, addr + 0x200000
	.endr
