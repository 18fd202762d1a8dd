/* bus.h - the port-I/O and MMIO buses that vCPU exits are dispatched on.
 *
 * A device registers a range with read/write callbacks; the bus calls them
 * with the offset into the range, under the device's own mutex. Accesses
 * that hit no device read as all-ones and are otherwise ignored.
 */
#ifndef EMBER_BUS_H
#define EMBER_BUS_H

#include <pthread.h>
#include <stdint.h>

typedef void (*bus_read_fn)(void *dev, uint64_t offset, uint8_t *data, uint32_t len);
typedef void (*bus_write_fn)(void *dev, uint64_t offset, const uint8_t *data, uint32_t len);

struct bus_range {
    uint64_t base;
    uint64_t len;
    void *dev;
    pthread_mutex_t *lock; /* taken around each callback; NULL: none */
    bus_read_fn read;
    bus_write_fn write;
};

#define BUS_MAX_RANGES 32

struct bus {
    int n;
    struct bus_range ranges[BUS_MAX_RANGES];
};

/* Add a range; -EEXIST if it overlaps one already there, -ENOSPC if full. */
int bus_register(struct bus *bus, const struct bus_range *r);

/* Dispatch one access; returns 0 if a device handled it, -ENOENT if not. */
int bus_read(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len);
int bus_write(struct bus *bus, uint64_t addr, const uint8_t *data, uint32_t len);

#endif
