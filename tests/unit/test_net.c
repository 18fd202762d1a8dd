/* test_net.c - unit tests for virtio-net over a tap (virtio/net.c): a forked
 * child in its own network namespace creates a persistent tap, the device
 * runs on it with a fake guest driving the rings in fake guest memory, and an
 * AF_PACKET socket on the tap sees TX frames and injects RX frames. Covers TX,
 * RX, mergeable RX buffers, RX ring exhaustion (nothing dropped, loop quiet),
 * oversized frames, the TX rate limiter, a tap that refuses a write (EAGAIN:
 * the frame waits for EPOLLOUT; writev is wrapped at link time, see the
 * Makefile) and tap errors. The transport is driven as in the VMM: the
 * driver's DRIVER_OK is acted on by the main loop's work handler
 * (vmmio_do_work), kicks go through each queue's kick eventfd to the
 * transport's kick handler, and every wait has a deadline. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../boot/layout.h"
#include "../../vmm/base/err.h"
#include "../../vmm/base/evloop.h"
#include "../../vmm/base/metrics.h"
#include "../../virtio/mmio_internal.h"
#include "../../virtio/net_internal.h"

#define TAP "embertap0"
#define ETHERTYPE_TEST 0x88b5

#define RX_SIZE 256
#define TX_SIZE 16
#define RX_DESC 0x1000
#define RX_AVAIL 0x2000
#define RX_USED 0x3000
#define TX_DESC 0x4000
#define TX_AVAIL 0x5000
#define TX_USED 0x6000
#define RX_BUF 0x10000 /* RX buffer i at RX_BUF + i * RX_BUF_STRIDE */
#define RX_BUF_STRIDE 0x800
#define TX_BUF 0xa0000
#define MEM_SIZE (1u << 20)
#define DEADLINE_MS 2000 /* for anything the tests wait for */

struct vdesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

struct fake {
    struct guest_mem gm;
    struct net_dev *n;
    struct virtio_mmio *t;
    uint16_t rx_avail, tx_avail, rx_next_desc;
    int pkt; /* AF_PACKET socket bound to the tap */
    int ifindex;
    struct evloop ev; /* the main loop: the transport's fds (and the device's, on_loop) */
    int kick_fd[2];   /* the queues' kick eventfds (ioeventfds in the VMM) */
    int tap;          /* the device's tap fd, to wait on */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void run_in_netns(void);

/* writev is linked as __wrap_writev (-Wl,--wrap=writev): the next
 * `writev_eagain` calls fail with EAGAIN, as a full tap would. */
static int writev_eagain;
static int writev_calls;
ssize_t __real_writev(int fd, const struct iovec *iov, int n);
ssize_t __wrap_writev(int fd, const struct iovec *iov, int n);
ssize_t __wrap_writev(int fd, const struct iovec *iov, int n)
{
    writev_calls++;
    if (writev_eagain > 0) {
        writev_eagain--;
        errno = EAGAIN;
        return -1;
    }
    return __real_writev(fd, iov, n);
}

/* ---- fake driver ---- */

static void *gp(struct fake *f, uint64_t gpa, uint64_t len)
{
    void *p = gm_ptr(&f->gm, gpa, len);
    assert_non_null(p);
    return p;
}

/* A vCPU's register access (the transport locks for itself). */
static void bus_w32(struct fake *f, uint64_t off, uint32_t v)
{
    vmmio_bus_write(f->t, off, (const uint8_t *)&v, 4);
}

static uint32_t bus_r32(struct fake *f, uint64_t off)
{
    uint32_t v = 0;
    vmmio_bus_read(f->t, off, (uint8_t *)&v, 4);
    return v;
}

/* The device's fd on /dev/net/tun (the only one open while a test runs). */
static int find_tap_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int found = -1, n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char lp[300], target[64];
        snprintf(lp, sizeof(lp), "/proc/self/fd/%s", e->d_name);
        ssize_t l = readlink(lp, target, sizeof(target) - 1);
        if (l <= 0)
            continue;
        target[l] = 0;
        if (strcmp(target, "/dev/net/tun") == 0) {
            found = atoi(e->d_name);
            n++;
        }
    }
    closedir(d);
    assert_int_equal(n, 1);
    return found;
}

static void setup_queue(struct fake *f, unsigned q, uint32_t size, uint64_t desc, uint64_t avail,
                        uint64_t used)
{
    bus_w32(f, VIRTIO_MMIO_QUEUE_SEL, q);
    assert_true(bus_r32(f, VIRTIO_MMIO_QUEUE_NUM_MAX) >= size);
    bus_w32(f, VIRTIO_MMIO_QUEUE_NUM, size);
    bus_w32(f, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
    bus_w32(f, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
    bus_w32(f, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
    bus_w32(f, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
    bus_w32(f, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
    bus_w32(f, VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
    bus_w32(f, VIRTIO_MMIO_QUEUE_READY, 1);
}

static struct net_config net_cfg(const char *tap)
{
    struct net_config c;
    memset(&c, 0, sizeof(c));
    c.iface_id = (char *)"eth0";
    c.host_dev_name = (char *)tap;
    c.has_mac = true;
    memcpy(c.guest_mac, "\x06\x00\xac\x10\x00\x02", 6);
    c.mtu = 1500;
    return c;
}

/* Create the device on the tap and bring the driver up to DRIVER_OK. */
static void fake_up(struct fake *f, uint64_t features, const struct net_config *cfg)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(guest_mem_init(&f->gm, MEM_SIZE, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END),
                     0);
    struct net_config c = cfg ? *cfg : net_cfg(TAP);
    int rc = net_create(&f->n, &c, &f->gm);
    if (rc < 0)
        fail_msg("net_create: %s", err_msg());
    f->t = net_transport(f->n);
    f->tap = find_tap_fd();
    assert_int_equal(evloop_init(&f->ev), 0);
    for (unsigned q = 0; q < 2; q++) {
        f->kick_fd[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        assert_true(f->kick_fd[q] >= 0);
        f->t->kick_fd[q] = f->kick_fd[q];
    }
    assert_int_equal(vmmio_attach(f->t, &f->ev), 0);
    assert_int_equal(bus_r32(f, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_NET);
    bus_w32(f, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    bus_w32(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    uint32_t offered = bus_r32(f, VIRTIO_MMIO_DEVICE_FEATURES);
    assert_true(offered & (1u << VIRTIO_NET_F_MAC));
    assert_true(offered & (1u << VIRTIO_NET_F_MTU));
    assert_true(offered & (1u << VIRTIO_NET_F_MRG_RXBUF));
    assert_true(offered & (1u << VIRTIO_NET_F_GUEST_TSO4));
    bus_w32(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    bus_w32(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features & offered);
    bus_w32(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    bus_w32(f, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
    bus_w32(f, VIRTIO_MMIO_STATUS,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    assert_true(bus_r32(f, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
    memset(gp(f, RX_DESC, 0x6000), 0, 0x6000);
    setup_queue(f, 0, RX_SIZE, RX_DESC, RX_AVAIL, RX_USED);
    setup_queue(f, 1, TX_SIZE, TX_DESC, TX_AVAIL, TX_USED);
    bus_w32(f, VIRTIO_MMIO_STATUS,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
                VIRTIO_CONFIG_S_DRIVER_OK);
    assert_true(bus_r32(f, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_DRIVER_OK);
    assert_false(f->t->activated); /* the main loop activates the device */
    vmmio_do_work(f->t);
    assert_true(f->t->activated);

    f->ifindex = (int)if_nametoindex(TAP);
    assert_true(f->ifindex > 0);
    f->pkt = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    assert_true(f->pkt >= 0);
    struct sockaddr_ll sll = {
        .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = f->ifindex};
    assert_int_equal(bind(f->pkt, (struct sockaddr *)&sll, sizeof(sll)), 0);
}

/* fake_up, with the device's own fds on the loop too (tap, limiter timers). */
static void fake_up_on_loop(struct fake *f, const struct net_config *cfg)
{
    fake_up(f, 0, cfg);
    assert_int_equal(net_attach(f->n, &f->ev), 0);
}

static void fake_down(struct fake *f)
{
    net_destroy(f->n); /* takes its fds and the transport's off the loop */
    close(f->kick_fd[0]);
    close(f->kick_fd[1]);
    evloop_close(&f->ev);
    close(f->pkt);
    guest_mem_free(&f->gm);
}

/* Post one device-writable RX buffer. */
static void post_rx(struct fake *f, uint64_t gpa, uint32_t len, bool publish)
{
    struct vdesc *d = gp(f, RX_DESC, RX_SIZE * sizeof(struct vdesc));
    uint16_t id = f->rx_next_desc++ % RX_SIZE;
    d[id] = (struct vdesc){.addr = gpa, .len = len, .flags = 2 /* WRITE */};
    uint16_t *avail = gp(f, RX_AVAIL, 4 + 2 * RX_SIZE);
    avail[2 + f->rx_avail % RX_SIZE] = id;
    f->rx_avail++;
    if (publish)
        __atomic_store_n(&avail[1], f->rx_avail, __ATOMIC_RELEASE);
}

static void publish_rx(struct fake *f)
{
    uint16_t *avail = gp(f, RX_AVAIL, 4);
    __atomic_store_n(&avail[1], f->rx_avail, __ATOMIC_RELEASE);
}

static uint16_t used_idx(struct fake *f, uint64_t used)
{
    uint16_t *u = gp(f, used, 4);
    return __atomic_load_n(&u[1], __ATOMIC_ACQUIRE);
}

static void used_elem(struct fake *f, uint64_t used, unsigned i, unsigned size, uint32_t *id,
                      uint32_t *len)
{
    uint32_t *e = gp(f, used + 4 + 8 * (i % size), 8);
    *id = e[0];
    *len = e[1];
}

/* Queue one TX frame: a 12-byte header descriptor and the frame split in two. */
static void post_tx(struct fake *f, const uint8_t *frame, uint32_t len)
{
    struct vdesc *d = gp(f, TX_DESC, TX_SIZE * sizeof(struct vdesc));
    uint16_t slot = f->tx_avail % TX_SIZE;
    /* Descriptors 3*k .. 3*k+2 for k = slot % 5 (16 descriptors, 5 chains). */
    uint16_t k = (uint16_t)(f->tx_avail % 5), d0 = (uint16_t)(3 * k);
    uint64_t buf = TX_BUF + (uint64_t)k * 0x10000;
    memset(gp(f, buf, 12), 0, 12);
    uint32_t first = len / 2;
    memcpy(gp(f, buf + 64, len), frame, len);
    d[d0] = (struct vdesc){.addr = buf, .len = 12, .flags = 1, .next = (uint16_t)(d0 + 1)};
    d[d0 + 1] =
        (struct vdesc){.addr = buf + 64, .len = first, .flags = 1, .next = (uint16_t)(d0 + 2)};
    d[d0 + 2] = (struct vdesc){.addr = buf + 64 + first, .len = len - first};
    uint16_t *avail = gp(f, TX_AVAIL, 4 + 2 * TX_SIZE);
    avail[2 + slot] = d0;
    f->tx_avail++;
    __atomic_store_n(&avail[1], f->tx_avail, __ATOMIC_RELEASE);
}

/* The driver kicks queue q: the QueueNotify write reaches the kick eventfd,
 * and the transport's kick handler (what the loop would call) serves it. */
static void kick(struct fake *f, unsigned q)
{
    bus_w32(f, VIRTIO_MMIO_QUEUE_NOTIFY, q);
    struct pollfd p = {.fd = f->kick_fd[q], .events = POLLIN};
    assert_int_equal(poll(&p, 1, 0), 1);
    assert_non_null(f->t->ev_kick[q].cb);
    f->t->ev_kick[q].cb(&f->t->ev_kick[q], EPOLLIN);
    assert_int_equal(poll(&p, 1, 0), 0); /* drained */
}

static uint32_t make_frame(uint8_t *fr, uint32_t len, uint32_t seq)
{
    memset(fr, 0xff, 6); /* broadcast */
    memcpy(fr + 6, "\x02\x00\x00\x00\x00\x01", 6);
    fr[12] = ETHERTYPE_TEST >> 8;
    fr[13] = ETHERTYPE_TEST & 0xff;
    memcpy(fr + 14, &seq, 4);
    for (uint32_t i = 18; i < len; i++)
        fr[i] = (uint8_t)(i * 7 + seq);
    return len;
}

/* Inject a frame: the kernel transmits it on the tap, i.e. towards the device. */
static void inject(struct fake *f, const uint8_t *fr, uint32_t len)
{
    struct sockaddr_ll sll = {.sll_family = AF_PACKET,
                              .sll_protocol = htons(ETHERTYPE_TEST),
                              .sll_ifindex = f->ifindex,
                              .sll_halen = 6};
    memcpy(sll.sll_addr, fr, 6);
    assert_int_equal(sendto(f->pkt, fr, len, 0, (struct sockaddr *)&sll, sizeof(sll)),
                     (ssize_t)len);
}

/* Next test frame the kernel received on the tap (from the device). */
static ssize_t capture(struct fake *f, uint8_t *buf, size_t size)
{
    for (;;) {
        struct pollfd p = {.fd = f->pkt, .events = POLLIN};
        if (poll(&p, 1, 2000) != 1)
            return -1;
        struct sockaddr_ll from;
        socklen_t fl = sizeof(from);
        ssize_t r = recvfrom(f->pkt, buf, size, 0, (struct sockaddr *)&from, &fl);
        if (r < 0)
            return -1;
        if (from.sll_pkttype == PACKET_OUTGOING)
            continue;
        if (r >= 14 && buf[12] == (ETHERTYPE_TEST >> 8) && buf[13] == (ETHERTYPE_TEST & 0xff))
            return r;
    }
}

/* Let the device read the tap until `want` RX used entries are there (the
 * kernel may queue frames on the tap a little later than sendto returns):
 * wait for the tap to be readable, with a deadline. */
static void rx_until(struct fake *f, uint16_t want)
{
    uint64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        net_rx_poll(f->n);
        if (used_idx(f, RX_USED) >= want)
            break;
        uint64_t now = now_ms();
        if (now >= deadline)
            fail_msg("timed out waiting for %u RX used entries (%u there)", want,
                     used_idx(f, RX_USED));
        struct pollfd p = {.fd = f->tap, .events = POLLIN};
        assert_true(poll(&p, 1, (int)(deadline - now)) >= 0);
    }
    assert_int_equal(used_idx(f, RX_USED), want);
}

/* Run the main loop until `want` used entries are on the ring at `used`. */
static void loop_until_used(struct fake *f, uint64_t used, uint16_t want)
{
    uint64_t deadline = now_ms() + DEADLINE_MS;
    while (used_idx(f, used) < want) {
        uint64_t now = now_ms();
        if (now >= deadline)
            fail_msg("timed out running the loop for %u used entries (%u there)", want,
                     used_idx(f, used));
        assert_true(evloop_run_once(&f->ev, (int)(deadline - now)) >= 0);
    }
    assert_int_equal(used_idx(f, used), want);
}

/* ---- tests ---- */

static void test_config_space(void **state)
{
    (void)state;
    struct fake f;
    fake_up(&f, 0, NULL);
    uint8_t cfg[12];
    vmmio_bus_read(f.t, VIRTIO_MMIO_CONFIG, cfg, 12);
    assert_memory_equal(cfg, "\x06\x00\xac\x10\x00\x02", 6);
    assert_int_equal(cfg[10] | cfg[11] << 8, 1500);
    fake_down(&f);
}

static void test_tx(void **state)
{
    (void)state;
    struct fake f;
    fake_up(&f, 0, NULL);
    uint8_t fr[1000], got[2048];
    make_frame(fr, sizeof(fr), 42);
    uint64_t before = metrics.net_tx_packets_count;
    post_tx(&f, fr, sizeof(fr));
    kick(&f, 1);
    assert_int_equal(used_idx(&f, TX_USED), 1);
    uint32_t id, len;
    used_elem(&f, TX_USED, 0, TX_SIZE, &id, &len);
    assert_int_equal(id, 0);
    assert_int_equal(len, 0);
    ssize_t r = capture(&f, got, sizeof(got));
    assert_int_equal(r, sizeof(fr));
    assert_memory_equal(got, fr, sizeof(fr));
    assert_int_equal(metrics.net_tx_packets_count - before, 1);

    /* A chain shorter than the header is dropped and counted, and the ring moves on. */
    uint64_t bad = metrics.net_tx_malformed_frames;
    struct vdesc *d = gp(&f, TX_DESC, TX_SIZE * sizeof(struct vdesc));
    d[15] = (struct vdesc){.addr = TX_BUF, .len = 8};
    uint16_t *avail = gp(&f, TX_AVAIL, 4 + 2 * TX_SIZE);
    avail[2 + f.tx_avail % TX_SIZE] = 15;
    f.tx_avail++;
    __atomic_store_n(&avail[1], f.tx_avail, __ATOMIC_RELEASE);
    make_frame(fr, 60, 43);
    post_tx(&f, fr, 60);
    kick(&f, 1);
    assert_int_equal(used_idx(&f, TX_USED), 3);
    assert_int_equal(metrics.net_tx_malformed_frames - bad, 1);
    r = capture(&f, got, sizeof(got));
    assert_int_equal(r, 60);
    assert_memory_equal(got, fr, 60);
    fake_down(&f);
}

static void test_rx(void **state)
{
    (void)state;
    struct fake f;
    fake_up(&f, 0, NULL);
    for (unsigned i = 0; i < 4; i++)
        post_rx(&f, RX_BUF + i * RX_BUF_STRIDE, 1600, true);
    kick(&f, 0);
    uint8_t fr[700];
    make_frame(fr, sizeof(fr), 7);
    inject(&f, fr, sizeof(fr));
    rx_until(&f, 1);
    uint32_t id, len;
    used_elem(&f, RX_USED, 0, RX_SIZE, &id, &len);
    assert_int_equal(id, 0);
    assert_int_equal(len, 12 + sizeof(fr));
    uint8_t *buf = gp(&f, RX_BUF, 12 + sizeof(fr));
    assert_int_equal(buf[0], 0);                   /* flags: no offload negotiated */
    assert_int_equal(buf[10] | buf[11] << 8, 1);   /* num_buffers */
    assert_memory_equal(buf + 12, fr, sizeof(fr)); /* the frame right after the header */
    fake_down(&f);
}

static void test_rx_mergeable(void **state)
{
    (void)state;
    struct fake f;
    fake_up(&f, 1ull << VIRTIO_NET_F_MRG_RXBUF, NULL);
    for (unsigned i = 0; i < 4; i++)
        post_rx(&f, RX_BUF + i * RX_BUF_STRIDE, 1024, true);
    uint8_t fr[3000];
    make_frame(fr, sizeof(fr), 9);
    inject(&f, fr, sizeof(fr));
    rx_until(&f, 3);
    uint8_t all[3012];
    uint32_t total = 0;
    for (unsigned i = 0; i < 3; i++) {
        uint32_t id, len;
        used_elem(&f, RX_USED, i, RX_SIZE, &id, &len);
        assert_int_equal(id, i);
        assert_int_equal(len, i < 2 ? 1024 : 3012 - 2048);
        memcpy(all + total, gp(&f, RX_BUF + id * RX_BUF_STRIDE, len), len);
        total += len;
    }
    assert_int_equal(total, 3012);
    assert_int_equal(all[10] | all[11] << 8, 3);
    assert_memory_equal(all + 12, fr, sizeof(fr));
    fake_down(&f);
}

static void test_rx_ring_exhaustion(void **state)
{
    (void)state;
    struct fake f;
    fake_up_on_loop(&f, NULL);
    /* The driver has posted nothing: the device must not read the tap. */
    net_rx_poll(f.n);
    uint8_t fr[200];
    for (uint32_t s = 0; s < 50; s++) {
        make_frame(fr, sizeof(fr), s);
        inject(&f, fr, sizeof(fr));
    }
    /* The loop stays quiet (no EPOLLIN while the ring is empty): no busy spin. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(evloop_run_once(&f.ev, 20), 0);
    assert_int_equal(used_idx(&f, RX_USED), 0);
    /* Buffers come back and the driver kicks: all 50 arrive, in order. */
    for (unsigned i = 0; i < 64; i++)
        post_rx(&f, RX_BUF + i * RX_BUF_STRIDE, 1600, false);
    publish_rx(&f);
    kick(&f, 0);
    loop_until_used(&f, RX_USED, 50);
    for (uint32_t s = 0; s < 50; s++) {
        uint32_t id, len, seq;
        used_elem(&f, RX_USED, s, RX_SIZE, &id, &len);
        assert_int_equal(len, 12 + sizeof(fr));
        uint8_t *buf = gp(&f, RX_BUF + id * RX_BUF_STRIDE, len);
        memcpy(&seq, buf + 12 + 14, 4);
        assert_int_equal(seq, s);
        make_frame(fr, sizeof(fr), s);
        assert_memory_equal(buf + 12, fr, sizeof(fr));
    }
    fake_down(&f);
}

static void test_rx_too_large_dropped(void **state)
{
    (void)state;
    struct fake f;
    fake_up(&f, 0, NULL);
    post_rx(&f, RX_BUF, 100, true);
    uint64_t before = metrics.net_rx_partial_writes;
    uint8_t fr[500];
    make_frame(fr, sizeof(fr), 1);
    inject(&f, fr, sizeof(fr));
    uint64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        net_rx_poll(f.n);
        if (metrics.net_rx_partial_writes != before)
            break;
        uint64_t now = now_ms();
        if (now >= deadline)
            fail_msg("the oversized frame never reached the device");
        struct pollfd p = {.fd = f.tap, .events = POLLIN};
        assert_true(poll(&p, 1, (int)(deadline - now)) >= 0);
    }
    assert_int_equal(metrics.net_rx_partial_writes - before, 1);
    assert_int_equal(used_idx(&f, RX_USED), 0); /* the buffer is kept for the next frame */
    make_frame(fr, 60, 2);
    inject(&f, fr, 60);
    rx_until(&f, 1);
    uint32_t id, len;
    used_elem(&f, RX_USED, 0, RX_SIZE, &id, &len);
    assert_int_equal(len, 72);
    assert_memory_equal(gp(&f, RX_BUF + 12, 60), fr, 60);
    fake_down(&f);
}

static void test_tx_rate_limited(void **state)
{
    (void)state;
    struct net_config c = net_cfg(TAP);
    c.tx_rate_limiter.ops.set = true;
    c.tx_rate_limiter.ops.size = 1;
    c.tx_rate_limiter.ops.refill_time_ms = 100;
    struct fake f;
    fake_up_on_loop(&f, &c);
    uint8_t fr[100], got[256];
    make_frame(fr, sizeof(fr), 1);
    post_tx(&f, fr, sizeof(fr));
    make_frame(fr, sizeof(fr), 2);
    post_tx(&f, fr, sizeof(fr));
    uint64_t thr = metrics.net_tx_rate_limiter_throttled;
    kick(&f, 1);
    assert_int_equal(used_idx(&f, TX_USED), 1); /* the second waits for a token */
    assert_true(metrics.net_tx_rate_limiter_throttled > thr);
    loop_until_used(&f, TX_USED, 2); /* sent when the timer fired */
    uint32_t seq;
    assert_int_equal(capture(&f, got, sizeof(got)), sizeof(fr));
    memcpy(&seq, got + 14, 4);
    assert_int_equal(seq, 1);
    assert_int_equal(capture(&f, got, sizeof(got)), sizeof(fr));
    memcpy(&seq, got + 14, 4);
    assert_int_equal(seq, 2);
    fake_down(&f);
}

/* A tap that answers EAGAIN: the chain is kept (not completed, not dropped),
 * the device waits for EPOLLOUT on the loop, and then sends the frame once. */
static void test_tx_tap_eagain(void **state)
{
    (void)state;
    struct fake f;
    fake_up_on_loop(&f, NULL);
    uint8_t fr[200], got[512];
    uint64_t sent = metrics.net_tx_packets_count, fails = metrics.net_tap_write_fails;
    make_frame(fr, sizeof(fr), 7);
    post_tx(&f, fr, sizeof(fr));
    writev_eagain = 1;
    writev_calls = 0;
    kick(&f, 1);
    assert_int_equal(writev_calls, 1);
    assert_int_equal(used_idx(&f, TX_USED), 0); /* kept, not completed */
    /* Another kick while the tap is still full: still kept. */
    writev_eagain = 1;
    kick(&f, 1);
    assert_int_equal(writev_calls, 2);
    assert_int_equal(used_idx(&f, TX_USED), 0);
    struct pollfd p = {.fd = f.pkt, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 50), 0); /* nothing reached the tap */
    /* The tap is writable: EPOLLOUT on the loop sends the kept frame. */
    loop_until_used(&f, TX_USED, 1);
    assert_int_equal(writev_calls, 3);
    assert_int_equal(capture(&f, got, sizeof(got)), sizeof(fr));
    assert_memory_equal(got, fr, sizeof(fr));
    assert_int_equal(metrics.net_tx_packets_count - sent, 1);
    assert_int_equal(metrics.net_tap_write_fails - fails, 0);
    /* Once sent, EPOLLOUT is off again (a writable tap left armed would wake
     * every loop turn), and the next frame goes straight out. */
    int busy = 0;
    for (int i = 0; i < 10; i++)
        busy += evloop_run_once(&f.ev, 5) > 0;
    assert_true(busy < 5);
    make_frame(fr, 60, 8);
    post_tx(&f, fr, 60);
    kick(&f, 1);
    assert_int_equal(used_idx(&f, TX_USED), 2);
    assert_int_equal(capture(&f, got, sizeof(got)), 60);
    assert_memory_equal(got, fr, 60);
    assert_int_equal(poll(&p, 1, 50), 0); /* the first frame was sent once */
    fake_down(&f);
}

static void test_errors(void **state)
{
    (void)state;
    struct guest_mem gm;
    assert_int_equal(guest_mem_init(&gm, MEM_SIZE, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END), 0);
    struct net_dev *n = NULL, *n2 = NULL;

    struct net_config c = net_cfg("nosuchtap0");
    assert_int_equal(net_create(&n, &c, &gm), -ENODEV);
    assert_null(n);
    assert_non_null(strstr(err_msg(), "network-interfaces[eth0].host_dev_name"));
    assert_non_null(strstr(err_msg(), "tap nosuchtap0 does not exist"));
    assert_int_equal(if_nametoindex("nosuchtap0"), 0); /* nothing created */

    c = net_cfg("abcdefghijklmnopq");
    assert_int_equal(net_create(&n, &c, &gm), -EINVAL);
    assert_non_null(strstr(err_msg(), "network-interfaces[eth0].host_dev_name"));
    assert_non_null(strstr(err_msg(), "abcdefghijklmnopq"));

    c = net_cfg(TAP);
    assert_int_equal(net_create(&n, &c, &gm), 0);
    c.iface_id = (char *)"eth1";
    assert_int_equal(net_create(&n2, &c, &gm), -EBUSY);
    assert_null(n2);
    assert_non_null(strstr(err_msg(), "network-interfaces[eth1]"));
    assert_non_null(strstr(err_msg(), "tap " TAP " is busy"));
    net_destroy(n);
    /* Free again once the first user is gone. */
    assert_int_equal(net_create(&n2, &c, &gm), 0);
    net_destroy(n2);
    guest_mem_free(&gm);
}

/* ---- namespace setup ---- */

static int if_up(int s, const char *name)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        return -errno;
    ifr.ifr_flags |= IFF_UP;
    return ioctl(s, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

static void write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = write(fd, s, strlen(s));
        (void)r;
        close(fd);
    }
}

static int make_tap(void)
{
    /* No IPv6 chatter (router solicitations) on the test tap. */
    write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
    write_file("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", TAP);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETPERSIST, 1) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    close(fd);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    /* Room for the jumbo frame of the mergeable-buffers test. */
    struct ifreq mtu;
    memset(&mtu, 0, sizeof(mtu));
    snprintf(mtu.ifr_name, IFNAMSIZ, "%s", TAP);
    mtu.ifr_mtu = 9000;
    int rc = ioctl(s, SIOCSIFMTU, &mtu) < 0 ? -errno : 0;
    if (rc == 0)
        rc = if_up(s, "lo");
    if (rc == 0)
        rc = if_up(s, TAP);
    close(s);
    return rc;
}

int main(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0)
        run_in_netns();
    int st;
    if (waitpid(pid, &st, 0) < 0)
        return 1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    fprintf(stderr, "test_net: child died (signal %d)\n", WTERMSIG(st));
    return 1;
}

/* The child: a fresh network namespace (the host's interfaces are never
 * touched), a persistent tap in it, then the tests. */
static void run_in_netns(void)
{
    if (unshare(CLONE_NEWNET) < 0) {
        fprintf(stderr, "test_net: unshare(CLONE_NEWNET): %s (needs root)\n", strerror(errno));
        _exit(1);
    }
    int rc = make_tap();
    if (rc < 0) {
        fprintf(stderr, "test_net: cannot create tap %s: %s\n", TAP, strerror(-rc));
        _exit(1);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_space),
        cmocka_unit_test(test_tx),
        cmocka_unit_test(test_rx),
        cmocka_unit_test(test_rx_mergeable),
        cmocka_unit_test(test_rx_ring_exhaustion),
        cmocka_unit_test(test_rx_too_large_dropped),
        cmocka_unit_test(test_tx_rate_limited),
        cmocka_unit_test(test_tx_tap_eagain),
        cmocka_unit_test(test_errors),
    };
    _exit(cmocka_run_group_tests(tests, NULL, NULL));
}
