/* guest_mem.c - guest RAM mapping and the checked accessor (see guest_mem.h). */
#include "guest_mem.h"

#include "err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* What every kind of mapping needs: whole 4 KiB pages, a page-aligned gap. */
static int check_layout(uint64_t size, uint64_t gap_start, uint64_t gap_end)
{
    if (size == 0 || (size & 0xfff))
        return err_set(-EINVAL, "guest memory size %llu is not a positive multiple of 4 KiB",
                       (unsigned long long)size);
    if (gap_start == 0 || (gap_start & 0xfff) || gap_end < gap_start || (gap_end & 0xfff))
        return err_set(-EINVAL, "guest memory: bad MMIO gap [0x%llx, 0x%llx)",
                       (unsigned long long)gap_start, (unsigned long long)gap_end);
    return 0;
}

/* RAM mapped at p: below the gap up to gap_start, the rest from gap_end. */
static void set_layout(struct guest_mem *gm, void *p, uint64_t size, uint64_t gap_start,
                       uint64_t gap_end)
{
    gm->host = p;
    gm->size = size;
    gm->low_size = size < gap_start ? size : gap_start;
    gm->high_gpa = gap_end;
}

int guest_mem_init(struct guest_mem *gm, uint64_t size, uint64_t gap_start, uint64_t gap_end)
{
    memset(gm, 0, sizeof(*gm));
    int rc = check_layout(size, gap_start, gap_end);
    if (rc)
        return rc;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        return err_set(-e, "cannot map %llu MiB of guest memory: %s",
                       (unsigned long long)(size >> 20), strerror(e));
    }
    /* 4 KiB pages for guest RAM: with transparent huge pages "always" each 2 MiB region
     * the guest touches would cost 2 MiB of host memory (an idle test guest: 2 MiB instead
     * of 0.4 MiB resident, depending on where the mapping lands). Advice only: a host
     * without THP refuses it, which changes nothing. */
    (void)madvise(p, size, MADV_NOHUGEPAGE);
    set_layout(gm, p, size, gap_start, gap_end);
    return 0;
}

/* machine-config.huge_pages: "2M" maps hugetlbfs pages up front (without
 * MAP_NORESERVE, so a host without enough reserved pages fails here rather
 * than with SIGBUS at the guest's first touch); "Transparent" is the usual
 * lazy mapping with MADV_HUGEPAGE. Whole 2 MiB pages only. */
int guest_mem_init_huge(struct guest_mem *gm, uint64_t size, uint64_t gap_start, uint64_t gap_end,
                        enum huge_pages hp)
{
    const uint64_t huge = 2ull << 20;
    if (hp != HUGE_PAGES_NONE && (size % huge || gap_start % huge))
        return err_set(-EINVAL, "machine-config.mem_size_mib: %llu MiB is not whole 2 MiB pages",
                       (unsigned long long)(size >> 20));
    if (hp != HUGE_PAGES_2M) {
        int rc = guest_mem_init(gm, size, gap_start, gap_end);
        if (rc || hp == HUGE_PAGES_NONE)
            return rc;
        if (madvise(gm->host, size, MADV_HUGEPAGE) < 0) {
            int e = errno;
            guest_mem_free(gm);
            return err_set(-e,
                           "machine-config.huge_pages: madvise(MADV_HUGEPAGE): %s "
                           "(transparent huge pages off in this kernel?)",
                           strerror(e));
        }
        return 0;
    }
    memset(gm, 0, sizeof(*gm));
    int rc = check_layout(size, gap_start, gap_end);
    if (rc)
        return rc;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (21 << MAP_HUGE_SHIFT), -1, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        return err_set(-e,
                       "machine-config.huge_pages: cannot map %llu MiB of 2M huge pages: %s "
                       "(are %llu pages reserved in /proc/sys/vm/nr_hugepages?)",
                       (unsigned long long)(size >> 20), strerror(e),
                       (unsigned long long)(size / huge));
    }
    set_layout(gm, p, size, gap_start, gap_end);
    gm->hugetlb = true;
    return 0;
}

int guest_mem_map_file(struct guest_mem *gm, uint64_t size, uint64_t gap_start, uint64_t gap_end,
                       int fd, void *at)
{
    memset(gm, 0, sizeof(*gm));
    int rc = check_layout(size, gap_start, gap_end);
    struct stat st;
    if (!rc && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)))
        rc = err_set(-EINVAL, "memory file: not a regular file");
    if (!rc && (uint64_t)st.st_size != size)
        rc = err_set(-EINVAL, "memory file: %llu bytes, the snapshot's guest has %llu",
                     (unsigned long long)st.st_size, (unsigned long long)size);
    void *p = rc ? MAP_FAILED
                 : mmap(at, size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_NORESERVE | (at ? MAP_FIXED : 0), fd, 0);
    if (!rc && p == MAP_FAILED)
        rc = err_set(-errno, "memory file: cannot map %llu MiB: %s",
                     (unsigned long long)(size >> 20), strerror(errno));
    if (rc) {
        if (at) /* what is left of the old mapping */
            munmap(at, size);
        close(fd);
        return rc;
    }
    set_layout(gm, p, size, gap_start, gap_end);
    gm->file_backed = true;
    gm->file_fd = fd;
    return 0;
}

int gm_track_dirty(struct guest_mem *gm)
{
    if (gm->dirty)
        return 0;
    uint64_t words = (gm->size / GM_PAGE + 63) / 64;
    gm->dirty = calloc(words ? words : 1, sizeof(uint64_t));
    return gm->dirty ? 0 : err_set(-ENOMEM, "dirty page tracking: out of memory");
}

void gm_mark_dirty(const struct guest_mem *gm, const void *host, uint64_t len)
{
    if (!gm->dirty || !len)
        return;
    const uint8_t *h = host;
    if (h < gm->host || h >= gm->host + gm->size)
        return;
    uint64_t first = (uint64_t)(h - gm->host) / GM_PAGE;
    uint64_t end = (uint64_t)(h - gm->host) + len;
    if (end > gm->size)
        end = gm->size;
    uint64_t last = (end - 1) / GM_PAGE;
    for (uint64_t pg = first; pg <= last; pg++)
        __atomic_fetch_or(&gm->dirty[pg / 64], 1ull << (pg % 64), __ATOMIC_RELAXED);
}

void gm_take_dirty(struct guest_mem *gm, uint64_t *out, uint64_t words)
{
    if (!gm->dirty)
        return;
    uint64_t have = (gm->size / GM_PAGE + 63) / 64;
    for (uint64_t i = 0; i < words && i < have; i++)
        out[i] |= __atomic_exchange_n(&gm->dirty[i], 0, __ATOMIC_RELAXED);
}

void guest_mem_free(struct guest_mem *gm)
{
    if (gm->host)
        munmap(gm->host, gm->size);
    if (gm->file_backed)
        close(gm->file_fd);
    free(gm->dirty);
    memset(gm, 0, sizeof(*gm));
}

int gm_region_count(const struct guest_mem *gm)
{
    return gm->size > gm->low_size ? 2 : 1;
}

struct gm_region gm_region(const struct guest_mem *gm, int i)
{
    struct gm_region r = {0, gm->low_size, gm->host};
    if (i == 1) {
        r.gpa = gm->high_gpa;
        r.size = gm->size - gm->low_size;
        r.host = gm->host + gm->low_size;
    }
    return r;
}

void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
    if (!gm->host)
        return NULL;
    int n = gm_region_count(gm);
    for (int i = 0; i < n; i++) {
        struct gm_region r = gm_region(gm, i);
        if (gpa < r.gpa)
            continue;
        uint64_t off = gpa - r.gpa;
        if (off > r.size || len > r.size - off)
            continue;
        return r.host + off;
    }
    return NULL;
}

int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len)
{
    void *p = gm_ptr(gm, gpa, len);
    if (!p)
        return -EFAULT;
    memcpy(p, src, len);
    return 0;
}

int gm_zero(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
    uint8_t *p = gm_ptr(gm, gpa, len);
    if (!p)
        return -EFAULT;
    uintptr_t lo = ((uintptr_t)p + GM_PAGE - 1) & ~(uintptr_t)(GM_PAGE - 1);
    uintptr_t hi = ((uintptr_t)p + len) & ~(uintptr_t)(GM_PAGE - 1);
    /* A file-backed page would read as the file again, a huge page needs whole 2 MiB. */
    if (gm->file_backed || gm->hugetlb || lo >= hi ||
        madvise((void *)lo, hi - lo, MADV_DONTNEED) < 0) {
        memset(p, 0, len);
        return 0;
    }
    memset(p, 0, lo - (uintptr_t)p);
    memset((void *)hi, 0, (uintptr_t)p + len - hi);
    return 0;
}

int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len)
{
    void *p = gm_ptr(gm, gpa, len);
    if (!p)
        return -EFAULT;
    memcpy(dst, p, len);
    return 0;
}
