/* test_snapfile.c - unit tests for the snapshot container (vmm/base/snapfile.c) and the
 * snapshot request parsers (api/snapshot_json.c): a written file reads back section by
 * section; a flipped byte, a cut, another version, a foreign magic or a duplicate section
 * is refused with a message naming it; request bodies are checked field by field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../api/snapshot_json.h"
#include "../../vmm/base/err.h"
#include "../../vmm/base/snapfile.h"

static char *write_sample(size_t *len)
{
    char path[] = "/tmp/ember-snapfile-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct snap_writer w;
    snapw_init(&w);
    snapw_add(&w, 1, 0, "hello", 5);
    uint64_t big[100];
    for (int i = 0; i < 100; i++)
        big[i] = (uint64_t)i * 77;
    snapw_add(&w, 4, 3, big, sizeof(big));
    assert_int_equal(snapw_write(&w, path, "unit"), 0);
    snapw_free(&w);
    FILE *f = fopen(path, "rb");
    char *buf = malloc(1 << 16);
    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    unlink(path);
    return buf;
}

static void test_roundtrip(void **state)
{
    (void)state;
    size_t len;
    char *buf = write_sample(&len);
    struct snap_reader r;
    assert_int_equal(snapr_parse(&r, (uint8_t *)buf, len, "sample"), 0);
    assert_int_equal(r.n_sections, 2);
    assert_string_equal(r.producer, "unit");
    const struct snap_section *s = snapr_find(&r, 1, 0);
    assert_non_null(s);
    assert_int_equal(s->len, 5);
    assert_memory_equal(s->data, "hello", 5);
    s = snapr_find(&r, 4, 3);
    assert_non_null(s);
    assert_int_equal(s->len, 800);
    assert_int_equal(((const uint64_t *)(const void *)s->data)[99], 99 * 77);
    assert_null(snapr_find(&r, 4, 4));
    assert_int_equal(snapr_count(&r, 4), 1);
    snapr_close(&r);
    free(buf);
}

static void refused(const uint8_t *data, size_t len, const char *want)
{
    struct snap_reader r;
    assert_true(snapr_parse(&r, data, len, "bad") < 0);
    if (!strstr(err_msg(), want))
        fail_msg("message '%s' lacks '%s'", err_msg(), want);
}

static void test_refusals(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = (uint8_t *)write_sample(&len);
    uint8_t *c = malloc(len);
    memcpy(c, buf, len);
    c[len - 3] ^= 1;
    refused(c, len, "checksum");
    refused(buf, len - 8, "truncated or padded");
    refused(buf, 20, "truncated");
    memcpy(c, buf, len);
    c[8] = 2;
    refused(c, len, "format version 2");
    memcpy(c, buf, len);
    c[0] = 'X';
    refused(c, len, "bad magic");
    free(c);
    free(buf);
    /* The same section twice. */
    struct snap_writer w;
    snapw_init(&w);
    snapw_add(&w, 1, 0, "a", 1);
    snapw_add(&w, 1, 0, "b", 1);
    char path[] = "/tmp/ember-snapdup-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    assert_int_equal(snapw_write(&w, path, "unit"), 0);
    snapw_free(&w);
    struct snap_reader r;
    assert_true(snapr_open(&r, path) < 0);
    assert_non_null(strstr(err_msg(), "appears twice"));
    unlink(path);
    assert_true(snapr_open(&r, "/nonexistent/snap") < 0);
    assert_non_null(strstr(err_msg(), "No such file"));
}

static int load_body(const char *json, struct snapshot_load_params *p)
{
    struct json_object *o = json_tokener_parse(json);
    assert_non_null(o);
    int rc = config_parse_snapshot_load(o, p);
    json_object_put(o);
    return rc;
}

static void test_load_params(void **state)
{
    (void)state;
    struct snapshot_load_params p;
    assert_int_equal(load_body("{\"snapshot_path\":\"/s\",\"mem_backend\":{\"backend_type\":"
                               "\"Uffd\",\"backend_path\":\"/u.sock\"},\"enable_diff_snapshots\":"
                               "true,\"resume_vm\":true,\"network_overrides\":[{\"iface_id\":"
                               "\"eth0\",\"host_dev_name\":\"tap7\"}]}",
                               &p),
                     0);
    assert_int_equal(p.backend, MEM_BACKEND_UFFD);
    assert_string_equal(p.backend_path, "/u.sock");
    assert_true(p.track_dirty_pages && p.resume_vm);
    assert_int_equal(p.n_overrides, 1);
    assert_string_equal(p.overrides[0].host_dev_name, "tap7");
    config_snapshot_load_free(&p);
    assert_int_equal(load_body("{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\"}", &p), 0);
    assert_int_equal(p.backend, MEM_BACKEND_FILE);
    config_snapshot_load_free(&p);
    static const struct {
        const char *body, *want;
    } bad[] = {
        {"{\"mem_file_path\":\"/m\"}", "snapshot_path: missing"},
        {"{\"snapshot_path\":\"/s\"}", "mem_backend: missing"},
        {"{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\",\"track_dirty_pages\":true,"
         "\"enable_diff_snapshots\":true}",
         "not both"},
        {"{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\",\"huge_pages\":\"2M\"}", "huge_pages"},
        {"{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\",\"resume_vm\":1}", "resume_vm"},
        {"{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\",\"network_overrides\":[{\"iface_id\":"
         "\"a\",\"host_dev_name\":\"t\"},{\"iface_id\":\"a\",\"host_dev_name\":\"u\"}]}",
         "overridden twice"},
        {"{\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\",\"network_overrides\":[{\"iface_id\":"
         "\"a\",\"host_dev_name\":\"a-name-longer-than-15\"}]}",
         "host_dev_name"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_true(load_body(bad[i].body, &p) < 0);
        if (!strstr(err_msg(), bad[i].want))
            fail_msg("%s: message '%s' lacks '%s'", bad[i].body, err_msg(), bad[i].want);
    }
}

static void test_create_params(void **state)
{
    (void)state;
    struct snapshot_create_params p;
    struct json_object *o = json_tokener_parse(
        "{\"snapshot_type\":\"Diff\",\"snapshot_path\":\"/s\",\"mem_file_path\":\"/m\"}");
    assert_int_equal(config_parse_snapshot_create(o, &p), 0);
    json_object_put(o);
    assert_int_equal(p.type, SNAPSHOT_DIFF);
    config_snapshot_create_free(&p);
    o = json_tokener_parse("{\"snapshot_type\":\"Half\",\"snapshot_path\":\"/s\","
                           "\"mem_file_path\":\"/m\"}");
    assert_true(config_parse_snapshot_create(o, &p) < 0);
    assert_non_null(strstr(err_msg(), "snapshot_type"));
    json_object_put(o);
    o = json_tokener_parse("{\"snapshot_path\":\"/s\"}");
    assert_true(config_parse_snapshot_create(o, &p) < 0);
    assert_non_null(strstr(err_msg(), "mem_file_path"));
    json_object_put(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_load_params),
        cmocka_unit_test(test_create_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
