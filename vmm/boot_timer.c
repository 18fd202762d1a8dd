/* boot_timer.c - log the guest's boot time when it writes the magic byte. */
#include "boot_timer.h"

#include "base/log.h"

#include <time.h>

static uint64_t cpu_time_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000ULL + ts.tv_nsec / 1000;
}

void boot_timer_write(void *dev, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct boot_timer *bt = dev;
    (void)offset;
    if (len != 1 || data[0] != BOOT_TIMER_MAGIC || bt->boot_time_us)
        return;
    uint64_t now = time_now_us();
    bt->boot_time_us = now - bt->start_us;
    uint64_t cpu = cpu_time_us();
    log_info("Guest-boot-time = %llu us %llu ms, %llu CPU us %llu CPU ms",
             (unsigned long long)bt->boot_time_us, (unsigned long long)(bt->boot_time_us / 1000),
             (unsigned long long)cpu, (unsigned long long)(cpu / 1000));
}
