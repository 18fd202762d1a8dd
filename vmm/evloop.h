/* evloop.h - the main thread's epoll loop.
 *
 * Every fd the main thread serves (API socket and connections, console
 * input, the VM's exit eventfd, later virtqueue ioeventfds and timers) is
 * registered with an ev_handler embedded in the object that owns it; the
 * loop calls handler->cb(handler, events).
 */
#ifndef EMBER_EVLOOP_H
#define EMBER_EVLOOP_H

#include <stdint.h>

struct ev_handler;
typedef void (*ev_cb)(struct ev_handler *h, uint32_t events);

struct ev_handler {
    ev_cb cb;
    int fd;
};

struct evloop {
    int epfd;
};

int evloop_init(struct evloop *ev);
void evloop_close(struct evloop *ev);
int evloop_add(struct evloop *ev, struct ev_handler *h, int fd, uint32_t events, ev_cb cb);
int evloop_mod(struct evloop *ev, struct ev_handler *h, uint32_t events);
void evloop_del(struct evloop *ev, struct ev_handler *h);
/* Wait up to timeout_ms (-1: forever) and dispatch; returns handlers run or -errno. */
int evloop_run_once(struct evloop *ev, int timeout_ms);

#endif
