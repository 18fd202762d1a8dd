/* test_blk.c - unit tests for virtio-blk (virtio/blk.c): a fake guest memory
 * with rings built by the test acting as the driver, the transport set up
 * through its registers (activation and reset done by the main loop's work
 * handler, kicks through the queue's kick eventfd), requests against a
 * temporary image file. Every device behaviour runs with both engines (Sync
 * and Async/io_uring) from one body: reads, writes, flush, GET_ID, read-only
 * drives, malformed requests, several requests per kick, the rate limiter,
 * drive update, reset, polling and file errors.
 *
 * Flushes are observed at link time (see the Makefile): fdatasync is wrapped
 * to count calls per fd, io_uring_submit / io_uring_submit_and_wait to count
 * the IORING_OP_FSYNC requests about to be submitted; both note whether the
 * FLUSH being watched had already completed at that moment. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../virtio/blk_internal.h"
#include "../../virtio/mmio_internal.h"
#include "../../boot/layout.h"
#include "../../vmm/base/err.h"
#include "../../vmm/base/metrics.h"

#define MEM_SIZE (2u << 20)
#define QSIZE 64u
#define DESC_GPA 0x1000u
#define AVAIL_GPA 0x2000u
#define USED_GPA 0x3000u
#define BUF_GPA 0x10000u
#define FILE_SECTORS 64u
#define DEADLINE_MS 5000 /* for anything the tests wait for */

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct h {
    struct guest_mem gm;
    struct blk_dev *b;
    struct virtio_mmio *t;
    struct drive_config cfg;
    struct evloop ev; /* the main loop: transport fds, and the device's once attached */
    int kick_fd;      /* queue 0's kick eventfd (the ioeventfd in the VMM) */
    char path[64];
    uint16_t next_desc, avail_idx, used_seen;
    uint64_t next_buf;
};

/* Every device test runs once per engine: the engine is the test's state. */
static enum io_engine engine_sync = IO_ENGINE_SYNC, engine_async = IO_ENGINE_ASYNC;

static enum io_engine engine_of(void **state)
{
    return *(enum io_engine *)*state;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- link-time wraps: what reaches the file ------------------------------ */

#define MAX_FD 1024

static struct {
    unsigned fdatasync[MAX_FD]; /* calls per fd */
    unsigned fdatasync_total;
    unsigned fsync_sqes;    /* IORING_OP_FSYNC submitted */
    unsigned fsync_sqes_ok; /* ... with DATASYNC, DRAIN, on fixed file 0 */
    /* The FLUSH being watched: its status byte, and the used index at the
     * moment of each fdatasync / FSYNC submission. */
    const volatile uint8_t *status;
    const volatile uint16_t *used_idx;
    uint8_t status_at_sync;
    uint16_t used_at_sync;
} seen;

static void seen_reset(void)
{
    memset(&seen, 0, sizeof(seen));
}

int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
int __wrap_fdatasync(int fd)
{
    if (fd >= 0 && fd < MAX_FD)
        seen.fdatasync[fd]++;
    seen.fdatasync_total++;
    if (seen.status) {
        seen.status_at_sync = *seen.status;
        seen.used_at_sync = *seen.used_idx;
    }
    return __real_fdatasync(fd);
}

/* The SQEs io_uring_get_sqe() handed out and not yet submitted (liburing
 * 2.3: sqe_head..sqe_tail of struct io_uring_sq). */
static void count_fsync_sqes(struct io_uring *ring)
{
    struct io_uring_sq *sq = &ring->sq;
    for (unsigned i = sq->sqe_head; i != sq->sqe_tail; i++) {
        const struct io_uring_sqe *sqe = &sq->sqes[i & *sq->kring_mask];
        if (sqe->opcode != IORING_OP_FSYNC)
            continue;
        seen.fsync_sqes++;
        if ((sqe->fsync_flags & IORING_FSYNC_DATASYNC) && (sqe->flags & IOSQE_IO_DRAIN) &&
            (sqe->flags & IOSQE_FIXED_FILE) && sqe->fd == 0)
            seen.fsync_sqes_ok++;
        if (seen.status) {
            seen.status_at_sync = *seen.status;
            seen.used_at_sync = *seen.used_idx;
        }
    }
}

int __real_io_uring_submit(struct io_uring *ring);
int __wrap_io_uring_submit(struct io_uring *ring);
int __wrap_io_uring_submit(struct io_uring *ring)
{
    count_fsync_sqes(ring);
    return __real_io_uring_submit(ring);
}

int __real_io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr);
int __wrap_io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr);
int __wrap_io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr)
{
    count_fsync_sqes(ring);
    return __real_io_uring_submit_and_wait(ring, wait_nr);
}

/* ---- files ---------------------------------------------------------------- */

static uint8_t pattern(uint64_t i)
{
    return (uint8_t)(i * 7 + i / 512 + 1);
}

static void make_file(char *path, uint64_t size, bool fill)
{
    strcpy(path, "/tmp/ember-test-blk-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    if (fill) {
        uint8_t *buf = malloc(size);
        for (uint64_t i = 0; i < size; i++)
            buf[i] = pattern(i);
        assert_int_equal(pwrite(fd, buf, size, 0), (ssize_t)size);
        free(buf);
    }
    close(fd);
}

static void file_read(const char *path, uint64_t off, void *dst, uint64_t len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, dst, len, (off_t)off), (ssize_t)len);
    close(fd);
}

/* The device's own fd on `path` (the only one open while a test runs). */
static int drive_fd(const char *path)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int found = -1, n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char lp[300], target[PATH_MAX];
        snprintf(lp, sizeof(lp), "/proc/self/fd/%s", e->d_name);
        ssize_t l = readlink(lp, target, sizeof(target) - 1);
        if (l <= 0)
            continue;
        target[l] = 0;
        if (strcmp(target, path) == 0) {
            found = atoi(e->d_name);
            n++;
        }
    }
    closedir(d);
    assert_int_equal(n, 1);
    assert_true(found >= 0 && found < MAX_FD);
    return found;
}

/* ---- the driver side ------------------------------------------------------ */

/* A vCPU's register access (the transport locks for itself). */
static void reg_w(struct h *h, uint64_t off, uint32_t v)
{
    uint8_t d[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    vmmio_bus_write(h->t, off, d, 4);
}

static uint32_t reg_r(struct h *h, uint64_t off)
{
    uint8_t d[4];
    vmmio_bus_read(h->t, off, d, 4);
    return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

static uint64_t dev_features(struct h *h)
{
    reg_w(h, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    uint64_t lo = reg_r(h, VIRTIO_MMIO_DEVICE_FEATURES);
    reg_w(h, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    uint64_t hi = reg_r(h, VIRTIO_MMIO_DEVICE_FEATURES);
    return lo | hi << 32;
}

/* Driver side: negotiate, set up queue 0 on fresh rings, DRIVER_OK; then the
 * main loop's work (activation). */
static void driver_init(struct h *h)
{
    reg_w(h, VIRTIO_MMIO_STATUS, 0);
    reg_w(h, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    reg_w(h, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    uint64_t f = dev_features(h);
    uint64_t want = f & ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_BLK_F_FLUSH) |
                         (1ull << VIRTIO_BLK_F_RO) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
                         (1ull << VIRTIO_BLK_F_SEG_MAX));
    reg_w(h, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    reg_w(h, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)want);
    reg_w(h, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    reg_w(h, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(want >> 32));
    uint32_t st =
        VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
    reg_w(h, VIRTIO_MMIO_STATUS, st);
    assert_true(reg_r(h, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
    memset(h->gm.host + DESC_GPA, 0, 3 * 0x1000); /* new rings */
    reg_w(h, VIRTIO_MMIO_QUEUE_SEL, 0);
    assert_int_equal(reg_r(h, VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTQ_MAX_SIZE);
    reg_w(h, VIRTIO_MMIO_QUEUE_NUM, QSIZE);
    reg_w(h, VIRTIO_MMIO_QUEUE_DESC_LOW, DESC_GPA);
    reg_w(h, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
    reg_w(h, VIRTIO_MMIO_QUEUE_AVAIL_LOW, AVAIL_GPA);
    reg_w(h, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
    reg_w(h, VIRTIO_MMIO_QUEUE_USED_LOW, USED_GPA);
    reg_w(h, VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
    reg_w(h, VIRTIO_MMIO_QUEUE_READY, 1);
    reg_w(h, VIRTIO_MMIO_STATUS, st | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_true(reg_r(h, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_DRIVER_OK);
    vmmio_do_work(h->t); /* what the main loop does on the work eventfd */
    assert_true(h->t->activated);
    assert_false(reg_r(h, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    h->next_desc = h->avail_idx = h->used_seen = 0;
}

static void h_config(struct h *h, const char *id, bool ro, enum cache_type cache,
                     enum io_engine engine)
{
    memset(h, 0, sizeof(*h));
    h->kick_fd = -1;
    h->cfg.drive_id = (char *)id;
    h->cfg.path_on_host = h->path;
    h->cfg.is_read_only = ro;
    h->cfg.cache_type = cache;
    h->cfg.io_engine = engine;
}

/* Build the device from h->cfg, wire its kick eventfd, put the transport
 * (and, with attach, the device's own fds and poller) on h->ev, and bring
 * the driver up. A blk_create() error is returned (h->gm is then the
 * caller's to free). */
static int h_create(struct h *h, bool attach)
{
    h->cfg.path_on_host = h->path;
    assert_int_equal(guest_mem_init(&h->gm, MEM_SIZE, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END),
                     0);
    int rc = blk_create(&h->b, &h->cfg, &h->gm);
    if (rc)
        return rc;
    h->t = blk_transport(h->b);
    h->next_buf = BUF_GPA;
    assert_int_equal(evloop_init(&h->ev), 0);
    h->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(h->kick_fd >= 0);
    h->t->kick_fd[0] = h->kick_fd;
    assert_int_equal(vmmio_attach(h->t, &h->ev), 0);
    if (attach)
        assert_int_equal(blk_attach(h->b, &h->ev), 0);
    driver_init(h);
    return 0;
}

static int h_open(struct h *h, const char *id, bool ro, enum cache_type cache,
                  enum io_engine engine)
{
    char path[sizeof(h->path)];
    memcpy(path, h->path, sizeof(path));
    h_config(h, id, ro, cache, engine);
    memcpy(h->path, path, sizeof(path));
    return h_create(h, true);
}

static void h_setup(struct h *h, const char *id, bool ro, enum cache_type cache,
                    enum io_engine engine)
{
    make_file(h->path, FILE_SECTORS * 512, true);
    assert_int_equal(h_open(h, id, ro, cache, engine), 0);
}

static void h_teardown(struct h *h)
{
    blk_destroy(h->b); /* takes its fds (and the transport's) off the loop */
    close(h->kick_fd);
    evloop_close(&h->ev);
    guest_mem_free(&h->gm);
    unlink(h->path);
}

static uint64_t buf_alloc(struct h *h, uint64_t len)
{
    uint64_t g = h->next_buf;
    h->next_buf = (h->next_buf + len + 15) & ~15ull;
    assert_true(h->next_buf <= MEM_SIZE);
    return g;
}

static uint8_t *host(struct h *h, uint64_t gpa)
{
    return h->gm.host + gpa;
}

struct seg {
    uint64_t gpa;
    uint32_t len;
    bool write;
};

/* Put a chain of descriptors in the table and make it available. */
static uint16_t add_chain(struct h *h, const struct seg *s, unsigned n)
{
    uint16_t head = h->next_desc;
    for (unsigned i = 0; i < n; i++) {
        uint16_t idx = h->next_desc;
        h->next_desc = (uint16_t)((h->next_desc + 1) % QSIZE);
        struct desc d = {s[i].gpa, s[i].len, (uint16_t)(s[i].write ? VRING_DESC_F_WRITE : 0), 0};
        if (i + 1 < n) {
            d.flags |= VRING_DESC_F_NEXT;
            d.next = h->next_desc;
        }
        assert_int_equal(gm_write(&h->gm, DESC_GPA + 16u * idx, &d, sizeof(d)), 0);
    }
    assert_int_equal(gm_write(&h->gm, AVAIL_GPA + 4 + 2u * (h->avail_idx % QSIZE), &head, 2), 0);
    h->avail_idx++;
    uint16_t *avail_idx = (uint16_t *)host(h, AVAIL_GPA + 2);
    __atomic_store_n(avail_idx, h->avail_idx, __ATOMIC_RELEASE);
    return head;
}

/* A request: header, optional data, status byte. Returns the status gpa. */
struct req {
    uint16_t head;
    uint64_t hdr, data, status;
};

static struct req add_req(struct h *h, uint32_t type, uint64_t sector, uint32_t data_len,
                          bool data_write)
{
    struct req r;
    r.hdr = buf_alloc(h, 16);
    uint8_t hdr[16] = {0};
    memcpy(hdr, &type, 4);
    memcpy(hdr + 8, &sector, 8);
    memcpy(host(h, r.hdr), hdr, 16);
    r.data = data_len ? buf_alloc(h, data_len) : 0;
    r.status = buf_alloc(h, 1);
    *host(h, r.status) = 0xee;
    struct seg s[3] = {{r.hdr, 16, false}};
    unsigned n = 1;
    if (data_len)
        s[n++] = (struct seg){r.data, data_len, data_write};
    s[n++] = (struct seg){r.status, 1, true};
    r.head = add_chain(h, s, n);
    return r;
}

static bool fd_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* The driver kicks queue 0: the QueueNotify write reaches the kick eventfd,
 * and the transport's kick handler (what the loop would call) serves it. No
 * other fd is served, so io_uring completions stay where they are. */
static void kick(struct h *h)
{
    reg_w(h, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert_true(fd_readable(h->kick_fd));
    assert_non_null(h->t->ev_kick[0].cb);
    h->t->ev_kick[0].cb(&h->t->ev_kick[0], EPOLLIN);
    assert_false(fd_readable(h->kick_fd));
}

static uint16_t used_idx(struct h *h)
{
    return __atomic_load_n((uint16_t *)host(h, USED_GPA + 2), __ATOMIC_ACQUIRE);
}

static uint16_t used_flags(struct h *h)
{
    return __atomic_load_n((uint16_t *)host(h, USED_GPA), __ATOMIC_ACQUIRE);
}

static unsigned new_used(struct h *h)
{
    return (uint16_t)(used_idx(h) - h->used_seen);
}

/* Wait until `n` used entries beyond those seen are there: for io_uring
 * completions, wait on the loop's fds (the device's completion eventfd is
 * among them) and reap. Fails at the deadline. */
static void wait_used(struct h *h, unsigned n)
{
    uint64_t deadline = now_ms() + DEADLINE_MS;
    while (new_used(h) < n) {
        uint64_t now = now_ms();
        if (now >= deadline)
            fail_msg("timed out waiting for %u used entries (%u there)", n, new_used(h));
        struct pollfd p = {.fd = h->ev.epfd, .events = POLLIN};
        assert_true(poll(&p, 1, (int)(deadline - now)) >= 0);
        blk_async_complete(h->b);
    }
    assert_int_equal(new_used(h), n);
}

/* Run the main loop (every fd and poller) until `n` new used entries are
 * there, or fail at the deadline. */
static void loop_until_used(struct h *h, unsigned n)
{
    uint64_t deadline = now_ms() + DEADLINE_MS;
    while (new_used(h) < n) {
        uint64_t now = now_ms();
        if (now >= deadline)
            fail_msg("timed out running the loop for %u used entries (%u there)", n, new_used(h));
        assert_true(evloop_run_once(&h->ev, (int)(deadline - now)) >= 0);
    }
    assert_int_equal(new_used(h), n);
}

/* The next used entry: its head and length. */
static void next_used(struct h *h, uint16_t *head, uint32_t *len)
{
    uint32_t e[2];
    assert_int_equal(gm_read(&h->gm, USED_GPA + 4 + 8u * (h->used_seen % QSIZE), e, 8), 0);
    h->used_seen++;
    *head = (uint16_t)e[0];
    *len = e[1];
}

/* Kick, wait for one completion, check its head and used length. */
static uint8_t run_one(struct h *h, const struct req *r, uint32_t want_len)
{
    kick(h);
    wait_used(h, 1);
    uint16_t head;
    uint32_t len;
    next_used(h, &head, &len);
    assert_int_equal(head, r->head);
    assert_int_equal(len, want_len);
    return *host(h, r->status);
}

/* PATCH /drives as vdev_update() does it: under vmmio_lock(). */
static int update(struct h *h, const char *path, const struct rate_limiter *rl)
{
    vmmio_lock(h->t);
    int rc = blk_update(h->b, path, rl);
    vmmio_unlock(h->t);
    return rc;
}

static uint64_t m(atomic_uint_fast64_t *v)
{
    return atomic_load(v);
}

/* ---- tests -------------------------------------------------------------- */

static void test_read(void **state)
{
    struct h h;
    h_setup(&h, "rootfs", false, CACHE_UNSAFE, engine_of(state));
    uint64_t reads = m(&metrics.block_read_count);
    struct req r = add_req(&h, VIRTIO_BLK_T_IN, 3, 1024, true);
    memset(host(&h, r.data), 0, 1024);
    atomic_store(&h.t->interrupt_status, 0);
    assert_int_equal(run_one(&h, &r, 1025), VIRTIO_BLK_S_OK);
    for (unsigned i = 0; i < 1024; i++)
        assert_int_equal(host(&h, r.data)[i], pattern(3 * 512 + i));
    assert_int_equal(m(&metrics.block_read_count), reads + 1);
    assert_true(atomic_load(&h.t->interrupt_status) & VIRTIO_MMIO_INT_VRING);
    assert_int_equal(blk_in_flight(h.b), 0);
    h_teardown(&h);
}

static void test_write(void **state)
{
    struct h h;
    h_setup(&h, "data", false, CACHE_WRITEBACK, engine_of(state));
    struct req r = add_req(&h, VIRTIO_BLK_T_OUT, 5, 1536, false);
    for (unsigned i = 0; i < 1536; i++)
        host(&h, r.data)[i] = (uint8_t)(0xa5 ^ i);
    assert_int_equal(run_one(&h, &r, 1), VIRTIO_BLK_S_OK);
    uint8_t got[1536 + 512];
    file_read(h.path, 4 * 512, got, sizeof(got));
    for (unsigned i = 0; i < 512; i++) /* sector 4 untouched */
        assert_int_equal(got[i], pattern(4 * 512 + i));
    for (unsigned i = 0; i < 1536; i++)
        assert_int_equal(got[512 + i], (uint8_t)(0xa5 ^ i));
    /* And back through the device. */
    struct req rd = add_req(&h, VIRTIO_BLK_T_IN, 5, 1536, true);
    assert_int_equal(run_one(&h, &rd, 1537), VIRTIO_BLK_S_OK);
    assert_memory_equal(host(&h, rd.data), host(&h, r.data), 1536);
    h_teardown(&h);
}

static void test_read_only(void **state)
{
    struct h h;
    h_setup(&h, "ro", true, CACHE_UNSAFE, engine_of(state));
    assert_true(dev_features(&h) & (1ull << VIRTIO_BLK_F_RO));
    uint8_t before[FILE_SECTORS * 512], after[FILE_SECTORS * 512];
    file_read(h.path, 0, before, sizeof(before));
    struct req r = add_req(&h, VIRTIO_BLK_T_OUT, 0, 512, false);
    memset(host(&h, r.data), 0x5a, 512);
    assert_int_equal(run_one(&h, &r, 1), VIRTIO_BLK_S_IOERR);
    file_read(h.path, 0, after, sizeof(after));
    assert_memory_equal(before, after, sizeof(before));
    /* Reads still work. */
    struct req rd = add_req(&h, VIRTIO_BLK_T_IN, 0, 512, true);
    assert_int_equal(run_one(&h, &rd, 513), VIRTIO_BLK_S_OK);
    assert_memory_equal(host(&h, rd.data), before, 512);
    h_teardown(&h);
}

static void test_get_id(void **state)
{
    struct h h;
    h_setup(&h, "rootfs", false, CACHE_UNSAFE, engine_of(state));
    struct req r = add_req(&h, VIRTIO_BLK_T_GET_ID, 0, 20, true);
    memset(host(&h, r.data), 0xff, 20);
    assert_int_equal(run_one(&h, &r, 21), VIRTIO_BLK_S_OK);
    uint8_t want[20] = "rootfs";
    assert_memory_equal(host(&h, r.data), want, 20);
    h_teardown(&h);

    /* A long id is truncated to 20 bytes, and to the buffer. */
    h_setup(&h, "a_drive_id_longer_than_twenty", false, CACHE_UNSAFE, engine_of(state));
    r = add_req(&h, VIRTIO_BLK_T_GET_ID, 0, 32, true);
    memset(host(&h, r.data), 0xff, 32);
    assert_int_equal(run_one(&h, &r, 21), VIRTIO_BLK_S_OK);
    assert_memory_equal(host(&h, r.data), "a_drive_id_longer_th", 20);
    assert_int_equal(host(&h, r.data)[20], 0xff);
    r = add_req(&h, VIRTIO_BLK_T_GET_ID, 0, 8, true);
    assert_int_equal(run_one(&h, &r, 9), VIRTIO_BLK_S_OK);
    assert_memory_equal(host(&h, r.data), "a_drive_", 8);
    h_teardown(&h);
}

/* FLUSH on a Writeback drive: the Sync engine calls fdatasync() on the
 * drive's fd, the Async engine submits an IORING_OP_FSYNC (DATASYNC, drained
 * behind earlier requests, on the registered file) - either way once, and
 * before the request completes. On an Unsafe drive neither happens. */
static void test_flush(void **state)
{
    enum io_engine engine = engine_of(state);
    struct h h;
    h_setup(&h, "wb", false, CACHE_WRITEBACK, engine);
    assert_true(dev_features(&h) & (1ull << VIRTIO_BLK_F_FLUSH));
    int fd = drive_fd(h.path);
    uint64_t flushes = m(&metrics.block_flush_count);
    /* Write then flush in one kick: the flush completes after the write. */
    struct req w = add_req(&h, VIRTIO_BLK_T_OUT, 1, 512, false);
    memset(host(&h, w.data), 0x77, 512);
    struct req f = add_req(&h, VIRTIO_BLK_T_FLUSH, 0, 0, false);
    seen_reset();
    seen.status = host(&h, f.status);
    seen.used_idx = (uint16_t *)host(&h, USED_GPA + 2);
    kick(&h);
    wait_used(&h, 2);
    seen.status = NULL;
    uint16_t head[2];
    uint32_t len[2];
    next_used(&h, &head[0], &len[0]);
    next_used(&h, &head[1], &len[1]);
    assert_int_equal(head[0], w.head);
    assert_int_equal(head[1], f.head);
    assert_int_equal(len[1], 1);
    assert_int_equal(*host(&h, w.status), VIRTIO_BLK_S_OK);
    assert_int_equal(*host(&h, f.status), VIRTIO_BLK_S_OK);
    assert_int_equal(m(&metrics.block_flush_count), flushes + 1);
    if (engine == IO_ENGINE_SYNC) {
        assert_int_equal(seen.fdatasync[fd], 1);
        assert_int_equal(seen.fdatasync_total, 1);
        assert_int_equal(seen.fsync_sqes, 0);
        /* At the fdatasync the write had completed and the flush had not. */
        assert_int_equal(seen.used_at_sync, 1);
    } else {
        assert_int_equal(seen.fdatasync_total, 0);
        assert_int_equal(seen.fsync_sqes, 1);
        assert_int_equal(seen.fsync_sqes_ok, 1);
        assert_true(seen.used_at_sync < 2);
    }
    assert_int_equal(seen.status_at_sync, 0xee); /* the flush was not answered yet */
    uint8_t got[512];
    file_read(h.path, 512, got, 512);
    for (unsigned i = 0; i < 512; i++)
        assert_int_equal(got[i], 0x77);
    h_teardown(&h);

    /* Unsafe: FLUSH not offered; sent anyway, it is answered OK without
     * touching the file. */
    h_setup(&h, "unsafe", false, CACHE_UNSAFE, engine);
    assert_false(dev_features(&h) & (1ull << VIRTIO_BLK_F_FLUSH));
    seen_reset();
    f = add_req(&h, VIRTIO_BLK_T_FLUSH, 0, 0, false);
    assert_int_equal(run_one(&h, &f, 1), VIRTIO_BLK_S_OK);
    assert_int_equal(seen.fdatasync_total, 0);
    assert_int_equal(seen.fsync_sqes, 0);
    h_teardown(&h);
}

static void test_bad_requests(void **state)
{
    struct h h;
    h_setup(&h, "bad", false, CACHE_UNSAFE, engine_of(state));
    uint64_t invalid = m(&metrics.block_invalid_reqs_count);
    uint8_t before[FILE_SECTORS * 512], after[FILE_SECTORS * 512];
    file_read(h.path, 0, before, sizeof(before));

    /* Header shorter than 16 bytes. */
    uint64_t hdr = buf_alloc(&h, 16), st = buf_alloc(&h, 1);
    memset(host(&h, hdr), 0, 16);
    *host(&h, st) = 0xee;
    struct seg s1[2] = {{hdr, 8, false}, {st, 1, true}};
    struct req r = {add_chain(&h, s1, 2), hdr, 0, st};
    assert_int_equal(run_one(&h, &r, 1), VIRTIO_BLK_S_IOERR);

    /* No writable status byte at all: used length 0, nothing written. */
    uint64_t data = buf_alloc(&h, 512);
    struct seg s2[2] = {{hdr, 16, false}, {data, 512, false}};
    r = (struct req){add_chain(&h, s2, 2), hdr, data, st};
    *host(&h, st) = 0xee;
    assert_int_equal(run_one(&h, &r, 0), 0xee);

    /* Sector past the capacity, and a range crossing its end. */
    r = add_req(&h, VIRTIO_BLK_T_IN, FILE_SECTORS, 512, true);
    assert_int_equal(run_one(&h, &r, 1), VIRTIO_BLK_S_IOERR);
    r = add_req(&h, VIRTIO_BLK_T_OUT, FILE_SECTORS - 1, 1024, false);
    assert_int_equal(run_one(&h, &r, 1), VIRTIO_BLK_S_IOERR);
    r = add_req(&h, VIRTIO_BLK_T_IN, UINT64_MAX, 512, true);
    assert_int_equal(run_one(&h, &r, 1), VIRTIO_BLK_S_IOERR);
    /* The last sector itself is fine. */
    r = add_req(&h, VIRTIO_BLK_T_IN, FILE_SECTORS - 1, 512, true);
    assert_int_equal(run_one(&h, &r, 513), VIRTIO_BLK_S_OK);

    /* Length not a multiple of 512. */
    r = add_req(&h, VIRTIO_BLK_T_OUT, 0, 100, false);
    assert_int_equal(run_one(&h, &r, 1), VIRTIO_BLK_S_IOERR);
    r = add_req(&h, VIRTIO_BLK_T_IN, 0, 700, true);
    assert_int_equal(run_one(&h, &r, 1), VIRTIO_BLK_S_IOERR);

    /* IN into a device-readable buffer; OUT from a writable one. */
    r = add_req(&h, VIRTIO_BLK_T_IN, 0, 512, false);
    memset(host(&h, r.data), 0x11, 512);
    assert_int_equal(run_one(&h, &r, 1), VIRTIO_BLK_S_IOERR);
    for (unsigned i = 0; i < 512; i++)
        assert_int_equal(host(&h, r.data)[i], 0x11);
    r = add_req(&h, VIRTIO_BLK_T_OUT, 0, 512, true);
    assert_int_equal(run_one(&h, &r, 1), VIRTIO_BLK_S_IOERR);

    assert_int_equal(m(&metrics.block_invalid_reqs_count), invalid + 9);

    /* Unknown request type. */
    r = add_req(&h, 0x1234, 0, 0, false);
    assert_int_equal(run_one(&h, &r, 1), VIRTIO_BLK_S_UNSUPP);

    /* A descriptor outside guest RAM: a malformed chain, used length 0. */
    uint64_t bad = m(&metrics.virtio_bad_chains);
    struct seg s3[3] = {{hdr, 16, false}, {MEM_SIZE - 256, 512, true}, {st, 1, true}};
    r = (struct req){add_chain(&h, s3, 3), hdr, 0, st};
    *host(&h, st) = 0xee;
    assert_int_equal(run_one(&h, &r, 0), 0xee);
    assert_int_equal(m(&metrics.virtio_bad_chains), bad + 1);

    /* None of it touched the file, and the device still works. */
    file_read(h.path, 0, after, sizeof(after));
    assert_memory_equal(before, after, sizeof(before));
    assert_false(reg_r(&h, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    r = add_req(&h, VIRTIO_BLK_T_IN, 2, 512, true);
    assert_int_equal(run_one(&h, &r, 513), VIRTIO_BLK_S_OK);
    assert_memory_equal(host(&h, r.data), before + 1024, 512);
    h_teardown(&h);
}

/* Data and status sharing segments, data split over several segments. */
static void test_odd_layout(void **state)
{
    struct h h;
    h_setup(&h, "odd", false, CACHE_UNSAFE, engine_of(state));
    uint64_t hdr = buf_alloc(&h, 16), a = buf_alloc(&h, 100), bb = buf_alloc(&h, 924);
    uint32_t type = VIRTIO_BLK_T_IN;
    uint64_t sector = 7;
    memset(host(&h, hdr), 0, 16);
    memcpy(host(&h, hdr), &type, 4);
    /* header split 10 + 6, data 100 + 923 bytes, status = last byte of bb */
    struct seg s[4] = {{hdr, 10, false}, {hdr + 10, 6, false}, {a, 100, true}, {bb, 924, true}};
    memcpy(host(&h, hdr) + 8, &sector, 8);
    struct req r = {add_chain(&h, s, 4), hdr, a, bb + 923};
    assert_int_equal(run_one(&h, &r, 1), VIRTIO_BLK_S_IOERR); /* 1023 data bytes */

    s[3].len = 925;
    bb = buf_alloc(&h, 925);
    s[3].gpa = bb;
    r = (struct req){add_chain(&h, s, 4), hdr, a, bb + 924};
    assert_int_equal(run_one(&h, &r, 1025), VIRTIO_BLK_S_OK);
    for (unsigned i = 0; i < 100; i++)
        assert_int_equal(host(&h, a)[i], pattern(7 * 512 + i));
    for (unsigned i = 0; i < 924; i++)
        assert_int_equal(host(&h, bb)[i], pattern(7 * 512 + 100 + i));
    h_teardown(&h);
}

static void test_many(void **state)
{
    struct h h;
    h_setup(&h, "many", false, CACHE_WRITEBACK, engine_of(state));
    enum { N = 16 };
    struct req w[N];
    for (unsigned i = 0; i < N; i++) {
        w[i] = add_req(&h, VIRTIO_BLK_T_OUT, 2 * i, 1024, false);
        memset(host(&h, w[i].data), 0x40 + (int)i, 1024);
    }
    kick(&h);
    wait_used(&h, N);
    bool seen_head[QSIZE] = {0};
    for (unsigned i = 0; i < N; i++) {
        uint16_t head;
        uint32_t len;
        next_used(&h, &head, &len);
        assert_true(head < QSIZE && !seen_head[head]);
        seen_head[head] = true;
        assert_int_equal(len, 1);
    }
    for (unsigned i = 0; i < N; i++) {
        assert_true(seen_head[w[i].head]);
        assert_int_equal(*host(&h, w[i].status), VIRTIO_BLK_S_OK);
    }
    uint8_t got[N * 1024];
    file_read(h.path, 0, got, sizeof(got));
    for (unsigned i = 0; i < N * 1024; i++)
        assert_int_equal(got[i], 0x40 + i / 1024);

    /* Reads of everything in one kick, mixed with a GET_ID. */
    struct req rd[N];
    for (unsigned i = 0; i < N; i++)
        rd[i] = add_req(&h, VIRTIO_BLK_T_IN, 2 * i, 1024, true);
    struct req id = add_req(&h, VIRTIO_BLK_T_GET_ID, 0, 20, true);
    kick(&h);
    wait_used(&h, N + 1);
    h.used_seen = (uint16_t)(h.used_seen + N + 1);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(*host(&h, rd[i].status), VIRTIO_BLK_S_OK);
        for (unsigned k = 0; k < 1024; k++)
            assert_int_equal(host(&h, rd[i].data)[k], 0x40 + i);
    }
    assert_int_equal(*host(&h, id.status), VIRTIO_BLK_S_OK);
    assert_memory_equal(host(&h, id.data), "many", 5);
    h_teardown(&h);
}

static void test_config_space(void **state)
{
    struct h h;
    h_setup(&h, "cfg", false, CACHE_UNSAFE, engine_of(state));
    uint64_t cap = 0;
    vmmio_bus_read(h.t, VIRTIO_MMIO_CONFIG, (uint8_t *)&cap, 8);
    assert_int_equal(cap, FILE_SECTORS);
    assert_int_equal(reg_r(&h, VIRTIO_MMIO_CONFIG + 12), VIRTQ_MAX_SIZE - 2);
    assert_int_equal(reg_r(&h, VIRTIO_MMIO_CONFIG + 20), 512);
    assert_int_equal(reg_r(&h, VIRTIO_MMIO_CONFIG + 8), 0);
    assert_int_equal(reg_r(&h, VIRTIO_MMIO_CONFIG + 200), 0);
    assert_int_equal(reg_r(&h, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BLOCK);
    uint64_t f = dev_features(&h);
    assert_true(f & (1ull << VIRTIO_BLK_F_SEG_MAX));
    assert_true(f & (1ull << VIRTIO_BLK_F_BLK_SIZE));
    assert_false(f & (1ull << VIRTIO_BLK_F_RO));
    h_teardown(&h);
}

/* A size that is not whole sectors: as Firecracker, a warning and the whole
 * sectors only (1000 bytes: capacity 1). */
static void test_capacity_error(void **state)
{
    struct h h;
    make_file(h.path, 1000, false);
    err_clear();
    assert_int_equal(h_open(&h, "oddsize", false, CACHE_UNSAFE, engine_of(state)), 0);
    assert_int_equal(reg_r(&h, VIRTIO_MMIO_CONFIG), 1);
    assert_int_equal(reg_r(&h, VIRTIO_MMIO_CONFIG + 4), 0);
    h_teardown(&h);
}

static void test_missing_file(void **state)
{
    struct h h;
    strcpy(h.path, "/tmp/ember-test-blk-does-not-exist");
    err_clear();
    assert_int_equal(h_open(&h, "nofile", false, CACHE_UNSAFE, engine_of(state)), -ENOENT);
    assert_non_null(strstr(err_msg(), "nofile"));
    assert_non_null(strstr(err_msg(), h.path));
    guest_mem_free(&h.gm);

    /* A directory is neither a regular file nor a block device. */
    strcpy(h.path, "/tmp");
    assert_int_equal(h_open(&h, "dir", true, CACHE_UNSAFE, engine_of(state)), -EINVAL);
    assert_non_null(strstr(err_msg(), "dir"));
    guest_mem_free(&h.gm);
}

static void test_update(void **state)
{
    struct h h;
    h_setup(&h, "upd", false, CACHE_UNSAFE, engine_of(state));
    char path2[64];
    make_file(path2, 128 * 512, false);
    int fd = open(path2, O_WRONLY);
    assert_int_equal(pwrite(fd, "NEWFILE!", 8, 100 * 512), 8);
    close(fd);
    uint32_t gen = reg_r(&h, VIRTIO_MMIO_CONFIG_GENERATION);
    uint64_t upd = m(&metrics.block_update_count);

    /* A bad new file changes nothing. */
    err_clear();
    assert_int_equal(update(&h, "/tmp/ember-test-blk-does-not-exist", NULL), -ENOENT);
    assert_non_null(strstr(err_msg(), "upd"));
    assert_int_equal(reg_r(&h, VIRTIO_MMIO_CONFIG_GENERATION), gen);

    /* A write in flight when the swap happens lands in the old file. */
    struct req w = add_req(&h, VIRTIO_BLK_T_OUT, 0, 512, false);
    memset(host(&h, w.data), 0x99, 512);
    kick(&h);
    assert_int_equal(update(&h, path2, NULL), 0);
    assert_int_equal(blk_in_flight(h.b), 0);
    wait_used(&h, 1);
    h.used_seen++;
    assert_int_equal(*host(&h, w.status), VIRTIO_BLK_S_OK);
    uint8_t got[512];
    file_read(h.path, 0, got, 512);
    assert_int_equal(got[0], 0x99);
    assert_int_equal(got[511], 0x99);

    assert_int_equal(reg_r(&h, VIRTIO_MMIO_CONFIG_GENERATION), gen + 1);
    assert_int_equal(reg_r(&h, VIRTIO_MMIO_CONFIG), 128);
    assert_int_equal(m(&metrics.block_update_count), upd + 1);
    struct req r = add_req(&h, VIRTIO_BLK_T_IN, 100, 512, true);
    assert_int_equal(run_one(&h, &r, 513), VIRTIO_BLK_S_OK);
    assert_memory_equal(host(&h, r.data), "NEWFILE!", 8);
    h_teardown(&h);
    unlink(path2);
}

static void test_rate_limit(void **state)
{
    struct h h;
    h_config(&h, "rl", false, CACHE_UNSAFE, engine_of(state));
    make_file(h.path, FILE_SECTORS * 512, true);
    h.cfg.rate_limiter.ops = (struct rate_bucket){true, 1, 0, 50}; /* 1 op per 50 ms */
    assert_int_equal(h_create(&h, true), 0);

    uint64_t thr = m(&metrics.block_rate_limiter_throttled_events);
    struct req r[3];
    for (unsigned i = 0; i < 3; i++)
        r[i] = add_req(&h, VIRTIO_BLK_T_IN, i, 512, true);
    kick(&h);
    wait_used(&h, 1); /* only the first one got through */
    assert_int_equal(*host(&h, r[0].status), VIRTIO_BLK_S_OK);
    assert_int_equal(*host(&h, r[1].status), 0xee);
    assert_int_equal(m(&metrics.block_rate_limiter_throttled_events), thr + 1);
    /* Kicks while throttled do nothing. */
    kick(&h);
    assert_int_equal(*host(&h, r[1].status), 0xee);
    /* The limiter's timer, on the main loop, lets the rest through. */
    loop_until_used(&h, 3);
    for (unsigned i = 0; i < 3; i++) {
        uint16_t head;
        uint32_t len;
        next_used(&h, &head, &len);
        assert_int_equal(head, r[i].head); /* in order: the kept chain first */
        assert_int_equal(*host(&h, r[i].status), VIRTIO_BLK_S_OK);
        assert_int_equal(host(&h, r[i].data)[0], pattern(i * 512));
    }
    /* Lifting the limit through an update. */
    struct rate_limiter none = {0};
    assert_int_equal(update(&h, NULL, &none), 0);
    struct req q[4];
    for (unsigned i = 0; i < 4; i++)
        q[i] = add_req(&h, VIRTIO_BLK_T_IN, i, 512, true);
    kick(&h);
    wait_used(&h, 4);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(*host(&h, q[i].status), VIRTIO_BLK_S_OK);
    h_teardown(&h);
}

/* Through the event loop only: the kick arrives on the kick eventfd, io_uring
 * completions on theirs and the rate limiter's timer resumes the queue, as
 * in the VMM. */
static void test_event_loop(void **state)
{
    struct h h;
    h_config(&h, "loop", false, CACHE_UNSAFE, engine_of(state));
    make_file(h.path, FILE_SECTORS * 512, true);
    h.cfg.rate_limiter.bandwidth = (struct rate_bucket){true, 1024, 0, 20}; /* 1 KiB / 20 ms */
    assert_int_equal(h_create(&h, true), 0);

    uint64_t thr = m(&metrics.block_rate_limiter_throttled_events);
    enum { N = 6 };
    struct req r[N];
    for (unsigned i = 0; i < N; i++)
        r[i] = add_req(&h, VIRTIO_BLK_T_IN, i, 1024, true);
    reg_w(&h, VIRTIO_MMIO_QUEUE_NOTIFY, 0); /* the vCPU's kick */
    loop_until_used(&h, N);
    assert_true(m(&metrics.block_rate_limiter_throttled_events) > thr);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(*host(&h, r[i].status), VIRTIO_BLK_S_OK);
        for (unsigned k = 0; k < 1024; k++)
            assert_int_equal(host(&h, r[i].data)[k], pattern(i * 512 + k));
    }
    h_teardown(&h);
}

/* Reset with requests in flight (Async): the driver's Status write only
 * resets the registers; the main loop then resets the device, which waits
 * for the kernel and forgets the requests. Either engine comes back after a
 * new initialisation. */
static void test_reset(void **state)
{
    enum io_engine engine = engine_of(state);
    struct h h;
    h_setup(&h, "rst", false, CACHE_WRITEBACK, engine);
    for (unsigned i = 0; i < 8; i++)
        add_req(&h, VIRTIO_BLK_T_IN, i, 4096, true);
    add_req(&h, VIRTIO_BLK_T_FLUSH, 0, 0, false);
    kick(&h);
    reg_w(&h, VIRTIO_MMIO_STATUS, 0);
    assert_int_equal(reg_r(&h, VIRTIO_MMIO_STATUS), 0);
    assert_true(h.t->activated); /* the main loop has not run yet */
    vmmio_do_work(h.t);
    assert_false(h.t->activated);
    assert_int_equal(blk_in_flight(h.b), 0);
    blk_async_complete(h.b); /* nothing left to report */
    /* Sync answered everything at the kick; Async delivered nothing. */
    assert_int_equal(used_idx(&h), engine == IO_ENGINE_SYNC ? 9 : 0);
    /* The device comes back after a new initialisation. */
    driver_init(&h);
    struct req r = add_req(&h, VIRTIO_BLK_T_IN, 1, 512, true);
    assert_int_equal(run_one(&h, &r, 513), VIRTIO_BLK_S_OK);
    assert_int_equal(host(&h, r.data)[0], pattern(512));
    h_teardown(&h);
}

/* Polling (drive_config.poll_us): after the kick empties the ring the device
 * keeps kicks off and its poller armed on the loop; a request the driver adds
 * meanwhile is served with no kick; once the budget runs out with nothing
 * new, kicks are asked for again. */
static void test_poll_serves_without_kick(void **state)
{
    struct h h;
    h_config(&h, "poll", false, CACHE_WRITEBACK, engine_of(state));
    make_file(h.path, FILE_SECTORS * 512, true);
    h.cfg.poll_us = 1000;
    assert_int_equal(h_create(&h, true), 0);
    struct req a = add_req(&h, VIRTIO_BLK_T_IN, 1, 512, true);
    kick(&h); /* the only kick */
    assert_true(evloop_polling(&h.ev));
    assert_true(used_flags(&h) & VRING_USED_F_NO_NOTIFY); /* the driver need not kick */
    /* The driver adds a request while the device polls (before the loop
     * runs: the poller sees it first, whatever the budget left). */
    struct req l = add_req(&h, VIRTIO_BLK_T_IN, 3, 512, true);
    loop_until_used(&h, 2);
    assert_false(fd_readable(h.kick_fd));
    uint16_t head;
    uint32_t len;
    next_used(&h, &head, &len);
    assert_int_equal(head, a.head);
    next_used(&h, &head, &len);
    assert_int_equal(head, l.head);
    assert_int_equal(len, 513);
    assert_int_equal(*host(&h, a.status), VIRTIO_BLK_S_OK);
    assert_int_equal(*host(&h, l.status), VIRTIO_BLK_S_OK);
    assert_int_equal(host(&h, l.data)[0], pattern(3 * 512));
    /* Nothing more comes: the budget runs out and kicks are back on. */
    uint64_t deadline = now_ms() + DEADLINE_MS;
    while (evloop_polling(&h.ev)) {
        if (now_ms() >= deadline)
            fail_msg("the poller never gave up");
        assert_true(evloop_run_once(&h.ev, 0) >= 0);
    }
    assert_false(used_flags(&h) & VRING_USED_F_NO_NOTIFY);
    assert_int_equal(used_idx(&h), 2);
    h_teardown(&h);
}

/* Async: after delivering completions the device polls for the guest's next
 * request (a guest at QD1 answers each completion with one). */
static void test_poll_after_completion_async(void **state)
{
    (void)state;
    struct h h;
    h_config(&h, "pollc", false, CACHE_WRITEBACK, IO_ENGINE_ASYNC);
    make_file(h.path, FILE_SECTORS * 512, true);
    h.cfg.poll_us = 1000;
    assert_int_equal(h_create(&h, false), 0); /* no polling before blk_attach */
    struct req a = add_req(&h, VIRTIO_BLK_T_IN, 1, 512, true);
    kick(&h); /* submitted; the device cannot poll yet */
    assert_false(evloop_polling(&h.ev));
    assert_int_equal(used_idx(&h), 0);
    assert_int_equal(blk_attach(h.b, &h.ev), 0);
    /* The loop reaps a (completion eventfd) and the device starts polling. */
    uint64_t deadline = now_ms() + DEADLINE_MS;
    while (used_idx(&h) == 0) {
        uint64_t now = now_ms();
        if (now >= deadline)
            fail_msg("the first request never completed");
        assert_true(evloop_run_once(&h.ev, (int)(deadline - now)) >= 0);
    }
    assert_true(evloop_polling(&h.ev));
    struct req l = add_req(&h, VIRTIO_BLK_T_IN, 3, 512, true);
    loop_until_used(&h, 2); /* no kick for the second */
    assert_false(fd_readable(h.kick_fd));
    uint16_t head;
    uint32_t len;
    next_used(&h, &head, &len);
    assert_int_equal(head, a.head);
    next_used(&h, &head, &len);
    assert_int_equal(head, l.head);
    assert_int_equal(*host(&h, l.status), VIRTIO_BLK_S_OK);
    assert_int_equal(host(&h, l.data)[0], pattern(3 * 512));
    h_teardown(&h);
}

/* Async: while the poller is armed, completions do not signal the eventfd
 * (the poller looks at the completion queue: no epoll_wait and read per
 * request); once polling ends they signal it again. */
static void test_poll_quiet_completions_async(void **state)
{
    (void)state;
    struct h h;
    h_config(&h, "quiet", false, CACHE_WRITEBACK, IO_ENGINE_ASYNC);
    make_file(h.path, FILE_SECTORS * 512, true);
    h.cfg.poll_us = 1000;
    assert_int_equal(h_create(&h, true), 0);
    struct req a = add_req(&h, VIRTIO_BLK_T_IN, 5, 512, true);
    kick(&h); /* submitted, and the poller armed */
    assert_true(evloop_polling(&h.ev));
    assert_false(blk_completions_signal(h.b));
    loop_until_used(&h, 1);
    assert_int_equal(*host(&h, a.status), VIRTIO_BLK_S_OK);
    assert_int_equal(host(&h, a.data)[0], pattern(5 * 512));
    uint64_t deadline = now_ms() + DEADLINE_MS;
    while (evloop_polling(&h.ev)) {
        if (now_ms() >= deadline)
            fail_msg("the poller never gave up");
        assert_true(evloop_run_once(&h.ev, 0) >= 0);
    }
    assert_true(blk_completions_signal(h.b));
    assert_int_equal(blk_in_flight(h.b), 0);
    h_teardown(&h);
}

/* A driver that re-posts heads still in flight (a hostile one can: nothing
 * but the avail index bounds it) runs the Async engine out of its io_uring
 * slots. The request that finds none waits, without losing its rate-limiter
 * tokens, until completions free a slot; every request then completes. */
static void test_slots_exhausted_async(void **state)
{
    (void)state;
    struct h h;
    h_setup(&h, "slots", false, CACHE_WRITEBACK, IO_ENGINE_ASYNC);
    enum { NREQ = QSIZE / 4 }; /* three descriptors each */
    struct req r[NREQ];
    for (unsigned i = 0; i < NREQ; i++) {
        r[i] = add_req(&h, VIRTIO_BLK_T_IN, i % FILE_SECTORS, 512, true);
        memset(host(&h, r[i].data), 0, 512);
    }
    uint64_t thr = m(&metrics.block_io_engine_throttled_events);
    kick(&h); /* NREQ in flight: nothing reaps them until blk_async_complete */
    enum { ROUNDS = VIRTQ_MAX_SIZE / NREQ + 1 };
    for (unsigned k = 1; k < ROUNDS; k++) {
        for (unsigned i = 0; i < NREQ; i++) {
            assert_int_equal(
                gm_write(&h.gm, AVAIL_GPA + 4 + 2u * (h.avail_idx % QSIZE), &r[i].head, 2), 0);
            h.avail_idx++;
        }
        assert_int_equal(gm_write(&h.gm, AVAIL_GPA + 2, &h.avail_idx, 2), 0);
        kick(&h);
    }
    assert_int_equal(blk_in_flight(h.b), VIRTQ_MAX_SIZE); /* every slot busy */
    assert_int_equal(m(&metrics.block_io_engine_throttled_events), thr + 1);
    assert_int_equal(used_idx(&h), 0);
    kick(&h); /* a kick while blocked changes nothing */
    assert_int_equal(m(&metrics.block_io_engine_throttled_events), thr + 1);
    wait_used(&h, ROUNDS * NREQ);
    assert_int_equal(blk_in_flight(h.b), 0);
    for (unsigned i = 0; i < NREQ; i++) {
        assert_int_equal(*host(&h, r[i].status), VIRTIO_BLK_S_OK);
        for (unsigned k = 0; k < 512; k++)
            assert_int_equal(host(&h, r[i].data)[k], pattern((i % FILE_SECTORS) * 512 + k));
    }
    /* The device goes on normally afterwards. */
    h.used_seen = used_idx(&h);
    h.next_desc = 0;
    struct req a = add_req(&h, VIRTIO_BLK_T_IN, 5, 512, true);
    assert_int_equal(run_one(&h, &a, 513), VIRTIO_BLK_S_OK);
    assert_int_equal(host(&h, a.data)[0], pattern(5 * 512));
    h_teardown(&h);
}

/* The file shrinks under a running drive (capacity is what it was): a read
 * across the new end gets a short transfer, goes on with the rest, meets the
 * end of the file and fails with IOERR; a read before the end still works. */
static void test_file_shrunk(void **state)
{
    enum io_engine engine = engine_of(state);
    struct h h;
    h_setup(&h, "shrunk", false, CACHE_UNSAFE, engine);
    assert_int_equal(truncate(h.path, 3 * 512 + 256), 0);
    uint64_t fails = m(&metrics.block_execute_fails);
    struct req r = add_req(&h, VIRTIO_BLK_T_IN, 3, 1024, true);
    assert_int_equal(run_one(&h, &r, 1), VIRTIO_BLK_S_IOERR);
    assert_int_equal(m(&metrics.block_execute_fails), fails + 1);
    struct req ok = add_req(&h, VIRTIO_BLK_T_IN, 2, 512, true);
    assert_int_equal(run_one(&h, &ok, 513), VIRTIO_BLK_S_OK);
    for (unsigned i = 0; i < 512; i++)
        assert_int_equal(host(&h, ok.data)[i], pattern(2 * 512 + i));
    h_teardown(&h);
}

/* Pure parser: hand-built chains. */
static void test_parse(void **state)
{
    (void)state;
    static struct virtq_chain c;
    uint8_t hdr[16] = {0}, data[1024], st = 0xee;
    struct blk_request req;
    memset(&c, 0, sizeof(c));
    hdr[0] = VIRTIO_BLK_T_OUT;
    hdr[8] = 2;
    c.n_seg = 3;
    c.n_out = 2;
    c.seg[0] = (struct virtq_seg){hdr, 16, false};
    c.seg[1] = (struct virtq_seg){data, 1024, false};
    c.seg[2] = (struct virtq_seg){&st, 1, true};
    assert_int_equal(blk_parse_request(&c, 4, &req), 0);
    assert_int_equal(req.type, VIRTIO_BLK_T_OUT);
    assert_int_equal(req.sector, 2);
    assert_int_equal(req.data_len, 1024);
    assert_ptr_equal(req.status, &st);
    assert_int_equal(blk_parse_request(&c, 3, &req), -EINVAL); /* past the end */
    assert_ptr_equal(req.status, &st);
    /* A readable segment marked after the writable side. */
    c.seg[1].write = true;
    assert_int_equal(blk_parse_request(&c, 4, &req), -EINVAL);
    /* Zero-length trailing writable segment: the status is before it. */
    c.seg[1].write = false;
    c.n_seg = 4;
    c.seg[3] = (struct virtq_seg){data, 0, true};
    assert_int_equal(blk_parse_request(&c, 4, &req), 0);
    assert_ptr_equal(req.status, &st);
    /* No writable byte: no status. */
    c.n_seg = 2;
    assert_int_equal(blk_parse_request(&c, 4, &req), -EINVAL);
    assert_null(req.status);
}

/* Each device test, once per engine (the engine is the test's state). */
#define BOTH_ENGINES(f)                                                                            \
    {#f "/Sync", f, NULL, NULL, &engine_sync},                                                     \
    {                                                                                              \
#f "/Async", f, NULL, NULL, &engine_async                                                  \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        BOTH_ENGINES(test_read),
        BOTH_ENGINES(test_write),
        BOTH_ENGINES(test_read_only),
        BOTH_ENGINES(test_get_id),
        BOTH_ENGINES(test_flush),
        BOTH_ENGINES(test_bad_requests),
        BOTH_ENGINES(test_odd_layout),
        BOTH_ENGINES(test_many),
        BOTH_ENGINES(test_config_space),
        BOTH_ENGINES(test_capacity_error),
        BOTH_ENGINES(test_missing_file),
        BOTH_ENGINES(test_update),
        BOTH_ENGINES(test_rate_limit),
        BOTH_ENGINES(test_reset),
        BOTH_ENGINES(test_event_loop),
        BOTH_ENGINES(test_poll_serves_without_kick),
        cmocka_unit_test(test_poll_after_completion_async),
        cmocka_unit_test(test_poll_quiet_completions_async),
        cmocka_unit_test(test_slots_exhausted_async),
        BOTH_ENGINES(test_file_shrunk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
