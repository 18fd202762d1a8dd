/* i8042.h - the PS/2 controller, only as far as reset and Ctrl-Alt-Del need.
 *
 * Ports 0x60 (data) and 0x64 (status/command), IRQ 1. The command 0xFE
 * (pulse the reset line) ends the VM; i8042_ctrl_alt_del() queues the key
 * sequence a guest kernel treats as Ctrl-Alt-Del. Enough of the command set
 * (read/write the command byte, self-test, output port) for Linux's probe.
 */
#ifndef EMBER_I8042_H
#define EMBER_I8042_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define I8042_DATA_PORT 0x60
#define I8042_CMD_PORT 0x64
#define I8042_IRQ 1
#define I8042_BUF_LEN 16

struct i8042_state {
    uint8_t status;
    uint8_t ctr;      /* controller command byte */
    uint8_t outp;     /* output port */
    uint8_t cmd;      /* command waiting for its data byte, 0: none */
    uint8_t buf[I8042_BUF_LEN];
    uint8_t buf_head, buf_len;
};

struct i8042 {
    pthread_mutex_t lock;
    struct i8042_state st;
    int irq_fd;
    void (*on_reset)(void *opaque); /* guest asked for a CPU reset */
    void *opaque;
};

void i8042_init(struct i8042 *k, int irq_fd, void (*on_reset)(void *), void *opaque);
void i8042_destroy(struct i8042 *k);
/* Bus callbacks; the device is registered once per port (offset 0 each). */
void i8042_data_read(void *dev, uint64_t offset, uint8_t *data, uint32_t len);
void i8042_data_write(void *dev, uint64_t offset, const uint8_t *data, uint32_t len);
void i8042_cmd_read(void *dev, uint64_t offset, uint8_t *data, uint32_t len);
void i8042_cmd_write(void *dev, uint64_t offset, const uint8_t *data, uint32_t len);
/* Queue Ctrl-Alt-Del make and break codes; -ENOSPC if the buffer is full. */
int i8042_ctrl_alt_del(struct i8042 *k);

#endif
