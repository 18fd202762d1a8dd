/* test_boot_images.h - synthesized kernel images (ELF vmlinux, bzImage) and
 * small helpers shared by the boot/ unit tests. Header-only (static inline). */
#ifndef EMBER_TEST_BOOT_IMAGES_H
#define EMBER_TEST_BOOT_IMAGES_H

#include <elf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <asm/bootparam.h>

#define MIB (1ULL << 20)
#define GIB (1ULL << 30)

/* ---- ELF ---- */

#define TI_ELF_PHOFF 64U
#define TI_ELF_SEG_OFF 0x1000U
#define TI_ELF_NOTE_OFF 0x800U

struct elf_opts {
    uint64_t paddr;  /* PT_LOAD physical address */
    uint64_t vaddr;  /* PT_LOAD virtual address (0: = paddr) */
    uint64_t filesz; /* payload bytes (filled with a pattern) */
    uint64_t memsz;  /* 0: = filesz */
    uint64_t entry;  /* e_entry (0: = paddr) */
    int note_size;   /* 0: no PVH note; 4 or 8: descriptor size */
    uint64_t pvh;    /* PVH entry value */
};

/* Byte i of the segment payload. */
/* cmocka fixtures: a fresh lazily-mapped guest memory of `size` bytes. */
static inline int ti_gm_setup(void **state, uint64_t size)
{
    struct guest_mem *gm = calloc(1, sizeof(*gm));
    if (!gm || guest_mem_init(gm, size, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END) < 0) {
        free(gm);
        return -1;
    }
    *state = gm;
    return 0;
}

static inline int ti_gm_teardown(void **state)
{
    guest_mem_free(*state);
    free(*state);
    return 0;
}

static inline uint8_t ti_pattern(uint64_t i)
{
    return (uint8_t)(i * 7 + 3);
}

/* Layout: Ehdr @0, phdrs @64 (PT_LOAD, then PT_NOTE if any), note @0x800,
 * payload @0x1000. Returns a malloc'd image of *len bytes. */
static inline uint8_t *ti_elf(const struct elf_opts *o, size_t *len)
{
    size_t n = TI_ELF_SEG_OFF + o->filesz;
    uint8_t *img = calloc(1, n);
    if (!img)
        abort();
    Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = ET_EXEC;
    eh->e_machine = EM_X86_64;
    eh->e_version = EV_CURRENT;
    eh->e_entry = o->entry ? o->entry : o->paddr;
    eh->e_phoff = TI_ELF_PHOFF;
    eh->e_ehsize = sizeof(Elf64_Ehdr);
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = o->note_size ? 2 : 1;
    Elf64_Phdr *ph = (Elf64_Phdr *)(img + TI_ELF_PHOFF);
    ph[0].p_type = PT_LOAD;
    ph[0].p_flags = PF_R | PF_X | PF_W;
    ph[0].p_offset = TI_ELF_SEG_OFF;
    ph[0].p_paddr = o->paddr;
    ph[0].p_vaddr = o->vaddr ? o->vaddr : o->paddr;
    ph[0].p_filesz = o->filesz;
    ph[0].p_memsz = o->memsz ? o->memsz : o->filesz;
    ph[0].p_align = 0x1000;
    for (uint64_t i = 0; i < o->filesz; i++)
        img[TI_ELF_SEG_OFF + i] = ti_pattern(i);
    if (o->note_size) {
        /* A GNU note first, to check that the parser walks past it. */
        uint8_t *p = img + TI_ELF_NOTE_OFF;
        Elf64_Nhdr gnu = {4, 4, 1};
        memcpy(p, &gnu, sizeof(gnu));
        memcpy(p + 12, "GNU", 4);
        memset(p + 16, 0xab, 4);
        p += 20;
        Elf64_Nhdr xen = {4, (Elf64_Word)o->note_size, 18};
        memcpy(p, &xen, sizeof(xen));
        memcpy(p + 12, "Xen", 4);
        memcpy(p + 16, &o->pvh, (size_t)o->note_size);
        ph[1].p_type = PT_NOTE;
        ph[1].p_offset = TI_ELF_NOTE_OFF;
        ph[1].p_filesz = 20 + 16 + (uint64_t)o->note_size;
        ph[1].p_align = 4;
    }
    *len = n;
    return img;
}

static inline Elf64_Ehdr *ti_ehdr(uint8_t *img)
{
    return (Elf64_Ehdr *)img;
}

static inline Elf64_Phdr *ti_phdr(uint8_t *img, int i)
{
    return (Elf64_Phdr *)(img + TI_ELF_PHOFF) + i;
}

/* ---- bzImage ---- */

struct bz_opts {
    uint8_t setup_sects; /* as stored (0 means 4) */
    uint16_t version;    /* 0: 0x020f */
    uint16_t xloadflags; /* as stored */
    uint32_t init_size;  /* 0: 8 MiB */
    uint32_t cmdline_size;
    uint32_t initrd_addr_max;
    uint64_t pm_size; /* protected-mode part bytes (0: 64 KiB) */
};

static inline struct bz_opts ti_bz_defaults(void)
{
    struct bz_opts o = {
        .setup_sects = 4,
        .version = 0x020f,
        .xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G,
        .init_size = 8 * MIB,
        .cmdline_size = 2047,
        .initrd_addr_max = 0x7fffffff,
        .pm_size = 64 * 1024,
    };
    return o;
}

#define TI_BZ_HDR_END 0x26c /* the header's jump target (0x202 + byte at 0x201) */

static inline size_t ti_bz_pm_off(const struct bz_opts *o)
{
    return ((size_t)(o->setup_sects ? o->setup_sects : 4) + 1) * 512;
}

static inline uint8_t *ti_bz(const struct bz_opts *o, size_t *len)
{
    size_t off = ti_bz_pm_off(o);
    size_t n = off + o->pm_size;
    uint8_t *img = calloc(1, n);
    if (!img)
        abort();
    struct setup_header h;
    memset(&h, 0, sizeof(h));
    h.setup_sects = o->setup_sects;
    h.syssize = (uint32_t)((o->pm_size + 15) / 16);
    h.boot_flag = 0xaa55;
    h.jump = (uint16_t)(0xeb | ((TI_BZ_HDR_END - 0x202) << 8));
    h.header = 0x53726448;
    h.version = o->version;
    h.loadflags = LOADED_HIGH;
    h.code32_start = 0x100000;
    h.initrd_addr_max = o->initrd_addr_max;
    h.kernel_alignment = 0x200000;
    h.relocatable_kernel = 1;
    h.min_alignment = 21;
    h.xloadflags = o->xloadflags;
    h.cmdline_size = o->cmdline_size;
    h.pref_address = 0x1000000;
    h.init_size = o->init_size;
    memcpy(img + 0x1f1, &h, sizeof(h));
    for (uint64_t i = 0; i < o->pm_size; i++)
        img[off + i] = ti_pattern(i);
    *len = n;
    return img;
}

/* ---- files ---- */

/* Write `len` bytes to a new temporary file; returns its malloc'd path. */
static inline char *ti_tmpfile(const void *data, size_t len)
{
    const char *dir = getenv("TMPDIR");
    size_t cap = strlen(dir ? dir : "/tmp") + 32;
    char *path = malloc(cap);
    if (!path)
        abort();
    snprintf(path, cap, "%s/ember-boot-XXXXXX", dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    const uint8_t *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w <= 0)
            abort();
        p += w;
        len -= (size_t)w;
    }
    close(fd);
    return path;
}

static inline void ti_rmfile(char *path)
{
    unlink(path);
    free(path);
}

#endif
