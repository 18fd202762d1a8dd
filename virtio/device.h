/* device.h - what a virtio device kind offers the VM: one ops table per kind.
 *
 * Each device file defines one `const struct virtio_kind` (virtio_blk_kind in
 * blk.c, virtio_net_kind in net.c); the VM's device registry (vmm/vdev.c)
 * lists the kinds and does the same for each, with no branch per kind. Every
 * device starts with a struct virtio_dev: its transport, its kind and its id;
 * the rest of the device is its own. Options of one device (its poll budget,
 * its engine) are in its configuration (struct drive_config, net_config).
 */
#ifndef EMBER_VIRTIO_DEVICE_H
#define EMBER_VIRTIO_DEVICE_H

#include <stddef.h>

#include "../vmm/base/config.h"
#include "../vmm/base/evloop.h"
#include "../vmm/base/guest_mem.h"
#include "mmio.h"

struct virtio_kind;

struct virtio_dev {
    struct virtio_mmio t; /* first: the transport */
    const struct virtio_kind *kind;
    char id[CONFIG_ID_MAX + 1]; /* drive_id / iface_id */
};

/* A change to a live device (PATCH after boot); NULL: keep. Drives use
 * path_on_host and rate_limiter, interfaces rx and tx. */
struct device_update {
    const char *path_on_host;
    const struct rate_limiter *rate_limiter;
    const struct rate_limiter *rx, *tx;
};

struct virtio_kind {
    const char *section; /* its configuration section: "drives", "network-interfaces" */
    /* Devices of this kind in cfg, and building the i-th in placement order
     * (drives: the root drive first, then configuration order): open what it
     * needs (file, tap), nothing on a loop yet. Errors name the device. */
    int (*count)(const struct vm_config *cfg);
    int (*create)(const struct vm_config *cfg, int i, const struct guest_mem *mem,
                  struct virtio_dev **out);
    /* Kernel command-line words the kind adds for cfg ("root=/dev/vda rw"), or
     * nothing; 0 or -E2BIG. */
    int (*cmdline)(const struct vm_config *cfg, char *buf, size_t cap);
    /* Put the device's own fds on the main loop (the transport's are put there
     * by vmmio_attach). */
    int (*attach)(struct virtio_dev *d, struct evloop *ev);
    /* PATCH after boot (main thread, t->lock held by vmmio_lock()). */
    int (*update)(struct virtio_dev *d, const struct device_update *u);
    /* Stop, wait for what the kernel still does in guest memory, close. */
    void (*destroy)(struct virtio_dev *d);
    /* Snapshots: the device's own state beyond its transport (its rate
     * limiters), at most VIRTIO_DEV_STATE_MAX bytes; the device is quiesced.
     * restore: into a device just created from the same configuration;
     * -EINVAL if the bytes are not this kind's. */
    size_t (*save)(struct virtio_dev *d, void *buf);
    int (*restore)(struct virtio_dev *d, const void *buf, size_t len);
};

#define VIRTIO_DEV_STATE_MAX 256

#endif
