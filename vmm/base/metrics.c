/* metrics.c - metrics lines in Firecracker's JSON shape (see metrics.h). */
#define _GNU_SOURCE
#include "metrics.h"

#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct ember_metrics metrics;
static int metrics_fd = -1;

/* Counters reported as deltas: the value at the previous flush. */
static struct {
    uint64_t api_requests, api_request_errors, exit_io_in, exit_io_out, exit_mmio_read,
        exit_mmio_write, vcpu_failures, i8042_reset_count, i8042_ctrl_alt_del, uart_write_count,
        uart_read_count, uart_rate_limiter_dropped_bytes, pause_count, resume_count,
        seccomp_num_faults, missed_metrics_count;
#define X(group, name) uint64_t group##_##name;
    METRICS_DEVICE_COUNTERS(X)
#undef X
} last;

int metrics_open(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        return err_set(-e, "metrics_path %s: %s", path, strerror(e));
    }
    if (metrics_fd >= 0)
        close(metrics_fd);
    metrics_fd = fd;
    return 0;
}

bool metrics_configured(void)
{
    return metrics_fd >= 0;
}

void metrics_close(void)
{
    if (metrics_fd >= 0)
        close(metrics_fd);
    metrics_fd = -1;
}

#define DELTA(f)                                                                                   \
    ({                                                                                             \
        uint64_t now_ = atomic_load_explicit(&metrics.f, memory_order_relaxed);                    \
        uint64_t d_ = now_ - last.f;                                                               \
        last.f = now_;                                                                             \
        (unsigned long long)d_;                                                                    \
    })

/* One flush at a time, since the deltas read and move `last`: the main thread
 * flushes (timer, API, exit), and so does the SIGSYS handler on whichever
 * thread faulted. A signal handler must not block for good, so a flush waits
 * for the other one at most FLUSH_WAIT_TRIES ms (in clock_nanosleep, which
 * every thread's filter allows), then drops its line and counts it missed. */
static atomic_flag flushing = ATOMIC_FLAG_INIT;
#define FLUSH_WAIT_TRIES 100

static int flush_line(void);

int metrics_flush(void)
{
    if (metrics_fd < 0)
        return err_set(-ENOENT, "metrics are not configured (PUT /metrics first)");
    for (int tries = 0; atomic_flag_test_and_set_explicit(&flushing, memory_order_acquire);
         tries++) {
        if (tries == FLUSH_WAIT_TRIES) {
            METRIC_INC(missed_metrics_count);
            return -EBUSY;
        }
        struct timespec ms = {0, 1000000};
        clock_nanosleep(CLOCK_MONOTONIC, 0, &ms, NULL);
    }
    int rc = flush_line();
    atomic_flag_clear_explicit(&flushing, memory_order_release);
    return rc;
}

static int flush_line(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char line[4096];
    int n = snprintf(
        line, sizeof(line),
        "{\"utc_timestamp_ms\":%llu,"
        "\"api_server\":{\"process_startup_time_us\":%llu,\"process_startup_time_cpu_us\":%llu,"
        "\"requests\":%llu,\"request_errors\":%llu},"
        "\"vcpu\":{\"exit_io_in\":%llu,\"exit_io_out\":%llu,\"exit_mmio_read\":%llu,"
        "\"exit_mmio_write\":%llu,\"failures\":%llu},"
        "\"i8042\":{\"reset_count\":%llu,\"ctrl_alt_del\":%llu},"
        "\"uart\":{\"write_count\":%llu,\"read_count\":%llu,\"rate_limiter_dropped_bytes\":%llu},"
        "\"vmm\":{\"pause_count\":%llu,\"resume_count\":%llu},"
        "\"latencies_us\":{\"pause_vm\":%llu,\"resume_vm\":%llu},"
        "\"seccomp\":{\"num_faults\":%llu},"
        "\"logger\":{\"missed_log_count\":%llu,\"missed_metrics_count\":%llu}",
        (unsigned long long)ts.tv_sec * 1000ULL + (unsigned long long)(ts.tv_nsec / 1000000),
        (unsigned long long)metrics.process_startup_time_us,
        (unsigned long long)metrics.process_startup_time_cpu_us, DELTA(api_requests),
        DELTA(api_request_errors), DELTA(exit_io_in), DELTA(exit_io_out), DELTA(exit_mmio_read),
        DELTA(exit_mmio_write), DELTA(vcpu_failures), DELTA(i8042_reset_count),
        DELTA(i8042_ctrl_alt_del), DELTA(uart_write_count), DELTA(uart_read_count),
        DELTA(uart_rate_limiter_dropped_bytes), DELTA(pause_count), DELTA(resume_count),
        (unsigned long long)atomic_load(&metrics.pause_latency_us),
        (unsigned long long)atomic_load(&metrics.resume_latency_us), DELTA(seccomp_num_faults),
        (unsigned long long)log_dropped(), DELTA(missed_metrics_count));
    if (n < 0 || n >= (int)sizeof(line))
        return -EOVERFLOW;
    /* Device groups: "block":{...},"net":{...},"virtio":{...}. */
    const char *group = NULL;
#define X(g, name)                                                                                 \
    if (n < (int)sizeof(line))                                                                     \
        n += snprintf(line + n, sizeof(line) - (size_t)n, "%s\"%s\":%llu",                         \
                      group && !strcmp(group, #g) ? ","                                            \
                                                  : (group ? "},\"" #g "\":{" : ",\"" #g "\":{"),  \
                      #name, DELTA(g##_##name));                                                   \
    group = #g;
    METRICS_DEVICE_COUNTERS(X)
#undef X
    if (n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, "}}\n");
    if (n < 0 || n >= (int)sizeof(line))
        return -EOVERFLOW;
    if (write(metrics_fd, line, (size_t)n) != n) {
        METRIC_INC(missed_metrics_count); /* a full FIFO: drop, never block */
        return -EAGAIN;
    }
    return 0;
}
