/* metrics.h - Firecracker-style metrics: one JSON object per line, written
 * to a file or FIFO at InstanceStart, every 60 s, on FlushMetrics and at exit.
 * Counters are process-wide atomics; each line carries what happened since
 * the previous line (as Firecracker's "SharedIncMetric" counters do), gauges
 * carry their current value. A full FIFO never blocks: the line is dropped
 * and counted in metrics.missed_metrics_count.
 */
#ifndef EMBER_METRICS_H
#define EMBER_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct ember_metrics {
    /* api_server */
    atomic_uint_fast64_t api_requests, api_request_errors;
    uint64_t process_startup_time_us, process_startup_time_cpu_us;
    /* vcpu */
    atomic_uint_fast64_t exit_io_in, exit_io_out, exit_mmio_read, exit_mmio_write, vcpu_failures;
    /* i8042 / uart */
    atomic_uint_fast64_t i8042_reset_count, i8042_ctrl_alt_del, uart_write_count, uart_read_count;
    /* vmm */
    atomic_uint_fast64_t pause_count, resume_count, pause_latency_us, resume_latency_us;
    /* seccomp (filters come with the confinement issue) */
    atomic_uint_fast64_t seccomp_num_faults;
    atomic_uint_fast64_t missed_metrics_count;
};

extern struct ember_metrics metrics;

#define METRIC_INC(field) atomic_fetch_add_explicit(&metrics.field, 1, memory_order_relaxed)
#define METRIC_ADD(field, n) atomic_fetch_add_explicit(&metrics.field, (n), memory_order_relaxed)

/* Open `path` (file appended to, or FIFO, non-blocking); -errno naming it. */
int metrics_open(const char *path);
bool metrics_configured(void);
/* Write one line now; 0, or -errno if not configured / the write failed. */
int metrics_flush(void);
void metrics_close(void);

#endif
