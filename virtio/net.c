/* net.c - virtio-net (device id 1) over virtio-mmio, backed by a tap device.
 *
 * Queues: 0 RX (tap -> guest), 1 TX (guest -> tap). The 12-byte virtio 1.x
 * net header passes through unchanged in both directions (the tap is opened
 * with IFF_VNET_HDR and a header size of 12); the device only fills in
 * num_buffers on RX.
 *
 * RX never drops a frame because the guest is short of buffers: the tap is
 * only read once a chain is in hand, and a frame that needs more chains
 * (MRG_RXBUF) stays in the bounce buffer, with the chains already filled
 * held back, until the driver posts more. While the ring is empty, the rate
 * limiter is blocked or a frame is parked, the tap is off the loop (no
 * EPOLLIN); the RX kick, the limiter's timer or net_update brings it back.
 * A frame too large for the chain(s) the driver posted is dropped and counted
 * in net_rx_partial_writes (a correct driver never causes this).
 *
 * TX writes one frame per chain with writev; if the tap is full (EAGAIN) the
 * chain is kept and retried on EPOLLOUT, never dropped.
 *
 * Polling: when the TX ring runs empty, or the RX ring runs out of buffers
 * while frames wait, the device arms its poller on the event loop for
 * net_config.poll_us before asking the driver to kick again.
 *
 * Threading: everything runs on the main thread with t->lock held:
 * queue_notify, activate and reset (from the transport), and the tap, timer
 * and poller callbacks (taking the lock with vmmio_lock()).
 */
#include "net_internal.h"
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../vmm/base/container_of.h"
#include "../vmm/base/err.h"
#include "../vmm/base/log.h"
#include "../vmm/base/metrics.h"

#define RXQ 0
#define TXQ 1
#define NET_MAX_FRAME 65550u /* largest frame after the header (Firecracker's limit) */
#define NET_BOUNCE (VIRTIO_NET_HDR_LEN + NET_MAX_FRAME)
#define NET_CONFIG_LEN 12

/* An RX frame being delivered (read from the tap, not yet all in the ring). */
struct rx_frame {
    bool active;
    bool charged;        /* rate limiter paid */
    uint32_t len;        /* frame length, header included */
    uint32_t done;       /* bytes already placed in held chains */
    uint32_t bounce_off; /* the rest is bounce[bounce_off .. bounce_off + len - done) */
    uint8_t *nb[2];      /* the first chain's num_buffers bytes (LE) */
    unsigned n_held;
    uint16_t held_head[VIRTQ_MAX_SIZE];
    uint32_t held_len[VIRTQ_MAX_SIZE];
};

struct net_dev {
    struct virtio_dev dev; /* first: the transport */
    char *tap_name;
    int tap_fd;
    bool tap_dead; /* the tap reported an error: off the loop */
    uint8_t config[NET_CONFIG_LEN];

    struct rl rx_rl, tx_rl;
    unsigned poll_us; /* RX out of buffers / TX ring empty (0: kick at once) */
    struct evloop *ev;
    struct ev_handler ev_tap, ev_rx_rl, ev_tx_rl;
    struct ev_poller rx_poller, tx_poller;
    bool tap_on_loop, rx_rl_on_loop, tx_rl_on_loop;
    uint32_t tap_events; /* mask currently registered */

    bool active;        /* activated by DRIVER_OK, not reset since */
    bool rx_wait_ring;  /* RX ring empty: waiting for the driver's kick */
    bool rx_have_chain; /* rx_chain is popped and unused */
    struct rx_frame rx;
    struct virtq_chain rx_chain;

    bool tx_pending;  /* tx_chain popped, not yet written */
    bool tx_charged;  /* ... and already paid to the rate limiter */
    bool tx_wait_tap; /* the tap said EAGAIN: waiting for EPOLLOUT */
    struct virtq_chain tx_chain;
    bool bad_chain_logged; /* the first malformed chain is a warning, later ones debug */

    uint8_t bounce[NET_BOUNCE];
};

static struct net_dev *to_net(struct virtio_mmio *t)
{
    return container_of(t, struct net_dev, dev.t);
}

/* A chain the device cannot use: one warning per device, then debug lines. */
static void log_bad_chain(struct net_dev *n, const char *queue, const char *why)
{
    if (!n->bad_chain_logged)
        log_warn("net %s: malformed %s descriptor chain: %s (returned unused; further ones are "
                 "logged at debug level)",
                 n->dev.id, queue, why);
    else
        log_debug("net %s: malformed %s descriptor chain: %s", n->dev.id, queue, why);
    n->bad_chain_logged = true;
}

/* ---- tap events ---- */

static bool queue_usable(const struct net_dev *n, unsigned qi)
{
    const struct virtq *q = &n->dev.t.queues[qi];
    return n->active && q->avail && !q->broken &&
           !(n->dev.t.regs.status & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* The tap's epoll mask: only what we will act on, so a level-triggered
 * readable tap never spins the loop while RX cannot proceed. */
static uint32_t wanted_events(const struct net_dev *n)
{
    uint32_t ev = 0;
    if (n->tap_dead || n->dev.t.quiesced)
        return 0;
    if (queue_usable(n, RXQ) && !n->rx_wait_ring && !n->rx.active && !rl_is_blocked(&n->rx_rl))
        ev |= EPOLLIN;
    if (queue_usable(n, TXQ) && n->tx_pending && n->tx_wait_tap)
        ev |= EPOLLOUT;
    return ev;
}

static void update_tap_events(struct net_dev *n)
{
    uint32_t ev = wanted_events(n);
    if (ev == n->tap_events)
        return;
    if (n->ev && n->tap_on_loop) {
        int rc = evloop_mod(n->ev, &n->ev_tap, ev);
        if (rc < 0) {
            log_error("net %s: tap %s: cannot update its events: %s", n->dev.id, n->tap_name,
                      strerror(-rc));
            return;
        }
    }
    n->tap_events = ev;
}

/* ---- RX ---- */

/* Make sure rx_chain holds a popped chain able to take a header. Returns true
 * if so; false if the ring is empty (rx_wait_ring set, kicks enabled) or
 * broken. Chains the device cannot use are returned with length 0. */
static bool rx_get_chain(struct net_dev *n, bool *pushed)
{
    struct virtq *q = &n->dev.t.queues[RXQ];
    while (!n->rx_have_chain) {
        int rc = virtq_pop(q, &n->rx_chain);
        if (rc == 1) {
            if (n->rx_chain.in_len < VIRTIO_NET_HDR_LEN) {
                METRIC_INC(virtio_bad_chains);
                log_bad_chain(n, "RX", "fewer writable bytes than the 12-byte header");
                virtq_push(q, n->rx_chain.head, 0);
                *pushed = true;
                continue;
            }
            n->rx_have_chain = true;
        } else if (rc == 0) {
            /* Frames are waiting: hand back what is done and give the
             * driver poll_us to refill (the loop's poller) before waiting
             * for its kick. The tap stays off meanwhile. */
            n->rx_wait_ring = true;
            if (n->poll_us && n->ev) {
                if (*pushed)
                    vmmio_signal_used(&n->dev.t, RXQ);
                *pushed = false;
                evloop_poll(n->ev, &n->rx_poller, n->poll_us);
                return false;
            }
            virtq_notify_enable(q);
            if (virtq_has_avail(q)) {
                n->rx_wait_ring = false;
                continue;
            }
            return false;
        } else if (rc == -EBADMSG) { /* counted by virtq_pop */
            log_bad_chain(n, "RX", err_msg());
            virtq_push(q, n->rx_chain.head, 0);
            *pushed = true;
        } else {
            vmmio_needs_reset(&n->dev.t, "RX avail ring is corrupt");
            return false;
        }
    }
    return true;
}

/* Hold the chain in rx_chain, with `len` bytes written. */
static void rx_hold(struct net_dev *n, uint32_t len)
{
    n->rx.held_head[n->rx.n_held] = n->rx_chain.head;
    n->rx.held_len[n->rx.n_held] = len;
    n->rx.n_held++;
    n->rx_have_chain = false;
}

static void rx_find_num_buffers(struct net_dev *n)
{
    /* Bytes 10 and 11 of the writable side (in_len >= 12 was checked). */
    const struct virtq_chain *c = &n->rx_chain;
    uint64_t off = 0;
    unsigned k = 0;
    for (unsigned i = c->n_out; i < c->n_seg && k < 2; i++) {
        const struct virtq_seg *s = &c->seg[i];
        while (k < 2 && 10 + k >= off && 10 + k < off + s->len) {
            n->rx.nb[k] = s->host + (10 + k - off);
            k++;
        }
        off += s->len;
    }
}

/* Drop the frame in progress (too large for the chains the driver posted). */
static void rx_drop(struct net_dev *n, bool *pushed)
{
    struct virtq *q = &n->dev.t.queues[RXQ];
    METRIC_INC(net_rx_partial_writes);
    log_debug("net %s: dropped a %u-byte frame larger than the guest's RX buffers", n->dev.id,
              n->rx.len);
    if (n->rx.n_held == 1 && !n->rx_have_chain) {
        /* The single chain it was read into can take the next frame. */
        n->rx_have_chain = true;
    } else {
        for (unsigned i = 0; i < n->rx.n_held; i++)
            virtq_push(q, n->rx.held_head[i], 0);
        *pushed = true;
    }
    n->rx.active = false;
    n->rx.n_held = 0;
}

/* Place the rest of the frame; true if it is finished (delivered or dropped),
 * false if waiting for the driver's buffers. */
static bool rx_continue(struct net_dev *n, bool *pushed)
{
    struct virtq *q = &n->dev.t.queues[RXQ];
    bool mrg = vmmio_has_feature(&n->dev.t, VIRTIO_NET_F_MRG_RXBUF);
    while (n->rx.done < n->rx.len) {
        if (!mrg || n->rx.n_held >= q->size) {
            rx_drop(n, pushed);
            return true;
        }
        if (!rx_get_chain(n, pushed))
            return false;
        uint32_t rest = n->rx.len - n->rx.done;
        uint64_t put = virtq_chain_write(&n->rx_chain, 0, n->bounce + n->rx.bounce_off, rest);
        rx_hold(n, (uint32_t)put);
        n->rx.done += (uint32_t)put;
        n->rx.bounce_off += (uint32_t)put;
    }
    uint16_t nb = (uint16_t)n->rx.n_held;
    if (n->rx.nb[0] && n->rx.nb[1]) {
        *n->rx.nb[0] = (uint8_t)(nb & 0xff);
        *n->rx.nb[1] = (uint8_t)(nb >> 8);
    }
    for (unsigned i = 0; i < n->rx.n_held; i++)
        virtq_push(q, n->rx.held_head[i], n->rx.held_len[i]);
    *pushed = true;
    METRIC_INC(net_rx_packets_count);
    METRIC_ADD(net_rx_bytes_count, n->rx.len - VIRTIO_NET_HDR_LEN);
    n->rx.active = false;
    n->rx.n_held = 0;
    return true;
}

static bool rx_charge(struct net_dev *n)
{
    if (!rl_consume(&n->rx_rl, RL_OPS, 1)) {
        METRIC_INC(net_rx_rate_limiter_throttled);
        return false;
    }
    if (!rl_consume(&n->rx_rl, RL_BYTES, n->rx.len - VIRTIO_NET_HDR_LEN)) {
        rl_manual_replenish(&n->rx_rl, RL_OPS, 1);
        METRIC_INC(net_rx_rate_limiter_throttled);
        return false;
    }
    n->rx.charged = true;
    return true;
}

/* Read one frame from the tap into rx_chain (+ the bounce buffer for what
 * does not fit). 1: a frame is in progress; 0: the tap is empty; -errno. */
static int rx_read_frame(struct net_dev *n)
{
    struct iovec iov[VIRTQ_MAX_SIZE + 1];
    const struct virtq_chain *c = &n->rx_chain;
    unsigned k = 0;
    for (unsigned i = c->n_out; i < c->n_seg; i++) {
        if (c->seg[i].len == 0)
            continue;
        iov[k].iov_base = c->seg[i].host;
        iov[k].iov_len = c->seg[i].len;
        k++;
    }
    iov[k].iov_base = n->bounce;
    iov[k].iov_len = sizeof(n->bounce);
    k++;
    ssize_t got;
    do
        got = readv(n->tap_fd, iov, (int)k);
    while (got < 0 && errno == EINTR);
    if (got < 0) {
        int e = errno;
        if (e == EAGAIN)
            return 0;
        METRIC_INC(net_tap_read_fails);
        log_warn("net %s: tap %s: read failed: %s", n->dev.id, n->tap_name, strerror(e));
        return -e;
    }
    if ((size_t)got < VIRTIO_NET_HDR_LEN)
        return 0; /* cannot happen with IFF_VNET_HDR; ignore */
    uint64_t in_chain = c->in_len < (uint64_t)got ? c->in_len : (uint64_t)got;
    memset(&n->rx, 0, offsetof(struct rx_frame, held_head));
    n->rx.active = true;
    n->rx.len = (uint32_t)got;
    n->rx.done = (uint32_t)in_chain;
    n->rx.bounce_off = 0;
    rx_find_num_buffers(n);
    rx_hold(n, (uint32_t)in_chain);
    return 1;
}

static void rx_process(struct net_dev *n)
{
    if (n->ev)
        evloop_poll_cancel(n->ev, &n->rx_poller);
    if (!queue_usable(n, RXQ) || n->tap_dead || n->dev.t.quiesced) {
        update_tap_events(n);
        return;
    }
    bool pushed = false;
    for (;;) {
        if (n->rx.active) {
            if (!n->rx.charged && !rx_charge(n))
                break; /* the limiter's timer resumes us */
            if (!rx_continue(n, &pushed))
                break; /* the driver's kick resumes us */
            continue;
        }
        if (rl_is_blocked(&n->rx_rl))
            break;
        if (!rx_get_chain(n, &pushed))
            break;
        int rc = rx_read_frame(n);
        if (rc == -EBADFD) {
            log_error("net %s: tap %s is gone; the interface stops", n->dev.id, n->tap_name);
            n->tap_dead = true;
        }
        if (rc <= 0)
            break; /* empty: EPOLLIN brings us back */
    }
    if (pushed)
        vmmio_signal_used(&n->dev.t, RXQ);
    update_tap_events(n);
}

/* ---- TX ---- */

static void tx_process(struct net_dev *n)
{
    struct virtq *q = &n->dev.t.queues[TXQ];
    if (!queue_usable(n, TXQ) || n->tap_dead) {
        update_tap_events(n);
        return;
    }
    bool pushed = false;
    struct iovec iov[VIRTQ_MAX_SIZE];
    bool polling = n->poll_us && n->ev;
    if (n->ev)
        evloop_poll_cancel(n->ev, &n->tx_poller);
    if (n->dev.t.quiesced) {
        update_tap_events(n);
        return;
    }
    if (polling)
        virtq_notify_disable(q); /* while we work (and poll), no kicks needed */
    for (;;) {
        if (!n->tx_pending) {
            if (rl_is_blocked(&n->tx_rl))
                break;
            int rc = virtq_pop(q, &n->tx_chain);
            if (rc == 0) {
                if (polling) /* the loop's poller asks for kicks again when it gives up */
                    evloop_poll(n->ev, &n->tx_poller, n->poll_us);
                break;
            }
            if (rc == -EBADMSG) { /* counted by virtq_pop */
                log_bad_chain(n, "TX", err_msg());
                virtq_push(q, n->tx_chain.head, 0);
                pushed = true;
                continue;
            }
            if (rc < 0) {
                vmmio_needs_reset(&n->dev.t, "TX avail ring is corrupt");
                break;
            }
            n->tx_pending = true;
            n->tx_charged = false;
        }
        const struct virtq_chain *c = &n->tx_chain;
        uint64_t len = c->out_len;
        if (len < VIRTIO_NET_HDR_LEN || len > VIRTIO_NET_HDR_LEN + NET_MAX_FRAME) {
            METRIC_INC(net_tx_malformed_frames);
            log_bad_chain(n, "TX",
                          len < VIRTIO_NET_HDR_LEN ? "shorter than the 12-byte header"
                                                   : "frame longer than 65550 bytes");
            n->tx_pending = false;
            virtq_push(q, c->head, 0);
            pushed = true;
            continue;
        }
        if (!n->tx_charged) {
            if (!rl_consume(&n->tx_rl, RL_OPS, 1)) {
                METRIC_INC(net_tx_rate_limiter_throttled);
                break;
            }
            if (!rl_consume(&n->tx_rl, RL_BYTES, len - VIRTIO_NET_HDR_LEN)) {
                rl_manual_replenish(&n->tx_rl, RL_OPS, 1);
                METRIC_INC(net_tx_rate_limiter_throttled);
                break;
            }
            n->tx_charged = true;
        }
        unsigned k = 0;
        for (unsigned i = 0; i < c->n_out; i++) {
            if (c->seg[i].len == 0)
                continue;
            iov[k].iov_base = c->seg[i].host;
            iov[k].iov_len = c->seg[i].len;
            k++;
        }
        ssize_t w;
        do
            w = writev(n->tap_fd, iov, (int)k);
        while (w < 0 && errno == EINTR);
        if (w < 0 && errno == EAGAIN) {
            n->tx_wait_tap = true; /* keep the chain; retried on EPOLLOUT */
            break;
        }
        if (w < 0) {
            METRIC_INC(net_tap_write_fails);
            log_debug("net %s: tap %s: write failed: %s", n->dev.id, n->tap_name, strerror(errno));
        } else {
            METRIC_INC(net_tx_packets_count);
            METRIC_ADD(net_tx_bytes_count, len - VIRTIO_NET_HDR_LEN);
        }
        n->tx_pending = false;
        virtq_push(q, c->head, 0);
        pushed = true;
    }
    if (pushed)
        vmmio_signal_used(&n->dev.t, TXQ);
    update_tap_events(n);
}

/* ---- transport ops ---- */

static void net_config_read(struct virtio_mmio *t, uint64_t off, uint8_t *data, uint32_t len)
{
    struct net_dev *n = to_net(t);
    for (uint32_t i = 0; i < len; i++)
        data[i] = off + i < NET_CONFIG_LEN ? n->config[off + i] : 0;
}

static void net_config_write(struct virtio_mmio *t, uint64_t off, const uint8_t *data, uint32_t len)
{
    /* Nothing is writable in a virtio 1.x net config space. */
    (void)t;
    (void)off;
    (void)data;
    (void)len;
}

static void set_offload(struct net_dev *n)
{
    unsigned flags = 0;
    if (vmmio_has_feature(&n->dev.t, VIRTIO_NET_F_GUEST_CSUM)) {
        flags |= TUN_F_CSUM;
        if (vmmio_has_feature(&n->dev.t, VIRTIO_NET_F_GUEST_TSO4))
            flags |= TUN_F_TSO4;
        if (vmmio_has_feature(&n->dev.t, VIRTIO_NET_F_GUEST_TSO6))
            flags |= TUN_F_TSO6;
        if (vmmio_has_feature(&n->dev.t, VIRTIO_NET_F_GUEST_UFO))
            flags |= TUN_F_UFO;
    }
    if (ioctl(n->tap_fd, TUNSETOFFLOAD, flags) == 0)
        return;
    /* Kernels without UFO: offer the rest (the guest just gets fewer GSO frames). */
    if (ioctl(n->tap_fd, TUNSETOFFLOAD, flags & ~(unsigned)TUN_F_UFO) == 0)
        return;
    log_warn("net %s: tap %s: TUNSETOFFLOAD 0x%x failed (%s); offloads off", n->dev.id, n->tap_name,
             flags, strerror(errno));
    if (ioctl(n->tap_fd, TUNSETOFFLOAD, 0) < 0)
        log_warn("net %s: tap %s: TUNSETOFFLOAD 0 failed: %s", n->dev.id, n->tap_name,
                 strerror(errno));
}

static void rx_forget(struct net_dev *n)
{
    n->rx.active = false;
    n->rx.n_held = 0;
    n->rx_have_chain = false;
    n->rx_wait_ring = false;
    n->tx_pending = false;
    n->tx_charged = false;
    n->tx_wait_tap = false;
}

static int net_activate(struct virtio_mmio *t)
{
    struct net_dev *n = to_net(t);
    set_offload(n);
    rx_forget(n);
    n->active = true;
    update_tap_events(n);
    return 0;
}

static void net_reset(struct virtio_mmio *t)
{
    struct net_dev *n = to_net(t);
    n->active = false;
    rx_forget(n);
    if (n->ev) {
        evloop_poll_cancel(n->ev, &n->rx_poller);
        evloop_poll_cancel(n->ev, &n->tx_poller);
    }
    update_tap_events(n);
}

/* A pause: the tap goes off the loop; a frame half delivered is dropped and
 * every chain held for it, and a TX chain waiting for the tap, go back to
 * their rings (virtq_unpop: popped again after the pause, nothing repeated). */
static void net_quiesce(struct virtio_mmio *t, bool on)
{
    struct net_dev *n = to_net(t);
    if (on) {
        if (n->ev) {
            evloop_poll_cancel(n->ev, &n->rx_poller);
            evloop_poll_cancel(n->ev, &n->tx_poller);
        }
        unsigned held = (n->rx.active ? n->rx.n_held : 0) + (n->rx_have_chain ? 1 : 0);
        if (n->rx.active)
            log_debug("net %s: a %u-byte frame in delivery is dropped for the pause", n->dev.id,
                      n->rx.len);
        if (held)
            virtq_unpop(&t->queues[RXQ], (uint16_t)held);
        if (n->tx_pending)
            virtq_unpop(&t->queues[TXQ], 1);
        rx_forget(n);
    }
    update_tap_events(n);
}

static void net_queue_notify(struct virtio_mmio *t, unsigned q)
{
    struct net_dev *n = to_net(t);
    if (q == RXQ) {
        METRIC_INC(net_rx_queue_event_count);
        n->rx_wait_ring = false;
        rx_process(n);
    } else if (q == TXQ) {
        METRIC_INC(net_tx_queue_event_count);
        tx_process(n);
    }
}

static const struct virtio_mmio_ops net_ops = {
    .config_read = net_config_read,
    .config_write = net_config_write,
    .activate = net_activate,
    .reset = net_reset,
    .queue_notify = net_queue_notify,
    .quiesce = net_quiesce,
};

/* ---- loop callbacks ---- */

static void on_tap(struct ev_handler *h, uint32_t events)
{
    struct net_dev *n = container_of(h, struct net_dev, ev_tap);
    vmmio_lock(&n->dev.t);
    if (events & (EPOLLERR | EPOLLHUP)) {
        log_error("net %s: tap %s reported an error (deleted?); the interface stops", n->dev.id,
                  n->tap_name);
        n->tap_dead = true;
    }
    if (events & EPOLLOUT) {
        n->tx_wait_tap = false;
        tx_process(n);
    }
    if (events & EPOLLIN)
        rx_process(n);
    update_tap_events(n);
    vmmio_unlock(&n->dev.t);
}

static void on_rx_timer(struct ev_handler *h, uint32_t events)
{
    (void)events;
    struct net_dev *n = container_of(h, struct net_dev, ev_rx_rl);
    vmmio_lock(&n->dev.t);
    rl_timer_expired(&n->rx_rl);
    rx_process(n);
    update_tap_events(n);
    vmmio_unlock(&n->dev.t);
}

static void on_tx_timer(struct ev_handler *h, uint32_t events)
{
    (void)events;
    struct net_dev *n = container_of(h, struct net_dev, ev_tx_rl);
    vmmio_lock(&n->dev.t);
    rl_timer_expired(&n->tx_rl);
    tx_process(n);
    vmmio_unlock(&n->dev.t);
}

void net_rx_poll(struct net_dev *n)
{
    vmmio_lock(&n->dev.t);
    rx_process(n);
    vmmio_unlock(&n->dev.t);
}

/* ---- the loop's pollers ---- */

static bool rx_poll_ready(struct ev_poller *p)
{
    struct net_dev *n = container_of(p, struct net_dev, rx_poller);
    return atomic_load(&n->dev.t.pending) || virtq_has_avail(&n->dev.t.queues[RXQ]);
}

static void rx_poll_run(struct ev_poller *p)
{
    struct net_dev *n = container_of(p, struct net_dev, rx_poller);
    vmmio_lock(&n->dev.t);
    n->rx_wait_ring = false;
    rx_process(n);
    vmmio_unlock(&n->dev.t);
}

/* No buffers came within the budget: wait for the driver's kick. */
static void rx_poll_expired(struct ev_poller *p)
{
    struct net_dev *n = container_of(p, struct net_dev, rx_poller);
    vmmio_lock(&n->dev.t);
    struct virtq *q = &n->dev.t.queues[RXQ];
    if (queue_usable(n, RXQ)) {
        virtq_notify_enable(q);
        if (virtq_has_avail(q)) {
            n->rx_wait_ring = false;
            rx_process(n);
        }
    }
    vmmio_unlock(&n->dev.t);
}

static bool tx_poll_ready(struct ev_poller *p)
{
    struct net_dev *n = container_of(p, struct net_dev, tx_poller);
    return atomic_load(&n->dev.t.pending) || virtq_has_avail(&n->dev.t.queues[TXQ]);
}

static void tx_poll_run(struct ev_poller *p)
{
    struct net_dev *n = container_of(p, struct net_dev, tx_poller);
    vmmio_lock(&n->dev.t);
    tx_process(n);
    vmmio_unlock(&n->dev.t);
}

/* The TX ring stayed empty: ask for kicks again (and close the race). */
static void tx_poll_expired(struct ev_poller *p)
{
    struct net_dev *n = container_of(p, struct net_dev, tx_poller);
    vmmio_lock(&n->dev.t);
    struct virtq *q = &n->dev.t.queues[TXQ];
    if (queue_usable(n, TXQ)) {
        virtq_notify_enable(q);
        if (virtq_has_avail(q))
            tx_process(n);
    }
    vmmio_unlock(&n->dev.t);
}

/* ---- creation ---- */

static int open_tap_named(const char *id, const char *name, int *fd_out)
{
    size_t nl = strlen(name);
    if (nl == 0 || nl >= IFNAMSIZ)
        return err_set(-EINVAL,
                       "network-interfaces[%s].host_dev_name: tap name \"%s\" must be 1 to %d "
                       "characters",
                       id, name, IFNAMSIZ - 1);
    if (strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return err_set(-EINVAL, "network-interfaces[%s].host_dev_name: invalid tap name \"%s\"", id,
                       name);
    /* Looked up in our own network namespace (an ioctl on a socket), not in
     * /sys/class/net, which shows the namespace sysfs was mounted in. */
    if (if_nametoindex(name) == 0)
        return err_set(-ENODEV, "network-interfaces[%s].host_dev_name: tap %s does not exist", id,
                       name);
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return err_set(-e, "network-interfaces[%s]: tap %s: cannot open /dev/net/tun: %s", id, name,
                       strerror(e));
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, name, nl);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        if (e == EBUSY)
            return err_set(-e,
                           "network-interfaces[%s].host_dev_name: tap %s is busy (in use by "
                           "another process)",
                           id, name);
        if (e == EPERM || e == EACCES)
            return err_set(-e,
                           "network-interfaces[%s].host_dev_name: no permission to attach to tap "
                           "%s (needs CAP_NET_ADMIN or a tap owned by this user/group)",
                           id, name);
        if (e == EINVAL)
            return err_set(-e,
                           "network-interfaces[%s].host_dev_name: %s is not a single-queue tap "
                           "device",
                           id, name);
        return err_set(-e, "network-interfaces[%s].host_dev_name: tap %s: TUNSETIFF: %s", id, name,
                       strerror(e));
    }
    /* A tap we could attach to that is not persistent was just created by us
     * (it vanished after the check above): refuse, closing deletes it. */
    struct ifreq got;
    memset(&got, 0, sizeof(got));
    if (ioctl(fd, TUNGETIFF, &got) == 0 && !(got.ifr_flags & IFF_PERSIST)) {
        close(fd);
        return err_set(-ENODEV, "network-interfaces[%s].host_dev_name: tap %s does not exist", id,
                       name);
    }
    int hdr = VIRTIO_NET_HDR_LEN;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
        int e = errno;
        close(fd);
        return err_set(-e, "network-interfaces[%s]: tap %s: TUNSETVNETHDRSZ: %s", id, name,
                       strerror(e));
    }
    *fd_out = fd;
    return 0;
}

static int open_tap(struct net_dev *n)
{
    return open_tap_named(n->dev.id, n->tap_name, &n->tap_fd);
}

int net_check(const struct net_config *cfg)
{
    int fd;
    int rc = open_tap_named(cfg->iface_id, cfg->host_dev_name, &fd);
    if (rc == 0)
        close(fd);
    return rc;
}

int net_create(struct net_dev **out, const struct net_config *cfg, const struct guest_mem *mem)
{
    *out = NULL;
    const char *id = cfg->iface_id ? cfg->iface_id : "?";
    if (!cfg->host_dev_name)
        return err_set(-EINVAL, "network-interfaces[%s].host_dev_name: missing", id);
    if (cfg->mtu > 0xffff)
        return err_set(-EINVAL, "network-interfaces[%s].mtu: %u is too large", id, cfg->mtu);
    struct net_dev *n = calloc(1, sizeof(*n));
    if (!n)
        return err_set(-ENOMEM, "network-interfaces[%s]: out of memory", id);
    n->tap_fd = -1;
    n->rx_rl.timer_fd = -1;
    n->tx_rl.timer_fd = -1;
    n->dev.t.work_fd = -1;
    n->dev.kind = &virtio_net_kind;
    snprintf(n->dev.id, sizeof(n->dev.id), "%s", id);
    n->poll_us = cfg->poll_us > CONFIG_POLL_US_MAX ? CONFIG_POLL_US_MAX : cfg->poll_us;
    n->rx_poller =
        (struct ev_poller){.ready = rx_poll_ready, .run = rx_poll_run, .expired = rx_poll_expired};
    n->tx_poller =
        (struct ev_poller){.ready = tx_poll_ready, .run = tx_poll_run, .expired = tx_poll_expired};
    n->tap_name = strdup(cfg->host_dev_name);
    int rc;
    if (!n->tap_name) {
        rc = err_set(-ENOMEM, "network-interfaces[%s]: out of memory", id);
        goto fail;
    }
    rc = open_tap(n);
    if (rc < 0)
        goto fail;
    rc = rl_init(&n->rx_rl, &cfg->rx_rate_limiter);
    if (rc == 0)
        rc = rl_init(&n->tx_rl, &cfg->tx_rate_limiter);
    if (rc < 0) {
        rc = err_set(rc, "network-interfaces[%s]: rate limiter timer: %s", id, strerror(-rc));
        goto fail;
    }

    uint64_t f = (1ull << VIRTIO_NET_F_CSUM) | (1ull << VIRTIO_NET_F_GUEST_CSUM) |
                 (1ull << VIRTIO_NET_F_GUEST_TSO4) | (1ull << VIRTIO_NET_F_GUEST_TSO6) |
                 (1ull << VIRTIO_NET_F_GUEST_UFO) | (1ull << VIRTIO_NET_F_HOST_TSO4) |
                 (1ull << VIRTIO_NET_F_HOST_TSO6) | (1ull << VIRTIO_NET_F_HOST_UFO) |
                 (1ull << VIRTIO_NET_F_MRG_RXBUF);
    if (cfg->has_mac) {
        f |= 1ull << VIRTIO_NET_F_MAC;
        memcpy(n->config, cfg->guest_mac, 6);
    }
    /* status (6) stays 0: VIRTIO_NET_F_STATUS is not offered. */
    n->config[8] = 1; /* max_virtqueue_pairs */
    if (cfg->mtu) {
        f |= 1ull << VIRTIO_NET_F_MTU;
        n->config[10] = (uint8_t)(cfg->mtu & 0xff);
        n->config[11] = (uint8_t)(cfg->mtu >> 8);
    }
    n->dev.t.device_id = VIRTIO_ID_NET;
    n->dev.t.device_features = f;
    n->dev.t.n_queues = 2;
    n->dev.t.ops = &net_ops;
    n->dev.t.name = n->dev.id;
    n->dev.t.mem = mem;
    rc = vmmio_init(&n->dev.t);
    if (rc < 0)
        goto fail;
    *out = n;
    return 0;
fail:
    rl_destroy(&n->rx_rl);
    rl_destroy(&n->tx_rl);
    if (n->tap_fd >= 0)
        close(n->tap_fd);
    free(n->tap_name);
    free(n);
    return rc;
}

static void detach(struct net_dev *n)
{
    if (!n->ev)
        return;
    evloop_poll_cancel(n->ev, &n->rx_poller);
    evloop_poll_cancel(n->ev, &n->tx_poller);
    if (n->tap_on_loop)
        evloop_del(n->ev, &n->ev_tap);
    if (n->rx_rl_on_loop)
        evloop_del(n->ev, &n->ev_rx_rl);
    if (n->tx_rl_on_loop)
        evloop_del(n->ev, &n->ev_tx_rl);
    n->tap_on_loop = n->rx_rl_on_loop = n->tx_rl_on_loop = false;
}

void net_destroy(struct net_dev *n)
{
    if (!n)
        return;
    detach(n);
    vmmio_destroy(&n->dev.t);
    rl_destroy(&n->rx_rl);
    rl_destroy(&n->tx_rl);
    if (n->tap_fd >= 0)
        close(n->tap_fd);
    free(n->tap_name);
    free(n);
}

struct virtio_mmio *net_transport(struct net_dev *n)
{
    return &n->dev.t;
}

/* Register whichever limiter timers exist and are not on the loop yet. */
static int attach_timers(struct net_dev *n)
{
    int rc;
    if (n->rx_rl.timer_fd >= 0 && !n->rx_rl_on_loop) {
        rc = evloop_add(n->ev, &n->ev_rx_rl, n->rx_rl.timer_fd, EPOLLIN, on_rx_timer);
        if (rc < 0)
            return err_set(rc, "network-interfaces[%s]: cannot watch the RX rate limiter: %s",
                           n->dev.id, strerror(-rc));
        n->rx_rl_on_loop = true;
    }
    if (n->tx_rl.timer_fd >= 0 && !n->tx_rl_on_loop) {
        rc = evloop_add(n->ev, &n->ev_tx_rl, n->tx_rl.timer_fd, EPOLLIN, on_tx_timer);
        if (rc < 0)
            return err_set(rc, "network-interfaces[%s]: cannot watch the TX rate limiter: %s",
                           n->dev.id, strerror(-rc));
        n->tx_rl_on_loop = true;
    }
    return 0;
}

int net_attach(struct net_dev *n, struct evloop *ev)
{
    vmmio_lock(&n->dev.t);
    n->ev = ev;
    n->tap_events = wanted_events(n);
    int rc = evloop_add(ev, &n->ev_tap, n->tap_fd, n->tap_events, on_tap);
    if (rc < 0) {
        rc = err_set(rc, "network-interfaces[%s]: cannot watch tap %s: %s", n->dev.id, n->tap_name,
                     strerror(-rc));
    } else {
        n->tap_on_loop = true;
        rc = attach_timers(n);
    }
    if (rc < 0) {
        detach(n);
        n->ev = NULL;
    }
    vmmio_unlock(&n->dev.t);
    return rc;
}

int net_update(struct net_dev *n, const struct rate_limiter *rx, const struct rate_limiter *tx)
{
    int rc = 0;
    if (rx)
        rc = rl_update(&n->rx_rl, rx);
    if (rc == 0 && tx)
        rc = rl_update(&n->tx_rl, tx);
    if (rc < 0)
        rc =
            err_set(rc, "network-interfaces[%s]: rate limiter timer: %s", n->dev.id, strerror(-rc));
    if (rc == 0 && n->ev)
        rc = attach_timers(n);
    /* Whatever was throttled may go now. */
    rx_process(n);
    tx_process(n);
    update_tap_events(n);
    return rc;
}

/* ---- the kind table (device.h) ---- */

static int kind_count(const struct vm_config *cfg)
{
    return cfg->n_nets;
}

static int kind_create(const struct vm_config *cfg, int i, const struct guest_mem *mem,
                       struct virtio_dev **out)
{
    struct net_dev *n;
    if (i < 0 || i >= cfg->n_nets)
        return err_set(-EINVAL, "network-interfaces: no interface %d", i);
    int rc = net_create(&n, &cfg->nets[i], mem);
    *out = rc ? NULL : &n->dev;
    return rc;
}

static int kind_attach(struct virtio_dev *d, struct evloop *ev)
{
    return net_attach(container_of(d, struct net_dev, dev), ev);
}

static int kind_update(struct virtio_dev *d, const struct device_update *u)
{
    return net_update(container_of(d, struct net_dev, dev), u->rx, u->tx);
}

static void kind_destroy(struct virtio_dev *d)
{
    net_destroy(container_of(d, struct net_dev, dev));
}

/* An interface's own state: its two limiters. */
static size_t kind_save(struct virtio_dev *d, void *buf)
{
    struct net_dev *n = container_of(d, struct net_dev, dev);
    struct rl_state *s = buf;
    rl_save(&n->rx_rl, &s[0]);
    rl_save(&n->tx_rl, &s[1]);
    return 2 * sizeof(struct rl_state);
}

static int kind_restore(struct virtio_dev *d, const void *buf, size_t len)
{
    struct net_dev *n = container_of(d, struct net_dev, dev);
    if (len != 2 * sizeof(struct rl_state))
        return err_set(-EINVAL, "network-interfaces %s: saved state of %zu bytes, expected %zu",
                       d->id, len, 2 * sizeof(struct rl_state));
    const struct rl_state *s = buf;
    rl_restore(&n->rx_rl, &s[0]);
    rl_restore(&n->tx_rl, &s[1]);
    return 0;
}

const struct virtio_kind virtio_net_kind = {
    .section = "network-interfaces",
    .count = kind_count,
    .create = kind_create,
    .cmdline = NULL,
    .attach = kind_attach,
    .update = kind_update,
    .destroy = kind_destroy,
    .save = kind_save,
    .restore = kind_restore,
};
