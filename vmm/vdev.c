/* vdev.c - building and wiring the VM's virtio devices (see vdev.h). */
#define _GNU_SOURCE
#include "vdev.h"

#include "../boot/layout.h"
#include "../virtio/blk.h"
#include "../virtio/mmio.h"
#include "../virtio/net.h"
#include "err.h"
#include "log.h"
#include "vm.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int place(struct vm *vm, struct vdev *d)
{
    struct virtio_mmio *t = d->t;
    unsigned i = vm->n_vdevs;
    t->base = LAYOUT_VIRTIO_MMIO_BASE + (uint64_t)i * LAYOUT_VIRTIO_MMIO_SLOT;
    t->gsi = LAYOUT_VIRTIO_GSI_BASE + i;
    struct bus_range r = {t->base, VIRTIO_MMIO_SLOT, t, &t->lock, vmmio_bus_read, vmmio_bus_write};
    int rc = bus_register(&vm->mmio, &r);
    if (rc)
        return err_set(rc, "%s %s: cannot register its MMIO window",
                       d->is_net ? "network-interfaces" : "drives", d->id);
    for (unsigned q = 0; q < t->n_queues; q++) {
        int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0)
            return err_set(-errno, "%s: eventfd: %s", d->id, strerror(errno));
        t->kick_fd[q] = fd;
        struct kvm_ioeventfd io = {
            .datamatch = q,
            .addr = t->base + VIRTIO_MMIO_QUEUE_NOTIFY,
            .len = 4,
            .fd = fd,
            .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
        };
        if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0) {
            int e = errno;
            return err_set(-e, "%s: KVM_IOEVENTFD for queue %u: %s", d->id, q, strerror(e));
        }
    }
    vm->n_vdevs++;
    return 0;
}

static int add_drive(struct vm *vm, const struct drive_config *dc)
{
    if (vm->n_vdevs >= VDEV_MAX)
        return err_set(-ENOSPC, "drives %s: at most %d virtio devices per VM", dc->drive_id,
                       VDEV_MAX);
    struct vdev *d = &vm->vdevs[vm->n_vdevs];
    memset(d, 0, sizeof(*d));
    int rc = blk_create(&d->blk, dc, &vm->mem);
    if (rc)
        return rc;
    snprintf(d->id, sizeof(d->id), "%s", dc->drive_id);
    d->t = blk_transport(d->blk);
    if ((rc = place(vm, d))) {
        blk_destroy(d->blk);
        memset(d, 0, sizeof(*d));
    }
    return rc;
}

static int add_net(struct vm *vm, const struct net_config *nc)
{
    if (vm->n_vdevs >= VDEV_MAX)
        return err_set(-ENOSPC, "network-interfaces %s: at most %d virtio devices per VM",
                       nc->iface_id, VDEV_MAX);
    struct vdev *d = &vm->vdevs[vm->n_vdevs];
    memset(d, 0, sizeof(*d));
    int rc = net_create(&d->net, nc, &vm->mem);
    if (rc)
        return rc;
    d->is_net = true;
    snprintf(d->id, sizeof(d->id), "%s", nc->iface_id);
    d->t = net_transport(d->net);
    if ((rc = place(vm, d))) {
        net_destroy(d->net);
        memset(d, 0, sizeof(*d));
    }
    return rc;
}

int vdev_create_all(struct vm *vm, const struct vm_config *cfg)
{
    int rc;
    if (cfg->n_drives + cfg->n_nets > VDEV_MAX)
        return err_set(-EINVAL,
                       "drives + network-interfaces: at most %d virtio devices per VM, got %d",
                       VDEV_MAX, cfg->n_drives + cfg->n_nets);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < cfg->n_drives; i++)
            if (cfg->drives[i].is_root_device == (pass == 0))
                if ((rc = add_drive(vm, &cfg->drives[i])))
                    return rc;
    for (int i = 0; i < cfg->n_nets; i++)
        if ((rc = add_net(vm, &cfg->nets[i])))
            return rc;
    return 0;
}

int vdev_wire_irqs(struct vm *vm)
{
    for (unsigned i = 0; i < vm->n_vdevs; i++) {
        struct virtio_mmio *t = vm->vdevs[i].t;
        int fd = vm_irqfd(vm, t->gsi);
        if (fd < 0)
            return fd;
        t->irq_fd = fd;
    }
    return 0;
}

int vdev_cmdline(const struct vm *vm, const struct vm_config *cfg, const char *base, char **out)
{
    size_t cap = strlen(base) + 64 + CONFIG_ID_MAX + (size_t)vm->n_vdevs * 64 + 128;
    char *s = malloc(cap);
    if (!s)
        return err_set(-ENOMEM, "kernel command line: out of memory");
    size_t n = (size_t)snprintf(s, cap, "%s", base);
    for (int i = 0; i < cfg->n_drives; i++) {
        const struct drive_config *d = &cfg->drives[i];
        if (!d->is_root_device)
            continue;
        if (d->partuuid)
            n += (size_t)snprintf(s + n, cap - n, " root=PARTUUID=%s", d->partuuid);
        else
            n += (size_t)snprintf(s + n, cap - n, " root=/dev/vda");
        n += (size_t)snprintf(s + n, cap - n, d->is_read_only ? " ro" : " rw");
    }
    for (unsigned i = 0; i < vm->n_vdevs; i++) {
        char e[96];
        vmmio_cmdline_entry(vm->vdevs[i].t, e, sizeof(e));
        n += (size_t)snprintf(s + n, cap - n, " %s", e);
    }
    *out = s;
    return 0;
}

int vdev_attach(struct vm *vm, struct evloop *ev)
{
    for (unsigned i = 0; i < vm->n_vdevs; i++) {
        struct vdev *d = &vm->vdevs[i];
        int rc = vmmio_attach(d->t, ev);
        if (!rc)
            rc = d->is_net ? net_attach(d->net, ev) : blk_attach(d->blk, ev);
        if (rc)
            return err_set(rc, "%s: cannot attach to the event loop: %s", d->id, strerror(-rc));
    }
    return 0;
}

void vdev_destroy_all(struct vm *vm)
{
    for (unsigned i = 0; i < vm->n_vdevs; i++) {
        struct vdev *d = &vm->vdevs[i];
        int kick[VIRTIO_MMIO_MAX_QUEUES];
        for (unsigned q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
            kick[q] = d->t->kick_fd[q];
        if (d->is_net)
            net_destroy(d->net);
        else
            blk_destroy(d->blk);
        for (unsigned q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
            if (kick[q] >= 0)
                close(kick[q]);
    }
    vm->n_vdevs = 0;
}

static struct vdev *find(struct vm *vm, const char *id, bool is_net)
{
    for (unsigned i = 0; i < vm->n_vdevs; i++)
        if (vm->vdevs[i].is_net == is_net && strcmp(vm->vdevs[i].id, id) == 0)
            return &vm->vdevs[i];
    return NULL;
}

int vdev_update_drive(struct vm *vm, const char *id, const char *path,
                      const struct rate_limiter *rl)
{
    struct vdev *d = find(vm, id, false);
    if (!d)
        return err_set(-ENOENT, "drives/%s: no such drive", id);
    pthread_mutex_lock(&d->t->lock);
    int rc = blk_update(d->blk, path, rl);
    pthread_mutex_unlock(&d->t->lock);
    return rc;
}

int vdev_update_net(struct vm *vm, const char *id, const struct rate_limiter *rx,
                    const struct rate_limiter *tx)
{
    struct vdev *d = find(vm, id, true);
    if (!d)
        return err_set(-ENOENT, "network-interfaces/%s: no such interface", id);
    pthread_mutex_lock(&d->t->lock);
    int rc = net_update(d->net, rx, tx);
    pthread_mutex_unlock(&d->t->lock);
    return rc;
}
