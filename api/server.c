/* server.c - Unix-socket HTTP server on the event loop (see server.h). */
#define _GNU_SOURCE
#include "server.h"

#include "../vmm/base/err.h"
#include "../vmm/base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct api_conn {
    struct ev_handler h;
    struct api_server *srv;
    struct http_parser parser;
    char *out; /* pending response bytes */
    size_t out_len, out_off, out_cap;
    bool close_after; /* close once `out` is written */
    struct api_conn *prev, *next;
};

static void conn_free(struct api_conn *c)
{
    struct api_server *s = c->srv;
    evloop_del(s->ev, &c->h);
    close(c->h.fd);
    http_parser_free(&c->parser);
    free(c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    free(c);
}

static int out_append(struct api_conn *c, const char *data, size_t len)
{
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 1024;
        while (cap < c->out_len + len)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p)
            return -ENOMEM;
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return 0;
}

static int respond(struct api_conn *c, int status, const char *body, bool close)
{
    size_t cap = 512 + (body ? strlen(body) : 0);
    char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    int n = http_response_format_ex(buf, cap, status, body, body ? strlen(body) : 0, close);
    int rc = n < 0 ? n : out_append(c, buf, (size_t)n);
    free(buf);
    return rc;
}

/* Write what is pending; returns false if the connection was closed. */
static bool conn_flush(struct api_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->h.fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                evloop_mod(c->srv->ev, &c->h, EPOLLOUT);
                return true;
            }
            conn_free(c);
            return false;
        }
        c->out_off += (size_t)w;
    }
    c->out_off = c->out_len = 0;
    if (c->close_after) {
        conn_free(c);
        return false;
    }
    evloop_mod(c->srv->ev, &c->h, EPOLLIN);
    return true;
}

/* Parse everything in buf; queue one response per request. */
static void conn_feed(struct api_conn *c, const char *buf, size_t len)
{
    while (len > 0 && !c->close_after) {
        size_t used = 0;
        int r = http_parse(&c->parser, buf, len, &used);
        buf += used;
        len -= used;
        if (r == HTTP_PARSE_INCOMPLETE) {
            if (http_parser_want_continue(&c->parser))
                out_append(c, HTTP_CONTINUE_RESPONSE, strlen(HTTP_CONTINUE_RESPONSE));
            break;
        }
        if (r < 0) {
            char fault[600];
            int status = c->parser.err_status ? c->parser.err_status : 400;
            if (http_fault_json(fault, sizeof(fault), c->parser.err_msg) < 0)
                snprintf(fault, sizeof(fault), "{\"fault_message\": \"bad request\"}");
            respond(c, status, fault, true);
            c->close_after = true;
            break;
        }
        char *body = NULL;
        int status = c->srv->route(c->srv->opaque, &c->parser.req, &body);
        bool close = !c->parser.req.keep_alive;
        if (respond(c, status, body, close) < 0)
            close = true;
        free(body);
        c->close_after = close;
        http_parser_reset(&c->parser);
    }
}

static void on_conn(struct ev_handler *h, uint32_t events)
{
    struct api_conn *c = (struct api_conn *)h;
    if (events & EPOLLOUT) {
        conn_flush(c);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        char buf[4096];
        ssize_t r = recv(c->h.fd, buf, sizeof(buf), 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            return;
        if (r <= 0) {
            conn_free(c);
            return;
        }
        conn_feed(c, buf, (size_t)r);
        if (c->out_len)
            conn_flush(c);
    }
}

/* Answer 503 on `fd` and close it: the connection cap is reached, or fds ran out. */
static void refuse_busy(int fd, const char *why)
{
    char busy[320];
    int n = http_fault_response(busy, sizeof(busy), 503, why, true);
    if (n > 0 && send(fd, busy, (size_t)n, MSG_NOSIGNAL) < 0) {
        /* the client goes away either way */
    }
    close(fd);
}

/* accept4 failed with EMFILE/ENFILE: give up the spare fd, accept the
 * newcomer into its slot, refuse it, and take the spare back. Without this
 * the listening socket stays readable and the loop spins on it. Returns false
 * when no spare could be had (the loop then tries again later). */
static bool accept_out_of_fds(struct api_server *s)
{
    if (s->spare_fd < 0 && (s->spare_fd = eventfd(0, EFD_CLOEXEC)) < 0)
        return false;
    close(s->spare_fd);
    int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0)
        refuse_busy(fd, "Too many open connections: the process is out of file descriptors; "
                        "retry later");
    s->spare_fd = eventfd(0, EFD_CLOEXEC);
    return fd >= 0;
}

static void on_accept(struct ev_handler *h, uint32_t events)
{
    struct api_server *s = (struct api_server *)h;
    (void)events;
    for (;;) {
        int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if ((errno == EMFILE || errno == ENFILE) && accept_out_of_fds(s))
                continue;
            return; /* EAGAIN, or a transient error: the loop calls again */
        }
        if (s->n_conns >= API_MAX_CONNS) {
            refuse_busy(
                fd, "Too many open connections: the API server serves at most " API_MAX_CONNS_STR
                    " at once; retry later");
            continue;
        }
        struct api_conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->srv = s;
        http_parser_init(&c->parser, s->max_payload);
        if (evloop_add(s->ev, &c->h, fd, EPOLLIN, on_conn) < 0) {
            http_parser_free(&c->parser);
            free(c);
            close(fd);
            continue;
        }
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
    }
}

/* An existing socket nobody listens on is stale and may be replaced. */
static int check_existing(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : err_set(-errno, "--api-sock %s: %s", path, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return err_set(-EEXIST, "--api-sock %s: exists and is not a socket", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    int live = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    if (live)
        return err_set(-EADDRINUSE, "--api-sock %s: another process is serving on it", path);
    if (unlink(path) < 0)
        return err_set(-errno, "--api-sock %s: cannot remove the stale socket: %s", path,
                       strerror(errno));
    return 0;
}

int api_server_listen(struct api_server *s, const char *path, struct evloop *ev, size_t max_payload,
                      api_route_fn route, void *opaque)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    s->spare_fd = -1;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(a.sun_path))
        return err_set(-ENAMETOOLONG, "--api-sock %s: longer than %zu bytes", path,
                       sizeof(a.sun_path) - 1);
    int rc = check_existing(path);
    if (rc)
        return rc;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return err_set(-errno, "--api-sock %s: socket: %s", path, strerror(errno));
    if (bind(s->fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s->fd, 512) < 0) {
        int e = errno;
        close(s->fd);
        s->fd = -1;
        return err_set(-e, "--api-sock %s: %s", path, strerror(e));
    }
    snprintf(s->path, sizeof(s->path), "%s", path);
    s->ev = ev;
    s->max_payload = max_payload;
    s->route = route;
    s->opaque = opaque;
    if ((s->spare_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
        int e = errno;
        close(s->fd);
        s->fd = -1;
        unlink(path);
        return err_set(-e, "--api-sock %s: eventfd: %s", path, strerror(e));
    }
    if ((rc = evloop_add(ev, &s->h, s->fd, EPOLLIN, on_accept)) < 0) {
        api_server_close(s);
        return err_set(rc, "--api-sock %s: event loop: %s", path, strerror(-rc));
    }
    return 0;
}

void api_server_close(struct api_server *s)
{
    while (s->conns)
        conn_free(s->conns);
    if (s->fd >= 0) {
        evloop_del(s->ev, &s->h);
        close(s->fd);
        unlink(s->path);
    }
    s->fd = -1;
    if (s->spare_fd >= 0)
        close(s->spare_fd);
    s->spare_fd = -1;
}
