/* layout.h - Ember's fixed x86_64 guest-physical memory map (DESIGN.md). */
#ifndef EMBER_LAYOUT_H
#define EMBER_LAYOUT_H

#define LAYOUT_GDT 0x500ULL
#define LAYOUT_IDT 0x520ULL
#define LAYOUT_PVH_INFO 0x6000ULL   /* hvm_start_info, then its memmap */
#define LAYOUT_ZERO_PAGE 0x7000ULL  /* struct boot_params */
#define LAYOUT_BOOT_STACK 0x8ff0ULL
#define LAYOUT_PML4 0x9000ULL
#define LAYOUT_PDPT 0xa000ULL
#define LAYOUT_PD 0xb000ULL         /* 512 x 2 MiB = first 1 GiB identity */
#define LAYOUT_EBDA 0x9fc00ULL      /* MP table lives here */
#define LAYOUT_CMDLINE 0x20000ULL
#define LAYOUT_CMDLINE_MAX 4096ULL  /* bytes including the terminating NUL */
#define LAYOUT_KERNEL 0x100000ULL   /* 1 MiB */
#define LAYOUT_HIMEM LAYOUT_KERNEL

#define LAYOUT_MMIO_GAP_START 0xd0000000ULL
#define LAYOUT_MMIO_GAP_END 0x100000000ULL /* 4 GiB */
#define LAYOUT_VIRTIO_MMIO_BASE 0xd0000000ULL
#define LAYOUT_VIRTIO_MMIO_SLOT 0x1000ULL
#define LAYOUT_VIRTIO_GSI_BASE 5

#define LAYOUT_IOAPIC 0xfec00000ULL
#define LAYOUT_LAPIC 0xfee00000ULL

/* KVM housekeeping pages (inside the MMIO gap, never guest RAM). */
#define LAYOUT_KVM_IDENTITY_MAP 0xfeffc000ULL
#define LAYOUT_KVM_TSS 0xfeffd000ULL

#endif
