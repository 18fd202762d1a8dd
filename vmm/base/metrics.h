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

/* Device counters (Firecracker's "block" and "net" groups, summed over all
 * drives / interfaces, plus Ember's "virtio" transport group), reported as
 * deltas: METRIC_INC(block_read_count) and so on. */
#define METRICS_DEVICE_COUNTERS(X)                                                                 \
    X(block, activate_fails)                                                                       \
    X(block, cfg_fails)                                                                            \
    X(block, queue_event_count)                                                                    \
    X(block, read_count)                                                                           \
    X(block, write_count)                                                                          \
    X(block, flush_count)                                                                          \
    X(block, get_id_count)                                                                         \
    X(block, read_bytes)                                                                           \
    X(block, write_bytes)                                                                          \
    X(block, invalid_reqs_count)                                                                   \
    X(block, execute_fails)                                                                        \
    X(block, rate_limiter_throttled_events)                                                        \
    X(block, update_count)                                                                         \
    X(block, io_engine_throttled_events)                                                           \
    X(net, activate_fails)                                                                         \
    X(net, cfg_fails)                                                                              \
    X(net, rx_queue_event_count)                                                                   \
    X(net, tx_queue_event_count)                                                                   \
    X(net, rx_packets_count)                                                                       \
    X(net, tx_packets_count)                                                                       \
    X(net, rx_bytes_count)                                                                         \
    X(net, tx_bytes_count)                                                                         \
    X(net, tap_read_fails)                                                                         \
    X(net, tap_write_fails)                                                                        \
    X(net, tx_malformed_frames)                                                                    \
    X(net, rx_rate_limiter_throttled)                                                              \
    X(net, tx_rate_limiter_throttled)                                                              \
    X(net, rx_partial_writes)                                                                      \
    X(virtio, bad_chains)                                                                          \
    X(virtio, needs_reset)                                                                         \
    X(virtio, interrupts)

struct ember_metrics {
    /* api_server */
    atomic_uint_fast64_t api_requests, api_request_errors;
    uint64_t process_startup_time_us, process_startup_time_cpu_us;
    /* vcpu */
    atomic_uint_fast64_t exit_io_in, exit_io_out, exit_mmio_read, exit_mmio_write, vcpu_failures;
    /* i8042 / uart */
    atomic_uint_fast64_t i8042_reset_count, i8042_ctrl_alt_del, uart_write_count, uart_read_count,
        uart_rate_limiter_dropped_bytes;
    /* vmm */
    atomic_uint_fast64_t pause_count, resume_count, pause_latency_us, resume_latency_us;
    /* seccomp (filters come with the confinement issue) */
    atomic_uint_fast64_t seccomp_num_faults;
    atomic_uint_fast64_t missed_metrics_count;
#define X(group, name) atomic_uint_fast64_t group##_##name;
    METRICS_DEVICE_COUNTERS(X)
#undef X
};

extern struct ember_metrics metrics;

#define METRIC_INC(field) atomic_fetch_add_explicit(&metrics.field, 1, memory_order_relaxed)
#define METRIC_ADD(field, n) atomic_fetch_add_explicit(&metrics.field, (n), memory_order_relaxed)

/* Open `path` (file appended to, or FIFO, non-blocking); -errno naming it. */
int metrics_open(const char *path);
bool metrics_configured(void);
/* Write one line now (any thread, and async-signal-safe: a flush under way
 * elsewhere is waited for, at most 100 ms); 0, or -ENOENT if not configured,
 * -EAGAIN if the write failed (a full FIFO), -EBUSY if the wait ran out (the
 * last two drop the line and count it in missed_metrics_count). */
int metrics_flush(void);
void metrics_close(void);

#endif
