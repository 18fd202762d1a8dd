/* evloop.h - the main thread's event loop: epoll, plus polling between events.
 *
 * Every fd the main thread serves (API socket and connections, console
 * input, the VM's exit eventfd, virtqueue ioeventfds, device work eventfds,
 * io_uring completions, timers) is registered with an ev_handler embedded in
 * the object that owns it; the loop calls handler->cb(handler, events).
 *
 * Polling is one mechanism here, for every device: a device whose ring just
 * ran empty arms its ev_poller for its budget (microseconds) instead of
 * waiting for the guest's next kick. While any poller is armed, the loop,
 * once no fd is ready, spins over all armed pollers together: the first whose
 * ready() sees work is disarmed and run(); one whose budget is spent is
 * disarmed and told expired() (it then asks the guest to kick again). So the
 * devices share one polling phase, no device lock is held while spinning, and
 * an idle guest costs nothing (nothing is armed). While pollers are armed
 * the loop looks at the fds once every EVLOOP_FD_CHECK_US, not on every
 * turn: an epoll_wait between every two requests of a busy queue would cost
 * more than the requests.
 */
#ifndef EMBER_EVLOOP_H
#define EMBER_EVLOOP_H

#include <stdbool.h>
#include <stdint.h>

struct ev_handler;
typedef void (*ev_cb)(struct ev_handler *h, uint32_t events);

struct ev_handler {
    ev_cb cb; /* NULL while not registered */
    int fd;
};

struct ev_poller {
    bool (*ready)(struct ev_poller *p);   /* work waiting? a cheap look, no locks */
    void (*run)(struct ev_poller *p);     /* do it (may arm the poller again) */
    void (*expired)(struct ev_poller *p); /* the budget ran out with nothing seen */
    uint64_t until_ns;                    /* CLOCK_MONOTONIC deadline; 0: not armed */
    struct ev_poller *next;
};

#define EVLOOP_POLL_MAX_US 1000 /* the largest budget a poller may ask for */
#define EVLOOP_FD_CHECK_US 50   /* fds looked at this often while pollers are armed */

struct evloop {
    int epfd;
    struct ev_poller *polling; /* armed pollers */
    uint64_t fds_seen_ns;      /* when epoll_wait last returned */
};

int evloop_init(struct evloop *ev);
void evloop_close(struct evloop *ev);
int evloop_add(struct evloop *ev, struct ev_handler *h, int fd, uint32_t events, ev_cb cb);
int evloop_mod(struct evloop *ev, struct ev_handler *h, uint32_t events);
void evloop_del(struct evloop *ev, struct ev_handler *h);

/* Arm `p` for `us` microseconds (capped at EVLOOP_POLL_MAX_US; 0: disarm), or
 * extend it if armed. Disarming a poller that is not armed is a no-op. */
void evloop_poll(struct evloop *ev, struct ev_poller *p, unsigned us);
void evloop_poll_cancel(struct evloop *ev, struct ev_poller *p);
static inline bool ev_poller_armed(const struct ev_poller *p)
{
    return p->until_ns != 0;
}
bool evloop_polling(const struct evloop *ev);

/* Dispatch what is ready, polling first if a poller is armed; waits up to
 * timeout_ms (-1: forever) when nothing is. Returns handlers run or -errno. */
int evloop_run_once(struct evloop *ev, int timeout_ms);

#endif
