/* elf.c - ELF64 x86_64 vmlinux loader: validates every header bound, loads
 * PT_LOAD segments at their physical addresses and finds the Xen PVH entry
 * note (XEN_ELFNOTE_PHYS32_ENTRY). */
#include "boot.h"
#include "layout.h"
#include "pvh.h"

#include "../vmm/base/err.h"

#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define ELF_VIRT_BASE 0xffffffff80000000ULL /* __START_KERNEL_map */

/* Is [off, off+size) inside a file of `len` bytes? Overflow-safe. */
static int in_file(uint64_t off, uint64_t size, size_t len)
{
    return off <= len && size <= len - off;
}

static int note_entry(const uint8_t *img, const Elf64_Phdr *ph, int idx, const char *name,
                      uint64_t *pvh)
{
    const uint64_t align = ph->p_align == 8 ? 8 : 4;
    const uint8_t *seg = img + ph->p_offset;
    const uint64_t size = ph->p_filesz;
    uint64_t pos = 0;
    while (size - pos >= sizeof(Elf64_Nhdr)) {
        Elf64_Nhdr nh;
        memcpy(&nh, seg + pos, sizeof(nh));
        pos += sizeof(nh);
        uint64_t namesz = ((uint64_t)nh.n_namesz + align - 1) & ~(align - 1);
        uint64_t descsz = nh.n_descsz;
        if (namesz > size - pos)
            return err_set(-EINVAL,
                           "kernel %s: note in segment %d: name of %" PRIu32
                           " bytes runs past the segment",
                           name, idx, nh.n_namesz);
        const uint8_t *nm = seg + pos;
        pos += namesz;
        if (descsz > size - pos)
            return err_set(-EINVAL,
                           "kernel %s: note in segment %d: descriptor of %" PRIu32
                           " bytes runs past the segment",
                           name, idx, nh.n_descsz);
        const uint8_t *desc = seg + pos;
        uint64_t descpad = (descsz + align - 1) & ~(align - 1);
        pos += descpad < size - pos ? descpad : size - pos;

        if (nh.n_type != XEN_ELFNOTE_PHYS32_ENTRY || nh.n_namesz != 4 || memcmp(nm, "Xen", 4))
            continue;
        if (*pvh)
            continue; /* first one wins */
        uint64_t v;
        if (descsz == 4) {
            uint32_t v32;
            memcpy(&v32, desc, 4);
            v = v32;
        } else if (descsz == 8) {
            memcpy(&v, desc, 8);
        } else {
            return err_set(-EINVAL,
                           "kernel %s: Xen PHYS32_ENTRY note has a %" PRIu32
                           "-byte descriptor (expected 4 or 8)",
                           name, nh.n_descsz);
        }
        if (v == 0 || v > 0xffffffffULL)
            return err_set(-EINVAL, "kernel %s: PVH entry 0x%" PRIx64 " is not a 32-bit address",
                           name, v);
        *pvh = v;
    }
    return 0;
}

/* Program header i (bounds already checked; the image may be unaligned). */
static Elf64_Phdr phdr(const uint8_t *img, const Elf64_Ehdr *eh, unsigned i)
{
    Elf64_Phdr p;
    memcpy(&p, img + eh->e_phoff + (uint64_t)i * sizeof(p), sizeof(p));
    return p;
}

/* Is physical address `pa` inside a loaded segment? */
static int in_segments(const uint8_t *img, const Elf64_Ehdr *eh, uint64_t pa)
{
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        Elf64_Phdr p = phdr(img, eh, i);
        if (p.p_type == PT_LOAD && p.p_memsz && pa >= p.p_paddr && pa - p.p_paddr < p.p_memsz)
            return 1;
    }
    return 0;
}

/* The ELF header of an x86_64 executable with usable program headers inside the file. */
static int check_header(const uint8_t *img, size_t len, const char *name, Elf64_Ehdr *eh)
{
    if (len < sizeof(Elf64_Ehdr))
        return err_set(-EINVAL, "kernel %s: truncated ELF header (%zu bytes)", name, len);
    memcpy(eh, img, sizeof(*eh));
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG))
        return err_set(-EINVAL, "kernel %s: not an ELF file", name);
    if (eh->e_ident[EI_CLASS] != ELFCLASS64)
        return err_set(-EINVAL, "kernel %s: ELF class %u is not ELF64", name,
                       eh->e_ident[EI_CLASS]);
    if (eh->e_ident[EI_DATA] != ELFDATA2LSB)
        return err_set(-EINVAL, "kernel %s: ELF is not little-endian", name);
    if (eh->e_machine != EM_X86_64)
        return err_set(-EINVAL, "kernel %s: ELF machine %u is not x86_64 (%u)", name, eh->e_machine,
                       EM_X86_64);
    if (eh->e_type != ET_EXEC)
        return err_set(-EINVAL, "kernel %s: ELF type %u is not an executable (ET_EXEC)", name,
                       eh->e_type);
    if (eh->e_phentsize != sizeof(Elf64_Phdr))
        return err_set(-EINVAL, "kernel %s: e_phentsize %u, expected %zu", name, eh->e_phentsize,
                       sizeof(Elf64_Phdr));
    if (eh->e_phnum == 0 || eh->e_phnum == PN_XNUM)
        return err_set(-EINVAL, "kernel %s: e_phnum %u: no usable program headers", name,
                       eh->e_phnum);
    if (!in_file(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr), len))
        return err_set(-EINVAL,
                       "kernel %s: program headers (%u at 0x%" PRIx64
                       ") run past the end of the file (%zu bytes)",
                       name, eh->e_phnum, (uint64_t)eh->e_phoff, len);
    return 0;
}

/* Pass 1, before any guest memory is written: every segment inside the file,
 * every PT_LOAD inside guest RAM above 1 MiB; the loaded span [*lo, *hi) and
 * the PVH entry from the notes (0 if none). */
static int check_segments(const struct guest_mem *gm, const uint8_t *img, size_t len,
                          const Elf64_Ehdr *eh, const char *name, uint64_t *lo, uint64_t *hi,
                          uint64_t *pvh)
{
    *lo = UINT64_MAX, *hi = 0, *pvh = 0;
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        const Elf64_Phdr ph = phdr(img, eh, i), *p = &ph;
        if (p->p_type != PT_LOAD && p->p_type != PT_NOTE)
            continue;
        if (!in_file(p->p_offset, p->p_filesz, len))
            return err_set(-EINVAL,
                           "kernel %s: segment %u (file offset 0x%" PRIx64 " +0x%" PRIx64
                           ") runs past the end of the file (%zu bytes)",
                           name, i, (uint64_t)p->p_offset, (uint64_t)p->p_filesz, len);
        if (p->p_type == PT_NOTE) {
            int rc = note_entry(img, p, (int)i, name, pvh);
            if (rc < 0)
                return rc;
            continue;
        }
        if (p->p_filesz > p->p_memsz)
            return err_set(-EINVAL,
                           "kernel %s: segment %u has p_filesz 0x%" PRIx64
                           " larger than p_memsz 0x%" PRIx64,
                           name, i, (uint64_t)p->p_filesz, (uint64_t)p->p_memsz);
        if (p->p_memsz == 0)
            continue;
        if (!gm_ptr(gm, p->p_paddr, p->p_memsz))
            return err_set(-EINVAL,
                           "kernel %s: segment %u at 0x%" PRIx64 " (+0x%" PRIx64
                           ") is outside guest memory",
                           name, i, (uint64_t)p->p_paddr, (uint64_t)p->p_memsz);
        if (p->p_paddr < LAYOUT_KERNEL)
            return err_set(-EINVAL,
                           "kernel %s: segment %u at 0x%" PRIx64
                           " is below 1 MiB, where Ember keeps its boot data",
                           name, i, (uint64_t)p->p_paddr);
        if (p->p_paddr < *lo)
            *lo = p->p_paddr;
        if (p->p_paddr + p->p_memsz > *hi)
            *hi = p->p_paddr + p->p_memsz;
    }
    if (*hi == 0)
        return err_set(-EINVAL, "kernel %s: no loadable (PT_LOAD) segment", name);
    return 0;
}

/* The physical entry point: e_entry, translated through its segment if it is
 * a virtual (high-half) address; it, and the PVH entry, inside a loaded segment. */
static int entry_point(const uint8_t *img, const Elf64_Ehdr *eh, const char *name, uint64_t pvh,
                       uint64_t *out)
{
    uint64_t entry = eh->e_entry;
    if (entry >= ELF_VIRT_BASE) {
        int found = 0;
        for (unsigned i = 0; i < eh->e_phnum && !found; i++) {
            const Elf64_Phdr ph = phdr(img, eh, i), *p = &ph;
            if (p->p_type == PT_LOAD && p->p_memsz && entry >= p->p_vaddr &&
                entry - p->p_vaddr < p->p_memsz) {
                entry = entry - p->p_vaddr + p->p_paddr;
                found = 1;
            }
        }
        if (!found)
            return err_set(-EINVAL,
                           "kernel %s: virtual entry point 0x%" PRIx64
                           " is not inside any loaded segment",
                           name, (uint64_t)eh->e_entry);
    }
    if (!in_segments(img, eh, entry))
        return err_set(-EINVAL,
                       "kernel %s: entry point 0x%" PRIx64 " is not inside any loaded segment",
                       name, entry);
    if (pvh && !in_segments(img, eh, pvh))
        return err_set(-EINVAL,
                       "kernel %s: PVH entry 0x%" PRIx64 " is not inside any loaded segment", name,
                       pvh);
    *out = entry;
    return 0;
}

/* Pass 2: copy every PT_LOAD to its physical address, zeroing its bss
 * (without touching its whole pages: gm_zero). */
static int load_segments(struct guest_mem *gm, const uint8_t *img, const Elf64_Ehdr *eh,
                         const char *name)
{
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        const Elf64_Phdr ph = phdr(img, eh, i), *p = &ph;
        if (p->p_type != PT_LOAD || p->p_memsz == 0)
            continue;
        uint8_t *dst = gm_ptr(gm, p->p_paddr, p->p_memsz);
        if (!dst) /* checked in pass 1 */
            return err_set(-EFAULT, "kernel %s: segment %u is outside guest memory", name, i);
        memcpy(dst, img + p->p_offset, p->p_filesz);
        if (gm_zero(gm, p->p_paddr + p->p_filesz, p->p_memsz - p->p_filesz) < 0)
            return err_set(-EFAULT, "kernel %s: segment %u is outside guest memory", name, i);
    }
    return 0;
}

int elf_load(struct guest_mem *gm, const uint8_t *img, size_t len, const char *name,
             struct kernel_info *ki)
{
    memset(ki, 0, sizeof(*ki));
    ki->kind = KERNEL_KIND_ELF;
    Elf64_Ehdr eh;
    uint64_t lo = 0, hi = 0, pvh = 0, entry = 0;
    int rc = check_header(img, len, name, &eh);
    if (!rc)
        rc = check_segments(gm, img, len, &eh, name, &lo, &hi, &pvh);
    if (!rc)
        rc = entry_point(img, &eh, name, pvh, &entry);
    if (!rc)
        rc = load_segments(gm, img, &eh, name);
    if (rc)
        return rc;
    ki->entry64 = entry;
    ki->pvh_entry = pvh;
    ki->load_lo = lo;
    ki->load_hi = hi;
    return 0;
}
