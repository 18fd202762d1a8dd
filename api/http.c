/* http.c - strict, incremental HTTP/1.1 request parser and response writer
 * for the API server. The rules it enforces are listed in http.h.
 *
 * The head is consumed byte by byte into a fixed line buffer; each line is
 * checked as soon as its CRLF arrives (so a bad request line is refused
 * before any header is read, and a flood of headers is refused after
 * HTTP_MAX_HEADERS fields or HTTP_MAX_HEAD_BYTES bytes). The body is copied
 * into one buffer of exactly Content-Length bytes, allocated only after the
 * whole head was accepted and Content-Length checked against max_payload.
 */
#include "http.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { ST_HEAD = 0, ST_BODY, ST_DONE, ST_ERROR };

/* ---- helpers ---- */

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

/* At most 40 bytes of untrusted text for a message; anything but printable
 * ASCII becomes '?', truncation is marked with "...". */
static void printable(char *dst, size_t cap, const char *s, size_t n)
{
    const size_t lim = 40;
    size_t j = 0;
    for (size_t i = 0; i < n && i < lim && j + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (n > lim && j + 4 < cap) {
        memcpy(dst + j, "...", 3);
        j += 3;
    }
    if (cap)
        dst[j] = '\0';
}

__attribute__((format(printf, 3, 4))) static int fail(struct http_parser *p, int status,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err_msg, sizeof(p->err_msg), fmt, ap);
    va_end(ap);
    p->err_status = status;
    p->state = ST_ERROR;
    return -EBADMSG;
}

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Case-insensitive compare of s[0..n) with a NUL-terminated lowercase word. */
static bool ieq(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

/* ---- parser lifecycle ---- */

void http_parser_init(struct http_parser *p, size_t max_payload)
{
    memset(p, 0, sizeof(*p));
    p->max_payload = max_payload ? max_payload : HTTP_DEFAULT_MAX_PAYLOAD;
}

void http_parser_reset(struct http_parser *p)
{
    size_t max = p->max_payload;
    free(p->req.body);
    memset(&p->req, 0, sizeof(p->req));
    p->state = ST_HEAD;
    p->head_bytes = 0;
    p->nheaders = 0;
    p->saw_cr = false;
    p->conn_close = p->conn_keep_alive = false;
    p->continue_sent = false;
    p->line_len = 0;
    p->err_status = 0;
    p->err_msg[0] = '\0';
    p->max_payload = max;
}

void http_parser_free(struct http_parser *p)
{
    free(p->req.body);
    p->req.body = NULL;
    p->req.body_len = 0;
    http_parser_reset(p);
}

const char *http_method_str(enum http_method m)
{
    switch (m) {
    case HTTP_GET:
        return "GET";
    case HTTP_PUT:
        return "PUT";
    case HTTP_PATCH:
        return "PATCH";
    case HTTP_METHOD_OTHER:
        return "OTHER";
    default:
        return "NONE";
    }
}

/* ---- request line ---- */

static int set_target(struct http_parser *p, const char *t, size_t n)
{
    struct http_request *r = &p->req;
    char shown[48];

    if (n == 0)
        return fail(p, 400, "empty request target");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c <= 0x20 || c >= 0x7f || c == '#') {
            printable(shown, sizeof(shown), t, n);
            return fail(p, 400, "invalid character in request target '%s'", shown);
        }
    }
    bool implicit_root = false;
    if (n >= 7 && strncasecmp(t, "http://", 7) == 0) {
        /* absolute-form: drop scheme and authority */
        size_t i = 7;
        while (i < n && t[i] != '/' && t[i] != '?')
            i++;
        if (i == 7) {
            printable(shown, sizeof(shown), t, n);
            return fail(p, 400, "request target '%s' has no host", shown);
        }
        t += i;
        n -= i;
        implicit_root = n == 0 || t[0] == '?';
    } else if (t[0] != '/') {
        printable(shown, sizeof(shown), t, n);
        return fail(p, 400, "request target '%s' must start with '/'", shown);
    }
    const char *q = memchr(t, '?', n);
    size_t plen = q ? (size_t)(q - t) : n;
    if (plen + implicit_root >= HTTP_PATH_MAX)
        return fail(p, 414, "request path longer than %d bytes", HTTP_PATH_MAX - 1);
    if (implicit_root)
        r->path[0] = '/';
    memcpy(r->path + implicit_root, t, plen);
    r->path[plen + implicit_root] = '\0';
    if (q) {
        size_t qlen = n - plen - 1;
        if (qlen >= HTTP_PATH_MAX)
            return fail(p, 414, "request query longer than %d bytes", HTTP_PATH_MAX - 1);
        memcpy(r->query, q + 1, qlen);
        r->query[qlen] = '\0';
        r->has_query = true;
    }
    return 0;
}

static int parse_request_line(struct http_parser *p, const char *l, size_t n)
{
    struct http_request *r = &p->req;
    char shown[48];

    const char *sp1 = memchr(l, ' ', n);
    if (!sp1) {
        printable(shown, sizeof(shown), l, n);
        return fail(p, 400, "malformed request line '%s'", shown);
    }
    size_t mlen = (size_t)(sp1 - l);
    if (!is_token(l, mlen) || mlen > HTTP_METHOD_MAX) {
        printable(shown, sizeof(shown), l, mlen);
        return fail(p, 400, "invalid method '%s'", shown);
    }
    const char *t = sp1 + 1;
    size_t rest = n - mlen - 1;
    const char *sp2 = memchr(t, ' ', rest);
    if (!sp2)
        return fail(p, 400, "malformed request line: missing HTTP version");
    size_t tlen = (size_t)(sp2 - t);
    const char *v = sp2 + 1;
    size_t vlen = rest - tlen - 1;

    if (memchr(v, ' ', vlen))
        return fail(p, 400, "malformed request line: fields must be separated by single spaces");
    /* version: HTTP/DIGIT.DIGIT */
    if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9') {
        printable(shown, sizeof(shown), v, vlen);
        return fail(p, 400, "malformed HTTP version '%s'", shown);
    }
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return fail(p, 505, "HTTP version '%.8s' is not supported: use HTTP/1.1", v);
    r->version_minor = v[7] - '0';

    /* method */
    memcpy(r->method_name, l, mlen);
    r->method_name[mlen] = '\0';
    static const char *const other[] = {"HEAD",    "POST",  "DELETE", "OPTIONS",
                                        "CONNECT", "TRACE", NULL};
    if (strcmp(r->method_name, "GET") == 0) {
        r->method = HTTP_GET;
    } else if (strcmp(r->method_name, "PUT") == 0) {
        r->method = HTTP_PUT;
    } else if (strcmp(r->method_name, "PATCH") == 0) {
        r->method = HTTP_PATCH;
    } else {
        for (size_t i = 0; other[i]; i++)
            if (strcmp(r->method_name, other[i]) == 0)
                r->method = HTTP_METHOD_OTHER;
        if (r->method == HTTP_METHOD_NONE) {
            printable(shown, sizeof(shown), l, mlen);
            return fail(p, 400, "unknown method '%s'", shown);
        }
    }
    int rc = set_target(p, t, tlen);
    if (rc < 0) {
        r->method = HTTP_METHOD_NONE;
        return rc;
    }
    return 0;
}

/* ---- header fields ---- */

static int parse_content_length(struct http_parser *p, const char *v, size_t n)
{
    char shown[48];
    uint64_t x = 0;
    bool ok = n > 0;

    if (p->req.has_content_length)
        return fail(p, 400, "duplicate Content-Length header");
    for (size_t i = 0; ok && i < n; i++) {
        unsigned d = (unsigned char)v[i] - '0';
        if (d > 9 || x > (UINT64_MAX - d) / 10)
            ok = false;
        else
            x = x * 10 + d;
    }
    if (!ok) {
        printable(shown, sizeof(shown), v, n);
        return fail(p, 400, "invalid Content-Length '%s'", shown);
    }
    p->req.has_content_length = true;
    p->req.content_length = x;
    return 0;
}

static void parse_connection(struct http_parser *p, const char *v, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (s < e && ows(v[s]))
            s++;
        while (e > s && ows(v[e - 1]))
            e--;
        if (ieq(v + s, e - s, "close"))
            p->conn_close = true;
        else if (ieq(v + s, e - s, "keep-alive"))
            p->conn_keep_alive = true;
        i++; /* skip ',' */
    }
}

static int parse_header(struct http_parser *p, const char *l, size_t n)
{
    struct http_request *r = &p->req;
    char shown[48];

    if (++p->nheaders > HTTP_MAX_HEADERS)
        return fail(p, 431, "too many header fields (limit %d)", HTTP_MAX_HEADERS);
    if (ows(l[0]))
        return fail(p, 400, "obsolete header line folding is not supported");
    const char *colon = memchr(l, ':', n);
    if (!colon) {
        printable(shown, sizeof(shown), l, n);
        return fail(p, 400, "header line without ':' '%s'", shown);
    }
    size_t nlen = (size_t)(colon - l);
    if (!is_token(l, nlen)) {
        printable(shown, sizeof(shown), l, nlen);
        return fail(p, 400, "invalid header name '%s'", shown);
    }
    const char *v = colon + 1;
    size_t vlen = n - nlen - 1;
    while (vlen && ows(*v))
        v++, vlen--;
    while (vlen && ows(v[vlen - 1]))
        vlen--;
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            printable(shown, sizeof(shown), l, nlen);
            return fail(p, 400, "control character in value of header '%s'", shown);
        }
    }

    if (ieq(l, nlen, "content-length"))
        return parse_content_length(p, v, vlen);
    if (ieq(l, nlen, "transfer-encoding")) {
        printable(shown, sizeof(shown), v, vlen);
        return fail(p, 501,
                    "Transfer-Encoding '%s' is not supported (no chunked bodies): "
                    "send Content-Length",
                    shown);
    }
    if (ieq(l, nlen, "content-type")) {
        if (r->has_content_type)
            return fail(p, 400, "duplicate Content-Type header");
        if (vlen >= HTTP_CTYPE_MAX)
            return fail(p, 400, "Content-Type longer than %d bytes", HTTP_CTYPE_MAX - 1);
        memcpy(r->content_type, v, vlen);
        r->content_type[vlen] = '\0';
        r->has_content_type = true;
        return 0;
    }
    if (ieq(l, nlen, "connection")) {
        parse_connection(p, v, vlen);
        return 0;
    }
    if (ieq(l, nlen, "expect")) {
        if (!ieq(v, vlen, "100-continue")) {
            printable(shown, sizeof(shown), v, vlen);
            return fail(p, 417, "unsupported expectation '%s'", shown);
        }
        r->expect_continue = true;
        return 0;
    }
    return 0; /* any other field: validated, ignored */
}

/* The empty line after the fields: decide what follows. */
static int end_of_head(struct http_parser *p)
{
    struct http_request *r = &p->req;

    if (r->content_length > p->max_payload)
        return fail(p, 400,
                    "Request payload with size %" PRIu64
                    " is larger than the limit of %zu allowed by server.",
                    r->content_length, p->max_payload);
    if (r->version_minor == 1)
        r->keep_alive = !p->conn_close;
    else
        r->keep_alive = p->conn_keep_alive && !p->conn_close;
    if (r->version_minor == 0)
        r->expect_continue = false; /* RFC 9110 10.1.1: ignore it from 1.0 */
    if (r->content_length == 0) {
        r->expect_continue = false;
        p->state = ST_DONE;
        return 0;
    }
    r->body = malloc((size_t)r->content_length + 1);
    if (!r->body) {
        fail(p, 500, "out of memory for a %" PRIu64 "-byte body", r->content_length);
        return -ENOMEM;
    }
    r->body_len = 0;
    p->state = ST_BODY;
    return 0;
}

static int end_of_line(struct http_parser *p)
{
    const char *l = p->line;
    size_t n = p->line_len;
    p->line_len = 0;
    if (p->req.method == HTTP_METHOD_NONE) {
        if (n == 0)
            return 0; /* empty line before the request line */
        return parse_request_line(p, l, n);
    }
    if (n == 0)
        return end_of_head(p);
    return parse_header(p, l, n);
}

/* ---- the parser ---- */

static int result(const struct http_parser *p)
{
    if (p->state == ST_DONE)
        return HTTP_PARSE_DONE;
    if (p->state == ST_ERROR)
        return p->err_status == 500 ? -ENOMEM : -EBADMSG;
    return HTTP_PARSE_INCOMPLETE;
}

int http_parse(struct http_parser *p, const char *buf, size_t len, size_t *consumed)
{
    size_t i = 0;
    int rc = 0;

    if (!p || !consumed || (!buf && len))
        return -EINVAL;
    *consumed = 0;
    if (p->state == ST_DONE || p->state == ST_ERROR)
        return result(p);

    while (i < len && p->state == ST_HEAD) {
        char c = buf[i++];
        if (++p->head_bytes > HTTP_MAX_HEAD_BYTES) {
            rc = fail(p, 431, "request head larger than %d bytes", HTTP_MAX_HEAD_BYTES);
            break;
        }
        if (p->saw_cr) {
            p->saw_cr = false;
            if (c != '\n') {
                rc = fail(p, 400, "CR not followed by LF in request head");
                break;
            }
            rc = end_of_line(p);
            if (rc < 0)
                break;
            continue;
        }
        if (c == '\r') {
            p->saw_cr = true;
        } else if (c == '\n') {
            rc = fail(p, 400, "bare LF in request head: lines must end with CRLF");
            break;
        } else {
            p->line[p->line_len++] = c; /* line_len < head_bytes <= sizeof(line) */
        }
    }
    if (rc >= 0 && p->state == ST_BODY && i < len) {
        struct http_request *r = &p->req;
        size_t want = (size_t)r->content_length - r->body_len;
        size_t n = len - i < want ? len - i : want;
        memcpy(r->body + r->body_len, buf + i, n);
        r->body_len += n;
        i += n;
        if (r->body_len == r->content_length) {
            r->body[r->body_len] = '\0';
            p->state = ST_DONE;
        }
    }
    *consumed = i;
    if (rc < 0)
        return rc;
    return result(p);
}

bool http_parser_want_continue(struct http_parser *p)
{
    if (p->state != ST_BODY || !p->req.expect_continue || p->continue_sent || p->req.body_len != 0)
        return false;
    p->continue_sent = true;
    return true;
}

/* ---- responses ---- */

const char *http_status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return NULL;
    }
}

int http_response_format_ex(char *out, size_t cap, int status, const char *body, size_t body_len,
                            bool close)
{
    const char *reason = http_status_reason(status);
    bool no_body = status == 204 || (status >= 100 && status < 200);
    int n;

    if (!out || !reason || (body_len && !body))
        return -EINVAL;
    if (no_body && body_len)
        return -EINVAL;
    const char *conn = close ? "close" : "keep-alive";
    if (no_body)
        n = snprintf(out, cap, "HTTP/1.1 %d %s\r\nServer: Ember API\r\nConnection: %s\r\n\r\n",
                     status, reason, conn);
    else if (body_len == 0)
        n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\nServer: Ember API\r\nConnection: %s\r\n"
                     "Content-Length: 0\r\n\r\n",
                     status, reason, conn);
    else
        n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\nServer: Ember API\r\nConnection: %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     status, reason, conn, body_len);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n >= cap || body_len >= cap - (size_t)n || (size_t)n + body_len > INT32_MAX)
        return -ENOSPC;
    if (body_len)
        memcpy(out + n, body, body_len);
    out[(size_t)n + body_len] = '\0';
    return (int)((size_t)n + body_len);
}

int http_response_format(char *out, size_t cap, int status, const char *json_body)
{
    return http_response_format_ex(out, cap, status, json_body, json_body ? strlen(json_body) : 0,
                                   false);
}

struct sbuf {
    char *out;
    size_t cap, len;
    bool full;
};

static void put(struct sbuf *b, const char *s, size_t n)
{
    if (b->full || n >= b->cap - b->len) {
        b->full = true;
        return;
    }
    memcpy(b->out + b->len, s, n);
    b->len += n;
}

/* Length of the valid UTF-8 sequence at s (1-4), 0 if invalid. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4;
    else
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f; /* no surrogates */
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (s[1] < lo || s[1] > hi)
        return 0; /* also stops at the NUL terminator */
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

int http_fault_json(char *out, size_t cap, const char *msg)
{
    struct sbuf b = {.out = out, .cap = cap};
    static const char hex[] = "0123456789abcdef";

    if (!out || !msg)
        return -EINVAL;
    if (cap == 0)
        return -ENOSPC;
    put(&b, "{\"fault_message\": \"", 19);
    for (const unsigned char *s = (const unsigned char *)msg; *s;) {
        unsigned char c = *s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(&b, e, 2);
        } else if (c == '\n') {
            put(&b, "\\n", 2);
        } else if (c == '\r') {
            put(&b, "\\r", 2);
        } else if (c == '\t') {
            put(&b, "\\t", 2);
        } else if (c == '\b') {
            put(&b, "\\b", 2);
        } else if (c == '\f') {
            put(&b, "\\f", 2);
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(&b, e, 6);
        } else if (c >= 0x80) {
            size_t n = utf8_len(s);
            if (n == 0) {
                put(&b, "\\ufffd", 6);
                s++;
            } else {
                put(&b, (const char *)s, n);
                s += n;
            }
            continue;
        } else {
            put(&b, (const char *)s, 1);
        }
        s++;
    }
    put(&b, "\"}", 2);
    if (b.full)
        return -ENOSPC;
    out[b.len] = '\0';
    return b.len > INT32_MAX ? -ENOSPC : (int)b.len;
}

int http_fault_response(char *out, size_t cap, int status, const char *msg, bool close)
{
    char body[4096];
    int n = http_fault_json(body, sizeof(body), msg);
    if (n < 0)
        return n;
    return http_response_format_ex(out, cap, status, body, (size_t)n, close);
}
