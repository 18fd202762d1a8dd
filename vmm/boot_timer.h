/* boot_timer.h - the boot-timer port (0x3f0): the guest writes 123 when its
 * init starts, and Ember logs `Guest-boot-time = N us` since the reference
 * point (process start, or InstanceStart with the API). */
#ifndef EMBER_BOOT_TIMER_H
#define EMBER_BOOT_TIMER_H

#include <stdint.h>

#define BOOT_TIMER_PORT 0x3f0
#define BOOT_TIMER_MAGIC 123

struct boot_timer {
    uint64_t start_us;     /* reference point, CLOCK_MONOTONIC */
    uint64_t boot_time_us; /* 0 until the guest wrote the magic value */
};

void boot_timer_write(void *dev, uint64_t offset, const uint8_t *data, uint32_t len);

#endif
