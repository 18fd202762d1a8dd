/* serial.c - 8250 UART emulation for the guest console (see serial.h). */
#include "serial.h"

#include "base/err.h"
#include "base/metrics.h"
#include <fcntl.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum {
    UART_RBR_THR = 0,
    UART_IER = 1,
    UART_IIR_FCR = 2,
    UART_LCR = 3,
    UART_MCR = 4,
    UART_LSR = 5,
    UART_MSR = 6,
    UART_SCR = 7,
};

#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define LCR_DLAB 0x80
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

/* Linux prints this before rebooting on a panic; seeing it on the console
 * turns the following reset into EMBER_EXIT_GUEST_PANIC. */
static const char panic_banner[] = "Kernel panic - not syncing";

int serial_init(struct serial *s, int irq_fd, int out_fd)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->irq_fd = irq_fd;
    s->out_fd = out_fd;
    s->st.lsr = LSR_THRE | LSR_TEMT;
    s->st.msr = MSR_DSR | MSR_CTS | MSR_DCD;
    s->st.mcr = MCR_OUT2;
    s->rx_ready_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->rx_ready_fd < 0)
        return -errno;
    return 0;
}

int serial_configure(struct serial *s, const char *path, const struct rate_bucket *bucket)
{
    if (path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK | O_CLOEXEC, 0600);
        if (fd < 0) {
            int e = errno;
            return err_set(-e, "serial.serial_out_path %s: %s", path, strerror(e));
        }
        s->out_fd = fd;
        s->owns_out_fd = true;
    }
    if (bucket && bucket->set && bucket->size && bucket->refill_time_ms) {
        struct rate_limiter cfg = {.bandwidth = *bucket};
        int rc = rl_init(&s->out_rl, &cfg);
        if (rc)
            return err_set(rc, "serial.rate_limiter: %s", strerror(-rc));
        s->out_limited = true;
    }
    return 0;
}

void serial_destroy(struct serial *s)
{
    serial_flush(s);
    if (s->rx_ready_fd >= 0)
        close(s->rx_ready_fd);
    s->rx_ready_fd = -1;
    if (s->owns_out_fd)
        close(s->out_fd);
    s->owns_out_fd = false;
    if (s->out_limited)
        rl_destroy(&s->out_rl);
    s->out_limited = false;
    pthread_mutex_destroy(&s->lock);
}

static void serial_raise(struct serial *s)
{
    if (s->irq_fd < 0)
        return;
    uint64_t one = 1;
    if (write(s->irq_fd, &one, sizeof(one)) < 0) {
        /* eventfd counter overflow cannot happen for a bounded device; ignore. */
    }
}

static uint8_t serial_iir(const struct serial_state *st)
{
    if ((st->ier & IER_RDI) && st->rx_len)
        return IIR_RDI;
    if ((st->ier & IER_THRI) && st->thr_empty_pending)
        return IIR_THRI;
    return IIR_NONE;
}

static void serial_write_out(struct serial *s)
{
    size_t off = 0;
    while (off < s->outlen) {
        ssize_t w = write(s->out_fd, s->outbuf + off, s->outlen - off);
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            break; /* console gone: drop rather than stall the vCPU */
        }
        off += (size_t)w;
    }
    s->outlen = 0;
}

static void serial_out_byte(struct serial *s, uint8_t b)
{
    METRIC_INC(uart_write_count);
    if (s->out_limited && !rl_consume(&s->out_rl, RL_BYTES, 1)) {
        METRIC_INC(uart_rate_limiter_dropped_bytes);
    } else {
        s->outbuf[s->outlen++] = (char)b;
        if (b == '\n' || s->outlen == sizeof(s->outbuf))
            serial_write_out(s);
    }
    if (!s->saw_panic) {
        if ((char)b == panic_banner[s->panic_match])
            s->panic_match++;
        else
            s->panic_match = ((char)b == panic_banner[0]) ? 1 : 0;
        if (s->panic_match == sizeof(panic_banner) - 1)
            s->saw_panic = true;
    }
}

static void rx_push(struct serial_state *st, uint8_t b)
{
    if (st->rx_len == SERIAL_FIFO_LEN)
        return;
    st->rx[(st->rx_head + st->rx_len) % SERIAL_FIFO_LEN] = b;
    st->rx_len++;
    st->lsr |= LSR_DR;
}

void serial_pio_write(void *dev, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct serial *s = dev;
    struct serial_state *st = &s->st;
    if (len != 1)
        return;
    uint8_t v = data[0];
    switch (offset) {
    case UART_RBR_THR:
        if (st->lcr & LCR_DLAB) {
            st->dll = v;
            break;
        }
        if (st->mcr & MCR_LOOP) {
            rx_push(st, v);
            if (st->ier & IER_RDI)
                serial_raise(s);
        } else {
            serial_out_byte(s, v);
        }
        /* The byte left at once: THR is empty again. */
        st->thr_empty_pending = true;
        if (st->ier & IER_THRI)
            serial_raise(s);
        break;
    case UART_IER:
        if (st->lcr & LCR_DLAB) {
            st->dlm = v;
            break;
        }
        {
            uint8_t old = st->ier;
            st->ier = v & 0x0f;
            if (!(old & IER_THRI) && (st->ier & IER_THRI)) {
                st->thr_empty_pending = true;
                serial_raise(s);
            }
            if (!(old & IER_RDI) && (st->ier & IER_RDI) && st->rx_len)
                serial_raise(s);
        }
        break;
    case UART_IIR_FCR:
        /* FIFO control: no FIFO is advertised, but honour "clear RX". */
        if (v & 0x02) {
            st->rx_len = 0;
            st->lsr &= ~LSR_DR;
        }
        break;
    case UART_LCR:
        st->lcr = v;
        break;
    case UART_MCR:
        st->mcr = v & 0x1f;
        break;
    case UART_SCR:
        st->scr = v;
        break;
    default: /* LSR and MSR are read-only */
        break;
    }
}

void serial_pio_read(void *dev, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct serial *s = dev;
    struct serial_state *st = &s->st;
    uint8_t v = 0;
    switch (offset) {
    case UART_RBR_THR:
        if (st->lcr & LCR_DLAB) {
            v = st->dll;
            break;
        }
        if (st->rx_len) {
            v = st->rx[st->rx_head];
            st->rx_head = (st->rx_head + 1) % SERIAL_FIFO_LEN;
            st->rx_len--;
            if (!st->rx_len) {
                st->lsr &= ~LSR_DR;
                uint64_t one = 1;
                if (write(s->rx_ready_fd, &one, sizeof(one)) < 0) {
                    /* the event loop only needs a wake-up; a full counter is one */
                }
            } else if (st->ier & IER_RDI) {
                serial_raise(s);
            }
        }
        break;
    case UART_IER:
        v = (st->lcr & LCR_DLAB) ? st->dlm : st->ier;
        break;
    case UART_IIR_FCR:
        v = serial_iir(st);
        if (v == IIR_THRI)
            st->thr_empty_pending = false;
        break;
    case UART_LCR:
        v = st->lcr;
        break;
    case UART_MCR:
        v = st->mcr;
        break;
    case UART_LSR:
        v = st->lsr;
        break;
    case UART_MSR:
        if (st->mcr & MCR_LOOP) {
            v = 0;
            if (st->mcr & MCR_DTR)
                v |= MSR_DSR;
            if (st->mcr & MCR_RTS)
                v |= MSR_CTS;
            if (st->mcr & MCR_OUT1)
                v |= MSR_RI;
            if (st->mcr & MCR_OUT2)
                v |= MSR_DCD;
        } else {
            v = st->msr;
        }
        break;
    case UART_SCR:
        v = st->scr;
        break;
    }
    for (uint32_t i = 0; i < len; i++)
        data[i] = v;
}

size_t serial_rx_space(struct serial *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = SERIAL_FIFO_LEN - s->st.rx_len;
    pthread_mutex_unlock(&s->lock);
    return n;
}

size_t serial_input(struct serial *s, const uint8_t *buf, size_t n)
{
    pthread_mutex_lock(&s->lock);
    size_t i = 0;
    for (; i < n && s->st.rx_len < SERIAL_FIFO_LEN; i++)
        rx_push(&s->st, buf[i]);
    if (i && (s->st.ier & IER_RDI))
        serial_raise(s);
    pthread_mutex_unlock(&s->lock);
    return i;
}

void serial_flush(struct serial *s)
{
    pthread_mutex_lock(&s->lock);
    serial_write_out(s);
    pthread_mutex_unlock(&s->lock);
}

bool serial_saw_panic(struct serial *s)
{
    pthread_mutex_lock(&s->lock);
    bool p = s->saw_panic;
    pthread_mutex_unlock(&s->lock);
    return p;
}
