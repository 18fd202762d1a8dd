/* bus.c - range lookup and dispatch for PIO and MMIO exits (see bus.h). */
#include "bus.h"

#include <errno.h>
#include <string.h>

int bus_register(struct bus *bus, const struct bus_range *r)
{
    if (r->len == 0 || r->base + r->len < r->base)
        return -EINVAL;
    for (int i = 0; i < bus->n; i++) {
        const struct bus_range *o = &bus->ranges[i];
        if (r->base < o->base + o->len && o->base < r->base + r->len)
            return -EEXIST;
    }
    if (bus->n == BUS_MAX_RANGES)
        return -ENOSPC;
    bus->ranges[bus->n++] = *r;
    return 0;
}

static struct bus_range *bus_find(struct bus *bus, uint64_t addr, uint32_t len)
{
    for (int i = 0; i < bus->n; i++) {
        struct bus_range *r = &bus->ranges[i];
        if (addr >= r->base && addr - r->base < r->len && len <= r->len - (addr - r->base))
            return r;
    }
    return NULL;
}

int bus_read(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len)
{
    struct bus_range *r = bus_find(bus, addr, len);
    if (!r || !r->read) {
        memset(data, 0xff, len);
        return -ENOENT;
    }
    if (r->lock)
        pthread_mutex_lock(r->lock);
    r->read(r->dev, addr - r->base, data, len);
    if (r->lock)
        pthread_mutex_unlock(r->lock);
    return 0;
}

int bus_write(struct bus *bus, uint64_t addr, const uint8_t *data, uint32_t len)
{
    struct bus_range *r = bus_find(bus, addr, len);
    if (!r || !r->write)
        return -ENOENT;
    if (r->lock)
        pthread_mutex_lock(r->lock);
    r->write(r->dev, addr - r->base, data, len);
    if (r->lock)
        pthread_mutex_unlock(r->lock);
    return 0;
}
