/* mmio.h - the virtio-mmio transport (virtio 1.2 section 4.2.2, version 2).
 *
 * A device (blk, net) embeds a struct virtio_mmio and fills in its identity
 * and ops; the transport owns the register file, feature negotiation, the
 * status state machine, queue setup, config generation and the interrupt
 * status. vCPU threads reach it through the MMIO bus (vmmio_bus_read/write,
 * called with t->lock held by the bus); the main thread handles queue kicks
 * (one ioeventfd per queue, registered by vm.c with datamatch on the queue
 * index at QueueNotify) and calls the device's queue_notify with t->lock held.
 * Interrupts go out through irq_fd (an irqfd eventfd).
 *
 * Only VIRTIO_F_VERSION_1 drivers are accepted (a driver that does not
 * negotiate it fails FEATURES_OK). Offered by the transport for every device:
 * VERSION_1, RING_INDIRECT_DESC, RING_EVENT_IDX.
 */
#ifndef EMBER_VIRTIO_MMIO_H
#define EMBER_VIRTIO_MMIO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../vmm/evloop.h"
#include "../vmm/guest_mem.h"
#include "virtq.h"

#define VIRTIO_MMIO_SLOT 0x1000 /* each device's window */
#define VIRTIO_MMIO_MAX_QUEUES 2
#define VIRTIO_MMIO_VENDOR 0x52424d45u /* "EMBR" */

/* Register offsets. */
#define VIRTIO_MMIO_MAGIC 0x000 /* "virt" */
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_VENDOR_ID 0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_AVAIL_LOW 0x090
#define VIRTIO_MMIO_QUEUE_AVAIL_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_USED_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_USED_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

/* Interrupt status bits. */
#define VIRTIO_MMIO_INT_VRING 1
#define VIRTIO_MMIO_INT_CONFIG 2

/* Feature bits (bit numbers). */
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

struct virtio_mmio;

struct virtio_mmio_ops {
    /* Device config space (offset from 0x100), any width; out-of-range reads
     * return zeros, writes the device does not allow are ignored. */
    void (*config_read)(struct virtio_mmio *t, uint64_t off, uint8_t *data, uint32_t len);
    void (*config_write)(struct virtio_mmio *t, uint64_t off, const uint8_t *data, uint32_t len);
    /* DRIVER_OK: every ready queue has been activated. Return 0, or -errno to
     * set DEVICE_NEEDS_RESET (the device logs why). */
    int (*activate)(struct virtio_mmio *t);
    /* The driver wrote 0 to Status: drop in-flight work, forget the queues. */
    void (*reset)(struct virtio_mmio *t);
    /* Main thread, t->lock held: queue `q` was kicked (or must be re-polled). */
    void (*queue_notify)(struct virtio_mmio *t, unsigned q);
};

struct virtio_mmio {
    /* Filled by the device before vmmio_init(). */
    uint32_t device_id;       /* 1 net, 2 blk */
    uint64_t device_features; /* device-specific bits; the transport adds its own */
    unsigned n_queues;        /* <= VIRTIO_MMIO_MAX_QUEUES */
    const struct virtio_mmio_ops *ops;
    const char *name; /* for log lines: the drive_id / iface_id */

    /* Placement and wiring, set by vm.c. */
    uint64_t base; /* guest-physical base of the 4 KiB window */
    unsigned gsi;
    int irq_fd;                          /* eventfd behind KVM_IRQFD */
    int kick_fd[VIRTIO_MMIO_MAX_QUEUES]; /* ioeventfds, datamatch = queue index */
    const struct guest_mem *mem;

    /* Register state (guest visible; plain data for snapshots). */
    pthread_mutex_t lock;
    uint32_t status;
    uint32_t dev_features_sel, drv_features_sel;
    uint64_t driver_features; /* what the driver acked */
    uint32_t queue_sel;
    atomic_uint interrupt_status;
    uint32_t config_generation;
    bool activated; /* DRIVER_OK accepted */
    struct virtq queues[VIRTIO_MMIO_MAX_QUEUES];

    struct ev_handler ev_kick[VIRTIO_MMIO_MAX_QUEUES];
};

/* Initialise the register state and lock (irq_fd/kick_fd set to -1). */
int vmmio_init(struct virtio_mmio *t);
void vmmio_destroy(struct virtio_mmio *t);

/* Bus callbacks (struct bus_range .read/.write with .dev = t, .lock = &t->lock).
 * A QueueNotify write that reaches the bus (no ioeventfd matched) is forwarded
 * to kick_fd[q], or with kick_fd[q] == -1 (unit tests) handled in place. */
void vmmio_bus_read(void *t, uint64_t off, uint8_t *data, uint32_t len);
void vmmio_bus_write(void *t, uint64_t off, const uint8_t *data, uint32_t len);

/* Put the kick fds on the main loop; each readable kick drains its eventfd,
 * takes t->lock and calls ops->queue_notify if the device is activated. */
int vmmio_attach(struct virtio_mmio *t, struct evloop *ev);

/* Device side, t->lock held. Signal used buffers on queue q to the driver if
 * it wants an interrupt (EVENT_IDX aware). */
void vmmio_signal_used(struct virtio_mmio *t, unsigned q);
/* Config space changed (drive swapped): bump the generation and interrupt. */
void vmmio_config_changed(struct virtio_mmio *t);
/* Something the guest did cannot be recovered from: set NEEDS_RESET, interrupt
 * with the config bit, log one line naming the device and why. */
void vmmio_needs_reset(struct virtio_mmio *t, const char *why);

/* True if the driver negotiated feature bit `bit`. */
bool vmmio_has_feature(const struct virtio_mmio *t, unsigned bit);

/* The kernel command-line entry for this device: "virtio_mmio.device=4K@0x...:GSI".
 * Returns 0, or -ENOSPC if it does not fit in `size` bytes. */
int vmmio_cmdline_entry(const struct virtio_mmio *t, char *buf, unsigned size);

#endif
