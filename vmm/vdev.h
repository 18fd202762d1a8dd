/* vdev.h - the VM's virtio devices: built from the configuration through each
 * kind's ops table (virtio/device.h), placed in 4 KiB MMIO slots from
 * 0xd0000000 with GSIs from 5, wired to KVM (one ioeventfd per queue on
 * QueueNotify, one irqfd per device), announced on the kernel command line,
 * attached to the main loop, updated after boot (PATCH) and torn down. No
 * function here knows one kind from another.
 *
 * Order: the kinds in the registry's table (drives, then network interfaces),
 * each kind's devices in its placement order (the root drive first, so it is
 * /dev/vda).
 */
#ifndef EMBER_VDEV_H
#define EMBER_VDEV_H

#include "../virtio/device.h"
#include "base/bus.h"
#include "base/config.h"
#include "base/evloop.h"

/* 24 IOAPIC pins, GSIs 0-4 are legacy devices. */
#define VDEV_MAX (24 - 5)

struct vdevs {
    unsigned n;
    struct virtio_dev *dev[VDEV_MAX];
};

/* Build every device, register its MMIO window on `mmio` and its queue
 * ioeventfds with KVM (before the irqchip exists: cheaper). On error the
 * message names the device and field; vdev_destroy_all() releases what was
 * built. */
int vdev_create_all(struct vdevs *r, const struct vm_config *cfg, const struct guest_mem *mem,
                    int vm_fd, struct bus *mmio);
/* After KVM_CREATE_IRQCHIP: one irqfd per device. */
int vdev_wire_irqs(struct vdevs *r, int vm_fd);
/* `base` + the kinds' words (root=...) + one virtio_mmio.device= per device,
 * malloc'ed in *out. */
int vdev_cmdline(const struct vdevs *r, const struct vm_config *cfg, const char *base, char **out);
int vdev_attach(struct vdevs *r, struct evloop *ev);
/* PATCH after boot: the device of kind `section` ("drives", ...) with id
 * `id`; -ENOENT if there is none. */
int vdev_update(struct vdevs *r, const char *section, const char *id,
                const struct device_update *u);
void vdev_destroy_all(struct vdevs *r);

#endif
