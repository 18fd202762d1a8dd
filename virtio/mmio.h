/* mmio.h - the virtio-mmio transport (virtio 1.2 section 4.2.2, version 2).
 *
 * A device (blk, net) embeds a struct virtio_mmio (through struct virtio_dev,
 * device.h) and fills in its identity and ops; the transport owns the
 * register file, feature negotiation, the status state machine, queue setup,
 * config generation and the interrupt status.
 *
 * Threads:
 *  - vCPU threads reach the registers through the MMIO bus (vmmio_bus_read/
 *    write). They take t->lock for everything but INTERRUPT_STATUS and
 *    INTERRUPT_ACK, which are one atomic each and take no lock. A Status
 *    write that activates (DRIVER_OK) or resets (0) the device is only
 *    recorded: the register file changes at once, and the device's own work
 *    (mapping the rings, epoll and io_uring) is asked of the main loop through
 *    the transport's work eventfd.
 *  - The main thread does everything else, with t->lock held: the requested
 *    work (vmmio_do_work), queue kicks (one ioeventfd per queue, datamatch on
 *    the queue index at QueueNotify), and the device's own events. Every
 *    device entry point takes the lock with vmmio_lock(), which first does any
 *    work still pending, so a device never runs on queues the driver has
 *    already reset or not yet seen activated.
 * Interrupts go out through irq_fd (an irqfd eventfd).
 *
 * Only VIRTIO_F_VERSION_1 drivers are accepted (a driver that does not
 * negotiate it fails FEATURES_OK). Offered by the transport for every device:
 * VERSION_1, RING_INDIRECT_DESC, RING_EVENT_IDX. Register offsets, status and
 * interrupt bits come from <linux/virtio_mmio.h> and <linux/virtio_config.h>.
 */
#ifndef EMBER_VIRTIO_MMIO_H
#define EMBER_VIRTIO_MMIO_H

#include <linux/virtio_config.h> /* VIRTIO_CONFIG_S_*, VIRTIO_F_VERSION_1 */
#include <linux/virtio_mmio.h>   /* VIRTIO_MMIO_* register offsets, VIRTIO_MMIO_INT_* */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../vmm/base/evloop.h"
#include "../vmm/base/guest_mem.h"
#include "virtq.h"

#define VIRTIO_MMIO_SLOT 0x1000 /* each device's window */
#define VIRTIO_MMIO_MAX_QUEUES 2
#define VIRTIO_MMIO_VENDOR 0x52424d45u /* "EMBR" */

struct virtio_mmio;

struct virtio_mmio_ops {
    /* Device config space (offset from 0x100), any width, t->lock held (vCPU
     * thread); out-of-range reads return zeros, writes the device does not
     * allow are ignored. */
    void (*config_read)(struct virtio_mmio *t, uint64_t off, uint8_t *data, uint32_t len);
    void (*config_write)(struct virtio_mmio *t, uint64_t off, const uint8_t *data, uint32_t len);
    /* Main thread, t->lock held. activate: every ready queue is mapped
     * (t->queues); return 0, or -errno to set DEVICE_NEEDS_RESET (the device
     * logs why). reset: the driver reset the device; drop in-flight work (no
     * buffer of the old queues may be written after it returns). */
    int (*activate)(struct virtio_mmio *t);
    void (*reset)(struct virtio_mmio *t);
    /* Main thread, t->lock held: queue `q` was kicked (or must be looked at). */
    void (*queue_notify)(struct virtio_mmio *t, unsigned q);
    /* Main thread, t->lock held. on: the VM is pausing; finish what is in
     * flight (completions reach the guest) and hand back the chains held
     * (virtq_unpop), then touch neither guest memory nor the rings until
     * off. off: go on (the transport then looks at every queue). */
    void (*quiesce)(struct virtio_mmio *t, bool on);
};

/* What the driver wrote (guest-visible registers; plain data). */
struct vmmio_regs {
    uint32_t status;
    uint32_t dev_features_sel, drv_features_sel;
    uint64_t driver_features; /* what the driver acked */
    uint32_t queue_sel;
    uint32_t config_generation;
    struct virtq_regs queues[VIRTIO_MMIO_MAX_QUEUES];
};

/* Work a register write asked of the main loop (struct virtio_mmio.pending). */
#define VMMIO_WORK_RESET 1u
#define VMMIO_WORK_ACTIVATE 2u

struct virtio_mmio {
    /* Filled by the device before vmmio_init(). */
    uint32_t device_id;       /* VIRTIO_ID_NET, VIRTIO_ID_BLOCK */
    uint64_t device_features; /* device-specific bits; the transport adds its own */
    unsigned n_queues;        /* <= VIRTIO_MMIO_MAX_QUEUES */
    const struct virtio_mmio_ops *ops;
    const char *name; /* for log lines: the drive_id / iface_id */
    const struct guest_mem *mem;

    /* Placement and wiring, set by the VM's device registry. */
    uint64_t base; /* guest-physical base of the 4 KiB window */
    unsigned gsi;
    int irq_fd;                          /* eventfd behind KVM_IRQFD */
    int kick_fd[VIRTIO_MMIO_MAX_QUEUES]; /* ioeventfds, datamatch = queue index */

    pthread_mutex_t lock;
    struct vmmio_regs regs;       /* t->lock */
    bool want_active;             /* t->lock: DRIVER_OK written and not reset since */
    atomic_uint pending;          /* VMMIO_WORK_* for the main loop */
    atomic_uint interrupt_status; /* no lock: the vCPU reads and acks, the main thread sets */
    int work_fd;                  /* eventfd: the main loop runs vmmio_do_work() */

    /* Main thread only (t->lock). */
    bool activated;                              /* the device is live on t->queues */
    bool quiesced;                               /* vmmio_quiesce(t, true): no device work */
    struct virtq queues[VIRTIO_MMIO_MAX_QUEUES]; /* mapped at activation */
    struct ev_handler ev_kick[VIRTIO_MMIO_MAX_QUEUES], ev_work;
    struct evloop *ev;
};

/* Initialise the register state, the lock and the work eventfd (irq_fd and
 * kick_fd[] set to -1). 0 or -errno naming the device. */
int vmmio_init(struct virtio_mmio *t);
void vmmio_destroy(struct virtio_mmio *t);

/* Bus callbacks (struct bus_range .read/.write with .dev = t, .lock = NULL:
 * they lock for themselves). A QueueNotify write that reaches the bus (no
 * ioeventfd matched) is forwarded to kick_fd[q]. */
void vmmio_bus_read(void *t, uint64_t off, uint8_t *data, uint32_t len);
void vmmio_bus_write(void *t, uint64_t off, const uint8_t *data, uint32_t len);

/* Put the work and kick fds on the main loop; a readable kick drains its
 * eventfd and calls ops->queue_notify (vmmio_lock() held) if the device is
 * activated. vmmio_detach() takes them off again. */
int vmmio_attach(struct virtio_mmio *t, struct evloop *ev);
void vmmio_detach(struct virtio_mmio *t);

/* Take t->lock and do the work register writes asked for (reset, then
 * activation). Every device entry point on the main thread locks this way. */
void vmmio_lock(struct virtio_mmio *t);
void vmmio_unlock(struct virtio_mmio *t);

/* The transport as a snapshot keeps it: the registers, the interrupt status,
 * and the device-side indices of each live queue (plain data). */
struct vmmio_state {
    struct vmmio_regs regs;
    uint32_t interrupt_status;
    uint8_t want_active, activated;
    struct virtq_state queues[VIRTIO_MMIO_MAX_QUEUES];
};

/* Main thread, device quiesced (vmmio_quiesce): the state to save. */
void vmmio_save(struct virtio_mmio *t, struct vmmio_state *s);
/* Main thread, into a transport just built (before it is attached): the
 * registers back, and if the device was live its queues mapped again with
 * their indices and ops->activate called. It stays quiesced until
 * vmmio_quiesce(t, false). 0, or -errno naming the queue. */
int vmmio_restore(struct virtio_mmio *t, const struct vmmio_state *s);
/* Main thread: stop (on) or restart (off) the device's work, for a pause.
 * Takes the lock; any work the registers asked for is done first. */
void vmmio_quiesce(struct virtio_mmio *t, bool on);

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
