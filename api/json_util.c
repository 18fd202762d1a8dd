/* json_util.c - strict reading of untrusted JSON with json-c (see json_util.h).
 *
 * json-c's strict mode still accepts a few things RFC 8259 does not (single
 * quotes, NaN/Infinity, raw control characters in strings) and silently keeps
 * the last of duplicate keys, so ju_parse() runs a small syntax check of its
 * own after json-c has accepted the text.
 */
#define _GNU_SOURCE
#include "json_util.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../vmm/base/err.h"

/* ---- syntax check ------------------------------------------------------ */

#define JU_MAX_DEPTH 32

struct span {
    size_t off, len;
};

struct scan {
    const char *s;
    size_t len, pos;
    const char *why;
};

static int sc_fail(struct scan *sc, const char *why)
{
    sc->why = why;
    return -1;
}

static void sc_ws(struct scan *sc)
{
    while (sc->pos < sc->len) {
        char c = sc->s[sc->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        sc->pos++;
    }
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int sc_string(struct scan *sc)
{
    if (sc->pos >= sc->len || sc->s[sc->pos] != '"')
        return sc_fail(sc, "expected a double-quoted string");
    sc->pos++;
    while (sc->pos < sc->len) {
        unsigned char c = (unsigned char)sc->s[sc->pos];
        if (c == '"') {
            sc->pos++;
            return 0;
        }
        if (c < 0x20)
            return sc_fail(sc, "control character in string");
        if (c == '\\') {
            if (++sc->pos >= sc->len)
                break;
            c = (unsigned char)sc->s[sc->pos];
            if (c == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (sc->pos + i >= sc->len || !is_hex(sc->s[sc->pos + i]))
                        return sc_fail(sc, "bad \\u escape");
                sc->pos += 4;
            } else if (!strchr("\"\\/bfnrt", c)) {
                return sc_fail(sc, "bad escape in string");
            }
        }
        sc->pos++;
    }
    return sc_fail(sc, "unterminated string");
}

static int sc_digits(struct scan *sc)
{
    size_t start = sc->pos;
    while (sc->pos < sc->len && sc->s[sc->pos] >= '0' && sc->s[sc->pos] <= '9')
        sc->pos++;
    return sc->pos > start ? 0 : sc_fail(sc, "digit expected");
}

static int sc_number(struct scan *sc)
{
    if (sc->pos < sc->len && sc->s[sc->pos] == '-')
        sc->pos++;
    if (sc->pos < sc->len && sc->s[sc->pos] == '0')
        sc->pos++;
    else if (sc_digits(sc) < 0)
        return -1;
    if (sc->pos < sc->len && sc->s[sc->pos] == '.') {
        sc->pos++;
        if (sc_digits(sc) < 0)
            return -1;
    }
    if (sc->pos < sc->len && (sc->s[sc->pos] == 'e' || sc->s[sc->pos] == 'E')) {
        sc->pos++;
        if (sc->pos < sc->len && (sc->s[sc->pos] == '+' || sc->s[sc->pos] == '-'))
            sc->pos++;
        if (sc_digits(sc) < 0)
            return -1;
    }
    return 0;
}

static int sc_word(struct scan *sc, const char *w)
{
    size_t n = strlen(w);
    if (sc->len - sc->pos < n || memcmp(sc->s + sc->pos, w, n) != 0)
        return sc_fail(sc, "unexpected character");
    sc->pos += n;
    return 0;
}

static int span_cmp(const void *a, const void *b, void *arg)
{
    const char *s = arg;
    const struct span *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(s + x->off, s + y->off, n);
    if (c)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

static int sc_value(struct scan *sc, int depth);

static int sc_object(struct scan *sc, int depth)
{
    struct span *keys = NULL;
    size_t n = 0, cap = 0;
    int rc = -1;

    sc->pos++; /* '{' */
    sc_ws(sc);
    if (sc->pos < sc->len && sc->s[sc->pos] == '}') {
        sc->pos++;
        return 0;
    }
    for (;;) {
        sc_ws(sc);
        size_t k = sc->pos;
        if (sc_string(sc) < 0)
            goto out;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct span *nk = realloc(keys, ncap * sizeof(*nk));
            if (!nk) {
                sc_fail(sc, "out of memory");
                goto out;
            }
            keys = nk;
            cap = ncap;
        }
        keys[n].off = k + 1;
        keys[n].len = sc->pos - k - 2;
        n++;
        sc_ws(sc);
        if (sc->pos >= sc->len || sc->s[sc->pos] != ':') {
            sc_fail(sc, "':' expected");
            goto out;
        }
        sc->pos++;
        if (sc_value(sc, depth + 1) < 0)
            goto out;
        sc_ws(sc);
        if (sc->pos < sc->len && sc->s[sc->pos] == ',') {
            sc->pos++;
            continue;
        }
        if (sc->pos < sc->len && sc->s[sc->pos] == '}') {
            sc->pos++;
            break;
        }
        sc_fail(sc, "',' or '}' expected");
        goto out;
    }
    /* Duplicate keys (compared as written): serde rejects them, json-c would
     * silently keep the last one. */
    qsort_r(keys, n, sizeof(*keys), span_cmp, (void *)sc->s);
    for (size_t i = 1; i < n; i++) {
        if (span_cmp(&keys[i - 1], &keys[i], (void *)sc->s) == 0) {
            sc->pos = keys[i].off - 1;
            sc_fail(sc, "duplicate key in object");
            goto out;
        }
    }
    rc = 0;
out:
    free(keys);
    return rc;
}

static int sc_array(struct scan *sc, int depth)
{
    sc->pos++; /* '[' */
    sc_ws(sc);
    if (sc->pos < sc->len && sc->s[sc->pos] == ']') {
        sc->pos++;
        return 0;
    }
    for (;;) {
        if (sc_value(sc, depth + 1) < 0)
            return -1;
        sc_ws(sc);
        if (sc->pos < sc->len && sc->s[sc->pos] == ',') {
            sc->pos++;
            continue;
        }
        if (sc->pos < sc->len && sc->s[sc->pos] == ']') {
            sc->pos++;
            return 0;
        }
        return sc_fail(sc, "',' or ']' expected");
    }
}

static int sc_value(struct scan *sc, int depth)
{
    if (depth > JU_MAX_DEPTH)
        return sc_fail(sc, "nesting too deep");
    sc_ws(sc);
    if (sc->pos >= sc->len)
        return sc_fail(sc, "unexpected end of data");
    char c = sc->s[sc->pos];
    switch (c) {
    case '{':
        return sc_object(sc, depth);
    case '[':
        return sc_array(sc, depth);
    case '"':
        return sc_string(sc);
    case 't':
        return sc_word(sc, "true");
    case 'f':
        return sc_word(sc, "false");
    case 'n':
        return sc_word(sc, "null");
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return sc_number(sc);
        return sc_fail(sc, "unexpected character");
    }
}

/* ---- parse --------------------------------------------------------------- */

int ju_parse(const char *text, size_t len, struct json_object **out)
{
    static const char nul[1] = {'\0'};
    const char *z;

    if (len > INT_MAX)
        return err_set(-EFBIG, "malformed JSON: document too large");
    z = memchr(text, '\0', len);
    if (z)
        return err_set(-EINVAL, "malformed JSON at offset %zu: NUL byte", (size_t)(z - text));

    struct json_tokener *tok = json_tokener_new();
    if (!tok)
        return err_set(-ENOMEM, "out of memory parsing JSON");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t off = json_tokener_get_parse_end(tok);
    if (!o && e == json_tokener_continue) {
        /* Input ended inside a value; a NUL tells json-c that was all (it
         * completes a bare top-level number, or reports the truncation). */
        o = json_tokener_parse_ex(tok, nul, 1);
        e = json_tokener_get_error(tok);
        off = len;
    }
    if (!o && e != json_tokener_success) {
        int rc =
            err_set(-EINVAL, "malformed JSON at offset %zu: %s", off, json_tokener_error_desc(e));
        json_tokener_free(tok);
        return rc;
    }
    json_tokener_free(tok);

    struct scan sc = {.s = text, .len = len};
    int bad = sc_value(&sc, 1);
    if (!bad) {
        sc_ws(&sc);
        if (sc.pos != len)
            bad = sc_fail(&sc, "unexpected character after the document");
    }
    if (bad) {
        json_object_put(o); /* NULL for a document that is just null */
        if (strcmp(sc.why, "out of memory") == 0)
            return err_set(-ENOMEM, "out of memory parsing JSON");
        return err_set(-EINVAL, "malformed JSON at offset %zu: %s", sc.pos, sc.why);
    }
    *out = o;
    return 0;
}

/* ---- names and paths ----------------------------------------------------- */

const char *ju_type_name(struct json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_null:
        return "null";
    case json_type_boolean:
        return "boolean";
    case json_type_double:
        return "number";
    case json_type_int:
        return "integer";
    case json_type_string:
        return "string";
    case json_type_array:
        return "array";
    case json_type_object:
        return "object";
    }
    return "unknown";
}

void ju_printable(char *buf, size_t n, const char *s, size_t len)
{
    size_t i, j = 0;
    if (n == 0)
        return;
    for (i = 0; i < len && i < 64 && j + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (i < len && j + 4 < n) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j] = '\0';
}

void ju_join(char *buf, size_t n, const char *path, const char *key)
{
    char k[72];
    ju_printable(k, sizeof(k), key, strlen(key));
    if (path && path[0])
        snprintf(buf, n, "%s.%s", path, k);
    else
        snprintf(buf, n, "%s", k);
}

void ju_index(char *buf, size_t n, const char *path, size_t index)
{
    snprintf(buf, n, "%s[%zu]", path, index);
}

/* ---- objects ------------------------------------------------------------- */

static const char *where(const char *path)
{
    return (path && path[0]) ? path : "configuration";
}

int ju_expect_object(struct json_object *o, const char *path)
{
    if (!json_object_is_type(o, json_type_object))
        return err_set(-EINVAL, "%s: expected an object, got %s", where(path), ju_type_name(o));
    return 0;
}

int ju_check_keys(struct json_object *o, const char *path, const char *const *allowed)
{
    json_object_object_foreach(o, key, val)
    {
        (void)val;
        const char *const *a;
        for (a = allowed; *a; a++)
            if (strcmp(*a, key) == 0)
                break;
        if (!*a) {
            char p[JU_PATH_MAX];
            ju_join(p, sizeof(p), path, key);
            return err_set(-EINVAL, "%s: unknown field", p);
        }
    }
    return 0;
}

/* Fetch a member: 1 present, 0 absent, <0 error (missing required). */
static int member(struct json_object *o, const char *path, const char *key, unsigned flags,
                  struct json_object **v)
{
    if (!json_object_object_get_ex(o, key, v) ||
        (json_object_is_type(*v, json_type_null) && (flags & JU_NULLABLE))) {
        if (flags & JU_REQUIRED) {
            char p[JU_PATH_MAX];
            ju_join(p, sizeof(p), path, key);
            return err_set(-EINVAL, "%s: missing required field", p);
        }
        return 0;
    }
    return 1;
}

static int type_error(const char *path, const char *key, const char *want, struct json_object *v)
{
    char p[JU_PATH_MAX];
    ju_join(p, sizeof(p), path, key);
    return err_set(-EINVAL, "%s: expected %s, got %s", p, want, ju_type_name(v));
}

int ju_get_bool(struct json_object *o, const char *path, const char *key, unsigned flags, bool *out)
{
    struct json_object *v;
    int rc = member(o, path, key, flags, &v);
    if (rc <= 0)
        return rc;
    if (!json_object_is_type(v, json_type_boolean))
        return type_error(path, key, "a boolean", v);
    *out = json_object_get_boolean(v);
    return 1;
}

int ju_get_int(struct json_object *o, const char *path, const char *key, unsigned flags,
               int64_t min, int64_t max, int64_t *out)
{
    struct json_object *v;
    char p[JU_PATH_MAX];
    int rc = member(o, path, key, flags, &v);
    if (rc <= 0)
        return rc;
    if (!json_object_is_type(v, json_type_int))
        return type_error(path, key, "an integer", v);
    int64_t x = json_object_get_int64(v);
    /* json-c keeps values above INT64_MAX as uint64 and saturates below
     * INT64_MIN; neither is a value any field accepts. */
    bool huge =
        (x == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX) || (x == INT64_MIN);
    if (huge || x < min || x > max) {
        ju_join(p, sizeof(p), path, key);
        if (huge)
            return err_set(-ERANGE,
                           "%s: must be between %" PRId64 " and %" PRId64
                           ", got an out-of-range number",
                           p, min, max);
        return err_set(-EINVAL, "%s: must be between %" PRId64 " and %" PRId64 ", got %" PRId64, p,
                       min, max, x);
    }
    *out = x;
    return 1;
}

int ju_get_string(struct json_object *o, const char *path, const char *key, unsigned flags,
                  size_t max_len, const char **out)
{
    struct json_object *v;
    char p[JU_PATH_MAX];
    int rc = member(o, path, key, flags, &v);
    if (rc <= 0)
        return rc;
    if (!json_object_is_type(v, json_type_string))
        return type_error(path, key, "a string", v);
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    ju_join(p, sizeof(p), path, key);
    if (memchr(s, '\0', len))
        return err_set(-EINVAL, "%s: must not contain a NUL character", p);
    if (len > max_len)
        return err_set(-EINVAL, "%s: too long (%zu bytes, at most %zu)", p, len, max_len);
    if (len == 0 && (flags & JU_NONEMPTY))
        return err_set(-EINVAL, "%s: must not be empty", p);
    *out = s;
    return 1;
}

int ju_dup_string(struct json_object *o, const char *path, const char *key, unsigned flags,
                  size_t max_len, char **out)
{
    const char *s;
    int rc = ju_get_string(o, path, key, flags, max_len, &s);
    if (rc <= 0)
        return rc;
    char *d = strdup(s);
    if (!d) {
        char p[JU_PATH_MAX];
        ju_join(p, sizeof(p), path, key);
        return err_set(-ENOMEM, "%s: out of memory", p);
    }
    *out = d;
    return 1;
}

int ju_get_typed(struct json_object *o, const char *path, const char *key, unsigned flags,
                 enum json_type type, struct json_object **out)
{
    struct json_object *v;
    int rc = member(o, path, key, flags, &v);
    if (rc <= 0)
        return rc;
    if (!json_object_is_type(v, type))
        return type_error(path, key, type == json_type_array ? "an array" : "an object", v);
    *out = v;
    return 1;
}
