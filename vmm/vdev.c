/* vdev.c - the VM's virtio device registry (see vdev.h). */
#define _GNU_SOURCE
#include "vdev.h"

#include "../boot/layout.h"
#include "../virtio/blk.h"
#include "../virtio/net.h"
#include "base/err.h"
#include "irqfd.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Every device kind the VM has, in placement order. */
static const struct virtio_kind *const kinds[] = {&virtio_blk_kind, &virtio_net_kind};
#define N_KINDS (sizeof(kinds) / sizeof(kinds[0]))

/* Slot r->n: MMIO window, GSI, one ioeventfd per queue. */
static int place(struct vdevs *r, struct virtio_dev *d, int vm_fd, struct bus *mmio)
{
    struct virtio_mmio *t = &d->t;
    unsigned i = r->n;
    t->base = LAYOUT_VIRTIO_MMIO_BASE + (uint64_t)i * LAYOUT_VIRTIO_MMIO_SLOT;
    t->gsi = LAYOUT_VIRTIO_GSI_BASE + i;
    r->dev[r->n++] = d; /* from here on vdev_destroy_all() releases it */
    struct bus_range range = {t->base, VIRTIO_MMIO_SLOT, t, NULL, vmmio_bus_read, vmmio_bus_write};
    int rc = bus_register(mmio, &range);
    if (rc)
        return err_set(rc, "%s %s: cannot register its MMIO window", d->kind->section, d->id);
    for (unsigned q = 0; q < t->n_queues; q++) {
        int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0)
            return err_set(-errno, "%s %s: eventfd: %s", d->kind->section, d->id, strerror(errno));
        t->kick_fd[q] = fd;
        struct kvm_ioeventfd io = {
            .datamatch = q,
            .addr = t->base + VIRTIO_MMIO_QUEUE_NOTIFY,
            .len = 4,
            .fd = fd,
            .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
        };
        if (ioctl(vm_fd, KVM_IOEVENTFD, &io) < 0) {
            int e = errno;
            return err_set(-e, "%s %s: KVM_IOEVENTFD for queue %u: %s", d->kind->section, d->id, q,
                           strerror(e));
        }
    }
    return 0;
}

int vdev_create_all(struct vdevs *r, const struct vm_config *cfg, const struct guest_mem *mem,
                    int vm_fd, struct bus *mmio)
{
    int total = 0;
    for (size_t k = 0; k < N_KINDS; k++)
        total += kinds[k]->count(cfg);
    if (total > VDEV_MAX)
        return err_set(-EINVAL,
                       "drives + network-interfaces: at most %d virtio devices per VM, got %d",
                       VDEV_MAX, total);
    for (size_t k = 0; k < N_KINDS; k++)
        for (int i = 0; i < kinds[k]->count(cfg); i++) {
            struct virtio_dev *d;
            int rc = kinds[k]->create(cfg, i, mem, &d);
            if (rc == 0)
                rc = place(r, d, vm_fd, mmio);
            if (rc)
                return rc;
        }
    return 0;
}

int vdev_wire_irqs(struct vdevs *r, int vm_fd)
{
    for (unsigned i = 0; i < r->n; i++) {
        int fd = irqfd_open(vm_fd, r->dev[i]->t.gsi);
        if (fd < 0)
            return fd;
        r->dev[i]->t.irq_fd = fd;
    }
    return 0;
}

int vdev_cmdline(const struct vdevs *r, const struct vm_config *cfg, const char *base, char **out)
{
    size_t cap = strlen(base) + 256 + CONFIG_ID_MAX + (size_t)r->n * 64;
    char *s = malloc(cap);
    if (!s)
        return err_set(-ENOMEM, "kernel command line: out of memory");
    snprintf(s, cap, "%s", base);
    for (size_t k = 0; k < N_KINDS; k++)
        if (kinds[k]->cmdline && kinds[k]->cmdline(cfg, s, cap) < 0) {
            free(s);
            return err_set(-E2BIG, "kernel command line: %s entries do not fit", kinds[k]->section);
        }
    for (unsigned i = 0; i < r->n; i++) {
        char e[96];
        size_t n = strlen(s);
        if (vmmio_cmdline_entry(&r->dev[i]->t, e, sizeof(e)) < 0 ||
            (size_t)snprintf(s + n, cap - n, " %s", e) >= cap - n) {
            free(s);
            return err_set(-E2BIG,
                           "kernel command line: the virtio_mmio.device entries do not fit");
        }
    }
    *out = s;
    return 0;
}

int vdev_attach(struct vdevs *r, struct evloop *ev)
{
    for (unsigned i = 0; i < r->n; i++) {
        struct virtio_dev *d = r->dev[i];
        int rc = vmmio_attach(&d->t, ev);
        if (!rc)
            rc = d->kind->attach(d, ev);
        if (rc)
            return err_set(rc, "%s %s: cannot attach to the event loop: %s", d->kind->section,
                           d->id, strerror(-rc));
    }
    return 0;
}

int vdev_update(struct vdevs *r, const char *section, const char *id, const struct device_update *u)
{
    for (unsigned i = 0; i < r->n; i++) {
        struct virtio_dev *d = r->dev[i];
        if (strcmp(d->kind->section, section) != 0 || strcmp(d->id, id) != 0)
            continue;
        vmmio_lock(&d->t);
        int rc = d->kind->update(d, u);
        vmmio_unlock(&d->t);
        return rc;
    }
    return err_set(-ENOENT, "%s/%s: no such device", section, id);
}

void vdev_destroy_all(struct vdevs *r)
{
    for (unsigned i = 0; i < r->n; i++) {
        struct virtio_dev *d = r->dev[i];
        int kick[VIRTIO_MMIO_MAX_QUEUES], irq = d->t.irq_fd;
        for (unsigned q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
            kick[q] = d->t.kick_fd[q];
        d->kind->destroy(d); /* waits for in-flight I/O into guest RAM */
        for (unsigned q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
            if (kick[q] >= 0)
                close(kick[q]);
        if (irq >= 0)
            close(irq);
    }
    r->n = 0;
}
