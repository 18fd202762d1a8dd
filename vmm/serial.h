/* serial.h - 8250/16450 UART at 0x3f8, IRQ 4: the guest console.
 *
 * Transmitted bytes go to `out_fd` (line-buffered); host input is queued in
 * a 64-byte receive FIFO. Interrupts (RX data, THR empty) are edges on an
 * irqfd. Loopback mode is emulated because Linux's 8250 probe uses it.
 */
#ifndef EMBER_SERIAL_H
#define EMBER_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/rate_limiter.h"

#define SERIAL_PORT_BASE 0x3f8
#define SERIAL_PORT_LEN 8
#define SERIAL_IRQ 4
#define SERIAL_FIFO_LEN 64

/* Guest-visible state: one plain struct (saved/restored by snapshots later). */
struct serial_state {
    uint8_t ier, lcr, mcr, lsr, msr, scr, dll, dlm;
    bool thr_empty_pending; /* THR-empty interrupt not yet acknowledged */
    uint8_t rx[SERIAL_FIFO_LEN];
    uint8_t rx_head, rx_len;
};

struct serial {
    pthread_mutex_t lock;
    struct serial_state st;
    int irq_fd;      /* eventfd for IRQ 4, -1: none */
    int out_fd;      /* console output */
    int rx_ready_fd; /* eventfd signalled when the guest empties the RX FIFO */
    char outbuf[256];
    size_t outlen;
    bool out_limited; /* PUT /serial rate_limiter: bytes over it are dropped */
    struct rl out_rl;
    bool owns_out_fd;     /* out_fd is serial_out_path's, closed by serial_destroy */
    unsigned panic_match; /* bytes of the panic banner matched so far */
    bool saw_panic;
};

int serial_init(struct serial *s, int irq_fd, int out_fd);
/* PUT /serial: output to `path` (a file, appended, or a FIFO, non-blocking:
 * a full FIFO drops output rather than stalling the vCPU) and/or a byte
 * bucket. Errors name serial.serial_out_path. */
int serial_configure(struct serial *s, const char *path, const struct rate_bucket *bucket);
void serial_destroy(struct serial *s);

/* Bus callbacks (offset 0..7 from SERIAL_PORT_BASE). */
void serial_pio_read(void *dev, uint64_t offset, uint8_t *data, uint32_t len);
void serial_pio_write(void *dev, uint64_t offset, const uint8_t *data, uint32_t len);

/* Queue host input; returns how many bytes fit in the FIFO. */
size_t serial_input(struct serial *s, const uint8_t *buf, size_t n);
size_t serial_rx_space(struct serial *s);
void serial_flush(struct serial *s);
bool serial_saw_panic(struct serial *s);

#endif
