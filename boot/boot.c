/* boot.c - boot_load(): read the kernel and initrd, call the loaders, place
 * the initrd, and write the command line, zero page or PVH start info, MP
 * table, GDT and page tables into guest memory. */
#include "boot.h"
#include "layout.h"

#include "../vmm/base/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE_MASK_4K 0xfffULL

int kernel_load(struct guest_mem *gm, const uint8_t *img, size_t len, const char *name,
                struct kernel_info *ki)
{
    memset(ki, 0, sizeof(*ki));
    if (len >= 4 && !memcmp(img,
                            "\x7f"
                            "ELF",
                            4))
        return elf_load(gm, img, len, name, ki);
    if (len >= 0x206 && img[0x1fe] == 0x55 && img[0x1ff] == 0xaa && !memcmp(img + 0x202, "HdrS", 4))
        return bzimage_load(gm, img, len, name, ki);
    return err_set(-EINVAL, "kernel %s: not an ELF vmlinux or bzImage", name);
}

/* Open `path` read-only and check it is a non-empty regular file of at most
 * `max` bytes. `what` ("kernel", "initrd") prefixes errors. */
static int open_input(const char *what, const char *path, uint64_t max, int *fd_out, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return err_set(-e, "%s %s: cannot open: %s", what, path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return err_set(-e, "%s %s: cannot stat: %s", what, path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(-EINVAL, "%s %s: not a regular file", what, path);
    }
    if (st.st_size == 0) {
        close(fd);
        return err_set(-EINVAL, "%s %s: file is empty", what, path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return err_set(-EFBIG, "%s %s: %lld bytes is more than the limit of %llu MiB", what, path,
                       (long long)st.st_size, (unsigned long long)(max >> 20));
    }
    *fd_out = fd;
    *size = (uint64_t)st.st_size;
    return 0;
}

/* Read exactly `len` bytes from the start of `fd` into `dst`. */
static int read_all(const char *what, const char *path, int fd, uint8_t *dst, uint64_t len)
{
    uint64_t done = 0;
    while (done < len) {
        size_t chunk = len - done > (1U << 30) ? (1U << 30) : (size_t)(len - done);
        ssize_t r = pread(fd, dst + done, chunk, (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            return err_set(-e, "%s %s: read error: %s", what, path, strerror(e));
        }
        if (r == 0)
            return err_set(-EIO, "%s %s: file shrank while being read (%llu of %llu bytes)", what,
                           path, (unsigned long long)done, (unsigned long long)len);
        done += (uint64_t)r;
    }
    return 0;
}

static int kernel_read_load(struct guest_mem *gm, const char *path, struct kernel_info *ki)
{
    int fd;
    uint64_t size;
    int rc = open_input("kernel", path, BOOT_KERNEL_MAX, &fd, &size);
    if (rc < 0)
        return rc;
    uint8_t *img = malloc(size);
    if (!img) {
        close(fd);
        return err_set(-ENOMEM, "kernel %s: cannot allocate %llu bytes", path,
                       (unsigned long long)size);
    }
    rc = read_all("kernel", path, fd, img, size);
    close(fd);
    if (rc == 0)
        rc = kernel_load(gm, img, size, path, ki);
    free(img);
    return rc;
}

int initrd_place(const struct guest_mem *gm, const struct kernel_info *ki, uint64_t size,
                 const char *name, uint64_t *addr)
{
    uint64_t max_end = gm->low_size;
    uint64_t addr_max = BOOT_INITRD_ADDR_MAX_DEFAULT;
    if (ki->kind == KERNEL_KIND_BZIMAGE && ki->initrd_addr_max)
        addr_max = ki->initrd_addr_max;
    if (addr_max + 1 < max_end)
        max_end = addr_max + 1;
    uint64_t kernel_end = (ki->load_hi + PAGE_MASK_4K) & ~PAGE_MASK_4K;
    if (size == 0 || size > max_end || ((max_end - size) & ~PAGE_MASK_4K) < kernel_end)
        return err_set(-EINVAL,
                       "initrd %s: %llu bytes do not fit between the kernel end 0x%llx and 0x%llx",
                       name, (unsigned long long)size, (unsigned long long)ki->load_hi,
                       (unsigned long long)max_end);
    *addr = (max_end - size) & ~PAGE_MASK_4K;
    return 0;
}

static int initrd_load(struct guest_mem *gm, const struct kernel_info *ki, const char *path,
                       uint64_t *addr, uint64_t *size)
{
    int fd;
    int rc = open_input("initrd", path, UINT64_MAX, &fd, size); /* initrd_place bounds it */
    if (rc < 0)
        return rc;
    rc = initrd_place(gm, ki, *size, path, addr);
    if (rc == 0) {
        uint8_t *dst = gm_ptr(gm, *addr, *size);
        rc = dst ? read_all("initrd", path, fd, dst, *size)
                 : err_set(-EFAULT, "initrd %s: 0x%llx is outside guest memory", path,
                           (unsigned long long)*addr);
    }
    close(fd);
    return rc;
}

int boot_load(struct guest_mem *gm, const struct boot_spec *spec, struct boot_entry *out)
{
    memset(out, 0, sizeof(*out));
    if (!spec->kernel_path || !*spec->kernel_path)
        return err_set(-EINVAL, "kernel_image_path: no kernel given");
    if (spec->proto != BOOT_PROTO_AUTO && spec->proto != BOOT_PROTO_PVH &&
        spec->proto != BOOT_PROTO_LINUX64)
        return err_set(-EINVAL, "boot protocol %d is unknown", (int)spec->proto);
    if (gm->low_size < BOOT_MIN_MEM)
        return err_set(-EINVAL, "guest memory: %llu KiB is too small to boot (minimum %llu MiB)",
                       (unsigned long long)(gm->size >> 10),
                       (unsigned long long)(BOOT_MIN_MEM >> 20));

    struct kernel_info ki;
    int rc = kernel_read_load(gm, spec->kernel_path, &ki);
    if (rc < 0)
        return rc;

    enum boot_protocol proto = spec->proto;
    if (ki.kind == KERNEL_KIND_BZIMAGE && proto == BOOT_PROTO_PVH)
        return err_set(-EINVAL,
                       "kernel %s: is a bzImage; the PVH boot protocol (--boot-protocol pvh) "
                       "needs an ELF vmlinux with a XEN_ELFNOTE_PHYS32_ENTRY note",
                       spec->kernel_path);
    if (proto == BOOT_PROTO_PVH && !ki.pvh_entry)
        return err_set(-EINVAL,
                       "kernel %s: has no XEN_ELFNOTE_PHYS32_ENTRY note, so it cannot boot with "
                       "the PVH boot protocol (--boot-protocol pvh)",
                       spec->kernel_path);
    if (proto == BOOT_PROTO_AUTO)
        proto = ki.pvh_entry ? BOOT_PROTO_PVH : BOOT_PROTO_LINUX64;
    if (proto == BOOT_PROTO_LINUX64 &&
        (ki.entry64 >= BOOT_IDENTITY_MAP_END || ki.load_hi > BOOT_IDENTITY_MAP_END))
        return err_set(-EINVAL,
                       "kernel %s: loaded at 0x%llx-0x%llx, beyond the 1 GiB identity map of the "
                       "64-bit boot protocol",
                       spec->kernel_path, (unsigned long long)ki.load_lo,
                       (unsigned long long)ki.load_hi);

    size_t limit = LAYOUT_CMDLINE_MAX - 1;
    if (ki.kind == KERNEL_KIND_BZIMAGE && ki.cmdline_size < limit)
        limit = ki.cmdline_size;
    rc = cmdline_write(gm, spec->cmdline, limit);
    if (rc < 0)
        return rc;

    uint64_t initrd_addr = 0, initrd_size = 0;
    if (spec->initrd_path) {
        rc = initrd_load(gm, &ki, spec->initrd_path, &initrd_addr, &initrd_size);
        if (rc < 0)
            return rc;
    }

    if (proto == BOOT_PROTO_PVH)
        rc = pvh_write(gm, initrd_addr, initrd_size);
    else
        rc = zeropage_write(gm, &ki, initrd_addr, initrd_size);
    if (rc == 0)
        rc = mptable_write(gm, spec->vcpus);
    if (rc == 0)
        rc = gdt_write(gm, proto);
    if (rc == 0)
        rc = paging_write(gm);
    if (rc < 0)
        return rc;

    out->proto = proto;
    if (proto == BOOT_PROTO_PVH) {
        out->rip = ki.pvh_entry;
        out->rbx = LAYOUT_PVH_INFO;
    } else {
        out->rip = ki.entry64;
        out->rsi = LAYOUT_ZERO_PAGE;
    }
    out->rsp = LAYOUT_BOOT_STACK;
    out->kernel_end = ki.load_hi;
    out->initrd_addr = initrd_addr;
    out->initrd_size = initrd_size;
    return 0;
}
