/* Ember test guest: the PVH ELF note (linked only into guest-pvh.elf).
 * Name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY (18), desc = 32-bit physical
 * address of the 32-bit PVH entry point. */
	.section .note.Xen, "a", @note
	.balign 4
	.long	4				/* namesz */
	.long	4				/* descsz */
	.long	18				/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz	"Xen"
	.long	pvh_start
