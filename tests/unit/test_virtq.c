/* test_virtq.c - unit tests for the split virtqueue walker (virtio/virtq.c) on
 * a fake guest memory: well-formed direct and indirect chains, copy helpers,
 * used ring and notification suppression both ways (EVENT_IDX and flags),
 * and every hostile case (loops, over-long chains, addresses past RAM or
 * wrapping, nested/mixed/bad indirect tables, zero-length buffers, bad rings,
 * avail index jumps, heads out of range). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../boot/layout.h"
#include "../../vmm/base/guest_mem.h"
#include "../../vmm/base/metrics.h"
#include "../../virtio/virtq.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RAM (1u << 20)
#define DESC 0x1000u
#define AVAIL 0x2000u
#define USED 0x3000u
#define TABLE 0x4000u /* indirect tables */
#define BUF 0x10000u  /* data buffers */

#define F_NEXT VRING_DESC_F_NEXT
#define F_WRITE VRING_DESC_F_WRITE
#define F_INDIRECT VRING_DESC_F_INDIRECT

static struct guest_mem gm;
static struct virtq q;
static struct virtq_chain ch;
static uint16_t drv_avail_idx; /* the fake driver's avail->idx */

static void w16(uint64_t gpa, uint16_t v)
{
    assert_int_equal(gm_write(&gm, gpa, &v, 2), 0);
}

static uint16_t r16(uint64_t gpa)
{
    uint16_t v;
    assert_int_equal(gm_read(&gm, gpa, &v, 2), 0);
    return v;
}

static uint32_t r32(uint64_t gpa)
{
    uint32_t v;
    assert_int_equal(gm_read(&gm, gpa, &v, 4), 0);
    return v;
}

static void put_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    uint8_t d[16];
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
    assert_int_equal(gm_write(&gm, table + 16ull * i, d, 16), 0);
}

static void desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    put_desc(DESC, i, addr, len, flags, next);
}

/* The driver makes chain `head` available. */
static void offer(uint16_t head)
{
    w16(AVAIL + 4 + 2ull * (drv_avail_idx % q.size), head);
    drv_avail_idx++;
    w16(AVAIL + 2, drv_avail_idx);
}

static void setup_queue(uint16_t size, bool event_idx)
{
    memset(gm.host, 0, 0x20000);
    virtq_reset(&q);
    struct virtq_regs r = {
        .size = size, .ready = true, .desc_gpa = DESC, .avail_gpa = AVAIL, .used_gpa = USED};
    drv_avail_idx = 0;
    assert_int_equal(virtq_activate(&q, &r, &gm, event_idx), 0);
}

static int setup(void **state)
{
    (void)state;
    return guest_mem_init(&gm, RAM, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END);
}

static int teardown(void **state)
{
    (void)state;
    guest_mem_free(&gm);
    return 0;
}

static uint64_t bad_chains(void)
{
    return atomic_load(&metrics.virtio_bad_chains);
}

/* Pop one chain expecting -EBADMSG for head `head`, and check it was consumed. */
static void expect_bad(uint16_t head)
{
    uint64_t before = bad_chains();
    uint16_t la = q.last_avail;
    assert_int_equal(virtq_pop(&q, &ch), -EBADMSG);
    assert_int_equal(ch.head, head);
    assert_int_equal(ch.n_seg, 0);
    assert_int_equal(q.last_avail, (uint16_t)(la + 1));
    assert_int_equal(bad_chains(), before + 1);
    assert_false(q.broken);
    assert_int_equal(virtq_pop(&q, &ch), 0); /* nothing left */
    /* The device hands it back with length 0. */
    virtq_push(&q, ch.head, 0);
    assert_int_equal(r16(USED + 2), q.used_idx);
}

static void test_simple_chain(void **state)
{
    (void)state;
    setup_queue(8, false);
    assert_int_equal(virtq_pop(&q, &ch), 0);
    assert_false(virtq_has_avail(&q));

    desc(3, BUF, 16, F_NEXT, 5);
    desc(5, BUF + 0x100, 100, F_NEXT | F_WRITE, 6);
    desc(6, BUF + 0x200, 1, F_WRITE, 0);
    offer(3);
    assert_true(virtq_has_avail(&q));
    assert_int_equal(virtq_pop(&q, &ch), 1);
    assert_int_equal(ch.head, 3);
    assert_int_equal(ch.n_seg, 3);
    assert_int_equal(ch.n_out, 1);
    assert_int_equal(ch.out_len, 16);
    assert_int_equal(ch.in_len, 101);
    assert_ptr_equal(ch.seg[0].host, gm.host + BUF);
    assert_int_equal(ch.seg[0].len, 16);
    assert_false(ch.seg[0].write);
    assert_ptr_equal(ch.seg[1].host, gm.host + BUF + 0x100);
    assert_true(ch.seg[1].write);
    assert_ptr_equal(ch.seg[2].host, gm.host + BUF + 0x200);
    assert_int_equal(virtq_pop(&q, &ch), 0);
    assert_false(virtq_has_avail(&q));

    virtq_push(&q, 3, 42);
    assert_int_equal(r16(USED + 2), 1);
    assert_int_equal(r32(USED + 4), 3);
    assert_int_equal(r32(USED + 8), 42);

    /* A single-descriptor chain; ring positions wrap modulo the size. */
    desc(0, BUF, 8, 0, 0);
    for (unsigned i = 0; i < 20; i++) {
        offer(0);
        assert_int_equal(virtq_pop(&q, &ch), 1);
        assert_int_equal(ch.head, 0);
        assert_int_equal(ch.n_seg, 1);
        virtq_push(&q, 0, i);
        unsigned slot = (i + 1) % 8;
        assert_int_equal(r32(USED + 4 + 8 * slot + 4), i);
    }
    assert_int_equal(r16(USED + 2), 21);
    assert_int_equal(q.last_avail, 21);
}

static void test_full_ring_and_wrap(void **state)
{
    (void)state;
    setup_queue(4, false);
    for (unsigned i = 0; i < 4; i++)
        desc(i, BUF + 0x10 * i, 4, 0, 0);
    /* Exactly `size` chains pending is fine; the avail index wraps at 65536. */
    q.last_avail = 65534;
    drv_avail_idx = 65534;
    for (unsigned i = 0; i < 4; i++)
        offer((uint16_t)i);
    assert_int_equal(r16(AVAIL + 2), 2);
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(virtq_pop(&q, &ch), 1);
        assert_int_equal(ch.head, i);
    }
    assert_int_equal(virtq_pop(&q, &ch), 0);
}

static void test_indirect(void **state)
{
    (void)state;
    setup_queue(8, false);
    put_desc(TABLE, 0, BUF, 16, F_NEXT, 2);
    put_desc(TABLE, 2, BUF + 0x100, 512, F_NEXT | F_WRITE, 1);
    put_desc(TABLE, 1, BUF + 0x400, 1, F_WRITE, 0);
    desc(1, TABLE, 3 * 16, F_INDIRECT, 0);
    offer(1);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    assert_int_equal(ch.head, 1);
    assert_int_equal(ch.n_seg, 3);
    assert_int_equal(ch.n_out, 1);
    assert_int_equal(ch.out_len, 16);
    assert_int_equal(ch.in_len, 513);
    assert_ptr_equal(ch.seg[0].host, gm.host + BUF);
    assert_ptr_equal(ch.seg[1].host, gm.host + BUF + 0x100);
    assert_ptr_equal(ch.seg[2].host, gm.host + BUF + 0x400);

    /* A direct descriptor may lead into an indirect table (last in the chain). */
    desc(2, BUF + 0x800, 8, F_NEXT, 1);
    offer(2);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    assert_int_equal(ch.n_seg, 4);
    assert_int_equal(ch.out_len, 24);

    /* A table as long as the queue is fine (the pointer itself is not counted). */
    for (unsigned i = 0; i < 8; i++)
        put_desc(TABLE + 0x100, i, BUF + i, 1, i < 7 ? F_NEXT : 0, (uint16_t)(i + 1));
    desc(4, TABLE + 0x100, 8 * 16, F_INDIRECT, 0);
    offer(4);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    assert_int_equal(ch.n_seg, 8);
    assert_int_equal(ch.out_len, 8);
}

static void test_chain_copy(void **state)
{
    (void)state;
    setup_queue(8, false);
    uint8_t pat[16];
    for (unsigned i = 0; i < 16; i++)
        pat[i] = (uint8_t)(0xa0 + i);
    assert_int_equal(gm_write(&gm, BUF, pat, 3), 0);
    assert_int_equal(gm_write(&gm, BUF + 0x100, pat + 3, 5), 0);
    memset(gm.host + BUF + 0x200, 0, 16);
    desc(0, BUF, 3, F_NEXT, 1);
    desc(1, BUF + 0x100, 5, F_NEXT, 2);
    desc(2, BUF + 0x200, 4, F_NEXT | F_WRITE, 3);
    desc(3, BUF + 0x300, 4, F_WRITE, 0);
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    assert_int_equal(ch.n_out, 2);

    uint8_t out[16];
    memset(out, 0, sizeof(out));
    assert_int_equal(virtq_chain_read(&ch, 0, out, 8), 8);
    assert_memory_equal(out, pat, 8);
    memset(out, 0, sizeof(out));
    assert_int_equal(virtq_chain_read(&ch, 2, out, 4), 4); /* across segments */
    assert_memory_equal(out, pat + 2, 4);
    assert_int_equal(virtq_chain_read(&ch, 5, out, 16), 3); /* short side */
    assert_memory_equal(out, pat + 5, 3);
    assert_int_equal(virtq_chain_read(&ch, 8, out, 1), 0);
    assert_int_equal(virtq_chain_read(&ch, 100, out, 1), 0);

    const uint8_t src[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    memset(gm.host + BUF + 0x300, 0, 8);
    assert_int_equal(virtq_chain_write(&ch, 1, src, 6), 6);
    const uint8_t want_a[4] = {0, 1, 2, 3}, want_b[4] = {4, 5, 6, 0};
    assert_memory_equal(gm.host + BUF + 0x200, want_a, 4);
    assert_memory_equal(gm.host + BUF + 0x300, want_b, 4);
    assert_int_equal(virtq_chain_write(&ch, 6, src, 8), 2);
    assert_int_equal(gm.host[BUF + 0x300 + 2], 1);
    assert_int_equal(gm.host[BUF + 0x300 + 3], 2);
    /* The readable side was not touched by writes. */
    assert_memory_equal(gm.host + BUF, pat, 3);
}

static void test_interrupt_suppression_flags(void **state)
{
    (void)state;
    setup_queue(8, false);
    assert_false(virtq_needs_interrupt(&q)); /* nothing pushed yet */
    desc(0, BUF, 4, 0, 0);
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    virtq_push(&q, 0, 0);
    assert_true(virtq_needs_interrupt(&q));
    assert_false(virtq_needs_interrupt(&q)); /* nothing new */

    w16(AVAIL, VRING_AVAIL_F_NO_INTERRUPT);
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    virtq_push(&q, 0, 0);
    assert_false(virtq_needs_interrupt(&q));
    w16(AVAIL, 0);
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    virtq_push(&q, 0, 0);
    assert_true(virtq_needs_interrupt(&q));
}

static void test_interrupt_suppression_event_idx(void **state)
{
    (void)state;
    setup_queue(8, true);
    const uint64_t used_event = AVAIL + 4 + 2 * 8;
    desc(0, BUF, 4, 0, 0);
    /* NO_INTERRUPT is ignored with EVENT_IDX. */
    w16(AVAIL, VRING_AVAIL_F_NO_INTERRUPT);
    w16(used_event, 100);
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    virtq_push(&q, 0, 0);
    assert_true(virtq_needs_interrupt(&q)); /* first signal after activation */

    w16(used_event, 5); /* interrupt me when used idx passes 5 */
    for (unsigned i = 0; i < 4; i++) {
        offer(0);
        assert_int_equal(virtq_pop(&q, &ch), 1);
        virtq_push(&q, 0, 0);
        assert_false(virtq_needs_interrupt(&q)); /* used idx 2..5 */
    }
    offer(0);
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    virtq_push(&q, 0, 0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    virtq_push(&q, 0, 0);
    assert_int_equal(q.used_idx, 7);
    assert_true(virtq_needs_interrupt(&q)); /* 5 in [5, 7) */
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    virtq_push(&q, 0, 0);
    assert_false(virtq_needs_interrupt(&q)); /* already past the event */
    w16(used_event, 7);                      /* an event already passed stays quiet */
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    virtq_push(&q, 0, 0);
    assert_false(virtq_needs_interrupt(&q)); /* used idx 8 -> 9 */
    w16(used_event, 9);
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    virtq_push(&q, 0, 0);
    assert_true(virtq_needs_interrupt(&q)); /* used idx 9 -> 10 passes 9 */
    /* Batched pushes across the event: one interrupt for the batch. */
    w16(used_event, 11);
    for (unsigned i = 0; i < 3; i++) {
        offer(0);
        assert_int_equal(virtq_pop(&q, &ch), 1);
        virtq_push(&q, 0, 0);
    }
    assert_true(virtq_needs_interrupt(&q)); /* 10 -> 13 passes 11 */
    assert_false(virtq_needs_interrupt(&q));
}

static void test_notify_suppression(void **state)
{
    (void)state;
    /* EVENT_IDX: avail_event follows consumption while notifications are on. */
    setup_queue(8, true);
    const uint64_t avail_event = USED + 4 + 8 * 8;
    desc(0, BUF, 4, 0, 0);
    offer(0);
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    assert_int_equal(r16(avail_event), 1);
    virtq_notify_disable(&q);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    assert_int_equal(r16(avail_event), 1); /* left behind: no kicks */
    assert_int_equal(r16(USED), 0);        /* flags untouched with EVENT_IDX */
    virtq_notify_enable(&q);
    assert_int_equal(r16(avail_event), 2);
    assert_false(virtq_has_avail(&q));
    offer(0);
    assert_true(virtq_has_avail(&q)); /* the re-check after enabling */

    /* Without EVENT_IDX: the used ring's NO_NOTIFY flag. */
    setup_queue(8, false);
    virtq_notify_disable(&q);
    assert_int_equal(r16(USED), VRING_USED_F_NO_NOTIFY);
    virtq_notify_enable(&q);
    assert_int_equal(r16(USED), 0);
    assert_int_equal(r16(USED + 4 + 8 * 8), 0); /* avail_event unused */
}

static void test_activate_checks(void **state)
{
    (void)state;
    struct {
        uint16_t size;
        uint64_t desc, avail, used;
    } bad[] = {
        {0, DESC, AVAIL, USED},
        {6, DESC, AVAIL, USED},
        {512, DESC, AVAIL, USED},
        {0xffff, DESC, AVAIL, USED},
        {8, DESC + 8, AVAIL, USED},             /* desc not 16-aligned */
        {8, DESC, AVAIL + 1, USED},             /* avail not 2-aligned */
        {8, DESC, AVAIL, USED + 2},             /* used not 4-aligned */
        {8, RAM - 16 * 8 + 16, AVAIL, USED},    /* desc runs past RAM */
        {8, DESC, RAM - (6 + 2 * 8) + 2, USED}, /* avail (incl. used_event) past RAM */
        {8, DESC, AVAIL, RAM - 68},             /* used (incl. avail_event) past RAM */
        {8, DESC, AVAIL, RAM},
        {8, UINT64_MAX - 15, AVAIL, USED}, /* wraps */
        {8, DESC, UINT64_MAX - 1, USED},
        {8, DESC, AVAIL, 0xd0000000ull}, /* MMIO gap */
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        virtq_reset(&q);
        struct virtq_regs r = {.size = (uint16_t)bad[i].size,
                               .desc_gpa = bad[i].desc,
                               .avail_gpa = bad[i].avail,
                               .used_gpa = bad[i].used};
        assert_int_equal(virtq_activate(&q, &r, &gm, false), -EINVAL);
        assert_null(q.desc);
        assert_null(q.used);
        /* A queue that failed activation pops nothing and pushes nowhere. */
        assert_int_equal(virtq_pop(&q, &ch), 0);
        virtq_push(&q, 0, 0);
        assert_false(virtq_needs_interrupt(&q));
    }
    /* Rings exactly at the end of RAM are fine. */
    virtq_reset(&q);
    struct virtq_regs end = {.size = 8,
                             .desc_gpa = RAM - 16 * 8,
                             .avail_gpa = RAM - 16 * 8 - (6 + 2 * 8),
                             .used_gpa = (RAM - 16 * 8 - 32 - (6 + 8 * 8)) & ~3ull};
    assert_int_equal(virtq_activate(&q, &end, &gm, true), 0);
    for (uint16_t n = 1; n <= VIRTQ_MAX_SIZE; n *= 2) {
        virtq_reset(&q);
        struct virtq_regs r = {.size = n, .desc_gpa = DESC, .avail_gpa = TABLE, .used_gpa = BUF};
        assert_int_equal(virtq_activate(&q, &r, &gm, false), 0);
    }
}

static void test_loops(void **state)
{
    (void)state;
    setup_queue(8, false);
    desc(0, BUF, 4, F_NEXT, 0); /* self loop */
    offer(0);
    expect_bad(0);
    desc(1, BUF, 4, F_NEXT, 2);
    desc(2, BUF, 4, F_NEXT | F_WRITE, 1); /* two-descriptor loop */
    offer(1);
    expect_bad(1);
    /* Every descriptor of the table in one chain that then loops. */
    for (unsigned i = 0; i < 8; i++)
        desc(i, BUF, 1, F_NEXT, (uint16_t)((i + 1) % 8));
    offer(3);
    expect_bad(3);
    /* A loop inside an indirect table. */
    put_desc(TABLE, 0, BUF, 4, F_NEXT, 1);
    put_desc(TABLE, 1, BUF, 4, F_NEXT, 0);
    desc(0, TABLE, 32, F_INDIRECT, 0);
    offer(0);
    expect_bad(0);
}

static void test_too_long(void **state)
{
    (void)state;
    /* An indirect table with more entries than the queue size. */
    setup_queue(4, false);
    for (unsigned i = 0; i < 5; i++)
        put_desc(TABLE, i, BUF, 1, i < 4 ? F_NEXT : 0, (uint16_t)(i + 1));
    desc(0, TABLE, 5 * 16, F_INDIRECT, 0);
    offer(0);
    expect_bad(0);
    /* Direct descriptors plus the table's entries together exceed the size. */
    for (unsigned i = 0; i < 3; i++)
        put_desc(TABLE + 0x100, i, BUF, 1, i < 2 ? F_NEXT : 0, (uint16_t)(i + 1));
    desc(1, BUF, 1, F_NEXT, 2);
    desc(2, BUF, 1, F_NEXT, 3);
    desc(3, TABLE + 0x100, 3 * 16, F_INDIRECT, 0);
    offer(1);
    expect_bad(1);
    /* Next index past the end of the table. */
    setup_queue(8, false);
    desc(0, BUF, 1, F_NEXT, 8);
    offer(0);
    expect_bad(0);
    put_desc(TABLE, 0, BUF, 1, F_NEXT, 2);
    desc(1, TABLE, 32, F_INDIRECT, 0);
    offer(1);
    expect_bad(1);
}

static void test_bad_addresses(void **state)
{
    (void)state;
    setup_queue(8, false);
    const struct {
        uint64_t addr;
        uint32_t len;
    } bad[] = {
        {RAM, 1},
        {RAM - 8, 16},
        {RAM - 1, 0xffffffffu},
        {UINT64_MAX - 3, 16}, /* addr + len wraps */
        {UINT64_MAX, 1},
        {0xd0000000ull, 4},  /* the MMIO gap */
        {0x100000000ull, 4}, /* 4 GiB: no high RAM in a 1 MiB guest */
        {0, 0xffffffffu},
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        desc(0, BUF, 4, F_NEXT, 1);
        desc(1, bad[i].addr, bad[i].len, F_WRITE, 0);
        offer(0);
        expect_bad(0);
        /* Same buffer inside an indirect table. */
        put_desc(TABLE, 0, bad[i].addr, bad[i].len, 0, 0);
        desc(2, TABLE, 16, F_INDIRECT, 0);
        offer(2);
        expect_bad(2);
    }
    /* The last byte of RAM is fine. */
    desc(0, RAM - 1, 1, F_WRITE, 0);
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    assert_ptr_equal(ch.seg[0].host, gm.host + RAM - 1);
}

static void test_bad_indirect(void **state)
{
    (void)state;
    setup_queue(8, false);
    put_desc(TABLE, 0, BUF, 16, 0, 0);
    put_desc(TABLE, 1, BUF, 16, 0, 0);
    const struct {
        uint64_t addr;
        uint32_t len;
        uint16_t flags;
    } bad[] = {
        {TABLE, 0, F_INDIRECT},
        {TABLE, 20, F_INDIRECT},
        {TABLE, 8, F_INDIRECT},
        {TABLE, 16 * VIRTQ_MAX_SIZE + 16, F_INDIRECT},
        {TABLE, 0xfffffff0u, F_INDIRECT},
        {RAM - 16, 32, F_INDIRECT},        /* table past RAM */
        {UINT64_MAX - 15, 32, F_INDIRECT}, /* table wraps */
        {TABLE, 16, F_INDIRECT | F_NEXT},  /* indirect + NEXT */
    };
    desc(1, BUF, 4, 0, 0);
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        desc(0, bad[i].addr, bad[i].len, bad[i].flags, 1);
        offer(0);
        expect_bad(0);
    }
    /* Nested indirect table. */
    put_desc(TABLE + 0x100, 0, BUF, 16, 0, 0);
    put_desc(TABLE, 0, BUF, 16, F_NEXT, 1);
    put_desc(TABLE, 1, TABLE + 0x100, 16, F_INDIRECT, 0);
    desc(0, TABLE, 32, F_INDIRECT, 0);
    offer(0);
    expect_bad(0);
    /* A table of VIRTQ_MAX_SIZE entries on a full-size queue is accepted. */
    setup_queue(VIRTQ_MAX_SIZE, false);
    for (unsigned i = 0; i < VIRTQ_MAX_SIZE; i++)
        put_desc(0x8000, i, BUF + i, 1, F_WRITE | (i + 1 < VIRTQ_MAX_SIZE ? F_NEXT : 0),
                 (uint16_t)(i + 1));
    desc(0, 0x8000, 16 * VIRTQ_MAX_SIZE, F_INDIRECT, 0);
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    assert_int_equal(ch.n_seg, VIRTQ_MAX_SIZE);
    assert_int_equal(ch.in_len, VIRTQ_MAX_SIZE);
}

static void test_zero_length_and_order(void **state)
{
    (void)state;
    setup_queue(8, false);
    /* Zero-length buffers add no segment, wherever they point. */
    desc(0, BUF, 16, F_NEXT, 1);
    desc(1, UINT64_MAX, 0, F_NEXT, 2);
    desc(2, BUF + 0x100, 8, F_WRITE | F_NEXT, 3);
    desc(3, RAM + 0x1000, 0, 0, 0); /* readable after writable, but empty */
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    assert_int_equal(ch.n_seg, 2);
    assert_int_equal(ch.n_out, 1);
    assert_int_equal(ch.out_len, 16);
    assert_int_equal(ch.in_len, 8);
    /* A chain of only empty buffers. */
    desc(4, BUF, 0, 0, 0);
    offer(4);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    assert_int_equal(ch.n_seg, 0);
    /* Readable after writable is malformed. */
    desc(0, BUF, 16, F_WRITE | F_NEXT, 1);
    desc(1, BUF, 16, 0, 0);
    offer(0);
    expect_bad(0);
    /* Also inside an indirect table. */
    put_desc(TABLE, 0, BUF, 16, F_WRITE | F_NEXT, 1);
    put_desc(TABLE, 1, BUF, 16, 0, 0);
    desc(0, TABLE, 32, F_INDIRECT, 0);
    offer(0);
    expect_bad(0);
}

static void test_length_overflow(void **state)
{
    (void)state;
    /* A guest large enough for buffers of gigabytes (mapped lazily). */
    struct guest_mem small = gm;
    assert_int_equal(
        guest_mem_init(&gm, 0xc0000000ull + RAM, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END), 0);
    setup_queue(8, false);
    desc(0, 0, 0xc0000000u, F_NEXT, 1);
    desc(1, 0, 0x3fffffffu, 0, 0);
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1); /* exactly UINT32_MAX bytes */
    assert_int_equal(ch.out_len, 0xffffffffull);
    desc(1, 0, 0x40000000u, 0, 0);
    offer(0);
    expect_bad(0); /* 4 GiB: does not fit the used ring's 32-bit length */
    desc(0, 0, 0xc0000000u, F_NEXT, 1);
    desc(1, 0, 0xc0000000u, F_NEXT, 2);
    desc(2, 0, 0xc0000000u, F_NEXT, 3);
    desc(3, 0, 0xc0000000u, 0, 0);
    offer(0);
    expect_bad(0);
    guest_mem_free(&gm);
    gm = small;
}

static void test_avail_jump_and_bad_head(void **state)
{
    (void)state;
    setup_queue(8, false);
    desc(0, BUF, 4, 0, 0);
    /* Head index out of range: consumed, reported with that head. */
    offer(8);
    expect_bad(8);
    offer(0xffff);
    expect_bad(0xffff);
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    /* avail idx jumps by more than the queue size: the ring is broken. */
    w16(AVAIL + 2, (uint16_t)(q.last_avail + 9));
    assert_int_equal(virtq_pop(&q, &ch), -EIO);
    assert_true(q.broken);
    assert_int_equal(virtq_pop(&q, &ch), -EIO);
    assert_false(virtq_has_avail(&q));
    /* Going backwards is a jump too. */
    setup_queue(8, false);
    offer(0);
    assert_int_equal(virtq_pop(&q, &ch), 1);
    w16(AVAIL + 2, 0);
    assert_int_equal(virtq_pop(&q, &ch), -EIO);
    /* Reset clears everything. */
    virtq_reset(&q);
    assert_false(q.broken);
    assert_int_equal(q.size, 0);
    assert_int_equal(virtq_pop(&q, &ch), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_chain),
        cmocka_unit_test(test_full_ring_and_wrap),
        cmocka_unit_test(test_indirect),
        cmocka_unit_test(test_chain_copy),
        cmocka_unit_test(test_interrupt_suppression_flags),
        cmocka_unit_test(test_interrupt_suppression_event_idx),
        cmocka_unit_test(test_notify_suppression),
        cmocka_unit_test(test_activate_checks),
        cmocka_unit_test(test_loops),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_bad_indirect),
        cmocka_unit_test(test_zero_length_and_order),
        cmocka_unit_test(test_length_overflow),
        cmocka_unit_test(test_avail_jump_and_bad_head),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
