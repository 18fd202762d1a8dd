/* json_util.h - strict reading of untrusted JSON with json-c.
 *
 * Every helper checks one thing and, on failure, records one err_set() line
 * that names the field by its path ("drives[1].is_read_only: expected a
 * boolean, got string") and returns -EINVAL (-ENOMEM on allocation failure).
 * Paths are built by the caller: `path` is the object's own path ("" for the
 * document itself), `key` the member name.
 */
#ifndef EMBER_JSON_UTIL_H
#define EMBER_JSON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

/* Room for any path we build (ids are at most 64 characters). */
#define JU_PATH_MAX 256

/* Field flags. */
#define JU_REQUIRED 0x1u /* absent: "PATH.KEY: missing required field" */
#define JU_NULLABLE 0x2u /* JSON null counts as absent (Firecracker's Option<T>) */
#define JU_NONEMPTY 0x4u /* strings: "" is an error */

/* Parse a whole document strictly: RFC 8259 only, nothing but whitespace after
 * the value, no NUL bytes. Error: "malformed JSON at offset N: <json-c's
 * message>". On success *out holds a new reference. */
int ju_parse(const char *text, size_t len, struct json_object **out);

/* "null", "boolean", "number", "integer", "string", "array", "object". */
const char *ju_type_name(struct json_object *o);

/* "PATH.KEY" (or "KEY" if path is empty) into buf; `key` made printable. */
void ju_join(char *buf, size_t n, const char *path, const char *key);
/* "PATH[INDEX]" into buf. */
void ju_index(char *buf, size_t n, const char *path, size_t index);
/* Copy at most 64 bytes of untrusted text for an error message, replacing
 * anything but printable ASCII with '?' (an ellipsis marks truncation). */
void ju_printable(char *buf, size_t n, const char *s, size_t len);

/* `o` must be an object: "PATH: expected an object, got array". */
int ju_expect_object(struct json_object *o, const char *path);
/* Every member of `o` must be in the NULL-terminated `allowed` list:
 * "PATH.KEY: unknown field". */
int ju_check_keys(struct json_object *o, const char *path, const char *const *allowed);

/* Look up a member. Return 1 and set *out when present, 0 when absent (or
 * null with JU_NULLABLE; *out untouched), <0 on error. */
int ju_get_bool(struct json_object *o, const char *path, const char *key, unsigned flags,
                bool *out);
/* Integers only (2.0 is "expected an integer, got number"), within [min, max]. */
int ju_get_int(struct json_object *o, const char *path, const char *key, unsigned flags,
               int64_t min, int64_t max, int64_t *out);
/* A string of at most max_len bytes with no NUL byte; *out is borrowed from `o`. */
int ju_get_string(struct json_object *o, const char *path, const char *key, unsigned flags,
                  size_t max_len, const char **out);
/* As ju_get_string, but *out is a malloc'd copy (caller frees). */
int ju_dup_string(struct json_object *o, const char *path, const char *key, unsigned flags,
                  size_t max_len, char **out);
/* A member that must be an object or an array (per `type`); *out borrowed. */
int ju_get_typed(struct json_object *o, const char *path, const char *key, unsigned flags,
                 enum json_type type, struct json_object **out);

#endif
