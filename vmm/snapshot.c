/* snapshot.c - snapshot files and memory files: create from a paused VM, load into a fresh
 * one, describe (see snapshot.h). */
#define _GNU_SOURCE
#include "snapshot.h"

#include "../api/config_json.h"
#include "../boot/layout.h"
#include "base/err.h"
#include "base/log.h"
#include "base/snapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef EMBER_VERSION
#define EMBER_VERSION "0.1.0"
#endif

/* What the snapshot is. `layout` changes whenever a saved struct does, so a
 * file from a build with other structs is refused by name, not misread. */
struct snap_info {
    uint64_t mem_size;
    uint64_t created_realtime_ns;
    uint32_t n_vcpus, n_devices;
    uint32_t type; /* enum snapshot_type */
    uint32_t layout;
};

struct snap_device {
    char section[32]; /* the kind's configuration section */
    char id[CONFIG_ID_MAX + 1];
    uint8_t pad[7];
    struct vmmio_state t;
    uint32_t own_len;
    /* The kind's own state struct is written and read in place: keep it aligned. */
    uint8_t own[VIRTIO_DEV_STATE_MAX] __attribute__((aligned(8)));
};

static uint32_t state_layout(void)
{
    const size_t sizes[] = {sizeof(struct snap_info),    sizeof(struct snap_device),
                            sizeof(struct vmmio_state),  sizeof(struct vcpu_state),
                            sizeof(struct vm_kvm_state), sizeof(struct vm_legacy_state),
                            sizeof(struct rl_state),     sizeof(struct virtq_state)};
    return snap_crc32(0, sizes, sizeof(sizes));
}

static const char *type_name(uint32_t t)
{
    return t == SNAPSHOT_DIFF ? "Diff" : "Full";
}

/* ---- memory files ------------------------------------------------------------- */

#define RUN_MAX (1u << 20) /* bytes per write */

static bool page_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)(const void *)p;
    for (unsigned i = 0; i < GM_PAGE / 8; i++)
        if (w[i])
            return false;
    return true;
}

static int write_run(int fd, const uint8_t *base, uint64_t off, uint64_t len, const char *path)
{
    while (len) {
        ssize_t n = pwrite(fd, base + off, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return err_set(n < 0 ? -errno : -EIO, "mem_file_path %s: write at offset %llu: %s",
                           path, (unsigned long long)off, n < 0 ? strerror(errno) : "short write");
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

/* Pages worth looking at for a Full snapshot, one bit each: resident in the
 * mapping, or data in the file a restored VM runs on. */
static int candidate_pages(const struct guest_mem *gm, uint64_t *bits)
{
    uint64_t pages = gm->size / GM_PAGE;
    const uint64_t chunk = 1u << 18; /* pages per mincore call (1 GiB) */
    unsigned char *vec = malloc(chunk);
    if (!vec)
        return err_set(-ENOMEM, "snapshot: out of memory");
    for (uint64_t p0 = 0; p0 < pages; p0 += chunk) {
        uint64_t n = pages - p0 < chunk ? pages - p0 : chunk;
        if (mincore(gm->host + p0 * GM_PAGE, n * GM_PAGE, vec) < 0) {
            int e = errno;
            free(vec);
            return err_set(-e, "snapshot: mincore on guest memory: %s", strerror(e));
        }
        for (uint64_t i = 0; i < n; i++)
            if (vec[i] & 1)
                bits[(p0 + i) / 64] |= 1ull << ((p0 + i) % 64);
    }
    free(vec);
    if (!gm->file_backed)
        return 0;
    off_t pos = 0, end;
    while ((pos = lseek(gm->file_fd, pos, SEEK_DATA)) >= 0 && (uint64_t)pos < gm->size) {
        end = lseek(gm->file_fd, pos, SEEK_HOLE);
        if (end < 0 || (uint64_t)end > gm->size)
            end = (off_t)gm->size;
        for (uint64_t p = (uint64_t)pos / GM_PAGE; p < ((uint64_t)end + GM_PAGE - 1) / GM_PAGE; p++)
            bits[p / 64] |= 1ull << (p % 64);
        pos = end;
    }
    return 0;
}

/* Write the marked pages (Full: skipping zero pages, which the sparse file
 * already reads as zero) in runs. */
static int write_pages(int fd, const struct guest_mem *gm, const uint64_t *bits, bool skip_zero,
                       const char *path, uint64_t *written)
{
    uint64_t pages = gm->size / GM_PAGE, run_start = 0, run_len = 0;
    *written = 0;
    for (uint64_t p = 0; p <= pages; p++) {
        bool take = p < pages && (bits[p / 64] & (1ull << (p % 64))) &&
                    !(skip_zero && page_is_zero(gm->host + p * GM_PAGE));
        if (take && run_len && run_start + run_len == p && run_len * GM_PAGE < RUN_MAX) {
            run_len++;
            continue;
        }
        if (run_len) {
            int rc = write_run(fd, gm->host, run_start * GM_PAGE, run_len * GM_PAGE, path);
            if (rc)
                return rc;
            *written += run_len;
        }
        run_len = take ? 1 : 0;
        run_start = p;
    }
    return 0;
}

static int write_memory(struct vm *vm, const char *path, enum snapshot_type type)
{
    struct guest_mem *gm = &vm->mem;
    uint64_t words = (gm->size / GM_PAGE + 63) / 64;
    uint64_t *bits = calloc(words, sizeof(uint64_t));
    if (!bits)
        return err_set(-ENOMEM, "snapshot: out of memory");
    int rc = 0;
    if (type == SNAPSHOT_DIFF)
        rc = vm_take_dirty(vm, bits, words);
    else {
        if (vm->track_dirty) { /* a Full snapshot is the next Diff's base */
            uint64_t *drop = calloc(words, sizeof(uint64_t));
            rc = drop ? vm_take_dirty(vm, drop, words) : err_set(-ENOMEM, "out of memory");
            free(drop);
        }
        if (!rc)
            rc = candidate_pages(gm, bits);
    }
    if (rc) {
        free(bits);
        return type == SNAPSHOT_DIFF && rc == -EINVAL
                   ? err_set(rc, "snapshot_type: Diff needs dirty page tracking: set "
                                 "machine-config.track_dirty_pages (or track_dirty_pages when "
                                 "loading)")
                   : rc;
    }
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (type == SNAPSHOT_FULL ? O_TRUNC : 0);
    int fd = open(path, flags, 0600);
    if (fd < 0) {
        rc = err_set(-errno, "mem_file_path %s: %s", path, strerror(errno));
        free(bits);
        return rc;
    }
    struct stat st, back;
    if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode))
        rc = err_set(-EINVAL, "mem_file_path %s: not a regular file", path);
    else if (gm->file_backed && fstat(gm->file_fd, &back) == 0 && back.st_dev == st.st_dev &&
             back.st_ino == st.st_ino)
        rc = err_set(-EINVAL,
                     "mem_file_path %s: this VM runs on that memory file (and its clones may "
                     "too); write the snapshot to another file",
                     path);
    else if (ftruncate(fd, (off_t)gm->size) < 0)
        rc = err_set(-errno, "mem_file_path %s: cannot size it to %llu bytes: %s", path,
                     (unsigned long long)gm->size, strerror(errno));
    uint64_t written = 0;
    if (!rc)
        rc = write_pages(fd, gm, bits, type == SNAPSHOT_FULL, path, &written);
    close(fd);
    free(bits);
    if (!rc)
        log_info("snapshot: %s memory file %s: %llu of %llu pages written", type_name(type), path,
                 (unsigned long long)written, (unsigned long long)(gm->size / GM_PAGE));
    return rc;
}

/* ---- create ------------------------------------------------------------------- */

static int add_config(struct snap_writer *w, const struct vm_config *cfg)
{
    struct vm_config c = *cfg; /* shallow: only the process's own sections are dropped */
    c.has_logger = false;
    c.has_metrics = false;
    char *json = config_to_json(&c);
    if (!json)
        return err_set(-ENOMEM, "snapshot: cannot write the configuration");
    snapw_add(w, SNAP_CONFIG, 0, json, strlen(json));
    free(json);
    return 0;
}

static int add_vcpus(struct snap_writer *w, struct vm *vm)
{
    static uint32_t msr_index[VCPU_MAX_MSRS];
    int n_msrs = vcpu_msr_index(vm->kvm_fd, msr_index, VCPU_MAX_MSRS);
    if (n_msrs < 0)
        return n_msrs;
    struct vcpu_state *s = malloc(sizeof(*s));
    if (!s)
        return err_set(-ENOMEM, "snapshot: out of memory");
    int rc = 0;
    for (unsigned i = 0; i < vm->n_vcpus && !rc; i++)
        if (!(rc = vcpu_save(&vm->vcpus[i], msr_index, (unsigned)n_msrs, s)))
            snapw_add(w, SNAP_VCPU, i, s, sizeof(*s));
    free(s);
    return rc;
}

static void add_devices(struct snap_writer *w, struct vm *vm)
{
    struct snap_device *d = malloc(sizeof(*d));
    if (!d) {
        w->error = -ENOMEM;
        return;
    }
    for (unsigned i = 0; i < vm->vdevs.n; i++) {
        struct virtio_dev *v = vm->vdevs.dev[i];
        memset(d, 0, sizeof(*d));
        snprintf(d->section, sizeof(d->section), "%s", v->kind->section);
        snprintf(d->id, sizeof(d->id), "%s", v->id);
        vmmio_save(&v->t, &d->t);
        vmmio_lock(&v->t);
        d->own_len = v->kind->save ? (uint32_t)v->kind->save(v, d->own) : 0;
        vmmio_unlock(&v->t);
        snapw_add(w, SNAP_DEVICE, i, d, sizeof(*d));
    }
    free(d);
}

int snapshot_create(struct vm *vm, const struct vm_config *cfg,
                    const struct snapshot_create_params *p)
{
    if (!vm_is_paused(vm))
        return err_set(-EINVAL, "the microVM must be paused to create a snapshot (PATCH /vm "
                                "{\"state\": \"Paused\"})");
    int rc = write_memory(vm, p->mem_file_path, p->type);
    if (rc)
        return rc;
    struct snap_writer w;
    snapw_init(&w);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct snap_info info = {
        .mem_size = vm->mem.size,
        .created_realtime_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec,
        .n_vcpus = vm->n_vcpus,
        .n_devices = vm->vdevs.n,
        .type = p->type,
        .layout = state_layout(),
    };
    snapw_add(&w, SNAP_INFO, 0, &info, sizeof(info));
    struct vm_kvm_state ks;
    struct vm_legacy_state ls;
    if (!(rc = add_config(&w, cfg)) && !(rc = vm_save_kvm_state(vm, &ks))) {
        snapw_add(&w, SNAP_VM, 0, &ks, sizeof(ks));
        rc = add_vcpus(&w, vm);
    }
    if (!rc) {
        add_devices(&w, vm);
        vm_save_legacy(vm, &ls);
        snapw_add(&w, SNAP_LEGACY, 0, &ls, sizeof(ls));
        rc = snapw_write(&w, p->snapshot_path, "ember " EMBER_VERSION);
        if (rc)
            rc = err_set(rc, "snapshot_path: %s", err_msg());
    }
    snapw_free(&w);
    if (!rc)
        log_info("snapshot: %s snapshot written to %s (memory in %s)", type_name(p->type),
                 p->snapshot_path, p->mem_file_path);
    return rc;
}

/* ---- checking a snapshot file -------------------------------------------------- */

struct snap_view {
    struct snap_info info;
    const char *config;
    size_t config_len;
    const struct vm_kvm_state *kvm;
    const struct vcpu_state *vcpu[CONFIG_MAX_VCPUS];
    const struct snap_device *dev[VDEV_MAX];
    const struct vm_legacy_state *legacy;
};

/* Section (type, index) of exactly `len` bytes. */
static const void *want(const struct snap_reader *r, const char *path, uint32_t type,
                        uint32_t index, size_t len, const char *what, int *rc)
{
    if (*rc)
        return NULL;
    const struct snap_section *s = snapr_find(r, type, index);
    if (!s)
        *rc = err_set(-EINVAL, "snapshot_path %s: the %s section is missing", path, what);
    else if (len && s->len != len)
        *rc =
            err_set(-EINVAL, "snapshot_path %s: the %s section is %llu bytes, this build reads %zu",
                    path, what, (unsigned long long)s->len, len);
    return *rc ? NULL : s->data;
}

static int view_snapshot(const struct snap_reader *r, const char *path, struct snap_view *v)
{
    memset(v, 0, sizeof(*v));
    int rc = 0;
    const struct snap_info *info = want(r, path, SNAP_INFO, 0, sizeof(*info), "info", &rc);
    if (rc)
        return rc;
    v->info = *info;
    if (info->layout != state_layout())
        return err_set(-EINVAL,
                       "snapshot_path %s: made by a build whose saved state has another "
                       "layout (producer \"%s\"); this build cannot read it",
                       path, r->producer);
    if (info->n_vcpus < 1 || info->n_vcpus > CONFIG_MAX_VCPUS || info->n_devices > VDEV_MAX ||
        info->type > SNAPSHOT_DIFF || !info->mem_size || info->mem_size % GM_PAGE)
        return err_set(-EINVAL, "snapshot_path %s: the info section is out of range", path);
    if (snapr_count(r, SNAP_VCPU) != info->n_vcpus ||
        snapr_count(r, SNAP_DEVICE) != info->n_devices)
        return err_set(-EINVAL,
                       "snapshot_path %s: holds %u vCPU and %u device sections, its info "
                       "says %u and %u",
                       path, snapr_count(r, SNAP_VCPU), snapr_count(r, SNAP_DEVICE), info->n_vcpus,
                       info->n_devices);
    const struct snap_section *c = snapr_find(r, SNAP_CONFIG, 0);
    if (!c)
        return err_set(-EINVAL, "snapshot_path %s: the configuration section is missing", path);
    v->config = (const char *)c->data;
    v->config_len = c->len;
    v->kvm = want(r, path, SNAP_VM, 0, sizeof(*v->kvm), "VM", &rc);
    for (uint32_t i = 0; i < info->n_vcpus; i++)
        v->vcpu[i] = want(r, path, SNAP_VCPU, i, sizeof(struct vcpu_state), "vCPU", &rc);
    for (uint32_t i = 0; i < info->n_devices; i++) {
        v->dev[i] = want(r, path, SNAP_DEVICE, i, sizeof(struct snap_device), "device", &rc);
        if (!rc && (memchr(v->dev[i]->section, 0, sizeof(v->dev[i]->section)) == NULL ||
                    memchr(v->dev[i]->id, 0, sizeof(v->dev[i]->id)) == NULL ||
                    v->dev[i]->own_len > VIRTIO_DEV_STATE_MAX))
            rc = err_set(-EINVAL, "snapshot_path %s: device section %u is malformed", path, i);
    }
    v->legacy = want(r, path, SNAP_LEGACY, 0, sizeof(*v->legacy), "legacy devices", &rc);
    return rc;
}

/* The configuration the snapshot was taken with, with the load's changes. */
static int restored_config(const struct snap_view *v, const char *path,
                           const struct snapshot_load_params *p, struct vm_config *out)
{
    config_init(out);
    int rc = config_parse_json(v->config, v->config_len, out);
    if (rc)
        return err_set(rc, "snapshot_path %s: its configuration: %s", path, err_msg());
    if (out->machine.vcpu_count != v->info.n_vcpus ||
        (out->machine.mem_size_mib << 20) != v->info.mem_size)
        return err_set(-EINVAL, "snapshot_path %s: its configuration does not match its state",
                       path);
    for (int i = 0; i < p->n_overrides; i++) {
        struct net_config *n = NULL;
        for (int j = 0; j < out->n_nets; j++)
            if (strcmp(out->nets[j].iface_id, p->overrides[i].iface_id) == 0)
                n = &out->nets[j];
        if (!n)
            return err_set(-EINVAL,
                           "network_overrides[%d].iface_id: the snapshot has no interface \"%s\"",
                           i, p->overrides[i].iface_id);
        char *dev = strdup(p->overrides[i].host_dev_name);
        if (!dev)
            return err_set(-ENOMEM, "network_overrides: out of memory");
        free(n->host_dev_name);
        n->host_dev_name = dev;
    }
    out->machine.track_dirty_pages = p->track_dirty_pages;
    return config_validate(out);
}

/* ---- load --------------------------------------------------------------------- */

static int open_mem_file(const char *path, uint64_t size, int *fd_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(-errno, "mem_backend.backend_path %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(-EINVAL, "mem_backend.backend_path %s: not a regular file", path);
    }
    if ((uint64_t)st.st_size != size) {
        close(fd);
        return err_set(-EINVAL,
                       "mem_backend.backend_path %s: %llu bytes, but the snapshot's guest RAM is "
                       "%llu bytes",
                       path, (unsigned long long)st.st_size, (unsigned long long)size);
    }
    *fd_out = fd;
    return 0;
}

/* Firecracker's Uffd protocol: register guest RAM with a userfaultfd, connect
 * to the handler's socket, send the region layout (JSON) with the fd. */
static int uffd_handshake(struct vm *vm, const char *sock_path)
{
    int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0)
        return err_set(-errno, "mem_backend: userfaultfd: %s", strerror(errno));
    vm->uffd = uffd;
    struct uffdio_api api = {.api = UFFD_API};
    if (ioctl(uffd, UFFDIO_API, &api) < 0)
        return err_set(-errno, "mem_backend: UFFDIO_API: %s", strerror(errno));
    char json[1024];
    size_t n = (size_t)snprintf(json, sizeof(json), "[");
    for (int i = 0; i < gm_region_count(&vm->mem); i++) {
        struct gm_region r = gm_region(&vm->mem, i);
        struct uffdio_register reg = {
            .range = {.start = (uint64_t)(uintptr_t)r.host, .len = r.size},
            .mode = UFFDIO_REGISTER_MODE_MISSING,
        };
        if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
            return err_set(-errno, "mem_backend: UFFDIO_REGISTER: %s", strerror(errno));
        n += (size_t)snprintf(json + n, sizeof(json) - n,
                              "%s{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":%llu,"
                              "\"page_size\":%u,\"page_size_kib\":%u}",
                              i ? "," : "", (unsigned long long)(uintptr_t)r.host,
                              (unsigned long long)r.size,
                              (unsigned long long)(r.host - vm->mem.host), GM_PAGE, GM_PAGE / 1024);
    }
    n += (size_t)snprintf(json + n, sizeof(json) - n, "]");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock_path) >= sizeof(sa.sun_path))
        return err_set(-ENAMETOOLONG, "mem_backend.backend_path %s: too long for a socket path",
                       sock_path);
    strcpy(sa.sun_path, sock_path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return err_set(-errno, "mem_backend: socket: %s", strerror(errno));
    vm->uffd_sock = s;
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return err_set(-errno, "mem_backend.backend_path %s: cannot connect: %s", sock_path,
                       strerror(errno));
    char ctl[CMSG_SPACE(sizeof(int))];
    memset(ctl, 0, sizeof(ctl));
    struct iovec iov = {json, n};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &uffd, sizeof(int));
    if (sendmsg(s, &msg, MSG_NOSIGNAL) != (ssize_t)n)
        return err_set(-EIO, "mem_backend.backend_path %s: cannot send the layout: %s", sock_path,
                       strerror(errno));
    return 0;
}

static int restore_devices(struct vm *vm, const struct snap_view *v)
{
    if (vm->vdevs.n != v->info.n_devices)
        return err_set(-EINVAL, "snapshot: %u devices saved, %u built from its configuration",
                       v->info.n_devices, vm->vdevs.n);
    for (unsigned i = 0; i < vm->vdevs.n; i++) {
        struct virtio_dev *d = vm->vdevs.dev[i];
        const struct snap_device *s = v->dev[i];
        if (strcmp(d->kind->section, s->section) || strcmp(d->id, s->id))
            return err_set(-EINVAL,
                           "snapshot: device slot %u holds %s %s, the configuration puts "
                           "%s %s there",
                           i, s->section, s->id, d->kind->section, d->id);
        int rc = vmmio_restore(&d->t, &s->t);
        if (!rc && d->kind->restore) {
            vmmio_lock(&d->t);
            rc = d->kind->restore(d, s->own, s->own_len);
            vmmio_unlock(&d->t);
        }
        if (rc)
            return rc;
    }
    return 0;
}

static int restore_state(struct vm *vm, const struct snap_view *v,
                         const struct snapshot_load_params *p)
{
    int rc = vm_restore_irqchip(vm, v->kvm);
    for (unsigned i = 0; i < vm->n_vcpus && !rc; i++)
        rc = vcpu_restore(&vm->vcpus[i], v->vcpu[i]);
    if (!rc)
        rc = vm_restore_clock(vm, v->kvm, p->clock_realtime);
    if (!rc)
        rc = restore_devices(vm, v);
    if (!rc)
        rc = vm_restore_legacy(vm, v->legacy);
    return rc;
}

int snapshot_load(struct vm *vm, struct vm_config *cfg, const struct snapshot_load_params *p,
                  const struct vm_options *opt, struct evloop *ev)
{
    uint64_t t_read = time_now_us();
    struct timespec c0, c1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    struct snap_reader r;
    int rc = snapr_open(&r, p->snapshot_path);
    if (rc)
        return err_set(rc, "snapshot_path: %s", err_msg());
    uint64_t t_check = time_now_us();
    struct snap_view v;
    struct vm_config c;
    config_init(&c);
    if ((rc = view_snapshot(&r, p->snapshot_path, &v)) ||
        (rc = restored_config(&v, p->snapshot_path, p, &c))) {
        config_free(&c);
        snapr_close(&r);
        return rc;
    }
    struct vm_options o = *opt;
    o.cpu_template_path = NULL; /* CPUID comes from the snapshot */
    o.mem_from_file = p->backend == MEM_BACKEND_FILE;
    if (o.mem_from_file && (rc = open_mem_file(p->backend_path, v.info.mem_size, &o.mem_fd))) {
        config_free(&c);
        snapr_close(&r);
        return rc;
    }
    uint64_t t0 = time_now_us();
    rc = vm_create(vm, &c, &o);
    uint64_t t1 = time_now_us();
    if (!rc && p->backend == MEM_BACKEND_UFFD)
        rc = uffd_handshake(vm, p->backend_path);
    if (!rc)
        rc = restore_state(vm, &v, p);
    /* The boot timer fires again: the guest's next write counts from the load. */
    vm->boot_timer.start_us = t_read;
    vm->boot_timer.boot_time_us = 0;
    uint64_t t2 = time_now_us();
    if (!rc)
        rc = vm_attach(vm, ev);
    if (!rc)
        rc = vm_start(vm, true);
    log_debug("snapshot load: file read in %llu us, checked and configuration parsed in %llu us, "
              "VM built in %llu us, state restored in %llu us, started in %llu us",
              (unsigned long long)(t_check - t_read), (unsigned long long)(t0 - t_check),
              (unsigned long long)(t1 - t0), (unsigned long long)(t2 - t1),
              (unsigned long long)(time_now_us() - t2));
    if (!rc && p->resume_vm)
        rc = vm_resume(vm);
    snapr_close(&r);
    if (rc) {
        char why[512];
        snprintf(why, sizeof(why), "%s", err_msg());
        vm_destroy(vm);
        config_free(&c);
        return err_set(rc, "%s", why);
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    long long cpu = (c1.tv_sec - c0.tv_sec) * 1000000LL + (c1.tv_nsec - c0.tv_nsec) / 1000;
    /* Wall time from the request to the vCPUs let go, and this (the main) thread's CPU. */
    log_info("snapshot loaded in %llu us (%lld us of CPU)",
             (unsigned long long)(time_now_us() - t_read), cpu);
    c.machine.cpu_template = cfg->machine.cpu_template;
    cfg->machine.cpu_template = NULL;
    config_free(cfg);
    *cfg = c;
    log_info("snapshot: %s loaded (%u vCPU(s), %llu MiB, %u device(s)); %s", p->snapshot_path,
             vm->n_vcpus, (unsigned long long)(vm->mem.size >> 20), vm->vdevs.n,
             p->resume_vm ? "running" : "paused");
    return 0;
}

/* ---- describe ----------------------------------------------------------------- */

int snapshot_describe(const char *path, FILE *out)
{
    struct snap_reader r;
    int rc = snapr_open(&r, path);
    if (rc)
        return rc;
    struct snap_view v;
    if ((rc = view_snapshot(&r, path, &v))) {
        snapr_close(&r);
        return rc;
    }
    struct utc_time t;
    utc_time((int64_t)(v.info.created_realtime_ns / 1000000000ull), &t);
    char when[64];
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02dZ", t.year, t.month, t.day, t.hour,
             t.min, t.sec);
    fprintf(out, "snapshot: %s\nformat version: %u (Ember snapshot format; producer \"%s\")\n",
            path, r.version, r.producer);
    fprintf(out,
            "type: %s\ncreated: %s\nvcpus: %u\nmemory: %llu MiB\ndevices:", type_name(v.info.type),
            when, v.info.n_vcpus, (unsigned long long)(v.info.mem_size >> 20));
    for (uint32_t i = 0; i < v.info.n_devices; i++)
        fprintf(out, " %s/%s", v.dev[i]->section, v.dev[i]->id);
    fprintf(out, "%s\nconfiguration: %.*s\n", v.info.n_devices ? "" : " none", (int)v.config_len,
            v.config);
    snapr_close(&r);
    return 0;
}
