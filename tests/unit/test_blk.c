/* test_blk.c - unit tests for virtio-blk (virtio/blk.c): a fake guest memory
 * with rings built by the test acting as the driver, the transport set up
 * through its registers, requests against a temporary image file with both
 * engines (Sync and Async/io_uring): reads, writes, flush, GET_ID,
 * read-only drives, malformed requests, several requests per kick, the rate
 * limiter, drive update and file errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../virtio/blk.h"
#include "../../vmm/err.h"
#include "../../vmm/metrics.h"

#define MEM_SIZE (2u << 20)
#define QSIZE 64u
#define DESC_GPA 0x1000u
#define AVAIL_GPA 0x2000u
#define USED_GPA 0x3000u
#define BUF_GPA 0x10000u
#define FILE_SECTORS 64u

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
    char path[64];
    uint16_t next_desc, avail_idx, used_seen;
    uint64_t next_buf;
};

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

static void reg_w(struct h *h, uint64_t off, uint32_t v)
{
    uint8_t d[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    pthread_mutex_lock(&h->t->lock);
    vmmio_bus_write(h->t, off, d, 4);
    pthread_mutex_unlock(&h->t->lock);
}

static uint32_t reg_r(struct h *h, uint64_t off)
{
    uint8_t d[4];
    pthread_mutex_lock(&h->t->lock);
    vmmio_bus_read(h->t, off, d, 4);
    pthread_mutex_unlock(&h->t->lock);
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

/* Driver side: negotiate, set up queue 0, DRIVER_OK. */
static void driver_init(struct h *h)
{
    reg_w(h, VIRTIO_MMIO_STATUS, 0);
    reg_w(h, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
    reg_w(h, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    uint64_t f = dev_features(h);
    uint64_t want = f & ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_BLK_F_FLUSH) |
                         (1ull << VIRTIO_BLK_F_RO) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
                         (1ull << VIRTIO_BLK_F_SEG_MAX));
    reg_w(h, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    reg_w(h, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)want);
    reg_w(h, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    reg_w(h, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(want >> 32));
    uint32_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
    reg_w(h, VIRTIO_MMIO_STATUS, st);
    assert_true(reg_r(h, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
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
    reg_w(h, VIRTIO_MMIO_STATUS, st | VIRTIO_STATUS_DRIVER_OK);
    assert_true(h->t->activated);
    assert_false(reg_r(h, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    h->next_desc = h->avail_idx = h->used_seen = 0;
}

static int h_open(struct h *h, const char *id, bool ro, enum cache_type cache,
                  enum io_engine engine)
{
    memset(&h->cfg, 0, sizeof(h->cfg));
    h->cfg.drive_id = (char *)id;
    h->cfg.path_on_host = h->path;
    h->cfg.is_read_only = ro;
    h->cfg.cache_type = cache;
    h->cfg.io_engine = engine;
    assert_int_equal(guest_mem_init(&h->gm, MEM_SIZE), 0);
    int rc = blk_create(&h->b, &h->cfg, &h->gm);
    if (rc)
        return rc;
    h->t = blk_transport(h->b);
    h->next_buf = BUF_GPA;
    driver_init(h);
    return 0;
}

static void h_setup(struct h *h, const char *id, bool ro, enum cache_type cache,
                    enum io_engine engine)
{
    make_file(h->path, FILE_SECTORS * 512, true);
    assert_int_equal(h_open(h, id, ro, cache, engine), 0);
}

static void h_teardown(struct h *h)
{
    blk_destroy(h->b);
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
        struct desc d = {s[i].gpa, s[i].len, (uint16_t)(s[i].write ? VIRTQ_DESC_F_WRITE : 0), 0};
        if (i + 1 < n) {
            d.flags |= VIRTQ_DESC_F_NEXT;
            d.next = h->next_desc;
        }
        assert_int_equal(gm_write(&h->gm, DESC_GPA + 16u * idx, &d, sizeof(d)), 0);
    }
    assert_int_equal(gm_write(&h->gm, AVAIL_GPA + 4 + 2u * (h->avail_idx % QSIZE), &head, 2), 0);
    h->avail_idx++;
    assert_int_equal(gm_write(&h->gm, AVAIL_GPA + 2, &h->avail_idx, 2), 0);
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

static void kick(struct h *h)
{
    pthread_mutex_lock(&h->t->lock);
    h->t->ops->queue_notify(h->t, 0);
    pthread_mutex_unlock(&h->t->lock);
}

static uint16_t used_idx(struct h *h)
{
    uint16_t v;
    assert_int_equal(gm_read(&h->gm, USED_GPA + 2, &v, 2), 0);
    return v;
}

/* Wait (Async) until `n` used entries beyond those seen are there. */
static void wait_used(struct h *h, unsigned n)
{
    for (int i = 0; i < 5000 && (uint16_t)(used_idx(h) - h->used_seen) < n; i++) {
        blk_async_complete(h->b);
        if ((uint16_t)(used_idx(h) - h->used_seen) >= n)
            break;
        usleep(1000);
    }
    assert_int_equal((uint16_t)(used_idx(h) - h->used_seen), n);
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

/* PATCH /drives as vdev_update_drive() does it: under the transport lock. */
static int update(struct h *h, const char *path, const struct rate_limiter *rl)
{
    pthread_mutex_lock(&h->t->lock);
    int rc = blk_update(h->b, path, rl);
    pthread_mutex_unlock(&h->t->lock);
    return rc;
}

static uint64_t m(atomic_uint_fast64_t *v)
{
    return atomic_load(v);
}

/* ---- tests -------------------------------------------------------------- */

static void do_read(enum io_engine engine)
{
    struct h h;
    h_setup(&h, "rootfs", false, CACHE_UNSAFE, engine);
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

static void test_read_sync(void **state)
{
    (void)state;
    do_read(IO_ENGINE_SYNC);
}

static void test_read_async(void **state)
{
    (void)state;
    do_read(IO_ENGINE_ASYNC);
}

static void do_write(enum io_engine engine)
{
    struct h h;
    h_setup(&h, "data", false, CACHE_WRITEBACK, engine);
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

static void test_write_sync(void **state)
{
    (void)state;
    do_write(IO_ENGINE_SYNC);
}

static void test_write_async(void **state)
{
    (void)state;
    do_write(IO_ENGINE_ASYNC);
}

static void do_read_only(enum io_engine engine)
{
    struct h h;
    h_setup(&h, "ro", true, CACHE_UNSAFE, engine);
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

static void test_read_only_sync(void **state)
{
    (void)state;
    do_read_only(IO_ENGINE_SYNC);
}

static void test_read_only_async(void **state)
{
    (void)state;
    do_read_only(IO_ENGINE_ASYNC);
}

static void test_get_id(void **state)
{
    (void)state;
    struct h h;
    h_setup(&h, "rootfs", false, CACHE_UNSAFE, IO_ENGINE_SYNC);
    struct req r = add_req(&h, VIRTIO_BLK_T_GET_ID, 0, 20, true);
    memset(host(&h, r.data), 0xff, 20);
    assert_int_equal(run_one(&h, &r, 21), VIRTIO_BLK_S_OK);
    uint8_t want[20] = "rootfs";
    assert_memory_equal(host(&h, r.data), want, 20);
    h_teardown(&h);

    /* A long id is truncated to 20 bytes, and to the buffer. */
    h_setup(&h, "a_drive_id_longer_than_twenty", false, CACHE_UNSAFE, IO_ENGINE_ASYNC);
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

static void do_flush(enum io_engine engine)
{
    struct h h;
    h_setup(&h, "wb", false, CACHE_WRITEBACK, engine);
    assert_true(dev_features(&h) & (1ull << VIRTIO_BLK_F_FLUSH));
    uint64_t flushes = m(&metrics.block_flush_count);
    /* Write then flush in one kick: the flush completes after the write. */
    struct req w = add_req(&h, VIRTIO_BLK_T_OUT, 1, 512, false);
    memset(host(&h, w.data), 0x77, 512);
    struct req f = add_req(&h, VIRTIO_BLK_T_FLUSH, 0, 0, false);
    kick(&h);
    wait_used(&h, 2);
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
    uint8_t got[512];
    file_read(h.path, 512, got, 512);
    for (unsigned i = 0; i < 512; i++)
        assert_int_equal(got[i], 0x77);
    h_teardown(&h);

    /* Unsafe: FLUSH not offered; sent anyway, it is answered OK. */
    h_setup(&h, "unsafe", false, CACHE_UNSAFE, engine);
    assert_false(dev_features(&h) & (1ull << VIRTIO_BLK_F_FLUSH));
    f = add_req(&h, VIRTIO_BLK_T_FLUSH, 0, 0, false);
    assert_int_equal(run_one(&h, &f, 1), VIRTIO_BLK_S_OK);
    h_teardown(&h);
}

static void test_flush_sync(void **state)
{
    (void)state;
    do_flush(IO_ENGINE_SYNC);
}

static void test_flush_async(void **state)
{
    (void)state;
    do_flush(IO_ENGINE_ASYNC);
}

static void do_bad_requests(enum io_engine engine)
{
    struct h h;
    h_setup(&h, "bad", false, CACHE_UNSAFE, engine);
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
    assert_false(reg_r(&h, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    r = add_req(&h, VIRTIO_BLK_T_IN, 2, 512, true);
    assert_int_equal(run_one(&h, &r, 513), VIRTIO_BLK_S_OK);
    assert_memory_equal(host(&h, r.data), before + 1024, 512);
    h_teardown(&h);
}

static void test_bad_requests_sync(void **state)
{
    (void)state;
    do_bad_requests(IO_ENGINE_SYNC);
}

static void test_bad_requests_async(void **state)
{
    (void)state;
    do_bad_requests(IO_ENGINE_ASYNC);
}

/* Data and status sharing segments, data split over several segments. */
static void do_odd_layout(enum io_engine engine)
{
    struct h h;
    h_setup(&h, "odd", false, CACHE_UNSAFE, engine);
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

static void test_odd_layout_sync(void **state)
{
    (void)state;
    do_odd_layout(IO_ENGINE_SYNC);
}

static void test_odd_layout_async(void **state)
{
    (void)state;
    do_odd_layout(IO_ENGINE_ASYNC);
}

static void do_many(enum io_engine engine)
{
    struct h h;
    h_setup(&h, "many", false, CACHE_WRITEBACK, engine);
    enum { N = 16 };
    struct req w[N];
    for (unsigned i = 0; i < N; i++) {
        w[i] = add_req(&h, VIRTIO_BLK_T_OUT, 2 * i, 1024, false);
        memset(host(&h, w[i].data), 0x40 + (int)i, 1024);
    }
    kick(&h);
    wait_used(&h, N);
    bool seen[QSIZE] = {0};
    for (unsigned i = 0; i < N; i++) {
        uint16_t head;
        uint32_t len;
        next_used(&h, &head, &len);
        assert_true(head < QSIZE && !seen[head]);
        seen[head] = true;
        assert_int_equal(len, 1);
    }
    for (unsigned i = 0; i < N; i++) {
        assert_true(seen[w[i].head]);
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

static void test_many_sync(void **state)
{
    (void)state;
    do_many(IO_ENGINE_SYNC);
}

static void test_many_async(void **state)
{
    (void)state;
    do_many(IO_ENGINE_ASYNC);
}

static void test_config_space(void **state)
{
    (void)state;
    struct h h;
    h_setup(&h, "cfg", false, CACHE_UNSAFE, IO_ENGINE_SYNC);
    uint64_t cap = 0;
    pthread_mutex_lock(&h.t->lock);
    vmmio_bus_read(h.t, VIRTIO_MMIO_CONFIG, (uint8_t *)&cap, 8);
    pthread_mutex_unlock(&h.t->lock);
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

static void test_capacity_error(void **state)
{
    (void)state;
    struct h h;
    make_file(h.path, 1000, false);
    err_clear();
    assert_int_equal(h_open(&h, "oddsize", false, CACHE_UNSAFE, IO_ENGINE_SYNC), -EINVAL);
    assert_non_null(strstr(err_msg(), "oddsize"));
    assert_non_null(strstr(err_msg(), h.path));
    assert_non_null(strstr(err_msg(), "512"));
    guest_mem_free(&h.gm);
    unlink(h.path);
}

static void test_missing_file(void **state)
{
    (void)state;
    struct h h;
    strcpy(h.path, "/tmp/ember-test-blk-does-not-exist");
    err_clear();
    assert_int_equal(h_open(&h, "nofile", false, CACHE_UNSAFE, IO_ENGINE_ASYNC), -ENOENT);
    assert_non_null(strstr(err_msg(), "nofile"));
    assert_non_null(strstr(err_msg(), h.path));
    guest_mem_free(&h.gm);

    /* A directory is neither a regular file nor a block device. */
    strcpy(h.path, "/tmp");
    assert_int_equal(h_open(&h, "dir", true, CACHE_UNSAFE, IO_ENGINE_SYNC), -EINVAL);
    assert_non_null(strstr(err_msg(), "dir"));
    guest_mem_free(&h.gm);
}

static void do_update(enum io_engine engine)
{
    struct h h;
    h_setup(&h, "upd", false, CACHE_UNSAFE, engine);
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

static void test_update_sync(void **state)
{
    (void)state;
    do_update(IO_ENGINE_SYNC);
}

static void test_update_async(void **state)
{
    (void)state;
    do_update(IO_ENGINE_ASYNC);
}

static void do_rate_limit(enum io_engine engine)
{
    struct h h;
    make_file(h.path, FILE_SECTORS * 512, true);
    memset(&h.cfg, 0, sizeof(h.cfg));
    h.cfg.drive_id = "rl";
    h.cfg.path_on_host = h.path;
    h.cfg.io_engine = engine;
    h.cfg.rate_limiter.ops = (struct rate_bucket){true, 1, 0, 50}; /* 1 op per 50 ms */
    assert_int_equal(guest_mem_init(&h.gm, MEM_SIZE), 0);
    assert_int_equal(blk_create(&h.b, &h.cfg, &h.gm), 0);
    h.t = blk_transport(h.b);
    h.next_buf = BUF_GPA;
    driver_init(&h);

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
    /* The timer (as the main loop would dispatch it) lets the rest through. */
    for (int i = 0; i < 200 && *host(&h, r[2].status) == 0xee; i++) {
        usleep(10000);
        blk_rate_limiter_expired(h.b);
        blk_async_complete(h.b);
    }
    wait_used(&h, 3);
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

static void test_rate_limit_sync(void **state)
{
    (void)state;
    do_rate_limit(IO_ENGINE_SYNC);
}

static void test_rate_limit_async(void **state)
{
    (void)state;
    do_rate_limit(IO_ENGINE_ASYNC);
}

/* Through the event loop: io_uring completions arrive on the eventfd and the
 * rate limiter's timer resumes the queue, as in the VMM. */
static void test_event_loop_async(void **state)
{
    (void)state;
    struct h h;
    make_file(h.path, FILE_SECTORS * 512, true);
    memset(&h.cfg, 0, sizeof(h.cfg));
    h.cfg.drive_id = "loop";
    h.cfg.path_on_host = h.path;
    h.cfg.io_engine = IO_ENGINE_ASYNC;
    h.cfg.rate_limiter.bandwidth = (struct rate_bucket){true, 1024, 0, 20}; /* 1 KiB / 20 ms */
    assert_int_equal(guest_mem_init(&h.gm, MEM_SIZE), 0);
    assert_int_equal(blk_create(&h.b, &h.cfg, &h.gm), 0);
    h.t = blk_transport(h.b);
    h.next_buf = BUF_GPA;
    driver_init(&h);
    struct evloop ev;
    assert_int_equal(evloop_init(&ev), 0);
    assert_int_equal(blk_attach(h.b, &ev), 0);

    uint64_t thr = m(&metrics.block_rate_limiter_throttled_events);
    enum { N = 6 };
    struct req r[N];
    for (unsigned i = 0; i < N; i++)
        r[i] = add_req(&h, VIRTIO_BLK_T_IN, i, 1024, true);
    kick(&h);
    for (int i = 0; i < 500 && used_idx(&h) != N; i++)
        assert_true(evloop_run_once(&ev, 20) >= 0);
    assert_int_equal(used_idx(&h), N);
    assert_true(m(&metrics.block_rate_limiter_throttled_events) > thr);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(*host(&h, r[i].status), VIRTIO_BLK_S_OK);
        for (unsigned k = 0; k < 1024; k++)
            assert_int_equal(host(&h, r[i].data)[k], pattern(i * 512 + k));
    }
    blk_destroy(h.b); /* takes its fds off the loop */
    evloop_close(&ev);
    guest_mem_free(&h.gm);
    unlink(h.path);
}

/* Reset with requests in flight: they are waited for, then forgotten. */
static void test_reset_in_flight_async(void **state)
{
    (void)state;
    struct h h;
    h_setup(&h, "rst", false, CACHE_WRITEBACK, IO_ENGINE_ASYNC);
    for (unsigned i = 0; i < 8; i++)
        add_req(&h, VIRTIO_BLK_T_IN, i, 4096, true);
    add_req(&h, VIRTIO_BLK_T_FLUSH, 0, 0, false);
    kick(&h);
    reg_w(&h, VIRTIO_MMIO_STATUS, 0);
    assert_int_equal(blk_in_flight(h.b), 0);
    assert_false(h.t->activated);
    blk_async_complete(h.b); /* nothing left to report */
    /* The device comes back after a new initialisation. */
    driver_init(&h);
    struct req r = add_req(&h, VIRTIO_BLK_T_IN, 1, 512, true);
    assert_int_equal(run_one(&h, &r, 513), VIRTIO_BLK_S_OK);
    assert_int_equal(host(&h, r.data)[0], pattern(512));
    h_teardown(&h);
}

/* Polling (--blk-poll-us): a request the driver adds while the device polls
 * its emptied ring is served within the same kick. */
struct later {
    struct h *h;
    struct req r;
};

static void *add_later(void *arg)
{
    struct later *l = arg;
    usleep(20000);
    l->r = add_req(l->h, VIRTIO_BLK_T_IN, 3, 512, true);
    return NULL;
}

static void test_poll_serves_without_kick(void **state)
{
    (void)state;
    struct h h;
    h_setup(&h, "poll", false, CACHE_WRITEBACK, IO_ENGINE_SYNC);
    struct req a = add_req(&h, VIRTIO_BLK_T_IN, 1, 512, true);
    struct later l = {.h = &h};
    pthread_t th;
    blk_poll_us = 500000; /* 0.5 s: far longer than the 20 ms the driver takes */
    assert_int_equal(pthread_create(&th, NULL, add_later, &l), 0);
    kick(&h); /* one kick */
    pthread_join(th, NULL);
    blk_poll_us = 0;
    assert_int_equal((uint16_t)(used_idx(&h) - h.used_seen), 2);
    uint16_t head;
    uint32_t len;
    next_used(&h, &head, &len);
    assert_int_equal(head, a.head);
    next_used(&h, &head, &len);
    assert_int_equal(head, l.r.head);
    assert_int_equal(len, 513);
    assert_int_equal(*host(&h, a.status), VIRTIO_BLK_S_OK);
    assert_int_equal(*host(&h, l.r.status), VIRTIO_BLK_S_OK);
    assert_int_equal(host(&h, l.r.data)[0], pattern(3 * 512));
    h_teardown(&h);
}

/* Async: after delivering completions the device polls for the guest's next
 * request (a guest at QD1 answers each completion with one). */
static void test_poll_after_completion_async(void **state)
{
    (void)state;
    struct h h;
    h_setup(&h, "pollc", false, CACHE_WRITEBACK, IO_ENGINE_ASYNC);
    struct req a = add_req(&h, VIRTIO_BLK_T_IN, 1, 512, true);
    kick(&h); /* submitted; polling is still off */
    struct later l = {.h = &h};
    pthread_t th;
    blk_poll_us = 500000;
    assert_int_equal(pthread_create(&th, NULL, add_later, &l), 0);
    /* Reaping a, the device polls and serves the request added meanwhile. */
    for (int i = 0; i < 5000 && used_idx(&h) == h.used_seen; i++) {
        blk_async_complete(h.b);
        usleep(1000);
    }
    pthread_join(th, NULL);
    blk_poll_us = 0;
    wait_used(&h, 2); /* no kick for the second */
    uint16_t head;
    uint32_t len;
    next_used(&h, &head, &len);
    assert_int_equal(head, a.head);
    next_used(&h, &head, &len);
    assert_int_equal(head, l.r.head);
    assert_int_equal(*host(&h, l.r.status), VIRTIO_BLK_S_OK);
    assert_int_equal(host(&h, l.r.data)[0], pattern(3 * 512));
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
static void do_file_shrunk(enum io_engine engine)
{
    struct h h;
    h_setup(&h, "shrunk", false, CACHE_UNSAFE, engine);
    assert_int_equal(truncate(h.path, 3 * 512 + 256), 0);
    uint64_t fails = m(&metrics.block_execute_fails);
    struct req r = add_req(&h, VIRTIO_BLK_T_IN, 3, 1024, true);
    assert_int_equal(run_one(&h, &r, 1), VIRTIO_BLK_S_IOERR);
    if (engine == IO_ENGINE_ASYNC)
        assert_int_equal(m(&metrics.block_execute_fails), fails + 1);
    struct req ok = add_req(&h, VIRTIO_BLK_T_IN, 2, 512, true);
    assert_int_equal(run_one(&h, &ok, 513), VIRTIO_BLK_S_OK);
    for (unsigned i = 0; i < 512; i++)
        assert_int_equal(host(&h, ok.data)[i], pattern(2 * 512 + i));
    h_teardown(&h);
}

static void test_file_shrunk_sync(void **state)
{
    (void)state;
    do_file_shrunk(IO_ENGINE_SYNC);
}

static void test_file_shrunk_async(void **state)
{
    (void)state;
    do_file_shrunk(IO_ENGINE_ASYNC);
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

int main(void)
{
    /* These tests drive the queue by hand (and test_reset_in_flight_async
     * needs requests still in flight): no polling after the ring empties. */
    blk_poll_us = 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_read_sync),
        cmocka_unit_test(test_read_async),
        cmocka_unit_test(test_write_sync),
        cmocka_unit_test(test_write_async),
        cmocka_unit_test(test_read_only_sync),
        cmocka_unit_test(test_read_only_async),
        cmocka_unit_test(test_get_id),
        cmocka_unit_test(test_flush_sync),
        cmocka_unit_test(test_flush_async),
        cmocka_unit_test(test_bad_requests_sync),
        cmocka_unit_test(test_bad_requests_async),
        cmocka_unit_test(test_odd_layout_sync),
        cmocka_unit_test(test_odd_layout_async),
        cmocka_unit_test(test_many_sync),
        cmocka_unit_test(test_many_async),
        cmocka_unit_test(test_config_space),
        cmocka_unit_test(test_capacity_error),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_update_sync),
        cmocka_unit_test(test_update_async),
        cmocka_unit_test(test_rate_limit_sync),
        cmocka_unit_test(test_rate_limit_async),
        cmocka_unit_test(test_reset_in_flight_async),
        cmocka_unit_test(test_event_loop_async),
        cmocka_unit_test(test_poll_serves_without_kick),
        cmocka_unit_test(test_poll_after_completion_async),
        cmocka_unit_test(test_slots_exhausted_async),
        cmocka_unit_test(test_file_shrunk_sync),
        cmocka_unit_test(test_file_shrunk_async),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
