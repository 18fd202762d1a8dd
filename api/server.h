/* server.h - the API's HTTP/1.1 server on a Unix socket, on the main loop.
 *
 * Non-blocking throughout: a connection's bytes are fed to its own
 * incremental parser (api/http.h) as they arrive, so a slow or half-sent
 * request never blocks the loop. Each complete request goes to the route
 * function; a malformed one gets a 400-class fault response and the
 * connection is closed after it. Persistent connections and pipelining work.
 */
#ifndef EMBER_API_SERVER_H
#define EMBER_API_SERVER_H

#include <stddef.h>

#include "../vmm/base/evloop.h"
#include "http.h"

/* At most this many connections at once; one more is answered 503 and closed.
 * When the process runs out of fds first (the usual 1024-fd soft limit, or a
 * low --resource-limit no-file), a spare fd kept for the purpose is given up
 * for long enough to accept the newcomer and answer it 503 too, rather than
 * leave the listening socket readable for the loop to spin on. */
#define API_MAX_CONNS 1024
#define API_MAX_CONNS_STR "1024"

/* Returns the HTTP status; *body is a malloc'd JSON body or NULL. */
typedef int (*api_route_fn)(void *opaque, const struct http_request *req, char **body);

struct api_conn;

struct api_server {
    struct ev_handler h;
    int fd;
    char path[108];
    struct evloop *ev;
    size_t max_payload;
    api_route_fn route;
    void *opaque;
    unsigned n_conns;
    struct api_conn *conns;
    int spare_fd; /* an eventfd held to be closed when accept4 meets EMFILE */
};

/* Bind and listen on `path`. An existing path is replaced only if it is a
 * stale socket nobody accepts on; anything else is an error naming it. */
int api_server_listen(struct api_server *s, const char *path, struct evloop *ev, size_t max_payload,
                      api_route_fn route, void *opaque);
/* Close every connection and the socket, and remove the socket file. */
void api_server_close(struct api_server *s);

#endif
