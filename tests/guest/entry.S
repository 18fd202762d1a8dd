/* Ember test guest: entry points and everything that runs at CPL0.
 *
 * CPL0 code is interpreted on this workplace's KVM (HOST-NOTES.md), so it is
 * kept to a few dozen instructions: the descriptor tables and the 4 GiB
 * identity map are static data (tables.S), and the entry paths only load
 * them and iretq to CPL3 with IOPL=3.  CPL3 code asks for the few privileged
 * operations it needs with int3, whose IDT gate has DPL3 (gate_entry; on this
 * host `int n` from CPL3 raises #UD and SYSCALL does not leave CPL3).
 *
 *   0x100000  pvh_start   PVH: 32-bit protected mode, paging off, ebx = hvm_start_info
 *   0x100200  entry64     Linux 64-bit boot protocol: long mode, rsi = boot_params
 */
#include "layout.h"

	.section .text.entry32, "ax"
	.code32
	.globl pvh_start
pvh_start:
	cli
	mov	%ebx, %edi			/* hvm_start_info */
	lgdt	gdtr
	mov	$CR4_PAE, %eax
	mov	%eax, %cr4
	mov	$pml4, %eax
	mov	%eax, %cr3
	mov	$MSR_EFER, %ecx
	rdmsr
	or	$EFER_LME, %eax
	wrmsr
	mov	%cr0, %eax
	or	$(CR0_PG | CR0_PE), %eax
	mov	%eax, %cr0
	ljmp	$KERNEL_CS, $pvh_long

	.code64
pvh_long:
	mov	%edi, %edi			/* upper halves are undefined after the mode switch */
	mov	$ENTRY_PVH, %esi
	jmp	common64

	.section .text.entry64, "ax"
	.globl entry64
entry64:
	cli
	mov	%rsi, %rdi			/* boot_params (zero page) */
	mov	$ENTRY_LINUX64, %esi
	mov	$kstack_top, %esp
	lgdt	gdtr
	pushq	$KERNEL_CS
	pushq	$1f
	lretq					/* reload CS from our GDT */
1:	mov	$CR4_PAE, %eax			/* no SMEP/SMAP: CPL0 touches user pages */
	mov	%rax, %cr4
	mov	$pml4, %eax			/* our own identity map, U bit set */
	mov	%rax, %cr3

common64:
	mov	$KERNEL_DS, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	$kstack_top, %esp
	lidt	idtr
	mov	$TSS_SEL, %eax
	ltr	%ax
	/* iretq to user_start at CPL3, IOPL=3, IF=0; rdi/esi carry through. */
	pushq	$USER_DS
	pushq	$ustack_top
	pushq	$RFLAGS_IOPL3
	pushq	$USER_CS
	pushq	$user_start
	iretq

	.text
/* CPL3 from here: clear .bss (not the stacks: guest.ld), then C. */
user_start:
	mov	%rdi, %r8
	mov	$__bss_start, %edi
	mov	$__bss_end, %ecx
	sub	%edi, %ecx
	xor	%eax, %eax
	rep stosb
	mov	%r8, %rdi
	call	guest_main
	ud2

/* The service gate: int3 from CPL3 (DPL3 interrupt gate, so IF stays 0 and
 * we run on rsp0).  eax = service (layout.h); returns to after the int3. */
gate_entry:
	cmp	$SYS_IPI, %eax
	je	sys_ipi
	cmp	$SYS_FLUSH_TLB, %eax
	je	sys_flush_tlb
	cmp	$SYS_TRIPLE_FAULT, %eax
	je	sys_triple_fault
	cmp	$SYS_HALT, %eax
	je	sys_halt
	cmp	$SYS_WAIT, %eax
	je	sys_wait
	mov	%edi, %eax			/* SYS_CPUID */
	mov	%esi, %ecx
	cpuid
	iretq
sys_ipi:					/* LAPIC ICR: high (destination) then low (send) */
	shl	$24, %esi
	movl	%esi, LAPIC_ICR_HI(%rdi)
	movl	%edx, LAPIC_ICR_LO(%rdi)
	iretq
sys_flush_tlb:
	mov	%cr3, %rax
	mov	%rax, %cr3
	iretq
sys_triple_fault:
	lidt	empty_idtr			/* no IDT: #UD -> #GP -> #DF -> shutdown */
	ud2
sys_halt:
	cli
	hlt
	jmp	sys_halt
sys_wait:					/* sti's one-instruction shadow: an interrupt */
	sti					/* already pending wakes the hlt, none is lost */
	hlt
	cli
	iretq

/* Vectors 32-63 (interrupt gates, IF=0 inside; the stub pushed the vector):
 * count it in irq_counts (irq.c), EOI to the LAPIC, return. They arrive only
 * inside sys_wait (IF is 0 everywhere else). */
irq_entry:
	push	%rax
	mov	8(%rsp), %rax
	incq	irq_counts - 32 * 8(, %rax, 8)
	mov	$(LAPIC_BASE + LAPIC_EOI), %eax
	movl	$0, (%rax)
	pop	%rax
	add	$8, %rsp
	iretq

/* Exception stubs, 16 bytes apart (the static IDT in tables.S points at
 * isr_table + 16 * vector); GATE_VECTOR's goes to gate_entry, 32 and up to
 * irq_entry. */
	.section .text.isr, "ax"
	.balign 1024
	.globl isr_table
isr_table:
	.set vec, 0
	.rept N_VECTORS
	.balign 16
	/* vectors 8, 10-14, 17, 21, 29, 30 push an error code themselves */
	.if vec == GATE_VECTOR
	jmp	gate_entry
	.elseif vec >= 32
	pushq	$vec
	jmp	irq_entry
	.else
	.if (vec == 8) || (vec >= 10 && vec <= 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.else
	pushq	$0
	.endif
	pushq	$vec
	jmp	isr_common
	.endif
	.set vec, vec + 1
	.endr

/* Frame for trap(): vector, error code, rip, cs, rflags, rsp, ss. Never returns. */
isr_common:
	cld
	mov	%rsp, %rdi
	and	$-16, %rsp
	call	trap
	ud2

	.section .rodata
	.balign 8
empty_idtr:
	.word	0
	.quad	0

	/* Stacks: outside [__bss_start, __bss_end), which user_start clears. */
	.section .bss.noclear, "aw", @nobits
	.balign 16
	.space	16384
	.globl kstack_top
kstack_top:
	.space	16384
ustack_top:
