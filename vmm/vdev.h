/* vdev.h - the VM's virtio devices: built from the configuration, placed in
 * 4 KiB MMIO slots from 0xd0000000 with GSIs from 5, wired to KVM (one
 * ioeventfd per queue on QueueNotify, one irqfd per device), announced on the
 * kernel command line, attached to the main loop, updated after boot (PATCH)
 * and torn down.
 *
 * Order: the root drive first (so it is /dev/vda), then the other drives in
 * configuration order, then the network interfaces in configuration order.
 */
#ifndef EMBER_VDEV_H
#define EMBER_VDEV_H

#include <stdbool.h>

#include "config.h"
#include "evloop.h"

struct vm;
struct blk_dev;
struct net_dev;
struct virtio_mmio;

/* 24 IOAPIC pins, GSIs 0-4 are legacy devices. */
#define VDEV_MAX (24 - 5)

struct vdev {
    bool is_net;
    char id[CONFIG_ID_MAX + 1]; /* drive_id / iface_id */
    struct blk_dev *blk;
    struct net_dev *net;
    struct virtio_mmio *t;
};

/* Open every drive and tap and build the devices, register their MMIO
 * windows and queue ioeventfds (before the irqchip exists: cheaper). On error
 * nothing is left half-created (the caller's vm_destroy releases the rest)
 * and the message names the device and field. */
int vdev_create_all(struct vm *vm, const struct vm_config *cfg);
/* After KVM_CREATE_IRQCHIP: one irqfd per device. */
int vdev_wire_irqs(struct vm *vm);
/* `base` + root= (for a root drive) + one virtio_mmio.device= per device.
 * The result is malloc'ed in *out. */
int vdev_cmdline(const struct vm *vm, const struct vm_config *cfg, const char *base, char **out);
int vdev_attach(struct vm *vm, struct evloop *ev);
void vdev_destroy_all(struct vm *vm);

/* PATCH after boot. path / rate limiters NULL: keep. -ENOENT: no such id. */
int vdev_update_drive(struct vm *vm, const char *id, const char *path,
                      const struct rate_limiter *rl);
int vdev_update_net(struct vm *vm, const char *id, const struct rate_limiter *rx,
                    const struct rate_limiter *tx);

#endif
