/* evloop.c - epoll dispatch and the polling phase for the main thread (see evloop.h). */
#include "evloop.h"

#include <errno.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define EVLOOP_BATCH 16
#define EVLOOP_SPINS 64 /* looks at the pollers per clock read */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int evloop_init(struct evloop *ev)
{
    ev->polling = NULL;
    ev->fds_seen_ns = 0;
    ev->epfd = epoll_create1(EPOLL_CLOEXEC);
    return ev->epfd < 0 ? -errno : 0;
}

void evloop_close(struct evloop *ev)
{
    if (ev->epfd >= 0)
        close(ev->epfd);
    ev->epfd = -1;
    ev->polling = NULL;
}

int evloop_add(struct evloop *ev, struct ev_handler *h, int fd, uint32_t events, ev_cb cb)
{
    h->cb = cb;
    h->fd = fd;
    struct epoll_event e = {.events = events, .data.ptr = h};
    if (epoll_ctl(ev->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
        h->cb = NULL;
        return -errno;
    }
    return 0;
}

int evloop_mod(struct evloop *ev, struct ev_handler *h, uint32_t events)
{
    struct epoll_event e = {.events = events, .data.ptr = h};
    return epoll_ctl(ev->epfd, EPOLL_CTL_MOD, h->fd, &e) < 0 ? -errno : 0;
}

void evloop_del(struct evloop *ev, struct ev_handler *h)
{
    epoll_ctl(ev->epfd, EPOLL_CTL_DEL, h->fd, NULL);
    h->cb = NULL;
}

void evloop_poll_cancel(struct evloop *ev, struct ev_poller *p)
{
    for (struct ev_poller **pp = &ev->polling; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    p->until_ns = 0;
    p->next = NULL;
}

void evloop_poll(struct evloop *ev, struct ev_poller *p, unsigned us)
{
    if (us == 0) {
        evloop_poll_cancel(ev, p);
        return;
    }
    if (us > EVLOOP_POLL_MAX_US)
        us = EVLOOP_POLL_MAX_US;
    uint64_t until = now_ns() + (uint64_t)us * 1000u;
    if (!p->until_ns) {
        p->next = ev->polling;
        ev->polling = p;
    }
    if (until > p->until_ns)
        p->until_ns = until;
}

bool evloop_polling(const struct evloop *ev)
{
    return ev->polling != NULL;
}

static int dispatch(struct evloop *ev, int timeout_ms)
{
    struct epoll_event evs[EVLOOP_BATCH];
    int n = epoll_wait(ev->epfd, evs, EVLOOP_BATCH, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    ev->fds_seen_ns = now_ns();
    for (int i = 0; i < n; i++) {
        struct ev_handler *h = evs[i].data.ptr;
        h->cb(h, evs[i].events);
    }
    return n;
}

/* Spin over the armed pollers until one has work (run it) or a budget is
 * spent (tell it). The clock is read once per EVLOOP_SPINS looks, not on
 * every look: a read costs many times a look at a ring index (more so under
 * emulation, where rdtsc calls into the emulator). One poller at a time:
 * run() and expired() may arm or cancel pollers, so the list is walked
 * afresh after each. Returns 1, or 0 if none was armed. */
static int poll_phase(struct evloop *ev)
{
    while (ev->polling) {
        for (int i = 0; i < EVLOOP_SPINS; i++) {
            for (struct ev_poller *p = ev->polling; p; p = p->next)
                if (p->ready(p)) {
                    evloop_poll_cancel(ev, p);
                    p->run(p);
                    return 1;
                }
            __builtin_ia32_pause();
        }
        uint64_t now = now_ns();
        for (struct ev_poller *p = ev->polling; p; p = p->next)
            if (now >= p->until_ns) {
                evloop_poll_cancel(ev, p);
                p->expired(p);
                return 1;
            }
    }
    return 0;
}

int evloop_run_once(struct evloop *ev, int timeout_ms)
{
    if (ev->polling) {
        /* The fds are looked at once per EVLOOP_FD_CHECK_US while pollers are
         * armed: a ready fd waits that long at most. */
        if (now_ns() - ev->fds_seen_ns >= EVLOOP_FD_CHECK_US * 1000ull) {
            int n = dispatch(ev, 0);
            if (n != 0)
                return n;
        }
        return poll_phase(ev);
    }
    return dispatch(ev, timeout_ms);
}
