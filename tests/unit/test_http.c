/* test_http.c - unit tests for the HTTP/1.1 request parser and response
 * writer (api/http.c): valid requests, byte-by-byte feeding, pipelining,
 * every rejection rule with its status and message, exact response bytes and
 * fault_message JSON escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../api/http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct http_parser P;

static int setup(void **state)
{
    (void)state;
    http_parser_init(&P, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    http_parser_free(&P);
    return 0;
}

/* Parse s in one feed; expect DONE having consumed all of it. */
static void parse_ok(const char *s)
{
    size_t used = 0;
    size_t n = strlen(s);
    int rc = http_parse(&P, s, n, &used);
    if (rc != HTTP_PARSE_DONE)
        print_error("rc=%d status=%d msg=%s\n", rc, P.err_status, P.err_msg);
    assert_int_equal(rc, HTTP_PARSE_DONE);
    assert_int_equal(used, n);
}

/* Parse s (length n) in one feed; expect an error with status and a message
 * containing want. The error is sticky and the message one printable line. */
static void parse_err_n(const char *s, size_t n, int status, const char *want)
{
    size_t used = 99999;
    http_parser_reset(&P);
    int rc = http_parse(&P, s, n, &used);
    if (rc != -EBADMSG || P.err_status != status || !strstr(P.err_msg, want))
        print_error("input '%.60s': rc=%d status=%d msg='%s' (want %d '%s')\n", s, rc, P.err_status,
                    P.err_msg, status, want);
    assert_int_equal(rc, -EBADMSG);
    assert_int_equal(P.err_status, status);
    assert_non_null(strstr(P.err_msg, want));
    assert_true(used <= n);
    for (const char *c = P.err_msg; *c; c++)
        assert_true(*c >= 0x20 && *c < 0x7f);
    rc = http_parse(&P, "GET / HTTP/1.1\r\n\r\n", 18, &used);
    assert_int_equal(rc, -EBADMSG);
    assert_int_equal(used, 0);
}

static void parse_err(const char *s, int status, const char *want)
{
    parse_err_n(s, strlen(s), status, want);
}

static void test_get(void **state)
{
    (void)state;
    parse_ok("GET /machine-config HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n");
    assert_int_equal(P.req.method, HTTP_GET);
    assert_string_equal(P.req.method_name, "GET");
    assert_string_equal(P.req.path, "/machine-config");
    assert_false(P.req.has_query);
    assert_int_equal(P.req.version_minor, 1);
    assert_true(P.req.keep_alive);
    assert_false(P.req.has_content_length);
    assert_null(P.req.body);
    assert_int_equal(P.req.body_len, 0);
}

static void test_put_body(void **state)
{
    (void)state;
    const char *body = "{\"kernel_image_path\": \"/k\", \"boot_args\": \"console=ttyS0\"}";
    char req[512];
    snprintf(req, sizeof(req),
             "PUT /boot-source HTTP/1.1\r\nContent-Type: application/json\r\n"
             "content-length: %zu\r\n\r\n%s",
             strlen(body), body);
    parse_ok(req);
    assert_int_equal(P.req.method, HTTP_PUT);
    assert_string_equal(P.req.path, "/boot-source");
    assert_true(P.req.has_content_type);
    assert_string_equal(P.req.content_type, "application/json");
    assert_true(P.req.has_content_length);
    assert_int_equal(P.req.content_length, strlen(body));
    assert_int_equal(P.req.body_len, strlen(body));
    assert_string_equal(P.req.body, body); /* NUL-terminated */
}

static void test_patch_body(void **state)
{
    (void)state;
    parse_ok("PATCH /vm HTTP/1.1\r\nContent-Length:   20  \r\n\r\n{\"state\": \"Paused\"}\n");
    assert_int_equal(P.req.method, HTTP_PATCH);
    assert_string_equal(P.req.path, "/vm");
    assert_int_equal(P.req.body_len, 20);
    assert_memory_equal(P.req.body, "{\"state\": \"Paused\"}\n", 20);
}

static void test_other_methods(void **state)
{
    (void)state;
    parse_ok("DELETE /drives/rootfs HTTP/1.1\r\n\r\n");
    assert_int_equal(P.req.method, HTTP_METHOD_OTHER);
    assert_string_equal(P.req.method_name, "DELETE");
    http_parser_reset(&P);
    parse_ok("POST /actions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
    assert_int_equal(P.req.method, HTTP_METHOD_OTHER);
    assert_string_equal(P.req.body, "{}");
    const char *others[] = {"HEAD", "OPTIONS", "TRACE", "CONNECT"};
    for (size_t i = 0; i < 4; i++) {
        char req[64];
        snprintf(req, sizeof(req), "%s / HTTP/1.1\r\n\r\n", others[i]);
        http_parser_reset(&P);
        parse_ok(req);
        assert_int_equal(P.req.method, HTTP_METHOD_OTHER);
    }
    assert_string_equal(http_method_str(HTTP_PATCH), "PATCH");
}

static void test_get_with_body_lenient(void **state)
{
    (void)state;
    parse_ok("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_null(P.req.body);
    http_parser_reset(&P);
    parse_ok("GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    assert_string_equal(P.req.body, "abc");
}

static void test_one_byte_feeds(void **state)
{
    (void)state;
    const char *req = "\r\nPUT /drives/rootfs HTTP/1.1\r\nHost: localhost\r\nContent-Length: 41\r\n"
                      "\r\n{\"drive_id\": \"rootfs\", \"is_read_only\": 1}";
    size_t n = strlen(req), used;
    for (size_t i = 0; i < n; i++) {
        int rc = http_parse(&P, req + i, 1, &used);
        assert_int_equal(used, 1);
        assert_int_equal(rc, i + 1 == n ? HTTP_PARSE_DONE : HTTP_PARSE_INCOMPLETE);
    }
    assert_string_equal(P.req.path, "/drives/rootfs");
    assert_int_equal(P.req.body_len, 41);
    assert_memory_equal(P.req.body, req + n - 41, 41);
    /* done is sticky and consumes nothing */
    assert_int_equal(http_parse(&P, "x", 1, &used), HTTP_PARSE_DONE);
    assert_int_equal(used, 0);
    /* an empty feed is fine */
    http_parser_reset(&P);
    assert_int_equal(http_parse(&P, NULL, 0, &used), HTTP_PARSE_INCOMPLETE);
    assert_int_equal(http_parse(NULL, "x", 1, &used), -EINVAL);
}

static void test_pipelined(void **state)
{
    (void)state;
    const char *a = "PUT /actions HTTP/1.1\r\nContent-Length: 31\r\n\r\n"
                    "{\"action_type\": \"FlushMetrics\"}";
    const char *b = "GET /vm/config HTTP/1.1\r\nConnection: close\r\n\r\n";
    char buf[256];
    snprintf(buf, sizeof(buf), "%s%s", a, b);
    size_t n = strlen(buf), used;

    assert_int_equal(http_parse(&P, buf, n, &used), HTTP_PARSE_DONE);
    assert_int_equal(used, strlen(a));
    assert_int_equal(P.req.method, HTTP_PUT);
    assert_string_equal(P.req.body, "{\"action_type\": \"FlushMetrics\"}");
    assert_true(P.req.keep_alive);
    http_parser_reset(&P);
    assert_int_equal(http_parse(&P, buf + strlen(a), n - strlen(a), &used), HTTP_PARSE_DONE);
    assert_int_equal(used, strlen(b));
    assert_int_equal(P.req.method, HTTP_GET);
    assert_string_equal(P.req.path, "/vm/config");
    assert_false(P.req.keep_alive);

    /* first request complete, the second split in the middle */
    http_parser_reset(&P);
    size_t cut = strlen(a) + 10;
    assert_int_equal(http_parse(&P, buf, cut, &used), HTTP_PARSE_DONE);
    assert_int_equal(used, strlen(a));
    http_parser_reset(&P);
    assert_int_equal(http_parse(&P, buf + used, cut - used, &used), HTTP_PARSE_INCOMPLETE);
    assert_int_equal(used, 10);
    assert_int_equal(http_parse(&P, buf + cut, n - cut, &used), HTTP_PARSE_DONE);
    assert_int_equal(used, n - cut);
    assert_string_equal(P.req.path, "/vm/config");
}

static void test_target_forms(void **state)
{
    (void)state;
    parse_ok("GET /vm?x=1&y HTTP/1.1\r\n\r\n");
    assert_string_equal(P.req.path, "/vm");
    assert_true(P.req.has_query);
    assert_string_equal(P.req.query, "x=1&y");
    http_parser_reset(&P);
    parse_ok("GET http://localhost/machine-config HTTP/1.1\r\n\r\n");
    assert_string_equal(P.req.path, "/machine-config");
    http_parser_reset(&P);
    parse_ok("GET http://localhost HTTP/1.1\r\n\r\n");
    assert_string_equal(P.req.path, "/");
    http_parser_reset(&P);
    parse_ok("GET http://localhost?q HTTP/1.1\r\n\r\n");
    assert_string_equal(P.req.path, "/");
    assert_string_equal(P.req.query, "q");
    /* longest path accepted */
    char req[600], path[HTTP_PATH_MAX];
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    path[HTTP_PATH_MAX - 1] = '\0';
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n\r\n", path);
    http_parser_reset(&P);
    parse_ok(req);
    assert_string_equal(P.req.path, path);
}

static void test_connection_versions(void **state)
{
    (void)state;
    parse_ok("GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(P.req.version_minor, 0);
    assert_false(P.req.keep_alive);
    http_parser_reset(&P);
    parse_ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert_true(P.req.keep_alive);
    http_parser_reset(&P);
    parse_ok("GET / HTTP/1.1\r\nConnection: TE, close\r\n\r\n");
    assert_false(P.req.keep_alive);
    http_parser_reset(&P);
    parse_ok("GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n");
    assert_true(P.req.keep_alive);
}

static void test_expect_continue(void **state)
{
    (void)state;
    const char *head = "PUT /logger HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    size_t used;
    assert_false(http_parser_want_continue(&P));
    assert_int_equal(http_parse(&P, head, strlen(head), &used), HTTP_PARSE_INCOMPLETE);
    assert_true(P.req.expect_continue);
    assert_true(http_parser_want_continue(&P));
    assert_false(http_parser_want_continue(&P)); /* once */
    assert_int_equal(http_parse(&P, "{}", 2, &used), HTTP_PARSE_DONE);
    assert_false(http_parser_want_continue(&P));
    assert_string_equal(HTTP_CONTINUE_RESPONSE, "HTTP/1.1 100 Continue\r\n\r\n");
    /* HTTP/1.0: ignored */
    http_parser_reset(&P);
    head = "PUT /logger HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    assert_int_equal(http_parse(&P, head, strlen(head), &used), HTTP_PARSE_INCOMPLETE);
    assert_false(http_parser_want_continue(&P));
    parse_err("PUT / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", 417, "unsupported expectation '200-ok'");
}

static void test_payload_limit(void **state)
{
    (void)state;
    parse_err("PUT /mmds HTTP/1.1\r\nContent-Length: 51201\r\n\r\n", 400,
              "Request payload with size 51201 is larger than the limit of 51200 allowed by "
              "server.");
    assert_string_equal(P.err_msg, "Request payload with size 51201 is larger than the limit of "
                                   "51200 allowed by server.");
    parse_err("PUT /mmds HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n", 400,
              "Request payload with size 18446744073709551615 is larger than the limit of 51200");
    /* a custom limit */
    http_parser_free(&P);
    http_parser_init(&P, 10);
    parse_ok("PUT / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789");
    parse_err("PUT / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 400,
              "Request payload with size 11 is larger than the limit of 10 allowed by server.");
}

static void test_request_line_errors(void **state)
{
    (void)state;
    parse_err("FOO / HTTP/1.1\r\n\r\n", 400, "unknown method 'FOO'");
    parse_err("get / HTTP/1.1\r\n\r\n", 400, "unknown method 'get'");
    parse_err("G@T / HTTP/1.1\r\n\r\n", 400, "invalid method 'G@T'");
    parse_err("ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n\r\n", 400, "invalid method");
    parse_err(" / HTTP/1.1\r\n\r\n", 400, "invalid method ''");
    parse_err("GET\r\n\r\n", 400, "malformed request line 'GET'");
    parse_err("GET /\r\n\r\n", 400, "missing HTTP version");
    parse_err("GET / HTTP/2.0\r\n\r\n", 505, "HTTP version 'HTTP/2.0' is not supported");
    parse_err("GET / HTTP/1.2\r\n\r\n", 505, "not supported");
    parse_err("GET / HTTP/1.1 \r\n\r\n", 400, "single spaces");
    parse_err("GET / http/1.1\r\n\r\n", 400, "malformed HTTP version 'http/1.1'");
    parse_err("GET / HTTP/11\r\n\r\n", 400, "malformed HTTP version");
    parse_err("GET  / HTTP/1.1\r\n\r\n", 400, "separated by single spaces");
    parse_err("GET  HTTP/1.1\r\n\r\n", 400, "empty request target");
    parse_err("GET foo HTTP/1.1\r\n\r\n", 400, "request target 'foo' must start with '/'");
    parse_err("GET * HTTP/1.1\r\n\r\n", 400, "must start with '/'");
    parse_err("GET /a#b HTTP/1.1\r\n\r\n", 400, "invalid character in request target");
    parse_err("GET /a\x80 HTTP/1.1\r\n\r\n", 400, "invalid character in request target '/a?'");
    parse_err("GET /a\tb HTTP/1.1\r\n\r\n", 400, "invalid character");
    parse_err("GET http:///x HTTP/1.1\r\n\r\n", 400, "has no host");
    parse_err_n("GET /\0 HTTP/1.1\r\n\r\n", 19, 400, "invalid character");

    char req[600], path[HTTP_PATH_MAX + 1];
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    path[HTTP_PATH_MAX] = '\0';
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n\r\n", path);
    parse_err(req, 414, "request path longer than 255 bytes");
    snprintf(req, sizeof(req), "GET /?%s HTTP/1.1\r\n\r\n", path);
    parse_err(req, 414, "request query longer than 255 bytes");
}

static void test_line_ending_errors(void **state)
{
    (void)state;
    parse_err("GET / HTTP/1.1\n\n", 400, "bare LF");
    parse_err("GET / HTTP/1.1\r\nHost: x\n\r\n", 400, "bare LF");
    parse_err("\nGET / HTTP/1.1\r\n\r\n", 400, "bare LF");
    parse_err("GET / HTTP/1.1\rX", 400, "CR not followed by LF");
    parse_err("GET / HTTP/1.1\r\nA: b\r\r\n", 400, "CR not followed by LF");
}

static void test_header_errors(void **state)
{
    (void)state;
    parse_err("GET / HTTP/1.1\r\nHost localhost\r\n\r\n", 400, "header line without ':'");
    parse_err("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "invalid header name 'Host '");
    parse_err("GET / HTTP/1.1\r\n: x\r\n\r\n", 400, "invalid header name ''");
    parse_err("GET / HTTP/1.1\r\nX(y): x\r\n\r\n", 400, "invalid header name");
    parse_err("GET / HTTP/1.1\r\nX-A: a\x01b\r\n\r\n", 400,
              "control character in value of "
              "header 'X-A'");
    parse_err("GET / HTTP/1.1\r\nX-A: a\x7f\r\n\r\n", 400, "control character");
    parse_err_n("GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n", 28, 400, "control character");
    parse_err("GET / HTTP/1.1\r\nX-A: a\r\n folded\r\n\r\n", 400, "folding");
    parse_err("GET / HTTP/1.1\r\nContent-Type: a\r\nContent-type: b\r\n\r\n", 400,
              "duplicate Content-Type");
    /* a tab inside a value is fine, trailing whitespace is trimmed */
    http_parser_reset(&P);
    parse_ok("PUT / HTTP/1.1\r\nContent-Type:\tapplication/json; a=b\t \r\n\r\n");
    assert_string_equal(P.req.content_type, "application/json; a=b");
}

static void test_content_length_errors(void **state)
{
    (void)state;
    parse_err("PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400,
              "duplicate Content-Length");
    parse_err("PUT / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400, "invalid Content-Length 'abc'");
    parse_err("PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "invalid Content-Length '-1'");
    parse_err("PUT / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400, "invalid Content-Length");
    parse_err("PUT / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", 400, "invalid Content-Length");
    parse_err("PUT / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\n", 400, "invalid Content-Length");
    parse_err("PUT / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400, "invalid Content-Length");
    parse_err("PUT / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400, "invalid Content-Length ''");
    parse_err("PUT / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n", 400,
              "invalid Content-Length '18446744073709551616'");
    parse_err("PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n", 400,
              "invalid Content-Length");
    parse_err("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501,
              "Transfer-Encoding 'chunked' is not supported (no chunked bodies)");
    parse_err("PUT / HTTP/1.1\r\nContent-Length: 5\r\ntransfer-encoding: identity\r\n\r\n", 501,
              "send Content-Length");
}

static void test_header_limits(void **state)
{
    (void)state;
    size_t cap = 64 + 10000 * 16, n, used;
    char *buf = malloc(cap);
    assert_non_null(buf);

    /* exactly HTTP_MAX_HEADERS fields: fine */
    n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < HTTP_MAX_HEADERS; i++)
        n += (size_t)sprintf(buf + n, "X-%d: v\r\n", i);
    n += (size_t)sprintf(buf + n, "\r\n");
    parse_ok(buf);

    /* 10,000 headers: refused at the 65th, long before the end */
    n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 10000; i++)
        n += (size_t)sprintf(buf + n, "X-%d: v\r\n", i);
    n += (size_t)sprintf(buf + n, "\r\n");
    parse_err_n(buf, n, 431, "too many header fields (limit 64)");
    http_parser_reset(&P);
    assert_int_equal(http_parse(&P, buf, n, &used), -EBADMSG);
    assert_true(used < 1024);

    /* one huge header: refused at byte 8193 */
    n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nX-Big: ");
    memset(buf + n, 'a', 20000);
    n += 20000;
    parse_err_n(buf, n, 431, "request head larger than 8192 bytes");
    http_parser_reset(&P);
    assert_int_equal(http_parse(&P, buf, n, &used), -EBADMSG);
    assert_int_equal(used, HTTP_MAX_HEAD_BYTES + 1);

    /* an endless stream of empty lines counts too */
    for (size_t i = 0; i < 10000; i++)
        memcpy(buf + 2 * i, "\r\n", 2);
    parse_err_n(buf, 20000, 431, "request head larger than");
    free(buf);
}

static void test_reset_reuse(void **state)
{
    (void)state;
    size_t used;
    const char *r = "PUT /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\nab";
    /* a request abandoned mid-body: reset frees the body */
    assert_int_equal(http_parse(&P, r, strlen(r), &used), HTTP_PARSE_INCOMPLETE);
    assert_non_null(P.req.body);
    http_parser_reset(&P);
    assert_null(P.req.body);
    assert_int_equal(P.max_payload, HTTP_DEFAULT_MAX_PAYLOAD);
    parse_ok("GET / HTTP/1.1\r\n\r\n");
    http_parser_reset(&P);
    parse_err("PUT / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, "invalid");
    http_parser_reset(&P);
    assert_int_equal(P.err_status, 0);
    parse_ok("GET /version HTTP/1.1\r\n\r\n");
    assert_string_equal(P.req.path, "/version");
}

/* ---- responses ---- */

static void check_response(int status, const char *body, const char *want)
{
    char out[512];
    int n = http_response_format(out, sizeof(out), status, body);
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
    /* exactly enough room (with the NUL) works, one byte less does not */
    assert_int_equal(http_response_format(out, strlen(want) + 1, status, body), n);
    assert_int_equal(http_response_format(out, strlen(want), status, body), -ENOSPC);
}

static void test_responses(void **state)
{
    (void)state;
    check_response(200, "{\"id\":\"x\"}",
                   "HTTP/1.1 200 OK\r\nServer: Ember API\r\nConnection: keep-alive\r\n"
                   "Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{\"id\":\"x\"}");
    check_response(204, NULL,
                   "HTTP/1.1 204 No Content\r\nServer: Ember API\r\n"
                   "Connection: keep-alive\r\n\r\n");
    check_response(400, "{\"fault_message\": \"bad\"}",
                   "HTTP/1.1 400 Bad Request\r\nServer: Ember API\r\nConnection: keep-alive\r\n"
                   "Content-Type: application/json\r\nContent-Length: 24\r\n\r\n"
                   "{\"fault_message\": \"bad\"}");
    check_response(404, "{\"fault_message\": \"x\"}",
                   "HTTP/1.1 404 Not Found\r\nServer: Ember API\r\nConnection: keep-alive\r\n"
                   "Content-Type: application/json\r\nContent-Length: 22\r\n\r\n"
                   "{\"fault_message\": \"x\"}");
    check_response(405, "{\"fault_message\": \"x\"}",
                   "HTTP/1.1 405 Method Not Allowed\r\nServer: Ember API\r\n"
                   "Connection: keep-alive\r\nContent-Type: application/json\r\n"
                   "Content-Length: 22\r\n\r\n{\"fault_message\": \"x\"}");
    check_response(200, NULL,
                   "HTTP/1.1 200 OK\r\nServer: Ember API\r\nConnection: keep-alive\r\n"
                   "Content-Length: 0\r\n\r\n");

    char out[256];
    assert_int_equal(http_response_format(out, sizeof(out), 299, "{}"), -EINVAL);
    assert_int_equal(http_response_format(out, sizeof(out), 204, "{}"), -EINVAL);
    assert_int_equal(http_response_format(out, 0, 200, "{}"), -ENOSPC);
    int n = http_response_format_ex(out, sizeof(out), 200, "{}xyz", 2, true);
    assert_true(n > 0);
    assert_string_equal(out, "HTTP/1.1 200 OK\r\nServer: Ember API\r\nConnection: close\r\n"
                             "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    n = http_fault_response(out, sizeof(out), 400, "no \"x\"", false);
    assert_string_equal(out, "HTTP/1.1 400 Bad Request\r\nServer: Ember API\r\n"
                             "Connection: keep-alive\r\nContent-Type: application/json\r\n"
                             "Content-Length: 29\r\n\r\n{\"fault_message\": \"no \\\"x\\\"\"}");
    assert_int_equal(n, strlen(out));
    assert_string_equal(http_status_reason(431), "Request Header Fields Too Large");
    assert_null(http_status_reason(299));
}

static void test_fault_escaping(void **state)
{
    (void)state;
    char out[256];
    int n = http_fault_json(out, sizeof(out), "a\"b\\c\nd\re\tf\bg\fh\x01i\x1f\x7fj");
    assert_string_equal(out, "{\"fault_message\": "
                             "\"a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh\\u0001i\\u001f\\u007fj\"}");
    assert_int_equal(n, strlen(out));
    /* valid UTF-8 passes through, invalid bytes become U+FFFD */
    http_fault_json(out, sizeof(out), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    assert_string_equal(out, "{\"fault_message\": \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}");
    http_fault_json(out, sizeof(out),
                    "a\xff"
                    "b\xc3"
                    "c\xed\xa0\x80"
                    "d\xc0\xaf");
    assert_string_equal(out, "{\"fault_message\": \"a\\ufffdb\\ufffdc\\ufffd\\ufffd\\ufffdd\\ufffd"
                             "\\ufffd\"}");
    http_fault_json(out, sizeof(out), "trunc\xe2\x82");
    assert_string_equal(out, "{\"fault_message\": \"trunc\\ufffd\\ufffd\"}");
    http_fault_json(out, sizeof(out), "");
    assert_string_equal(out, "{\"fault_message\": \"\"}");
    /* room */
    assert_int_equal(http_fault_json(out, 22, "x"), -ENOSPC);
    assert_int_equal(http_fault_json(out, 23, "x"), 22);
    assert_int_equal(http_fault_json(out, 23, "\""), -ENOSPC);
    assert_int_equal(http_fault_json(out, sizeof(out), NULL), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_patch_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_with_body_lenient, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_byte_feeds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_target_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_payload_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_line_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_ending_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_length_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_reuse, setup, teardown),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_fault_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
