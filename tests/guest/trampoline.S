/* Ember test guest: AP start-up trampoline.
 *
 * smp.c copies ap_tramp_start..ap_tramp_end to AP_BASE (0x10000) and sends
 * INIT + SIPI (vector 0x10).  The AP starts in real mode at 1000:0000, goes
 * to 32-bit protected mode with the main GDT, increments the check-in counter
 * with a locked add and halts for good (interrupts off).  Position dependent:
 * every address is AP_BASE + offset in this blob. */
#include "layout.h"

#define REL(x) ((x) - ap_tramp_start)

	.section .rodata
	.globl ap_tramp_start, ap_tramp_end, ap_count
	.code16
ap_tramp_start:
	cli
	mov	%cs, %ax
	mov	%ax, %ds
	lgdtl	REL(ap_gdtr)
	mov	%cr0, %eax
	or	$CR0_PE, %eax
	mov	%eax, %cr0
	ljmpl	$KERNEL_CS32, $(AP_BASE + REL(ap32))

	.code32
ap32:
	mov	$KERNEL_DS, %eax
	mov	%eax, %ds
	lock incl (AP_BASE + REL(ap_count))
1:	cli
	hlt
	jmp	1b

	.balign 4
	.word	0
ap_gdtr:
	.word	__gdt_limit
	.long	gdt
ap_count:
	.long	0
ap_tramp_end:
	.code64
