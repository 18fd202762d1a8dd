/* guest_mem.h - guest RAM: one lazy host mapping, and the one checked accessor.
 *
 * Guest RAM of `size` bytes is a single anonymous mapping (nothing touched up
 * front). Below the caller's MMIO gap [gap_start, gap_end) it appears at
 * guest-physical 0; whatever does not fit below gap_start is placed from
 * gap_end on:
 *   region 0: gpa [0, low_size)                -> host[0, low_size)
 *   region 1: gpa [gap_end, gap_end + high)    -> host[low_size, size)
 * Every guest address the VMM touches goes through gm_ptr(), which refuses any
 * range not wholly inside one region (overflow-safe).
 *
 * A restored VM maps a memory file instead (guest_mem_map_file): MAP_PRIVATE,
 * so every VM restored from one file shares its pages copy-on-write and pays
 * only for what it writes. Dirty tracking (gm_track_dirty) records the pages
 * the VMM itself writes (used rings, buffers the devices fill): KVM's dirty log
 * sees only the guest's own writes, and a diff snapshot needs both.
 */
#ifndef EMBER_GUEST_MEM_H
#define EMBER_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct guest_mem {
    uint8_t *host;     /* start of the mapping */
    uint64_t size;     /* total RAM bytes */
    uint64_t low_size; /* bytes below the MMIO gap */
    uint64_t high_gpa; /* where the rest starts: the gap's end */
    bool file_backed;  /* guest_mem_map_file: file_fd is the memory file, closed with gm */
    bool hugetlb;      /* hugetlbfs pages (machine-config.huge_pages "2M") */
    int file_fd;
    uint64_t *dirty; /* one bit per 4 KiB page the VMM wrote, or NULL */
};

#define GM_PAGE 4096u

struct gm_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *host;
};

/* Map `size` bytes (a multiple of 4 KiB, > 0) of lazily-allocated RAM around
 * the MMIO gap [gap_start, gap_end) (page-aligned, gap_start > 0). */
int guest_mem_init(struct guest_mem *gm, uint64_t size, uint64_t gap_start, uint64_t gap_end);
/* The same, backed as machine-config.huge_pages says: HUGE_PAGES_2M on
 * hugetlbfs pages (reserved by the host; mapped at once), TRANSPARENT with
 * MADV_HUGEPAGE; size a multiple of 2 MiB for both. */
int guest_mem_init_huge(struct guest_mem *gm, uint64_t size, uint64_t gap_start, uint64_t gap_end,
                        enum huge_pages hp);
/* The same layout over the memory file `fd` (exactly `size` bytes), mapped
 * MAP_PRIVATE: reads see the file, writes stay private. gm takes the fd (closed
 * on failure too). `at`: NULL, or the start of an anonymous mapping of `size`
 * bytes (another guest_mem's, whose KVM memory slots point there) that the
 * file replaces in place (MAP_FIXED); gm owns that range from then on, and on
 * failure it is unmapped. */
int guest_mem_map_file(struct guest_mem *gm, uint64_t size, uint64_t gap_start, uint64_t gap_end,
                       int fd, void *at);
void guest_mem_free(struct guest_mem *gm);

/* Start recording the pages the VMM writes (the bitmap covers the mapping). */
int gm_track_dirty(struct guest_mem *gm);
/* Host bytes [host, host+len) inside the mapping were written by the VMM
 * (no-op without tracking; any thread). */
void gm_mark_dirty(const struct guest_mem *gm, const void *host, uint64_t len);
/* Copy the VMM's dirty bits (words of 64 pages, by mapping offset) into out,
 * OR-ing them, and clear them. `words` = (size / GM_PAGE + 63) / 64. */
void gm_take_dirty(struct guest_mem *gm, uint64_t *out, uint64_t words);

/* Number of RAM regions (1 or 2) and each region's placement. */
int gm_region_count(const struct guest_mem *gm);
struct gm_region gm_region(const struct guest_mem *gm, int i);

/* Host pointer for guest range [gpa, gpa+len), or NULL if any byte of it is
 * outside guest RAM or the range crosses a region boundary. len 0 is valid
 * for any gpa inside or at the end of a region. */
void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* Zero guest range [gpa, gpa+len) (checked as gm_ptr; 0 or -EFAULT). The
 * whole 4 KiB pages of anonymous RAM in it are dropped (MADV_DONTNEED: they
 * read as zero and cost no memory until the guest touches them) rather than
 * written: a kernel's bss costs nothing until used. */
int gm_zero(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* Checked copies; return 0 or -EFAULT. */
int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len);
int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len);

#endif
