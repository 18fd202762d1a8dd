/* http.h - strict, incremental HTTP/1.1 request parser and response writer for
 * the API server (Firecracker-compatible REST API on a Unix socket).
 *
 * The parser is fed whatever bytes a non-blocking read() returned; it never
 * blocks, never reads past the end of the current request (pipelining) and
 * uses bounded memory: a fixed line buffer for the head plus one body buffer
 * of exactly Content-Length bytes (+1 for a NUL), at most max_payload.
 *
 * Decisions (the wire contract of this module):
 *  - Request line: `METHOD SP request-target SP HTTP/1.x CRLF`, single spaces.
 *    HTTP/1.1 and HTTP/1.0 are accepted (1.0 is not persistent unless it sends
 *    `Connection: keep-alive`); any other well-formed HTTP/x.y is 505, anything
 *    else 400. Responses are always HTTP/1.1.
 *  - Methods are case-sensitive. GET/PUT/PATCH are HTTP_GET/PUT/PATCH; the
 *    other RFC 9110 methods (HEAD POST DELETE OPTIONS CONNECT TRACE) are parsed
 *    completely (body included) as HTTP_METHOD_OTHER so the router answers 405;
 *    any other token is 400.
 *  - Target: origin-form (`/path`) or absolute-form (`http://host/path`, the
 *    scheme and authority are dropped). Bytes 0x21-0x7E only; no '#'. The path
 *    is not percent-decoded. A '?' splits it: `path` holds what precedes it,
 *    `query` what follows (has_query set); the router may reject or ignore a
 *    query. The path is at most HTTP_PATH_MAX-1 bytes (else 414), so is the
 *    query.
 *  - Line endings: CRLF only. A bare LF or a CR not followed by LF is 400.
 *    Empty lines before the request line are skipped (RFC 9112 2.2); they count
 *    against the head limit. Obsolete line folding is 400.
 *  - Headers: names are tokens, no whitespace before ':'; values are trimmed of
 *    SP/HTAB and may not contain control characters (HTAB allowed) or DEL. At
 *    most HTTP_MAX_HEADERS fields and HTTP_MAX_HEAD_BYTES bytes for the whole
 *    head (request line, fields, CRLFs): beyond that, 431 at once.
 *  - Content-Length: 1*DIGIT (no sign, no spaces inside, no list), <= UINT64
 *    else 400; a second Content-Length (even equal) is 400. Larger than
 *    max_payload: 400 "Request payload with size N is larger than the limit of
 *    M allowed by server." (Firecracker's status and text), detected right
 *    after the head, before any body byte is buffered. Accepted on every method
 *    (GET included; the body is read so the connection stays in sync and the
 *    router decides). No Content-Length: empty body.
 *  - Transfer-Encoding (any value, chunked included) is 501: Firecracker's API
 *    does not support it; clients must send Content-Length.
 *  - Connection: comma-separated tokens; "close" clears keep_alive,
 *    "keep-alive" sets it; other tokens ignored. Content-Type: stored (at most
 *    HTTP_CTYPE_MAX-1 bytes, else 400), a second one is 400. Expect:
 *    "100-continue" sets expect_continue (HTTP/1.1 only, see
 *    http_parser_want_continue()), any other expectation is 417. Other
 *    fields are validated and ignored.
 *  - After an error the byte stream is out of sync: the server should write
 *    the error response (http_fault_response()) and close the connection.
 */
#ifndef EMBER_HTTP_H
#define EMBER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_DEFAULT_MAX_PAYLOAD 51200 /* Firecracker's --http-api-max-payload-size */
#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_HEAD_BYTES 8192
#define HTTP_PATH_MAX 256 /* path and query, each, NUL included */
#define HTTP_METHOD_MAX 16
#define HTTP_CTYPE_MAX 128
#define HTTP_ERR_MAX 160 /* one-line reason, NUL included */

/* http_parse() results; errors are negative errnos:
 *   -EBADMSG  the request is invalid: p->err_status (4xx/5xx) and p->err_msg
 *             (one printable line, for fault_message) say why;
 *   -ENOMEM   the body buffer could not be allocated (err_status 500);
 *   -EINVAL   NULL arguments. */
#define HTTP_PARSE_INCOMPLETE 0
#define HTTP_PARSE_DONE 1

/* What the server writes when want_continue says so. */
#define HTTP_CONTINUE_RESPONSE "HTTP/1.1 100 Continue\r\n\r\n"

enum http_method {
    HTTP_METHOD_NONE = 0,
    HTTP_GET,
    HTTP_PUT,
    HTTP_PATCH,
    HTTP_METHOD_OTHER, /* a known method we do not serve: answer 405 */
};

struct http_request {
    enum http_method method;
    char method_name[HTTP_METHOD_MAX + 1]; /* as sent, e.g. "DELETE" */
    char path[HTTP_PATH_MAX];              /* starts with '/', no query */
    char query[HTTP_PATH_MAX];             /* after '?', "" if none */
    bool has_query;
    int version_minor; /* HTTP/1.<version_minor>: 0 or 1 */
    bool has_content_length;
    uint64_t content_length;
    bool has_content_type;
    char content_type[HTTP_CTYPE_MAX];
    bool keep_alive; /* false: close the connection after the response */
    bool expect_continue;
    char *body; /* body_len bytes + NUL, owned by the parser; NULL if empty */
    size_t body_len;
};

struct http_parser {
    struct http_request req; /* valid once http_parse() returned DONE */
    size_t max_payload;
    /* private */
    int state;
    size_t head_bytes;
    unsigned nheaders;
    bool saw_cr;
    bool conn_close, conn_keep_alive;
    bool continue_sent;
    size_t line_len;
    char line[HTTP_MAX_HEAD_BYTES];
    /* error (after a negative http_parse()) */
    int err_status;
    char err_msg[HTTP_ERR_MAX];
};

/* Initialize; max_payload 0 means HTTP_DEFAULT_MAX_PAYLOAD. No allocation. */
void http_parser_init(struct http_parser *p, size_t max_payload);
/* Forget the current request (frees its body) and get ready for the next one
 * on the same connection; max_payload is kept. */
void http_parser_reset(struct http_parser *p);
/* Release what the parser owns; it may be init'ed again afterwards. */
void http_parser_free(struct http_parser *p);

/* Feed len bytes. *consumed is set to how many of them belong to the current
 * request (all of them on INCOMPLETE; on DONE the rest is the next pipelined
 * request: reset, then feed buf + *consumed). Once DONE or an error has been
 * returned, further calls consume nothing and return the same result until
 * http_parser_reset(). */
int http_parse(struct http_parser *p, const char *buf, size_t len, size_t *consumed);

/* True exactly once per request: the head asked for `Expect: 100-continue`
 * and body bytes are still awaited. Write HTTP_CONTINUE_RESPONSE then. */
bool http_parser_want_continue(struct http_parser *p);

/* "GET", "PUT", "PATCH", "OTHER", "NONE". */
const char *http_method_str(enum http_method m);
/* Reason phrase of a status code ("Bad Request"), NULL if we never send it. */
const char *http_status_reason(int status);

/* Format a complete response into out (NUL-terminated):
 *   HTTP/1.1 <code> <reason>\r\nServer: Ember API\r\nConnection: keep-alive\r\n
 *   Content-Type: application/json\r\nContent-Length: N\r\n\r\n<body>
 * 204 (and 1xx/304) have neither body, Content-Type nor Content-Length; a NULL
 * or empty body on another status gives Content-Length: 0 and no Content-Type.
 * Returns the length (excluding the NUL), -ENOSPC if cap is too small,
 * -EINVAL for an unknown status or a body on 204. */
int http_response_format(char *out, size_t cap, int status, const char *json_body);
/* Same, with an explicit body length and `Connection: close` when close. */
int http_response_format_ex(char *out, size_t cap, int status, const char *body, size_t body_len,
                            bool close);

/* {"fault_message": "<msg, JSON-escaped>"} into out (NUL-terminated): '"',
 * '\\' and control characters are escaped, invalid UTF-8 becomes U+FFFD.
 * Returns the length, -ENOSPC if cap is too small, -EINVAL if msg is NULL. */
int http_fault_json(char *out, size_t cap, const char *msg);
/* A whole error response: status + fault_message body. Same returns. */
int http_fault_response(char *out, size_t cap, int status, const char *msg, bool close);

#endif
