/* mmio.c - the virtio-mmio transport (virtio 1.2 section 4.2.2, version 2):
 * register file, feature negotiation, the status state machine, queue setup,
 * activation and reset handed to the main loop, config generation, the
 * interrupt status and the kick handlers (see mmio.h). */
#include "mmio_internal.h"
#include "mmio.h"

#include "../vmm/base/container_of.h"
#include "../vmm/base/err.h"
#include "../vmm/base/log.h"
#include "../vmm/base/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define VMMIO_MAGIC 0x74726976u /* "virt" */
#define VMMIO_VERSION 2u

static const char *name_of(const struct virtio_mmio *t)
{
    return t->name ? t->name : "?";
}

static uint64_t offered_features(const struct virtio_mmio *t)
{
    return t->device_features | (1ull << VIRTIO_F_VERSION_1) |
           (1ull << VIRTIO_RING_F_INDIRECT_DESC) | (1ull << VIRTIO_RING_F_EVENT_IDX);
}

/* The register file after a reset (the generation counts on: a driver may
 * compare it across its own reset). */
static void regs_reset(struct virtio_mmio *t)
{
    uint32_t gen = t->regs.config_generation;
    memset(&t->regs, 0, sizeof(t->regs));
    t->regs.config_generation = gen;
    atomic_store(&t->interrupt_status, 0);
    t->want_active = false;
}

int vmmio_init(struct virtio_mmio *t)
{
    memset(&t->regs, 0, sizeof(t->regs));
    atomic_init(&t->interrupt_status, 0);
    atomic_init(&t->pending, 0);
    t->want_active = false;
    t->activated = false;
    t->ev = NULL;
    t->irq_fd = -1;
    t->work_fd = -1;
    for (unsigned i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++) {
        virtq_reset(&t->queues[i]);
        t->kick_fd[i] = -1;
    }
    if (t->n_queues > VIRTIO_MMIO_MAX_QUEUES)
        return err_set(-EINVAL, "virtio device %s: %u queues (at most %u)", name_of(t), t->n_queues,
                       VIRTIO_MMIO_MAX_QUEUES);
    t->work_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->work_fd < 0)
        return err_set(-errno, "virtio device %s: eventfd: %s", name_of(t), strerror(errno));
    int rc = pthread_mutex_init(&t->lock, NULL);
    if (rc) {
        close(t->work_fd);
        t->work_fd = -1;
        return err_set(-rc, "virtio device %s: cannot create its lock", name_of(t));
    }
    return 0;
}

void vmmio_destroy(struct virtio_mmio *t)
{
    vmmio_detach(t);
    if (t->work_fd >= 0)
        close(t->work_fd);
    t->work_fd = -1;
    pthread_mutex_destroy(&t->lock);
}

bool vmmio_has_feature(const struct virtio_mmio *t, unsigned bit)
{
    if (bit >= 64)
        return false;
    return ((t->regs.driver_features & offered_features(t)) >> bit) & 1;
}

static void raise_irq(struct virtio_mmio *t, unsigned bits)
{
    atomic_fetch_or(&t->interrupt_status, bits);
    METRIC_INC(virtio_interrupts);
    if (t->irq_fd >= 0) {
        uint64_t one = 1;
        /* EAGAIN (counter saturated) still leaves the line asserted. */
        if (write(t->irq_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            log_warn("virtio %s: cannot signal interrupt: %s", name_of(t), strerror(errno));
    }
}

void vmmio_signal_used(struct virtio_mmio *t, unsigned q)
{
    if (q >= t->n_queues)
        return;
    if (virtq_needs_interrupt(&t->queues[q]))
        raise_irq(t, VIRTIO_MMIO_INT_VRING);
}

void vmmio_config_changed(struct virtio_mmio *t)
{
    t->regs.config_generation++;
    raise_irq(t, VIRTIO_MMIO_INT_CONFIG);
}

void vmmio_needs_reset(struct virtio_mmio *t, const char *why)
{
    if (t->regs.status & VIRTIO_CONFIG_S_NEEDS_RESET)
        return; /* already reported; the driver has to reset the device */
    t->regs.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    METRIC_INC(virtio_needs_reset);
    log_error("virtio %s: device needs reset: %s", name_of(t), why);
    raise_irq(t, VIRTIO_MMIO_INT_CONFIG);
}

/* ---- work handed to the main loop ------------------------------------------ */

static void request_work(struct virtio_mmio *t, unsigned what)
{
    atomic_fetch_or(&t->pending, what);
    uint64_t one = 1;
    if (t->work_fd >= 0 && write(t->work_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("virtio %s: cannot signal the main loop: %s", name_of(t), strerror(errno));
}

static void queue_kick(struct virtio_mmio *t, unsigned qi)
{
    struct virtq *q = &t->queues[qi];
    /* A queue the driver disabled (QueueReady 0) is not served, though still mapped. */
    if (t->activated && !t->quiesced && t->regs.queues[qi].ready && q->avail && !q->broken &&
        !(t->regs.status & VIRTIO_CONFIG_S_NEEDS_RESET) && t->ops && t->ops->queue_notify)
        t->ops->queue_notify(t, qi);
}

/* Main thread, lock held: map the ready queues and start the device. */
static void activate(struct virtio_mmio *t)
{
    bool event_idx = vmmio_has_feature(t, VIRTIO_RING_F_EVENT_IDX);
    char why[256];
    if (!t->mem) {
        vmmio_needs_reset(t, "no guest memory attached");
        return;
    }
    for (unsigned i = 0; i < t->n_queues; i++) {
        if (!t->regs.queues[i].ready)
            continue;
        if (virtq_activate(&t->queues[i], &t->regs.queues[i], t->mem, event_idx) < 0) {
            snprintf(why, sizeof(why), "queue %u: %s", i, err_msg());
            vmmio_needs_reset(t, why);
            return;
        }
    }
    if (t->ops && t->ops->activate) {
        err_clear();
        int rc = t->ops->activate(t);
        if (rc < 0) {
            snprintf(why, sizeof(why), "activation failed: %s",
                     err_msg()[0] ? err_msg() : strerror(-rc));
            vmmio_needs_reset(t, why);
            return;
        }
    }
    t->activated = true;
    /* Kicks the driver sent before this ran were dropped: look at every queue. */
    for (unsigned i = 0; i < t->n_queues; i++)
        queue_kick(t, i);
}

/* Main thread, lock held. */
static void run_pending(struct virtio_mmio *t)
{
    unsigned w = atomic_exchange(&t->pending, 0);
    if (w & VMMIO_WORK_RESET) {
        if (t->activated && t->ops && t->ops->reset)
            t->ops->reset(t);
        for (unsigned i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++)
            virtq_reset(&t->queues[i]);
        t->activated = false;
    }
    if ((w & VMMIO_WORK_ACTIVATE) && t->want_active && !t->activated &&
        !(t->regs.status & (VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED)))
        activate(t);
}

void vmmio_lock(struct virtio_mmio *t)
{
    pthread_mutex_lock(&t->lock);
    if (atomic_load(&t->pending))
        run_pending(t);
}

void vmmio_unlock(struct virtio_mmio *t)
{
    pthread_mutex_unlock(&t->lock);
}

void vmmio_do_work(struct virtio_mmio *t)
{
    uint64_t cnt;
    if (t->work_fd >= 0 && read(t->work_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
        log_warn("virtio %s: work eventfd read: %s", name_of(t), strerror(errno));
    vmmio_lock(t);
    vmmio_unlock(t);
}

/* ---- registers (vCPU threads, lock held) ------------------------------------ */

static void write_status(struct virtio_mmio *t, uint32_t val)
{
    if (val == 0) {
        regs_reset(t);
        request_work(t, VMMIO_WORK_RESET);
        return;
    }
    uint32_t old = t->regs.status;
    /* The driver only ever adds bits until it resets; NEEDS_RESET is ours. */
    uint32_t st = old | (val & ~(uint32_t)VIRTIO_CONFIG_S_NEEDS_RESET);
    uint32_t added = st & ~old;

    if (added & VIRTIO_CONFIG_S_FEATURES_OK) {
        uint64_t acked = t->regs.driver_features;
        if (!(acked & (1ull << VIRTIO_F_VERSION_1)) || (acked & ~offered_features(t)) ||
            (old & VIRTIO_CONFIG_S_DRIVER_OK)) {
            st &= ~(uint32_t)VIRTIO_CONFIG_S_FEATURES_OK;
            added &= ~(uint32_t)VIRTIO_CONFIG_S_FEATURES_OK;
            log_debug("virtio %s: FEATURES_OK refused: driver features 0x%llx need VERSION_1 "
                      "and a subset of 0x%llx",
                      name_of(t), (unsigned long long)acked,
                      (unsigned long long)offered_features(t));
        }
    }
    if ((added & VIRTIO_CONFIG_S_DRIVER_OK) && !(st & VIRTIO_CONFIG_S_FEATURES_OK)) {
        t->regs.status = st & ~(uint32_t)VIRTIO_CONFIG_S_DRIVER_OK;
        vmmio_needs_reset(t, "DRIVER_OK without FEATURES_OK");
        return;
    }
    t->regs.status = st;
    if ((added & VIRTIO_CONFIG_S_DRIVER_OK) && !(st & VIRTIO_CONFIG_S_NEEDS_RESET) &&
        !(st & VIRTIO_CONFIG_S_FAILED)) {
        t->want_active = true;
        request_work(t, VMMIO_WORK_ACTIVATE);
    }
}

static struct virtq_regs *sel_queue(struct virtio_mmio *t)
{
    return t->regs.queue_sel < t->n_queues ? &t->regs.queues[t->regs.queue_sel] : NULL;
}

static uint32_t read_reg(struct virtio_mmio *t, uint64_t off)
{
    struct virtq_regs *q = sel_queue(t);
    switch (off) {
    case VIRTIO_MMIO_MAGIC_VALUE:
        return VMMIO_MAGIC;
    case VIRTIO_MMIO_VERSION:
        return VMMIO_VERSION;
    case VIRTIO_MMIO_DEVICE_ID:
        return t->device_id;
    case VIRTIO_MMIO_VENDOR_ID:
        return VIRTIO_MMIO_VENDOR;
    case VIRTIO_MMIO_DEVICE_FEATURES:
        if (t->regs.dev_features_sel > 1)
            return 0;
        return (uint32_t)(offered_features(t) >> (32 * t->regs.dev_features_sel));
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
        return q ? VIRTQ_MAX_SIZE : 0;
    case VIRTIO_MMIO_QUEUE_READY:
        return q ? q->ready : 0;
    case VIRTIO_MMIO_STATUS:
        return t->regs.status;
    case VIRTIO_MMIO_CONFIG_GENERATION:
        return t->regs.config_generation;
    default:
        return 0; /* write-only and unknown registers (no shared memory regions) */
    }
}

static void set_half(uint64_t *v, bool high, uint32_t val)
{
    if (high)
        *v = (*v & 0xffffffffull) | ((uint64_t)val << 32);
    else
        *v = (*v & ~0xffffffffull) | val;
}

static void write_queue_reg(struct virtio_mmio *t, uint64_t off, uint32_t val)
{
    struct virtq_regs *q = sel_queue(t);
    if (!q)
        return;
    if (off == VIRTIO_MMIO_QUEUE_READY) {
        if (!(val & 1))
            q->ready = false;
        else if (!(t->regs.status & VIRTIO_CONFIG_S_DRIVER_OK))
            q->ready = true; /* a queue readied after DRIVER_OK would never be mapped */
        return;
    }
    if (q->ready)
        return; /* a live queue's setup cannot change */
    switch (off) {
    case VIRTIO_MMIO_QUEUE_NUM:
        q->size = val > 0xffff ? 0xffff : (uint16_t)val; /* validated at activation */
        break;
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
        set_half(&q->desc_gpa, off == VIRTIO_MMIO_QUEUE_DESC_HIGH, val);
        break;
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
        set_half(&q->avail_gpa, off == VIRTIO_MMIO_QUEUE_AVAIL_HIGH, val);
        break;
    case VIRTIO_MMIO_QUEUE_USED_LOW:
    case VIRTIO_MMIO_QUEUE_USED_HIGH:
        set_half(&q->used_gpa, off == VIRTIO_MMIO_QUEUE_USED_HIGH, val);
        break;
    }
}

static void write_reg(struct virtio_mmio *t, uint64_t off, uint32_t val)
{
    switch (off) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        t->regs.dev_features_sel = val;
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES:
        if (t->regs.drv_features_sel > 1 ||
            (t->regs.status & (VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK)))
            break; /* features are fixed once FEATURES_OK was accepted */
        set_half(&t->regs.driver_features, t->regs.drv_features_sel == 1, val);
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        t->regs.drv_features_sel = val;
        break;
    case VIRTIO_MMIO_QUEUE_SEL:
        t->regs.queue_sel = val;
        break;
    case VIRTIO_MMIO_QUEUE_NUM:
    case VIRTIO_MMIO_QUEUE_READY:
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
    case VIRTIO_MMIO_QUEUE_USED_LOW:
    case VIRTIO_MMIO_QUEUE_USED_HIGH:
        write_queue_reg(t, off, val);
        break;
    case VIRTIO_MMIO_QUEUE_NOTIFY:
        /* Normally caught by the ioeventfd; reaching here means none matched
         * (a bad queue index, or a device without kick fds): pass a valid one on. */
        if (val < t->n_queues && t->kick_fd[val] >= 0) {
            uint64_t one = 1;
            if (write(t->kick_fd[val], &one, sizeof(one)) < 0 && errno != EAGAIN)
                log_warn("virtio %s: cannot forward queue %u kick: %s", name_of(t), val,
                         strerror(errno));
        }
        break;
    case VIRTIO_MMIO_STATUS:
        write_status(t, val);
        break;
    default:
        break; /* read-only or unknown */
    }
}

static uint32_t le32(const uint8_t *d)
{
    return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

void vmmio_bus_read(void *dev, uint64_t off, uint8_t *data, uint32_t len)
{
    struct virtio_mmio *t = dev;
    if (off >= VIRTIO_MMIO_CONFIG) {
        memset(data, 0, len);
        if (t->ops && t->ops->config_read) {
            pthread_mutex_lock(&t->lock);
            t->ops->config_read(t, off - VIRTIO_MMIO_CONFIG, data, len);
            pthread_mutex_unlock(&t->lock);
        }
        return;
    }
    if (len != 4 || (off & 3)) {
        memset(data, 0, len);
        return;
    }
    uint32_t v;
    if (off == VIRTIO_MMIO_INTERRUPT_STATUS) {
        v = atomic_load(&t->interrupt_status); /* the interrupt path takes no lock */
    } else {
        pthread_mutex_lock(&t->lock);
        v = read_reg(t, off);
        pthread_mutex_unlock(&t->lock);
    }
    data[0] = (uint8_t)v;
    data[1] = (uint8_t)(v >> 8);
    data[2] = (uint8_t)(v >> 16);
    data[3] = (uint8_t)(v >> 24);
}

void vmmio_bus_write(void *dev, uint64_t off, const uint8_t *data, uint32_t len)
{
    struct virtio_mmio *t = dev;
    if (off >= VIRTIO_MMIO_CONFIG) {
        if (t->ops && t->ops->config_write) {
            pthread_mutex_lock(&t->lock);
            t->ops->config_write(t, off - VIRTIO_MMIO_CONFIG, data, len);
            pthread_mutex_unlock(&t->lock);
        }
        return;
    }
    if (len != 4 || (off & 3))
        return;
    if (off == VIRTIO_MMIO_INTERRUPT_ACK) {
        atomic_fetch_and(&t->interrupt_status, ~le32(data)); /* no lock, as the read */
        return;
    }
    pthread_mutex_lock(&t->lock);
    write_reg(t, off, le32(data));
    pthread_mutex_unlock(&t->lock);
}

/* ---- main loop ------------------------------------------------------------ */

static void on_kick(struct virtio_mmio *t, unsigned qi)
{
    uint64_t cnt;
    /* Drain the eventfd (non-blocking: EAGAIN just means nothing pending). */
    if (read(t->kick_fd[qi], &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
        log_warn("virtio %s: queue %u kick read: %s", name_of(t), qi, strerror(errno));
    vmmio_lock(t);
    queue_kick(t, qi);
    vmmio_unlock(t);
}

static void on_kick0(struct ev_handler *h, uint32_t events)
{
    (void)events;
    on_kick(container_of(h, struct virtio_mmio, ev_kick[0]), 0);
}

static void on_kick1(struct ev_handler *h, uint32_t events)
{
    (void)events;
    on_kick(container_of(h, struct virtio_mmio, ev_kick[1]), 1);
}

static void on_work(struct ev_handler *h, uint32_t events)
{
    (void)events;
    vmmio_do_work(container_of(h, struct virtio_mmio, ev_work));
}

_Static_assert(VIRTIO_MMIO_MAX_QUEUES == 2, "one kick handler per queue");

int vmmio_attach(struct virtio_mmio *t, struct evloop *ev)
{
    static const ev_cb cbs[VIRTIO_MMIO_MAX_QUEUES] = {on_kick0, on_kick1};
    t->ev = ev;
    int rc = evloop_add(ev, &t->ev_work, t->work_fd, EPOLLIN, on_work);
    for (unsigned i = 0; rc == 0 && i < t->n_queues; i++)
        if (t->kick_fd[i] >= 0)
            rc = evloop_add(ev, &t->ev_kick[i], t->kick_fd[i], EPOLLIN, cbs[i]);
    if (rc < 0) {
        vmmio_detach(t);
        return err_set(rc, "virtio %s: cannot watch its kicks: %s", name_of(t), strerror(-rc));
    }
    return 0;
}

void vmmio_detach(struct virtio_mmio *t)
{
    if (!t->ev)
        return;
    if (t->ev_work.cb)
        evloop_del(t->ev, &t->ev_work);
    for (unsigned i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++)
        if (t->ev_kick[i].cb)
            evloop_del(t->ev, &t->ev_kick[i]);
    t->ev = NULL;
}

int vmmio_cmdline_entry(const struct virtio_mmio *t, char *buf, unsigned size)
{
    int n =
        snprintf(buf, size, "virtio_mmio.device=4K@0x%llx:%u", (unsigned long long)t->base, t->gsi);
    if (n < 0 || (unsigned)n >= size)
        return err_set(-ENOSPC, "virtio %s: command-line entry does not fit", name_of(t));
    return 0;
}

/* ---- snapshots and pauses ----------------------------------------------------- */

void vmmio_save(struct virtio_mmio *t, struct vmmio_state *s)
{
    pthread_mutex_lock(&t->lock);
    memset(s, 0, sizeof(*s));
    s->regs = t->regs;
    s->interrupt_status = atomic_load(&t->interrupt_status);
    s->want_active = t->want_active;
    s->activated = t->activated;
    for (unsigned i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++)
        virtq_save(&t->queues[i], &s->queues[i]);
    pthread_mutex_unlock(&t->lock);
}

int vmmio_restore(struct virtio_mmio *t, const struct vmmio_state *s)
{
    pthread_mutex_lock(&t->lock);
    int rc = 0;
    t->regs = s->regs;
    atomic_store(&t->interrupt_status, s->interrupt_status);
    t->want_active = s->want_active;
    t->quiesced = true;
    if (s->activated) {
        bool event_idx = vmmio_has_feature(t, VIRTIO_RING_F_EVENT_IDX);
        for (unsigned i = 0; i < t->n_queues && !rc; i++) {
            if (!t->regs.queues[i].ready)
                continue;
            if ((rc = virtq_activate(&t->queues[i], &t->regs.queues[i], t->mem, event_idx)) < 0)
                rc = err_set(rc, "virtio %s: queue %u: %s", name_of(t), i, err_msg());
            else
                virtq_restore(&t->queues[i], &s->queues[i]);
        }
        if (!rc && t->ops && t->ops->activate)
            rc = t->ops->activate(t);
        t->activated = rc == 0;
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void vmmio_quiesce(struct virtio_mmio *t, bool on)
{
    vmmio_lock(t);
    if (on != t->quiesced) {
        if (on)
            t->quiesced = true; /* the device's own paths stop on the flag */
        if (t->activated && t->ops && t->ops->quiesce)
            t->ops->quiesce(t, on);
        if (!on) {
            t->quiesced = false;
            for (unsigned i = 0; i < t->n_queues; i++) /* what the driver queued meanwhile */
                queue_kick(t, i);
        }
    }
    vmmio_unlock(t);
}
