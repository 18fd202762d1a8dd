/* test_vmmio.c - unit tests for the virtio-mmio transport (virtio/mmio.c),
 * register by register on a dummy device: identity, feature windows and
 * negotiation (FEATURES_OK refused without VERSION_1), queue setup and
 * activation, reset, config space and generation, interrupt status/ack
 * through an irq eventfd, DEVICE_NEEDS_RESET, and kicks through the loop.
 *
 * The transport's contract (mmio.h): a Status write that activates or resets
 * the device only changes the register file and asks the main loop for the
 * work; the device is activated (or reset) by vmmio_do_work() or the next
 * vmmio_lock(). Every kick goes through the queue's kick eventfd, served by
 * an event loop the transport is attached to, as in the VMM. INTERRUPT_STATUS
 * and INTERRUPT_ACK take no lock. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../boot/layout.h"
#include "../../vmm/base/evloop.h"
#include "../../vmm/base/guest_mem.h"
#include "../../vmm/base/metrics.h"
#include "../../virtio/mmio_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define RAM (1u << 20)

static struct guest_mem gm;
static struct virtio_mmio t;
static struct evloop ev; /* the main loop: the transport's work and kick fds */
static int n_activate, n_reset, n_notify[2], activate_rc;
static uint8_t cfg[16];

static void d_config_read(struct virtio_mmio *tt, uint64_t off, uint8_t *data, uint32_t len)
{
    assert_ptr_equal(tt, &t);
    for (uint32_t i = 0; i < len; i++)
        data[i] = off + i < sizeof(cfg) ? cfg[off + i] : 0;
}

static void d_config_write(struct virtio_mmio *tt, uint64_t off, const uint8_t *data, uint32_t len)
{
    assert_ptr_equal(tt, &t);
    for (uint32_t i = 0; i < len; i++)
        if (off + i < sizeof(cfg))
            cfg[off + i] = data[i];
}

static int d_activate(struct virtio_mmio *tt)
{
    assert_ptr_equal(tt, &t);
    n_activate++;
    /* Every ready queue is mapped before the device sees DRIVER_OK. */
    for (unsigned i = 0; i < tt->n_queues; i++)
        if (tt->regs.queues[i].ready)
            assert_non_null(tt->queues[i].used);
    return activate_rc;
}

static void d_reset(struct virtio_mmio *tt)
{
    assert_ptr_equal(tt, &t);
    n_reset++;
}

static void d_queue_notify(struct virtio_mmio *tt, unsigned q)
{
    assert_ptr_equal(tt, &t);
    assert_true(q < 2);
    n_notify[q]++;
}

static const struct virtio_mmio_ops ops = {
    .config_read = d_config_read,
    .config_write = d_config_write,
    .activate = d_activate,
    .reset = d_reset,
    .queue_notify = d_queue_notify,
};

static uint32_t rd(uint64_t off)
{
    uint8_t b[4];
    memset(b, 0xcc, 4);
    vmmio_bus_read(&t, off, b, 4);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void wr(uint64_t off, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    vmmio_bus_write(&t, off, b, 4);
}

static uint64_t irq_count(void)
{
    uint64_t v = 0;
    if (read(t.irq_fd, &v, 8) != 8)
        return 0;
    return v;
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(guest_mem_init(&gm, RAM, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END), 0);
    memset(&t, 0, sizeof(t));
    t.device_id = 2;
    t.device_features = (1ull << 5) | (1ull << 9) | (1ull << 35);
    t.n_queues = 2;
    t.ops = &ops;
    t.name = "dummy0";
    assert_int_equal(vmmio_init(&t), 0);
    assert_int_equal(t.irq_fd, -1);
    assert_int_equal(t.kick_fd[0], -1);
    assert_int_equal(t.kick_fd[1], -1);
    assert_true(t.work_fd >= 0);
    t.mem = &gm;
    t.base = 0xd0001000;
    t.gsi = 6;
    t.irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(t.irq_fd >= 0);
    /* The kick eventfds stand for the ioeventfds KVM would signal. */
    for (unsigned q = 0; q < 2; q++) {
        t.kick_fd[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        assert_true(t.kick_fd[q] >= 0);
    }
    assert_int_equal(evloop_init(&ev), 0);
    assert_int_equal(vmmio_attach(&t, &ev), 0);
    n_activate = n_reset = n_notify[0] = n_notify[1] = activate_rc = 0;
    memset(cfg, 0, sizeof(cfg));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    close(t.irq_fd);
    vmmio_destroy(&t); /* takes the fds off the loop */
    close(t.kick_fd[0]);
    close(t.kick_fd[1]);
    evloop_close(&ev);
    guest_mem_free(&gm);
    return 0;
}

/* Run the main loop until nothing is ready; returns the handlers run. */
static int run_loop(void)
{
    int total = 0, n;
    while ((n = evloop_run_once(&ev, 0)) > 0)
        total += n;
    assert_true(n == 0);
    return total;
}

/* The driver kicks queue q: the QueueNotify write, then the loop serves it. */
static void kick(uint32_t q)
{
    wr(VIRTIO_MMIO_QUEUE_NOTIFY, q);
    run_loop();
}

static bool fd_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void set_queue(unsigned sel, uint32_t num, uint64_t desc, uint64_t avail, uint64_t used)
{
    wr(VIRTIO_MMIO_QUEUE_SEL, sel);
    wr(VIRTIO_MMIO_QUEUE_NUM, num);
    wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
    wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
    wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
    wr(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(avail >> 32));
    wr(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
    wr(VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(used >> 32));
    wr(VIRTIO_MMIO_QUEUE_READY, 1);
}

/* The Linux driver's sequence up to FEATURES_OK, acking `features`. */
static void negotiate(uint64_t features)
{
    wr(VIRTIO_MMIO_STATUS, 0);
    wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
    wr(VIRTIO_MMIO_STATUS,
       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
}

#define S_ALL                                                                                      \
    (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |          \
     VIRTIO_CONFIG_S_DRIVER_OK)
#define V1 (1ull << VIRTIO_F_VERSION_1)
#define EVIDX (1ull << VIRTIO_RING_F_EVENT_IDX)

static void test_identity(void **state)
{
    (void)state;
    assert_int_equal(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
    assert_int_equal(rd(VIRTIO_MMIO_VERSION), 2);
    assert_int_equal(rd(VIRTIO_MMIO_DEVICE_ID), 2);
    assert_int_equal(rd(VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
    assert_int_equal(rd(VIRTIO_MMIO_STATUS), 0);
    assert_int_equal(rd(VIRTIO_MMIO_CONFIG_GENERATION), 0);
    assert_int_equal(rd(0x0b0), 0); /* no shared memory regions */
    /* Registers are 32-bit only: other widths read 0 and writes are ignored. */
    uint8_t b[8];
    memset(b, 0xcc, sizeof(b));
    vmmio_bus_read(&t, VIRTIO_MMIO_MAGIC_VALUE, b, 2);
    assert_int_equal(b[0], 0);
    assert_int_equal(b[1], 0);
    memset(b, 0xcc, sizeof(b));
    vmmio_bus_read(&t, VIRTIO_MMIO_MAGIC_VALUE, b, 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(b[i], 0);
    assert_int_equal(rd(VIRTIO_MMIO_MAGIC_VALUE + 1), 0); /* misaligned */
    b[0] = VIRTIO_CONFIG_S_ACKNOWLEDGE;
    vmmio_bus_write(&t, VIRTIO_MMIO_STATUS, b, 1);
    assert_int_equal(rd(VIRTIO_MMIO_STATUS), 0);

    char line[64];
    assert_int_equal(vmmio_cmdline_entry(&t, line, sizeof(line)), 0);
    assert_string_equal(line, "virtio_mmio.device=4K@0xd0001000:6");
    assert_int_equal(vmmio_cmdline_entry(&t, line, 10), -ENOSPC);
}

static void test_config_space(void **state)
{
    (void)state;
    for (unsigned i = 0; i < sizeof(cfg); i++)
        cfg[i] = (uint8_t)(0x10 + i);
    uint8_t b[8];
    vmmio_bus_read(&t, VIRTIO_MMIO_CONFIG + 5, b, 1);
    assert_int_equal(b[0], 0x15);
    vmmio_bus_read(&t, VIRTIO_MMIO_CONFIG + 8, b, 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(b[i], 0x18 + i);
    vmmio_bus_read(&t, VIRTIO_MMIO_CONFIG + 14, b, 4); /* partly past the end */
    assert_int_equal(b[0], 0x1e);
    assert_int_equal(b[1], 0x1f);
    assert_int_equal(b[2], 0);
    assert_int_equal(b[3], 0);
    const uint8_t w[2] = {0xaa, 0xbb};
    vmmio_bus_write(&t, VIRTIO_MMIO_CONFIG + 2, w, 2);
    assert_int_equal(cfg[2], 0xaa);
    assert_int_equal(cfg[3], 0xbb);

    /* Generation bumps with a config interrupt. */
    vmmio_config_changed(&t);
    assert_int_equal(rd(VIRTIO_MMIO_CONFIG_GENERATION), 1);
    assert_int_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
    assert_int_equal(irq_count(), 1);
    vmmio_config_changed(&t);
    assert_int_equal(rd(VIRTIO_MMIO_CONFIG_GENERATION), 2);
    assert_int_equal(irq_count(), 1);
    wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
    assert_int_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
}

static void test_feature_windows(void **state)
{
    (void)state;
    wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    assert_int_equal(rd(VIRTIO_MMIO_DEVICE_FEATURES), (1u << 5) | (1u << 9) |
                                                          (1u << VIRTIO_RING_F_INDIRECT_DESC) |
                                                          (1u << VIRTIO_RING_F_EVENT_IDX));
    wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    assert_int_equal(rd(VIRTIO_MMIO_DEVICE_FEATURES), 1u | (1u << 3));
    wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
    assert_int_equal(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0);
    wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0xffffffff);
    assert_int_equal(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0);

    /* Without VERSION_1 FEATURES_OK does not stick. */
    negotiate((1ull << 5) | EVIDX);
    assert_int_equal(rd(VIRTIO_MMIO_STATUS), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    /* Nor with a bit that was not offered. */
    negotiate(V1 | (1ull << 6));
    assert_false(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
    negotiate(V1 | (1ull << 40));
    assert_false(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
    /* A driver feature window past 1 is ignored. */
    wr(VIRTIO_MMIO_STATUS, 0);
    wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 2);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, 1);
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, 1u << 5);
    wr(VIRTIO_MMIO_STATUS,
       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    assert_true(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
    /* Accepted subset. */
    assert_true(vmmio_has_feature(&t, VIRTIO_F_VERSION_1));
    assert_true(vmmio_has_feature(&t, 5));
    assert_false(vmmio_has_feature(&t, 9));
    assert_false(vmmio_has_feature(&t, VIRTIO_RING_F_EVENT_IDX));
    assert_false(vmmio_has_feature(&t, 64));
    assert_false(vmmio_has_feature(&t, 1000));
    /* Features are frozen after FEATURES_OK. */
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, 1u << 9);
    assert_false(vmmio_has_feature(&t, 9));
    assert_true(vmmio_has_feature(&t, 5));
    /* Driver features are write-only. */
    assert_int_equal(rd(VIRTIO_MMIO_DRIVER_FEATURES), 0);
    /* Reset clears them. */
    wr(VIRTIO_MMIO_STATUS, 0);
    assert_false(vmmio_has_feature(&t, VIRTIO_F_VERSION_1));
    assert_int_equal(rd(VIRTIO_MMIO_STATUS), 0);
}

static void test_queue_setup_and_activation(void **state)
{
    (void)state;
    negotiate(V1 | EVIDX);
    assert_true(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
    wr(VIRTIO_MMIO_QUEUE_SEL, 0);
    assert_int_equal(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTQ_MAX_SIZE);
    wr(VIRTIO_MMIO_QUEUE_SEL, 1);
    assert_int_equal(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTQ_MAX_SIZE);
    /* Out of range selector: NumMax 0, writes ignored. */
    wr(VIRTIO_MMIO_QUEUE_SEL, 2);
    assert_int_equal(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
    set_queue(2, 8, 0x1000, 0x2000, 0x3000);
    assert_int_equal(rd(VIRTIO_MMIO_QUEUE_READY), 0);
    set_queue(0xffffffff, 8, 0x1000, 0x2000, 0x3000);
    assert_int_equal(rd(VIRTIO_MMIO_QUEUE_READY), 0);
    assert_false(t.regs.queues[0].ready);
    assert_false(t.regs.queues[1].ready);

    set_queue(0, 16, 0x1000, 0x2000, 0x3000);
    assert_int_equal(rd(VIRTIO_MMIO_QUEUE_READY), 1);
    assert_int_equal(t.regs.queues[0].size, 16);
    assert_int_equal(t.regs.queues[0].desc_gpa, 0x1000);
    assert_int_equal(t.regs.queues[0].avail_gpa, 0x2000);
    assert_int_equal(t.regs.queues[0].used_gpa, 0x3000);
    /* A ready queue's registers are frozen. */
    wr(VIRTIO_MMIO_QUEUE_NUM, 4);
    wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x8000);
    assert_int_equal(t.regs.queues[0].size, 16);
    assert_int_equal(t.regs.queues[0].desc_gpa, 0x1000);
    /* The high halves land in the upper 32 bits. */
    set_queue(1, 8, 0x4000, 0x5000, 0x6000);
    assert_int_equal(t.regs.queues[1].size, 8);

    assert_int_equal(n_activate, 0);
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    /* The register file has the new status at once; the device is not live yet. */
    assert_int_equal(rd(VIRTIO_MMIO_STATUS), S_ALL);
    assert_int_equal(n_activate, 0);
    assert_false(t.activated);
    assert_null(t.queues[0].desc);
    assert_true(atomic_load(&t.pending) & VMMIO_WORK_ACTIVATE);
    assert_true(fd_readable(t.work_fd)); /* the main loop was asked */
    vmmio_do_work(&t);
    assert_false(fd_readable(t.work_fd));
    assert_int_equal(atomic_load(&t.pending), 0);
    assert_int_equal(n_activate, 1);
    assert_true(t.activated);
    assert_int_equal(rd(VIRTIO_MMIO_STATUS), S_ALL);
    assert_true(t.queues[0].event_idx);
    assert_ptr_equal(t.queues[0].desc, gm.host + 0x1000);
    assert_ptr_equal(t.queues[1].used, gm.host + 0x6000);
    /* Activation looks at every queue once (kicks sent before it ran are not lost). */
    assert_int_equal(n_notify[0], 1);
    assert_int_equal(n_notify[1], 1);
    n_notify[0] = n_notify[1] = 0;
    /* Writing DRIVER_OK again does not re-activate; nor can the driver
     * clear bits without a reset. */
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    vmmio_do_work(&t);
    assert_int_equal(run_loop(), 0); /* no work was asked for */
    assert_int_equal(n_activate, 1);
    assert_int_equal(rd(VIRTIO_MMIO_STATUS), S_ALL);
    /* Readying a queue after DRIVER_OK does nothing; un-readying is allowed. */
    wr(VIRTIO_MMIO_QUEUE_SEL, 1);
    wr(VIRTIO_MMIO_QUEUE_READY, 0);
    assert_int_equal(rd(VIRTIO_MMIO_QUEUE_READY), 0);
    wr(VIRTIO_MMIO_QUEUE_READY, 1);
    assert_int_equal(rd(VIRTIO_MMIO_QUEUE_READY), 0);

    /* Kicks through QueueNotify reach the device for live queues only: queue 0
     * is, queue 7 does not exist. (Queue 1, which the driver has just
     * un-readied, is checked in test_unready_queue_not_notified.) */
    kick(0);
    kick(7);
    assert_int_equal(n_notify[0], 1);

    /* Reset. */
    vmmio_config_changed(&t);
    assert_int_not_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    int resets = n_reset;
    wr(VIRTIO_MMIO_STATUS, 0);
    /* The registers are reset at once, the device on the main loop. */
    assert_int_equal(rd(VIRTIO_MMIO_STATUS), 0);
    assert_int_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    assert_int_equal(t.regs.driver_features, 0);
    assert_false(t.regs.queues[0].ready);
    assert_int_equal(t.regs.queues[0].size, 0);
    assert_int_equal(n_reset, resets);
    assert_true(t.activated);
    assert_true(atomic_load(&t.pending) & VMMIO_WORK_RESET);
    vmmio_do_work(&t);
    assert_int_equal(n_reset, resets + 1);
    assert_false(t.activated);
    assert_null(t.queues[0].desc);
    assert_int_equal(rd(VIRTIO_MMIO_CONFIG_GENERATION), 1); /* survives reset */
    kick(0);
    assert_int_equal(n_notify[0], 1);

    /* 64-bit ring addresses: high RAM does not exist here, so activation fails. */
    negotiate(V1);
    set_queue(0, 8, 0x100001000ull, 0x2000, 0x3000);
    assert_int_equal(t.regs.queues[0].desc_gpa, 0x100001000ull);
    uint64_t nr = atomic_load(&metrics.virtio_needs_reset);
    irq_count();
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    vmmio_do_work(&t);
    assert_int_equal(n_activate, 1); /* device not activated */
    assert_false(t.activated);
    assert_true(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_true(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
    assert_int_equal(irq_count(), 1);
    assert_int_equal(atomic_load(&metrics.virtio_needs_reset), nr + 1);
    kick(0);
    assert_int_equal(n_notify[0], 1);
}

/* A queue the driver un-readies after DRIVER_OK gets no more notifications,
 * though it stays mapped. */
static void test_unready_queue_not_notified(void **state)
{
    (void)state;
    negotiate(V1);
    set_queue(0, 8, 0x1000, 0x2000, 0x3000);
    set_queue(1, 8, 0x4000, 0x5000, 0x6000);
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    vmmio_do_work(&t);
    assert_true(t.activated);
    n_notify[0] = n_notify[1] = 0;
    wr(VIRTIO_MMIO_QUEUE_SEL, 1);
    wr(VIRTIO_MMIO_QUEUE_READY, 0);
    assert_int_equal(rd(VIRTIO_MMIO_QUEUE_READY), 0);
    kick(0);
    kick(1);
    assert_int_equal(n_notify[0], 1);
    assert_int_equal(n_notify[1], 0);
}

static void test_activation_failures(void **state)
{
    (void)state;
    /* Queue sizes that are not a power of two or too large. */
    const uint32_t bad_sizes[] = {0, 3, 512, 0x10100};
    for (unsigned i = 0; i < 4; i++) {
        negotiate(V1);
        set_queue(0, bad_sizes[i], 0x1000, 0x2000, 0x3000);
        wr(VIRTIO_MMIO_STATUS, S_ALL);
        vmmio_do_work(&t);
        assert_true(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
        assert_false(t.activated);
    }
    /* Misaligned used ring. */
    negotiate(V1);
    set_queue(1, 8, 0x1000, 0x2000, 0x3002);
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    vmmio_do_work(&t);
    assert_true(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    /* The device refuses activation. */
    negotiate(V1);
    set_queue(0, 8, 0x1000, 0x2000, 0x3000);
    activate_rc = -EINVAL;
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    vmmio_do_work(&t);
    assert_int_equal(n_activate, 1);
    assert_false(t.activated);
    assert_true(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    kick(0);
    assert_int_equal(n_notify[0], 0);
    /* The driver cannot clear NEEDS_RESET except by resetting. */
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    vmmio_do_work(&t);
    assert_true(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_int_equal(n_activate, 1);
    activate_rc = 0;
    negotiate(V1);
    assert_false(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    set_queue(0, 8, 0x1000, 0x2000, 0x3000);
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    vmmio_do_work(&t);
    assert_true(t.activated);
    /* DRIVER_OK without FEATURES_OK. */
    int resets = n_reset;
    wr(VIRTIO_MMIO_STATUS, 0);
    wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    set_queue(0, 8, 0x1000, 0x2000, 0x3000);
    int before = n_activate;
    wr(VIRTIO_MMIO_STATUS,
       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_true(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET); /* at once */
    vmmio_do_work(&t);
    assert_int_equal(n_reset, resets + 1);
    assert_int_equal(n_activate, before);
    assert_false(t.activated);
    assert_true(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

static void test_interrupts(void **state)
{
    (void)state;
    negotiate(V1);
    set_queue(0, 8, 0x1000, 0x2000, 0x3000);
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    vmmio_do_work(&t);
    assert_true(t.activated);
    int notified = n_notify[0];
    uint64_t ints = atomic_load(&metrics.virtio_interrupts);
    /* Nothing used yet: no interrupt. */
    vmmio_signal_used(&t, 0);
    assert_int_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    assert_int_equal(irq_count(), 0);
    virtq_push(&t.queues[0], 0, 0);
    vmmio_signal_used(&t, 0);
    assert_int_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
    assert_int_equal(irq_count(), 1);
    assert_int_equal(atomic_load(&metrics.virtio_interrupts), ints + 1);
    vmmio_signal_used(&t, 0); /* nothing new */
    vmmio_signal_used(&t, 5); /* no such queue */
    assert_int_equal(irq_count(), 0);
    vmmio_config_changed(&t);
    assert_int_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS),
                     VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG);
    wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    assert_int_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
    wr(VIRTIO_MMIO_INTERRUPT_ACK, 0xffffffff);
    assert_int_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    /* The driver suppressed interrupts. */
    uint16_t f = VRING_AVAIL_F_NO_INTERRUPT;
    assert_int_equal(gm_write(&gm, 0x2000, &f, 2), 0);
    irq_count();
    virtq_push(&t.queues[0], 0, 0);
    vmmio_signal_used(&t, 0);
    assert_int_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    assert_int_equal(irq_count(), 0);

    /* needs_reset: one report, config interrupt, no more queue work. */
    uint64_t nr = atomic_load(&metrics.virtio_needs_reset);
    vmmio_needs_reset(&t, "test says so");
    vmmio_needs_reset(&t, "twice");
    assert_int_equal(atomic_load(&metrics.virtio_needs_reset), nr + 1);
    assert_true(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_true(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_DRIVER_OK);
    assert_int_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
    assert_int_equal(irq_count(), 1);
    kick(0);
    assert_int_equal(n_notify[0], notified);
}

static void test_kicks_on_loop(void **state)
{
    (void)state;
    uint64_t one = 1;

    /* Before activation kicks are drained and ignored. */
    assert_int_equal(write(t.kick_fd[0], &one, 8), 8);
    assert_int_equal(evloop_run_once(&ev, 100), 1);
    assert_int_equal(n_notify[0], 0);
    assert_int_equal(evloop_run_once(&ev, 0), 0); /* drained */

    negotiate(V1);
    set_queue(0, 8, 0x1000, 0x2000, 0x3000);
    set_queue(1, 8, 0x4000, 0x5000, 0x6000);
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    /* A kick sent before the main loop activated the device is not lost:
     * whichever the loop serves first, queue 1 is looked at once live. */
    assert_int_equal(write(t.kick_fd[1], &one, 8), 8);
    assert_false(t.activated);
    assert_true(run_loop() >= 2); /* the work fd and the kick */
    assert_true(t.activated);
    assert_int_equal(n_activate, 1);
    assert_true(n_notify[1] >= 1);
    n_notify[0] = n_notify[1] = 0;

    assert_int_equal(write(t.kick_fd[1], &one, 8), 8);
    assert_int_equal(write(t.kick_fd[1], &one, 8), 8);
    assert_int_equal(evloop_run_once(&ev, 100), 1);
    assert_int_equal(n_notify[0], 0);
    assert_int_equal(n_notify[1], 1);
    /* A QueueNotify write reaching the bus is forwarded to the kick fd. */
    wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert_int_equal(n_notify[0], 0);
    assert_true(fd_readable(t.kick_fd[0]));
    assert_int_equal(evloop_run_once(&ev, 100), 1);
    assert_int_equal(n_notify[0], 1);
    /* One for a queue that does not exist goes nowhere. */
    wr(VIRTIO_MMIO_QUEUE_NOTIFY, 2);
    assert_false(fd_readable(t.kick_fd[0]) || fd_readable(t.kick_fd[1]));
    /* A broken queue is not notified. */
    t.queues[0].broken = true;
    assert_int_equal(write(t.kick_fd[0], &one, 8), 8);
    assert_int_equal(evloop_run_once(&ev, 100), 1);
    assert_int_equal(n_notify[0], 1);
}

/* The driver resets and sets the device up again before the main loop ran:
 * the device is reset once and ends up live on the new queues. */
static void test_reset_reinit_before_loop(void **state)
{
    (void)state;
    negotiate(V1);
    set_queue(0, 8, 0x1000, 0x2000, 0x3000);
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    vmmio_do_work(&t);
    assert_true(t.activated);
    assert_ptr_equal(t.queues[0].desc, gm.host + 0x1000);

    negotiate(V1); /* starts with the reset */
    set_queue(0, 16, 0x8000, 0x9000, 0xa000);
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    assert_int_equal(rd(VIRTIO_MMIO_STATUS), S_ALL);
    /* Still live on the old queues until the main loop runs. */
    assert_int_equal(n_reset, 0);
    assert_int_equal(n_activate, 1);
    assert_ptr_equal(t.queues[0].desc, gm.host + 0x1000);
    assert_int_equal(atomic_load(&t.pending), VMMIO_WORK_RESET | VMMIO_WORK_ACTIVATE);
    n_notify[0] = 0;
    assert_true(run_loop() >= 1); /* the work eventfd */
    assert_int_equal(n_reset, 1);
    assert_int_equal(n_activate, 2);
    assert_true(t.activated);
    assert_int_equal(t.queues[0].size, 16);
    assert_ptr_equal(t.queues[0].desc, gm.host + 0x8000);
    assert_ptr_equal(t.queues[0].avail, gm.host + 0x9000);
    assert_ptr_equal(t.queues[0].used, gm.host + 0xa000);
    assert_int_equal(n_notify[0], 1);

    /* The same through vmmio_lock(), which every device entry point uses:
     * it does the pending work before the device runs. */
    negotiate(V1);
    set_queue(0, 8, 0x1000, 0x2000, 0x3000);
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    vmmio_lock(&t);
    assert_int_equal(n_reset, 2);
    assert_int_equal(n_activate, 3);
    assert_true(t.activated);
    assert_ptr_equal(t.queues[0].desc, gm.host + 0x1000);
    vmmio_unlock(&t);

    /* A reset followed by DRIVER_OK of a never-activated device: one activation. */
    negotiate(V1);
    vmmio_do_work(&t);
    assert_int_equal(n_reset, 3);
    assert_false(t.activated);
    set_queue(0, 8, 0x1000, 0x2000, 0x3000);
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    wr(VIRTIO_MMIO_STATUS, 0);
    negotiate(V1);
    set_queue(0, 16, 0x8000, 0x9000, 0xa000);
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    vmmio_do_work(&t);
    assert_int_equal(n_reset, 3); /* nothing live to reset */
    assert_int_equal(n_activate, 4);
    assert_ptr_equal(t.queues[0].desc, gm.host + 0x8000);

    /* DRIVER_OK and then a reset, both before the loop ran: nothing is
     * activated. */
    negotiate(V1);
    vmmio_do_work(&t);
    int acts = n_activate;
    set_queue(0, 8, 0x1000, 0x2000, 0x3000);
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    wr(VIRTIO_MMIO_STATUS, 0);
    vmmio_do_work(&t);
    assert_int_equal(n_activate, acts);
    assert_false(t.activated);
    assert_null(t.queues[0].desc);
    assert_int_equal(n_reset, 4);
    negotiate(V1);
    set_queue(0, 16, 0x8000, 0x9000, 0xa000);
    wr(VIRTIO_MMIO_STATUS, S_ALL);
    vmmio_do_work(&t);
    assert_int_equal(n_activate, acts + 1);
    assert_true(t.activated);

    /* A reset, and a kick that was in flight: the loop resets the device
     * before the kick could reach it, whichever fd it serves first. */
    n_notify[0] = 0;
    wr(VIRTIO_MMIO_STATUS, 0);
    uint64_t one = 1;
    assert_int_equal(write(t.kick_fd[0], &one, 8), 8);
    run_loop();
    assert_int_equal(n_reset, 5);
    assert_false(t.activated);
    assert_int_equal(n_notify[0], 0);
}

/* ---- INTERRUPT_STATUS and INTERRUPT_ACK take no lock ---- */

struct bus_op {
    uint64_t off;
    bool write;
    uint32_t val; /* written, or read */
};

static void *bus_op_thread(void *arg)
{
    struct bus_op *op = arg;
    if (op->write)
        wr(op->off, op->val);
    else
        op->val = rd(op->off);
    return NULL;
}

/* Run `op` on another thread; true if it finished within `ms`. */
static bool bus_op_within(pthread_t *th, struct bus_op *op, long ms)
{
    assert_int_equal(pthread_create(th, NULL, bus_op_thread, op), 0);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    int rc = pthread_timedjoin_np(*th, NULL, &dl);
    assert_true(rc == 0 || rc == ETIMEDOUT);
    return rc == 0;
}

static void test_interrupt_regs_lock_free(void **state)
{
    (void)state;
    vmmio_config_changed(&t);
    pthread_t th;
    pthread_mutex_lock(&t.lock); /* the main thread is busy in the device */
    struct bus_op st = {.off = VIRTIO_MMIO_INTERRUPT_STATUS};
    if (!bus_op_within(&th, &st, 5000)) {
        pthread_mutex_unlock(&t.lock);
        pthread_join(th, NULL);
        fail_msg("an INTERRUPT_STATUS read waited for t->lock");
    }
    assert_int_equal(st.val, VIRTIO_MMIO_INT_CONFIG);
    struct bus_op ack = {
        .off = VIRTIO_MMIO_INTERRUPT_ACK, .write = true, .val = VIRTIO_MMIO_INT_CONFIG};
    if (!bus_op_within(&th, &ack, 5000)) {
        pthread_mutex_unlock(&t.lock);
        pthread_join(th, NULL);
        fail_msg("an INTERRUPT_ACK write waited for t->lock");
    }
    assert_int_equal(atomic_load(&t.interrupt_status), 0);
    /* Any other register does wait for the lock (so the check above means
     * something): it cannot finish while the lock is held. */
    struct bus_op other = {.off = VIRTIO_MMIO_CONFIG_GENERATION};
    assert_false(bus_op_within(&th, &other, 100));
    pthread_mutex_unlock(&t.lock);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    assert_int_equal(pthread_timedjoin_np(th, NULL, &dl), 0);
    assert_int_equal(other.val, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_space, setup, teardown),
        cmocka_unit_test_setup_teardown(test_feature_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_setup_and_activation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unready_queue_not_notified, setup, teardown),
        cmocka_unit_test_setup_teardown(test_activation_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kicks_on_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_reinit_before_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_regs_lock_free, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
