/* evloop.c - epoll dispatch for the main thread (see evloop.h). */
#include "evloop.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

int evloop_init(struct evloop *ev)
{
    ev->epfd = epoll_create1(EPOLL_CLOEXEC);
    return ev->epfd < 0 ? -errno : 0;
}

void evloop_close(struct evloop *ev)
{
    if (ev->epfd >= 0)
        close(ev->epfd);
    ev->epfd = -1;
}

int evloop_add(struct evloop *ev, struct ev_handler *h, int fd, uint32_t events, ev_cb cb)
{
    h->cb = cb;
    h->fd = fd;
    struct epoll_event e = {.events = events, .data.ptr = h};
    return epoll_ctl(ev->epfd, EPOLL_CTL_ADD, fd, &e) < 0 ? -errno : 0;
}

int evloop_mod(struct evloop *ev, struct ev_handler *h, uint32_t events)
{
    struct epoll_event e = {.events = events, .data.ptr = h};
    return epoll_ctl(ev->epfd, EPOLL_CTL_MOD, h->fd, &e) < 0 ? -errno : 0;
}

void evloop_del(struct evloop *ev, struct ev_handler *h)
{
    epoll_ctl(ev->epfd, EPOLL_CTL_DEL, h->fd, NULL);
}

int evloop_run_once(struct evloop *ev, int timeout_ms)
{
    struct epoll_event evs[16];
    int n = epoll_wait(ev->epfd, evs, 16, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        struct ev_handler *h = evs[i].data.ptr;
        h->cb(h, evs[i].events);
    }
    return n;
}
