/* i8042.c - minimal PS/2 controller: reset line and keyboard injection. */
#include "i8042.h"

#include "base/metrics.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define SB_OUT_FULL 0x01
#define SB_SYS 0x04
#define SB_CMD 0x08 /* last write went to the command port */
#define SB_KBD_ENABLED 0x10

#define CMD_READ_CTR 0x20
#define CMD_WRITE_CTR 0x60
#define CMD_DISABLE_AUX 0xa7
#define CMD_ENABLE_AUX 0xa8
#define CMD_TEST_AUX 0xa9
#define CMD_SELF_TEST 0xaa
#define CMD_TEST_KBD 0xab
#define CMD_DISABLE_KBD 0xad
#define CMD_ENABLE_KBD 0xae
#define CMD_READ_OUTP 0xd0
#define CMD_WRITE_OUTP 0xd1
#define CMD_RESET_CPU 0xfe

#define CTR_KBD_INT 0x01
#define CTR_XLATE 0x40

void i8042_init(struct i8042 *k, int irq_fd, void (*on_reset)(void *), void *opaque)
{
    memset(k, 0, sizeof(*k));
    pthread_mutex_init(&k->lock, NULL);
    k->irq_fd = irq_fd;
    k->on_reset = on_reset;
    k->opaque = opaque;
    k->st.status = SB_SYS | SB_KBD_ENABLED;
    k->st.ctr = CTR_KBD_INT | 0x04 /* system flag */;
    k->st.outp = 0x01; /* reset line inactive */
}

void i8042_destroy(struct i8042 *k)
{
    pthread_mutex_destroy(&k->lock);
}

static void i8042_raise(struct i8042 *k)
{
    uint64_t one = 1;
    if (k->irq_fd >= 0 && (k->st.ctr & CTR_KBD_INT)) {
        if (write(k->irq_fd, &one, sizeof(one)) < 0) {
            /* cannot fail for a bounded counter; nothing to do */
        }
    }
}

static int push(struct i8042_state *st, uint8_t b)
{
    if (st->buf_len == I8042_BUF_LEN)
        return -ENOSPC;
    st->buf[(st->buf_head + st->buf_len) % I8042_BUF_LEN] = b;
    st->buf_len++;
    st->status |= SB_OUT_FULL;
    return 0;
}

void i8042_data_read(void *dev, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct i8042 *k = dev;
    struct i8042_state *st = &k->st;
    (void)offset;
    uint8_t v = 0;
    if (st->buf_len) {
        v = st->buf[st->buf_head];
        st->buf_head = (st->buf_head + 1) % I8042_BUF_LEN;
        st->buf_len--;
    }
    if (st->buf_len)
        i8042_raise(k);
    else
        st->status &= ~SB_OUT_FULL;
    memset(data, v, len);
}

void i8042_data_write(void *dev, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct i8042 *k = dev;
    struct i8042_state *st = &k->st;
    (void)offset;
    (void)len;
    st->status &= ~SB_CMD;
    switch (st->cmd) {
    case CMD_WRITE_CTR:
        st->ctr = data[0];
        break;
    case CMD_WRITE_OUTP:
        st->outp = data[0];
        if (!(data[0] & 0x01) && k->on_reset)
            k->on_reset(k->opaque); /* output port bit 0 low: CPU reset */
        break;
    default:
        /* A byte for the keyboard itself: acknowledge it (0xFA). */
        push(st, 0xfa);
        i8042_raise(k);
        break;
    }
    st->cmd = 0;
}

void i8042_cmd_read(void *dev, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct i8042 *k = dev;
    (void)offset;
    memset(data, k->st.status, len);
}

void i8042_cmd_write(void *dev, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct i8042 *k = dev;
    struct i8042_state *st = &k->st;
    (void)offset;
    (void)len;
    st->status |= SB_CMD;
    switch (data[0]) {
    case CMD_READ_CTR:
        push(st, st->ctr);
        break;
    case CMD_WRITE_CTR:
    case CMD_WRITE_OUTP:
        st->cmd = data[0];
        break;
    case CMD_READ_OUTP:
        push(st, st->outp);
        break;
    case CMD_SELF_TEST:
        push(st, 0x55);
        break;
    case CMD_TEST_KBD:
    case CMD_TEST_AUX:
        push(st, 0x00);
        break;
    case CMD_DISABLE_KBD:
        st->status &= ~SB_KBD_ENABLED;
        break;
    case CMD_ENABLE_KBD:
        st->status |= SB_KBD_ENABLED;
        break;
    case CMD_RESET_CPU:
        if (k->on_reset)
            k->on_reset(k->opaque);
        break;
    default: /* other commands (aux port, LEDs...) are accepted and ignored */
        break;
    }
}

int i8042_ctrl_alt_del(struct i8042 *k)
{
    /* Ctrl, Alt, Del (extended) make, then their breaks. The guest reads
     * set-1 codes when it turned translation on (CTR bit 6), else set 2 (as
     * Firecracker sends them; Linux then sees an "AT Raw Set 2" keyboard). */
    static const uint8_t set1[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
    static const uint8_t set2[] = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0,
                                   0x71, 0xf0, 0x11, 0xf0, 0x14};
    pthread_mutex_lock(&k->lock);
    const uint8_t *seq = (k->st.ctr & CTR_XLATE) ? set1 : set2;
    size_t n = (k->st.ctr & CTR_XLATE) ? sizeof(set1) : sizeof(set2);
    int rc = 0;
    if ((size_t)(I8042_BUF_LEN - k->st.buf_len) < n) {
        rc = -ENOSPC;
    } else {
        for (size_t i = 0; i < n; i++)
            push(&k->st, seq[i]);
        METRIC_INC(i8042_ctrl_alt_del);
        i8042_raise(k);
    }
    pthread_mutex_unlock(&k->lock);
    return rc;
}
