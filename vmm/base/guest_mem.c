/* guest_mem.c - guest RAM mapping and the checked accessor (see guest_mem.h). */
#include "guest_mem.h"

#include "err.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

int guest_mem_init(struct guest_mem *gm, uint64_t size, uint64_t gap_start, uint64_t gap_end)
{
    memset(gm, 0, sizeof(*gm));
    if (size == 0 || (size & 0xfff))
        return err_set(-EINVAL, "guest memory size %llu is not a positive multiple of 4 KiB",
                       (unsigned long long)size);
    if (gap_start == 0 || (gap_start & 0xfff) || gap_end < gap_start || (gap_end & 0xfff))
        return err_set(-EINVAL, "guest memory: bad MMIO gap [0x%llx, 0x%llx)",
                       (unsigned long long)gap_start, (unsigned long long)gap_end);
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
    gm->host = p;
    gm->size = size;
    gm->low_size = size < gap_start ? size : gap_start;
    gm->high_gpa = gap_end;
    return 0;
}

void guest_mem_free(struct guest_mem *gm)
{
    if (gm->host)
        munmap(gm->host, gm->size);
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

int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len)
{
    void *p = gm_ptr(gm, gpa, len);
    if (!p)
        return -EFAULT;
    memcpy(dst, p, len);
    return 0;
}
