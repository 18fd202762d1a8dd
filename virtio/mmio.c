/* mmio.c - the virtio-mmio transport (virtio 1.2 section 4.2.2, version 2):
 * register file, feature negotiation, status state machine, queue setup and
 * activation, config generation, interrupt status and the kick handlers on
 * the main loop (see mmio.h). */
#include "mmio.h"

#include "../vmm/err.h"
#include "../vmm/log.h"
#include "../vmm/metrics.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define VIRTIO_MMIO_MAGIC_VALUE 0x74726976u /* "virt" */
#define VIRTIO_MMIO_VERSION_2 2u

static uint64_t offered_features(const struct virtio_mmio *t)
{
    return t->device_features | (1ull << VIRTIO_F_VERSION_1) |
           (1ull << VIRTIO_RING_F_INDIRECT_DESC) | (1ull << VIRTIO_RING_F_EVENT_IDX);
}

int vmmio_init(struct virtio_mmio *t)
{
    t->status = 0;
    t->dev_features_sel = t->drv_features_sel = 0;
    t->driver_features = 0;
    t->queue_sel = 0;
    atomic_store(&t->interrupt_status, 0);
    t->config_generation = 0;
    t->activated = false;
    for (unsigned i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++) {
        virtq_reset(&t->queues[i]);
        t->kick_fd[i] = -1;
        t->ev_kick[i].cb = NULL;
        t->ev_kick[i].fd = -1;
    }
    t->irq_fd = -1;
    if (t->n_queues > VIRTIO_MMIO_MAX_QUEUES)
        return err_set(-EINVAL, "virtio device %s: %u queues (at most %u)", t->name ? t->name : "?",
                       t->n_queues, VIRTIO_MMIO_MAX_QUEUES);
    int rc = pthread_mutex_init(&t->lock, NULL);
    if (rc)
        return err_set(-rc, "virtio device %s: cannot create its lock", t->name ? t->name : "?");
    return 0;
}

void vmmio_destroy(struct virtio_mmio *t)
{
    pthread_mutex_destroy(&t->lock);
}

bool vmmio_has_feature(const struct virtio_mmio *t, unsigned bit)
{
    if (bit >= 64)
        return false;
    return ((t->driver_features & offered_features(t)) >> bit) & 1;
}

static void raise_irq(struct virtio_mmio *t, unsigned bits)
{
    atomic_fetch_or(&t->interrupt_status, bits);
    METRIC_INC(virtio_interrupts);
    if (t->irq_fd >= 0) {
        uint64_t one = 1;
        /* EAGAIN (counter saturated) still leaves the line asserted. */
        if (write(t->irq_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            log_warn("virtio %s: cannot signal interrupt: %s", t->name ? t->name : "?",
                     strerror(errno));
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
    t->config_generation++;
    raise_irq(t, VIRTIO_MMIO_INT_CONFIG);
}

void vmmio_needs_reset(struct virtio_mmio *t, const char *why)
{
    if (t->status & VIRTIO_STATUS_NEEDS_RESET)
        return; /* already reported; the driver has to reset the device */
    t->status |= VIRTIO_STATUS_NEEDS_RESET;
    METRIC_INC(virtio_needs_reset);
    log_error("virtio %s: device needs reset: %s", t->name ? t->name : "?", why);
    raise_irq(t, VIRTIO_MMIO_INT_CONFIG);
}

static void device_reset(struct virtio_mmio *t)
{
    if (t->ops && t->ops->reset)
        t->ops->reset(t);
    for (unsigned i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++)
        virtq_reset(&t->queues[i]);
    t->status = 0;
    t->dev_features_sel = t->drv_features_sel = 0;
    t->driver_features = 0;
    t->queue_sel = 0;
    atomic_store(&t->interrupt_status, 0);
    t->activated = false;
}

static void activate(struct virtio_mmio *t)
{
    bool event_idx = vmmio_has_feature(t, VIRTIO_RING_F_EVENT_IDX);
    char why[256];
    if (!t->mem) {
        vmmio_needs_reset(t, "no guest memory attached");
        return;
    }
    for (unsigned i = 0; i < t->n_queues; i++) {
        struct virtq *q = &t->queues[i];
        if (!q->ready)
            continue;
        if (virtq_activate(q, t->mem, event_idx) < 0) {
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
}

static void write_status(struct virtio_mmio *t, uint32_t val)
{
    if (val == 0) {
        device_reset(t);
        return;
    }
    uint32_t old = t->status;
    /* The driver only ever adds bits until it resets; NEEDS_RESET is ours. */
    uint32_t st = old | (val & ~(uint32_t)VIRTIO_STATUS_NEEDS_RESET);
    uint32_t added = st & ~old;

    if (added & VIRTIO_STATUS_FEATURES_OK) {
        uint64_t acked = t->driver_features;
        if (!(acked & (1ull << VIRTIO_F_VERSION_1)) || (acked & ~offered_features(t)) ||
            (old & VIRTIO_STATUS_DRIVER_OK)) {
            st &= ~(uint32_t)VIRTIO_STATUS_FEATURES_OK;
            added &= ~(uint32_t)VIRTIO_STATUS_FEATURES_OK;
            log_debug("virtio %s: FEATURES_OK refused: driver features 0x%llx need VERSION_1 "
                      "and a subset of 0x%llx",
                      t->name ? t->name : "?", (unsigned long long)acked,
                      (unsigned long long)offered_features(t));
        }
    }
    if ((added & VIRTIO_STATUS_DRIVER_OK) && !(st & VIRTIO_STATUS_FEATURES_OK)) {
        t->status = st & ~(uint32_t)VIRTIO_STATUS_DRIVER_OK;
        vmmio_needs_reset(t, "DRIVER_OK without FEATURES_OK");
        return;
    }
    t->status = st;
    if ((added & VIRTIO_STATUS_DRIVER_OK) && !(st & VIRTIO_STATUS_NEEDS_RESET) &&
        !(st & VIRTIO_STATUS_FAILED))
        activate(t);
}

static struct virtq *sel_queue(struct virtio_mmio *t)
{
    return t->queue_sel < t->n_queues ? &t->queues[t->queue_sel] : NULL;
}

static uint32_t read_reg(struct virtio_mmio *t, uint64_t off)
{
    struct virtq *q = sel_queue(t);
    switch (off) {
    case VIRTIO_MMIO_MAGIC:
        return VIRTIO_MMIO_MAGIC_VALUE;
    case VIRTIO_MMIO_VERSION:
        return VIRTIO_MMIO_VERSION_2;
    case VIRTIO_MMIO_DEVICE_ID:
        return t->device_id;
    case VIRTIO_MMIO_VENDOR_ID:
        return VIRTIO_MMIO_VENDOR;
    case VIRTIO_MMIO_DEVICE_FEATURES:
        if (t->dev_features_sel > 1)
            return 0;
        return (uint32_t)(offered_features(t) >> (32 * t->dev_features_sel));
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
        return q ? VIRTQ_MAX_SIZE : 0;
    case VIRTIO_MMIO_QUEUE_READY:
        return q ? q->ready : 0;
    case VIRTIO_MMIO_INTERRUPT_STATUS:
        return atomic_load(&t->interrupt_status);
    case VIRTIO_MMIO_STATUS:
        return t->status;
    case VIRTIO_MMIO_CONFIG_GENERATION:
        return t->config_generation;
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

static void queue_kick(struct virtio_mmio *t, unsigned qi)
{
    struct virtq *q = &t->queues[qi];
    if (t->activated && q->ready && !q->broken && !(t->status & VIRTIO_STATUS_NEEDS_RESET) &&
        t->ops && t->ops->queue_notify)
        t->ops->queue_notify(t, qi);
}

static void write_queue_reg(struct virtio_mmio *t, uint64_t off, uint32_t val)
{
    struct virtq *q = sel_queue(t);
    if (!q)
        return;
    if (off == VIRTIO_MMIO_QUEUE_READY) {
        if (!(val & 1))
            q->ready = false;
        else if (!(t->status & VIRTIO_STATUS_DRIVER_OK))
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
        t->dev_features_sel = val;
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES:
        if (t->drv_features_sel > 1 ||
            (t->status & (VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK)))
            break; /* features are fixed once FEATURES_OK was accepted */
        set_half(&t->driver_features, t->drv_features_sel == 1, val);
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        t->drv_features_sel = val;
        break;
    case VIRTIO_MMIO_QUEUE_SEL:
        t->queue_sel = val;
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
        /* Normally caught by the ioeventfd; reaching here means no ioeventfd
         * matched. Hand the kick to the main loop if there is one. */
        if (val < t->n_queues) {
            if (t->kick_fd[val] >= 0) {
                uint64_t one = 1;
                if (write(t->kick_fd[val], &one, sizeof(one)) < 0 && errno != EAGAIN)
                    log_warn("virtio %s: cannot forward queue %u kick: %s", t->name ? t->name : "?",
                             val, strerror(errno));
            } else {
                queue_kick(t, val);
            }
        }
        break;
    case VIRTIO_MMIO_INTERRUPT_ACK:
        atomic_fetch_and(&t->interrupt_status, ~val);
        break;
    case VIRTIO_MMIO_STATUS:
        write_status(t, val);
        break;
    default:
        break; /* read-only or unknown */
    }
}

void vmmio_bus_read(void *dev, uint64_t off, uint8_t *data, uint32_t len)
{
    struct virtio_mmio *t = dev;
    if (off >= VIRTIO_MMIO_CONFIG) {
        memset(data, 0, len);
        if (t->ops && t->ops->config_read)
            t->ops->config_read(t, off - VIRTIO_MMIO_CONFIG, data, len);
        return;
    }
    if (len != 4 || (off & 3)) {
        memset(data, 0, len);
        return;
    }
    uint32_t v = read_reg(t, off);
    data[0] = (uint8_t)v;
    data[1] = (uint8_t)(v >> 8);
    data[2] = (uint8_t)(v >> 16);
    data[3] = (uint8_t)(v >> 24);
}

void vmmio_bus_write(void *dev, uint64_t off, const uint8_t *data, uint32_t len)
{
    struct virtio_mmio *t = dev;
    if (off >= VIRTIO_MMIO_CONFIG) {
        if (t->ops && t->ops->config_write)
            t->ops->config_write(t, off - VIRTIO_MMIO_CONFIG, data, len);
        return;
    }
    if (len != 4 || (off & 3))
        return;
    uint32_t v = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                 (uint32_t)data[3] << 24;
    write_reg(t, off, v);
}

static void kick(struct virtio_mmio *t, unsigned qi)
{
    uint64_t cnt;
    /* Drain the eventfd (non-blocking: EAGAIN just means nothing pending). */
    if (read(t->kick_fd[qi], &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
        log_warn("virtio %s: queue %u kick read: %s", t->name ? t->name : "?", qi, strerror(errno));
    pthread_mutex_lock(&t->lock);
    queue_kick(t, qi);
    pthread_mutex_unlock(&t->lock);
}

static void kick0(struct ev_handler *h, uint32_t events)
{
    (void)events;
    kick((struct virtio_mmio *)((char *)h - offsetof(struct virtio_mmio, ev_kick[0])), 0);
}

static void kick1(struct ev_handler *h, uint32_t events)
{
    (void)events;
    kick((struct virtio_mmio *)((char *)h - offsetof(struct virtio_mmio, ev_kick[1])), 1);
}

_Static_assert(VIRTIO_MMIO_MAX_QUEUES == 2, "one kick handler per queue");

int vmmio_attach(struct virtio_mmio *t, struct evloop *ev)
{
    static const ev_cb cbs[VIRTIO_MMIO_MAX_QUEUES] = {kick0, kick1};
    for (unsigned i = 0; i < t->n_queues; i++) {
        if (t->kick_fd[i] < 0)
            continue;
        int rc = evloop_add(ev, &t->ev_kick[i], t->kick_fd[i], EPOLLIN, cbs[i]);
        if (rc < 0) {
            while (i-- > 0)
                if (t->kick_fd[i] >= 0)
                    evloop_del(ev, &t->ev_kick[i]);
            return err_set(rc, "virtio %s: cannot watch queue kicks: %s", t->name ? t->name : "?",
                           strerror(-rc));
        }
    }
    return 0;
}

int vmmio_cmdline_entry(const struct virtio_mmio *t, char *buf, unsigned size)
{
    int n =
        snprintf(buf, size, "virtio_mmio.device=4K@0x%llx:%u", (unsigned long long)t->base, t->gsi);
    if (n < 0 || (unsigned)n >= size)
        return err_set(-ENOSPC, "virtio %s: command-line entry does not fit",
                       t->name ? t->name : "?");
    return 0;
}
