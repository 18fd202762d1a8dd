/* fuzz_http.c - libFuzzer harness for the HTTP/1.1 request parser and the
 * response writer (api/http.c).
 *
 * Input layout: byte 0-3 chunk sizes (cycled; 0xff = everything left),
 * byte 4 selects max_payload, the rest is the byte stream of one connection.
 * The stream is parsed twice: in one feed per request (pipelining) and in
 * the fuzzer-chosen chunks; both runs must see the same requests and the
 * same error at the same offset. Invariants: consumed <= len, INCOMPLETE
 * consumes everything, DONE means body_len == Content-Length <= max_payload
 * with a NUL-terminated body and a path starting with '/', an error has a
 * known status and one printable line, and every fault response we build
 * holds valid JSON whose fault_message round-trips. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "../../api/http.h"

#define MAX_OUTCOMES 512

struct outcome {
    int rc;
    size_t end; /* absolute offset just past the request / failing byte */
    int status;
    enum http_method method;
    uint64_t hash; /* path, query, body, error message, flags */
};

static struct http_parser P;

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *s = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

static void check_fault_json(const char *msg, int must_roundtrip)
{
    static char out[16384];
    int n = http_fault_json(out, sizeof(out), msg);
    if (n == -ENOSPC)
        return;
    if (n < 0 || (size_t)n != strlen(out))
        abort();
    struct json_tokener *tok = json_tokener_new();
    if (!tok)
        abort();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *o = json_tokener_parse_ex(tok, out, n);
    if (!o || json_tokener_get_parse_end(tok) != (size_t)n)
        abort();
    struct json_object *m;
    if (!json_object_object_get_ex(o, "fault_message", &m) ||
        !json_object_is_type(m, json_type_string))
        abort();
    if (must_roundtrip && strcmp(json_object_get_string(m), msg) != 0)
        abort();
    json_object_put(o);
    json_tokener_free(tok);
}

/* Check the invariants of a result and summarize it. */
static void record(int rc, size_t len, size_t used, size_t end, struct outcome *o)
{
    const struct http_request *r = &P.req;

    if (used > len)
        abort();
    if (rc == HTTP_PARSE_INCOMPLETE && used != len)
        abort();
    memset(o, 0, sizeof(*o));
    o->rc = rc;
    o->end = end;
    o->hash = 0xcbf29ce484222325ull;
    if (rc == HTTP_PARSE_DONE) {
        if (r->method == HTTP_METHOD_NONE || r->path[0] != '/' ||
            strnlen(r->path, HTTP_PATH_MAX) >= HTTP_PATH_MAX ||
            strnlen(r->query, HTTP_PATH_MAX) >= HTTP_PATH_MAX)
            abort();
        if (r->body_len != r->content_length || r->content_length > P.max_payload)
            abort();
        if ((r->body == NULL) != (r->body_len == 0) || (r->body && r->body[r->body_len] != '\0'))
            abort();
        if (r->version_minor != 0 && r->version_minor != 1)
            abort();
        static char resp[HTTP_DEFAULT_MAX_PAYLOAD + 512];
        int rn =
            http_response_format_ex(resp, sizeof(resp), 200, r->body, r->body_len, !r->keep_alive);
        if (rn < 0 || (size_t)rn <= r->body_len || memcmp(resp, "HTTP/1.1 200 OK\r\n", 17) != 0)
            abort();
        if (http_response_format(resp, sizeof(resp), 204, NULL) <= 0)
            abort();
        o->method = r->method;
        o->hash = fnv(o->hash, r->method_name, strlen(r->method_name) + 1);
        o->hash = fnv(o->hash, r->path, strlen(r->path) + 1);
        o->hash = fnv(o->hash, r->query, strlen(r->query) + 1);
        o->hash = fnv(o->hash, r->content_type, strlen(r->content_type) + 1);
        if (r->body)
            o->hash = fnv(o->hash, r->body, r->body_len);
        unsigned flags = r->keep_alive | r->expect_continue << 1 | r->has_query << 2 |
                         r->has_content_type << 3 | r->has_content_length << 4;
        o->hash = fnv(o->hash, &flags, sizeof(flags));
    } else if (rc < 0) {
        if (rc != -EBADMSG && rc != -ENOMEM)
            abort();
        if (!http_status_reason(P.err_status) || P.err_status < 400 || !P.err_msg[0])
            abort();
        for (const char *c = P.err_msg; *c; c++)
            if (*c < 0x20 || *c > 0x7e)
                abort();
        o->status = P.err_status;
        o->hash = fnv(o->hash, P.err_msg, strlen(P.err_msg));
        static char resp[20000];
        if (http_fault_response(resp, sizeof(resp), P.err_status, P.err_msg, true) <= 0)
            abort();
        check_fault_json(P.err_msg, 1);
    }
}

/* One feed per request; fills outs, returns how many. */
static size_t run_whole(const char *s, size_t n, struct outcome *outs)
{
    size_t off = 0, k = 0;
    while (k < MAX_OUTCOMES) {
        size_t used = 0;
        int rc = http_parse(&P, s + off, n - off, &used);
        off += used;
        record(rc, n - off + used, used, off, &outs[k++]);
        if (rc != HTTP_PARSE_DONE || off == n)
            break;
        http_parser_reset(&P);
    }
    http_parser_reset(&P);
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct outcome whole[MAX_OUTCOMES], chunked[MAX_OUTCOMES];
    static const size_t payloads[4] = {0, 16, 1, 1000};

    if (size < 5)
        return 0;
    const uint8_t *sizes = data;
    http_parser_init(&P, payloads[data[4] & 3]);
    const char *s = (const char *)data + 5;
    size_t n = size - 5;

    size_t nw = run_whole(s, n, whole);

    /* the same stream in chunks */
    size_t off = 0, k = 0, ci = 0;
    while (k < MAX_OUTCOMES) {
        size_t c = sizes[ci++ & 3];
        c = c == 0xff ? n - off : (c & 0x3f) + 1;
        if (c > n - off)
            c = n - off;
        size_t used = 0;
        int rc = http_parse(&P, s + off, c, &used);
        off += used;
        if (http_parser_want_continue(&P) && (!P.req.expect_continue || P.req.body_len))
            abort();
        if (rc == HTTP_PARSE_INCOMPLETE && off < n)
            continue;
        record(rc, c, used, off, &chunked[k++]);
        if (rc != HTTP_PARSE_DONE || off == n)
            break;
        http_parser_reset(&P);
    }
    http_parser_free(&P);

    if (k != nw)
        abort();
    for (size_t i = 0; i < k; i++)
        if (memcmp(&whole[i], &chunked[i], sizeof(whole[i])) != 0)
            abort();

    /* the fault writer on arbitrary bytes */
    char msg[600];
    size_t m = n < sizeof(msg) - 1 ? n : sizeof(msg) - 1;
    memcpy(msg, s, m);
    msg[m] = '\0';
    check_fault_json(msg, 0);
    return 0;
}
