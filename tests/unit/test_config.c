/* test_config.c - unit tests of the configuration model's JSON side
 * (vmm/config.c, api/config_json.c, api/json_util.c): valid documents,
 * round-trips, and every rejection with the field it names. */
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

#include "../../api/config_json.h"
#include "../../api/json_util.h"
#include "../../vmm/base/config.h"
#include "../../vmm/base/err.h"

/* ---- fixtures ------------------------------------------------------------ */

static const char FULL[] =
    "{\n"
    " \"boot-source\": {\"kernel_image_path\": \"/k/vmlinux\", \"initrd_path\": \"/k/initrd\",\n"
    "                 \"boot_args\": \"console=ttyS0 reboot=k\"},\n"
    " \"machine-config\": {\"vcpu_count\": 2, \"mem_size_mib\": 256, \"smt\": false,\n"
    "                    \"track_dirty_pages\": true, \"cpu_template\": \"None\",\n"
    "                    \"huge_pages\": \"None\"},\n"
    " \"drives\": [\n"
    "  {\"drive_id\": \"rootfs\", \"path_on_host\": \"/img/root.ext4\", \"is_root_device\": true,\n"
    "   \"is_read_only\": true, \"partuuid\": \"0eaa91a0-01\", \"cache_type\": \"Writeback\",\n"
    "   \"io_engine\": \"Async\",\n"
    "   \"rate_limiter\": {\"bandwidth\": {\"size\": 1048576, \"one_time_burst\": 4096,\n"
    "                                   \"refill_time\": 100},\n"
    "                    \"ops\": {\"size\": 100, \"refill_time\": 1000}}},\n"
    "  {\"drive_id\": \"data_1\", \"path_on_host\": \"/img/data.raw\", \"is_root_device\": false}\n"
    " ],\n"
    " \"network-interfaces\": [\n"
    "  {\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": "
    "\"06:00:AC:10:00:02\",\n"
    "   \"mtu\": 1500, \"rx_rate_limiter\": {\"bandwidth\": {\"size\": 1000, \"refill_time\": "
    "10}},\n"
    "   \"tx_rate_limiter\": {\"ops\": {\"size\": 5, \"one_time_burst\": 0, \"refill_time\": "
    "1}}},\n"
    "  {\"iface_id\": \"eth1\", \"host_dev_name\": \"tap1\"}\n"
    " ],\n"
    " \"logger\": {\"log_path\": \"/tmp/ember.log\", \"level\": \"debug\", \"show_level\": true,\n"
    "            \"show_log_origin\": true, \"module\": \"api_server\"},\n"
    " \"metrics\": {\"metrics_path\": \"/tmp/m.fifo\", \"emit_id\": true,\n"
    "             \"properties\": {\"team\": \"a\", \"zone\": \"b\"}}\n"
    "}\n";

/* What Firecracker's GET /vm/config prints (nulls for what is not set). */
static const char FC_EXPORT[] =
    "{\"balloon\":null,\"drives\":[{\"drive_id\":\"rootfs\",\"partuuid\":null,"
    "\"is_root_device\":true,\"cache_type\":\"Unsafe\",\"is_read_only\":false,"
    "\"path_on_host\":\"/r.ext4\",\"rate_limiter\":null,\"io_engine\":\"Sync\",\"socket\":null}],"
    "\"boot-source\":{\"kernel_image_path\":\"/vmlinux\",\"initrd_path\":null,\"boot_args\":null},"
    "\"cpu-config\":null,\"logger\":null,\"machine-config\":{\"vcpu_count\":1,"
    "\"mem_size_mib\":128,\"smt\":false,\"track_dirty_pages\":false,\"huge_pages\":\"None\"},"
    "\"metrics\":null,\"mmds-config\":null,\"network-interfaces\":[{\"iface_id\":\"eth0\","
    "\"host_dev_name\":\"tap0\",\"guest_mac\":null,\"rx_rate_limiter\":null,"
    "\"tx_rate_limiter\":null}],\"vsock\":null,\"entropy\":null,\"pmem\":[],"
    "\"memory-hotplug\":null}";

/* A valid drive body, to build drive documents from. */
#define D_OK "\"drive_id\":\"d0\",\"path_on_host\":\"/p\",\"is_root_device\":false"
#define DRIVES(...) "{\"drives\":[" __VA_ARGS__ "]}"
#define DRIVE(extra) DRIVES("{" D_OK extra "}")
#define N_OK "\"iface_id\":\"n0\",\"host_dev_name\":\"tap0\""
#define NETS(...) "{\"network-interfaces\":[" __VA_ARGS__ "]}"
#define NET(extra) NETS("{" N_OK extra "}")
#define MC(body) "{\"machine-config\":{" body "}}"
#define MC_OK "\"vcpu_count\":1,\"mem_size_mib\":128"
#define BS(body) "{\"boot-source\":{" body "}}"
#define LOGGER(body) "{\"logger\":{" body "}}"
#define METRICS(body) "{\"metrics\":{" body "}}"
#define RL(body) DRIVE(",\"rate_limiter\":{" body "}")
#define BW(body) RL("\"bandwidth\":{" body "}")

struct bad_case {
    const char *json;
    const char *needle; /* must appear in err_msg() */
};

static int parse(const char *json, struct vm_config *c)
{
    return config_parse_json(json, strlen(json), c);
}

/* Field-by-field equality, strings compared by content. */
static int str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int bucket_eq(const struct rate_bucket *a, const struct rate_bucket *b)
{
    return a->set == b->set && a->size == b->size && a->one_time_burst == b->one_time_burst &&
           a->refill_time_ms == b->refill_time_ms;
}

static int rl_eq(const struct rate_limiter *a, const struct rate_limiter *b)
{
    return bucket_eq(&a->bandwidth, &b->bandwidth) && bucket_eq(&a->ops, &b->ops);
}

static int config_eq(const struct vm_config *a, const struct vm_config *b)
{
    if (a->has_boot_source != b->has_boot_source ||
        !str_eq(a->boot.kernel_image_path, b->boot.kernel_image_path) ||
        !str_eq(a->boot.initrd_path, b->boot.initrd_path) ||
        !str_eq(a->boot.boot_args, b->boot.boot_args))
        return 0;
    if (a->machine.vcpu_count != b->machine.vcpu_count ||
        a->machine.mem_size_mib != b->machine.mem_size_mib || a->machine.smt != b->machine.smt ||
        a->machine.track_dirty_pages != b->machine.track_dirty_pages ||
        !str_eq(a->machine.cpu_template, b->machine.cpu_template))
        return 0;
    if (a->n_drives != b->n_drives || a->n_nets != b->n_nets)
        return 0;
    for (int i = 0; i < a->n_drives; i++) {
        const struct drive_config *x = &a->drives[i], *y = &b->drives[i];
        if (!str_eq(x->drive_id, y->drive_id) || !str_eq(x->path_on_host, y->path_on_host) ||
            x->is_root_device != y->is_root_device || x->is_read_only != y->is_read_only ||
            !str_eq(x->partuuid, y->partuuid) || x->cache_type != y->cache_type ||
            x->io_engine != y->io_engine || !rl_eq(&x->rate_limiter, &y->rate_limiter))
            return 0;
    }
    for (int i = 0; i < a->n_nets; i++) {
        const struct net_config *x = &a->nets[i], *y = &b->nets[i];
        if (!str_eq(x->iface_id, y->iface_id) || !str_eq(x->host_dev_name, y->host_dev_name) ||
            x->has_mac != y->has_mac || memcmp(x->guest_mac, y->guest_mac, 6) != 0 ||
            x->mtu != y->mtu || !rl_eq(&x->rx_rate_limiter, &y->rx_rate_limiter) ||
            !rl_eq(&x->tx_rate_limiter, &y->tx_rate_limiter))
            return 0;
    }
    if (a->has_logger != b->has_logger || !str_eq(a->logger.log_path, b->logger.log_path) ||
        a->logger.level != b->logger.level || a->logger.show_level != b->logger.show_level ||
        a->logger.show_log_origin != b->logger.show_log_origin ||
        !str_eq(a->logger.module, b->logger.module))
        return 0;
    if (a->has_metrics != b->has_metrics ||
        !str_eq(a->metrics.metrics_path, b->metrics.metrics_path) ||
        a->metrics.emit_id != b->metrics.emit_id ||
        a->metrics.n_properties != b->metrics.n_properties)
        return 0;
    for (int i = 0; i < a->metrics.n_properties; i++)
        if (!str_eq(a->metrics.properties[i].key, b->metrics.properties[i].key) ||
            !str_eq(a->metrics.properties[i].value, b->metrics.properties[i].value))
            return 0;
    return 1;
}

/* Parse `json` over a config holding FULL: it must fail naming `needle`, and
 * leave the config exactly as it was (same pointers, same content). */
static void expect_bad_len(const char *json, size_t len, const char *needle)
{
    struct vm_config c, ref;
    config_init(&c);
    config_init(&ref);
    assert_int_equal(parse(FULL, &c), 0);
    assert_int_equal(parse(FULL, &ref), 0);
    char *kernel = c.boot.kernel_image_path, *drive0 = c.drives[0].drive_id;

    err_clear();
    int rc = config_parse_json(json, len, &c);
    if (rc >= 0 || !strstr(err_msg(), needle))
        print_error("document: %.*s\nexpected error containing: %s\ngot rc=%d: %s\n", (int)len,
                    json, needle, rc, err_msg());
    assert_true(rc < 0);
    assert_non_null(strstr(err_msg(), needle));
    assert_true(c.boot.kernel_image_path == kernel && c.drives[0].drive_id == drive0);
    assert_true(config_eq(&c, &ref));
    config_free(&c);
    config_free(&ref);
}

static void expect_bad(const char *json, const char *needle)
{
    expect_bad_len(json, strlen(json), needle);
}

static void run_bad(const struct bad_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        expect_bad(cases[i].json, cases[i].needle);
}

#define RUN_BAD(cases) run_bad(cases, sizeof(cases) / sizeof(cases[0]))

static void expect_ok(const char *json, struct vm_config *c)
{
    config_init(c);
    int rc = parse(json, c);
    if (rc < 0)
        print_error("document: %s\nunexpected error: %s\n", json, err_msg());
    assert_int_equal(rc, 0);
}

/* ---- valid documents ----------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    struct vm_config c;
    config_init(&c);
    assert_int_equal(c.machine.vcpu_count, 1);
    assert_int_equal(c.machine.mem_size_mib, 128);
    assert_false(c.machine.smt);
    assert_false(c.has_boot_source);
    assert_int_equal(c.n_drives, 0);
    assert_int_equal(c.n_nets, 0);
    config_free(&c);

    expect_ok("{}", &c);
    assert_int_equal(c.machine.vcpu_count, 1);
    assert_int_equal(c.machine.mem_size_mib, 128);
    assert_false(c.has_boot_source || c.has_logger || c.has_metrics);
    config_free(&c);

    expect_ok(" \n{ }\t\r\n", &c);
    config_free(&c);
}

static void test_valid_full(void **state)
{
    (void)state;
    struct vm_config c;
    expect_ok(FULL, &c);

    assert_true(c.has_boot_source);
    assert_string_equal(c.boot.kernel_image_path, "/k/vmlinux");
    assert_string_equal(c.boot.initrd_path, "/k/initrd");
    assert_string_equal(c.boot.boot_args, "console=ttyS0 reboot=k");

    assert_int_equal(c.machine.vcpu_count, 2);
    assert_int_equal(c.machine.mem_size_mib, 256);
    assert_false(c.machine.smt);
    assert_true(c.machine.track_dirty_pages);
    assert_null(c.machine.cpu_template);

    assert_int_equal(c.n_drives, 2);
    struct drive_config *d = &c.drives[0];
    assert_string_equal(d->drive_id, "rootfs");
    assert_string_equal(d->path_on_host, "/img/root.ext4");
    assert_true(d->is_root_device);
    assert_true(d->is_read_only);
    assert_string_equal(d->partuuid, "0eaa91a0-01");
    assert_int_equal(d->cache_type, CACHE_WRITEBACK);
    assert_int_equal(d->io_engine, IO_ENGINE_ASYNC);
    assert_true(d->rate_limiter.bandwidth.set);
    assert_int_equal(d->rate_limiter.bandwidth.size, 1048576);
    assert_int_equal(d->rate_limiter.bandwidth.one_time_burst, 4096);
    assert_int_equal(d->rate_limiter.bandwidth.refill_time_ms, 100);
    assert_true(d->rate_limiter.ops.set);
    assert_int_equal(d->rate_limiter.ops.size, 100);
    assert_int_equal(d->rate_limiter.ops.one_time_burst, 0);
    assert_int_equal(d->rate_limiter.ops.refill_time_ms, 1000);
    d = &c.drives[1];
    assert_string_equal(d->drive_id, "data_1");
    assert_false(d->is_root_device);
    assert_false(d->is_read_only);
    assert_null(d->partuuid);
    assert_int_equal(d->cache_type, CACHE_UNSAFE);
    assert_int_equal(d->io_engine, IO_ENGINE_SYNC);
    assert_false(d->rate_limiter.bandwidth.set || d->rate_limiter.ops.set);

    assert_int_equal(c.n_nets, 2);
    struct net_config *n = &c.nets[0];
    static const uint8_t mac[6] = {0x06, 0x00, 0xac, 0x10, 0x00, 0x02};
    assert_string_equal(n->iface_id, "eth0");
    assert_string_equal(n->host_dev_name, "tap0");
    assert_true(n->has_mac);
    assert_memory_equal(n->guest_mac, mac, 6);
    assert_int_equal(n->mtu, 1500);
    assert_true(n->rx_rate_limiter.bandwidth.set);
    assert_false(n->rx_rate_limiter.ops.set);
    assert_int_equal(n->rx_rate_limiter.bandwidth.size, 1000);
    assert_true(n->tx_rate_limiter.ops.set);
    assert_false(n->tx_rate_limiter.bandwidth.set);
    assert_int_equal(n->tx_rate_limiter.ops.refill_time_ms, 1);
    n = &c.nets[1];
    assert_false(n->has_mac);
    assert_int_equal(n->mtu, 0);

    assert_true(c.has_logger);
    assert_string_equal(c.logger.log_path, "/tmp/ember.log");
    assert_int_equal(c.logger.level, LOG_DEBUG);
    assert_true(c.logger.show_level);
    assert_true(c.logger.show_log_origin);
    assert_string_equal(c.logger.module, "api_server");

    assert_true(c.has_metrics);
    assert_string_equal(c.metrics.metrics_path, "/tmp/m.fifo");
    assert_true(c.metrics.emit_id);
    assert_int_equal(c.metrics.n_properties, 2);
    assert_string_equal(c.metrics.properties[0].key, "team");
    assert_string_equal(c.metrics.properties[0].value, "a");
    config_free(&c);
}

static void test_firecracker_export_accepted(void **state)
{
    (void)state;
    struct vm_config c;
    expect_ok(FC_EXPORT, &c);
    assert_true(c.has_boot_source);
    assert_null(c.boot.initrd_path);
    assert_null(c.boot.boot_args);
    assert_int_equal(c.n_drives, 1);
    assert_null(c.drives[0].partuuid);
    assert_int_equal(c.n_nets, 1);
    assert_false(c.nets[0].has_mac);
    assert_false(c.has_logger || c.has_metrics);
    config_free(&c);
}

static void test_valid_variants(void **state)
{
    (void)state;
    struct vm_config c;
    static const char *const levels[][2] = {{"Error", "0"}, {"WARNING", "1"}, {"warn", "1"},
                                            {"Info", "2"},  {"dEbUg", "3"},   {"trace", "4"},
                                            {"OFF", "5"}};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        char doc[128];
        snprintf(doc, sizeof(doc), LOGGER("\"level\":\"%s\""), levels[i][0]);
        expect_ok(doc, &c);
        assert_int_equal(c.logger.level, atoi(levels[i][1]));
        assert_null(c.logger.log_path);
        config_free(&c);
    }
    /* Logger without anything: Firecracker's defaults. */
    expect_ok(LOGGER(""), &c);
    assert_true(c.has_logger);
    assert_int_equal(c.logger.level, LOG_INFO);
    config_free(&c);

    /* Edges of every range. */
    expect_ok(MC("\"vcpu_count\":32,\"mem_size_mib\":1048576"), &c);
    assert_int_equal(c.machine.vcpu_count, 32);
    config_free(&c);
    expect_ok(MC("\"vcpu_count\":1,\"mem_size_mib\":1"), &c);
    config_free(&c);
    expect_ok(NET(",\"mtu\":68"), &c);
    config_free(&c);
    expect_ok(NET(",\"mtu\":65535,\"guest_mac\":\"02:ff:ff:ff:ff:fe\""), &c);
    config_free(&c);
    expect_ok(NET(",\"mtu\":null,\"guest_mac\":null,\"rx_rate_limiter\":null"), &c);
    config_free(&c);
    expect_ok(BW("\"size\":0,\"refill_time\":0,\"one_time_burst\":null"), &c);
    config_free(&c);
    expect_ok(BW("\"size\":9223372036854775807,\"refill_time\":18446744073709"), &c);
    assert_int_equal(c.drives[0].rate_limiter.bandwidth.size, INT64_MAX);
    config_free(&c);
    expect_ok(RL(""), &c);
    config_free(&c);
    expect_ok(RL("\"bandwidth\":null,\"ops\":null"), &c);
    config_free(&c);
    expect_ok(DRIVE(",\"partuuid\":null,\"socket\":null,\"io_engine\":null"), &c);
    config_free(&c);
    /* 64-character ids, 15-character interface names, the biggest path. */
    char doc[8192];
    char id[65], path[4096];
    memset(id, 'a', 64);
    id[64] = '\0';
    memset(path, 'p', 4095);
    path[0] = '/';
    path[4095] = '\0';
    snprintf(doc, sizeof(doc),
             "{\"drives\":[{\"drive_id\":\"%s\",\"path_on_host\":\"%s\",\"is_root_device\":true}],"
             "\"network-interfaces\":[{\"iface_id\":\"%s\",\"host_dev_name\":\"abcdefghijklmno\"}]"
             "}",
             id, path, id);
    expect_ok(doc, &c);
    assert_int_equal(strlen(c.drives[0].path_on_host), 4095);
    config_free(&c);
    /* Exactly the limits on device counts. */
    snprintf(doc, sizeof(doc), "{\"drives\":[");
    for (int i = 0; i < CONFIG_MAX_DRIVES; i++)
        snprintf(doc + strlen(doc), sizeof(doc) - strlen(doc),
                 "%s{\"drive_id\":\"d%d\",\"path_on_host\":\"/p\",\"is_root_device\":false}",
                 i ? "," : "", i);
    strcat(doc, "]}");
    expect_ok(doc, &c);
    assert_int_equal(c.n_drives, CONFIG_MAX_DRIVES);
    config_free(&c);
    /* Unicode and escapes in strings are fine. */
    expect_ok(BS("\"kernel_image_path\":\"/k/\\u00e9t\\u00e9\\/vmlinux\",\"boot_args\":\"\""), &c);
    assert_string_equal(c.boot.kernel_image_path, "/k/\xc3\xa9t\xc3\xa9/vmlinux");
    assert_string_equal(c.boot.boot_args, "");
    config_free(&c);
}

/* ---- round trip ---------------------------------------------------------- */

static void round_trip(const char *json)
{
    struct vm_config a, b;
    expect_ok(json, &a);
    char *s1 = config_to_json(&a);
    assert_non_null(s1);
    expect_ok(s1, &b);
    if (!config_eq(&a, &b))
        print_error("round trip differs for:\n%s\n", s1);
    assert_true(config_eq(&a, &b));
    char *s2 = config_to_json(&b);
    assert_non_null(s2);
    assert_string_equal(s1, s2);
    free(s1);
    free(s2);
    config_free(&a);
    config_free(&b);
}

static void test_round_trip(void **state)
{
    (void)state;
    round_trip(FULL);
    round_trip(FC_EXPORT);
    round_trip("{}");
    round_trip(LOGGER("\"level\":\"Off\""));
    round_trip(METRICS("\"metrics_path\":\"/m\""));
    round_trip(BW("\"size\":5,\"refill_time\":7"));
    round_trip(NET(",\"tx_rate_limiter\":{\"bandwidth\":{\"size\":1,\"refill_time\":2}}"));
    round_trip(BS("\"kernel_image_path\":\"/a/\\\"q\\\"\\\\b\",\"boot_args\":\"a=\\\"b c\\\"\""));
}

static void test_to_json_shape(void **state)
{
    (void)state;
    struct vm_config c;
    expect_ok(FULL, &c);
    char *s = config_to_json(&c);
    assert_non_null(s);
    /* Firecracker's keys and the defaults it prints. */
    assert_non_null(strstr(s, "\"boot-source\""));
    assert_non_null(strstr(s, "\"machine-config\""));
    assert_non_null(strstr(s, "\"huge_pages\": \"None\""));
    assert_non_null(strstr(s, "\"drives\""));
    assert_non_null(strstr(s, "\"network-interfaces\""));
    assert_non_null(strstr(s, "\"guest_mac\": \"06:00:ac:10:00:02\""));
    assert_non_null(strstr(s, "\"cache_type\": \"Unsafe\""));
    assert_non_null(strstr(s, "\"io_engine\": \"Sync\""));
    assert_non_null(strstr(s, "\"level\": \"Debug\""));
    assert_non_null(strstr(s, "\"rate_limiter\": null"));
    assert_non_null(strstr(s, "\"balloon\": null"));
    assert_non_null(strstr(s, "\"pmem\": ["));
    assert_non_null(strstr(s, "\"mmds-config\": null"));
    assert_non_null(strstr(s, "\"cpu-config\": null"));
    free(s);
    config_free(&c);

    config_init(&c);
    s = config_to_json(&c);
    assert_non_null(s);
    /* Unset sections print as null (as Firecracker), and parse back. */
    assert_non_null(strstr(s, "\"boot-source\": null"));
    assert_non_null(strstr(s, "\"logger\": null"));
    assert_non_null(strstr(s, "\"metrics\": null"));
    assert_non_null(strstr(s, "\"drives\": ["));
    assert_non_null(strstr(s, "\"vcpu_count\": 1"));
    assert_non_null(strstr(s, "\"mem_size_mib\": 128"));
    free(s);
    config_free(&c);
}

/* ---- rejections ---------------------------------------------------------- */

static void test_malformed_json(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"", "malformed JSON at offset 0: unexpected end of data"},
        {"   \n", "malformed JSON at offset 4: unexpected end of data"},
        {"{\"machine-config\": {\"vcpu_count\": 2", "malformed JSON at offset 35"},
        {"{\"drives\": [", "malformed JSON at offset 12"},
        {"{} x", "malformed JSON at offset 3"},
        {"{}{}", "malformed JSON at offset 2"},
        {"{} // comment", "malformed JSON at offset 3"},
        {"{\"a\":1,}", "malformed JSON at offset 7"},
        {"{'boot-source':{}}", "malformed JSON at offset 1: expected a double-quoted string"},
        {"{\"logger\":{\"level\":NaN}}", "malformed JSON at offset 19"},
        {"{\"logger\":{\"log_path\":\"a\tb\"}}", "control character in string"},
        {"{\"logger\":{},\"logger\":{}}", "malformed JSON at offset 13: duplicate key"},
        {"{\"a\":{\"b\":1,\"b\":2}}", "duplicate key"},
        {"{\"x\":01}", "malformed JSON at offset 7"},
        {"{\"x\":\"\\q\"}", "malformed JSON"},
        {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
         "malformed JSON"},
    };
    RUN_BAD(cases);
    /* A NUL byte inside the text. */
    expect_bad_len("{}\0{}", 5, "malformed JSON at offset 2: NUL byte");
    struct vm_config c;
    config_init(&c);
    assert_true(config_parse_json(NULL, 0, &c) < 0);
    config_free(&c);
}

static void test_not_an_object(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"[]", "configuration: expected an object, got array"},
        {"42", "configuration: expected an object, got integer"},
        {"\"x\"", "configuration: expected an object, got string"},
        {"null", "configuration: expected an object, got null"},
        {"true", "configuration: expected an object, got boolean"},
        {"{\"boot-source\": []}", "boot-source: expected an object, got array"},
        {"{\"machine-config\": 1}", "machine-config: expected an object, got integer"},
        {"{\"drives\": {}}", "drives: expected an array, got object"},
        {"{\"drives\": [1]}", "drives[0]: expected an object, got integer"},
        {"{\"network-interfaces\": \"eth0\"}", "network-interfaces: expected an array"},
        {"{\"network-interfaces\": [[]]}", "network-interfaces[0]: expected an object"},
        {"{\"logger\": \"x\"}", "logger: expected an object, got string"},
        {"{\"metrics\": []}", "metrics: expected an object, got array"},
        {RL("\"bandwidth\":5"), "drives[0].rate_limiter.bandwidth: expected an object"},
        {DRIVE(",\"rate_limiter\":[]"), "drives[0].rate_limiter: expected an object"},
        {METRICS("\"metrics_path\":\"/m\",\"properties\":[]"),
         "metrics.properties: expected an object"},
    };
    RUN_BAD(cases);
}

static void test_type_errors(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {BS("\"kernel_image_path\":1"),
         "boot-source.kernel_image_path: expected a string, got integer"},
        {BS("\"kernel_image_path\":\"/k\",\"initrd_path\":true"),
         "boot-source.initrd_path: expected a string, got boolean"},
        {BS("\"kernel_image_path\":\"/k\",\"boot_args\":[]"),
         "boot-source.boot_args: expected a string, got array"},
        {MC("\"vcpu_count\":\"2\",\"mem_size_mib\":128"),
         "machine-config.vcpu_count: expected an integer, got string"},
        {MC("\"vcpu_count\":2.0,\"mem_size_mib\":128"),
         "machine-config.vcpu_count: expected an integer, got number"},
        {MC("\"vcpu_count\":1,\"mem_size_mib\":1e3"),
         "machine-config.mem_size_mib: expected an integer, got number"},
        {MC("\"vcpu_count\":1,\"mem_size_mib\":null"),
         "machine-config.mem_size_mib: expected an integer, got null"},
        {MC(MC_OK ",\"smt\":0"), "machine-config.smt: expected a boolean, got integer"},
        {MC(MC_OK ",\"track_dirty_pages\":\"true\""),
         "machine-config.track_dirty_pages: expected a boolean, got string"},
        {MC(MC_OK ",\"cpu_template\":0"), "machine-config.cpu_template: expected a string"},
        {MC(MC_OK ",\"huge_pages\":false"), "machine-config.huge_pages: expected a string"},
        {DRIVES("{" D_OK "},{\"drive_id\":\"d1\",\"path_on_host\":\"/q\",\"is_root_device\":false,"
                "\"is_read_only\":1}"),
         "drives[1].is_read_only: expected a boolean, got integer"},
        {DRIVES("{\"drive_id\":7,\"path_on_host\":\"/p\",\"is_root_device\":false}"),
         "drives[0].drive_id: expected a string, got integer"},
        {DRIVES("{\"drive_id\":\"d\",\"path_on_host\":{},\"is_root_device\":false}"),
         "drives[0].path_on_host: expected a string, got object"},
        {DRIVES("{\"drive_id\":\"d\",\"path_on_host\":\"/p\",\"is_root_device\":\"yes\"}"),
         "drives[0].is_root_device: expected a boolean, got string"},
        {DRIVES("{\"drive_id\":\"d\",\"path_on_host\":\"/p\",\"is_root_device\":true,"
                "\"partuuid\":1}"),
         "drives[0].partuuid: expected a string"},
        {DRIVE(",\"cache_type\":0"), "drives[0].cache_type: expected a string"},
        {DRIVE(",\"io_engine\":true"), "drives[0].io_engine: expected a string"},
        {BW("\"size\":\"1\",\"refill_time\":1"),
         "drives[0].rate_limiter.bandwidth.size: expected an integer, got string"},
        {BW("\"size\":1,\"refill_time\":1.5"),
         "drives[0].rate_limiter.bandwidth.refill_time: expected an integer, got number"},
        {RL("\"ops\":{\"size\":1,\"refill_time\":1,\"one_time_burst\":true}"),
         "drives[0].rate_limiter.ops.one_time_burst: expected an integer, got boolean"},
        {NETS("{\"iface_id\":[],\"host_dev_name\":\"t\"}"),
         "network-interfaces[0].iface_id: expected a string, got array"},
        {NETS("{\"iface_id\":\"i\",\"host_dev_name\":5}"),
         "network-interfaces[0].host_dev_name: expected a string, got integer"},
        {NET(",\"guest_mac\":123456"), "network-interfaces[0].guest_mac: expected a string"},
        {NET(",\"mtu\":\"1500\""), "network-interfaces[0].mtu: expected an integer, got string"},
        {NET(",\"rx_rate_limiter\":true"),
         "network-interfaces[0].rx_rate_limiter: expected an object, got boolean"},
        {NET(",\"tx_rate_limiter\":{\"ops\":{\"size\":false,\"refill_time\":1}}"),
         "network-interfaces[0].tx_rate_limiter.ops.size: expected an integer"},
        {LOGGER("\"log_path\":5"), "logger.log_path: expected a string"},
        {LOGGER("\"level\":3"), "logger.level: expected a string"},
        {LOGGER("\"show_level\":\"true\""), "logger.show_level: expected a boolean"},
        {LOGGER("\"show_log_origin\":1"), "logger.show_log_origin: expected a boolean"},
        {LOGGER("\"module\":{}"), "logger.module: expected a string"},
        {METRICS("\"metrics_path\":1"), "metrics.metrics_path: expected a string"},
        {METRICS("\"metrics_path\":\"/m\",\"emit_id\":\"no\""),
         "metrics.emit_id: expected a boolean"},
        {METRICS("\"metrics_path\":\"/m\",\"properties\":{\"a\":1}"),
         "metrics.properties.a: expected a string, got integer"},
    };
    RUN_BAD(cases);
}

static void test_range_errors(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {MC("\"vcpu_count\":33,\"mem_size_mib\":128"),
         "machine-config.vcpu_count: must be between 1 and 32, got 33"},
        {MC("\"vcpu_count\":0,\"mem_size_mib\":128"),
         "machine-config.vcpu_count: must be between 1 and 32, got 0"},
        {MC("\"vcpu_count\":-1,\"mem_size_mib\":128"), "got -1"},
        {MC("\"vcpu_count\":4294967297,\"mem_size_mib\":128"), "got 4294967297"},
        {MC("\"vcpu_count\":1,\"mem_size_mib\":0"),
         "machine-config.mem_size_mib: must be between 1 and 1048576, got 0"},
        {MC("\"vcpu_count\":1,\"mem_size_mib\":1048577"), "got 1048577"},
        {MC("\"vcpu_count\":1,\"mem_size_mib\":18446744073709551615"),
         "machine-config.mem_size_mib: must be between 1 and 1048576, got an out-of-range"},
        {MC("\"vcpu_count\":1,\"mem_size_mib\":-9223372036854775809"),
         "machine-config.mem_size_mib: must be between"},
        {BW("\"size\":-1,\"refill_time\":1"),
         "drives[0].rate_limiter.bandwidth.size: must be between 0 and"},
        {BW("\"size\":9223372036854775808,\"refill_time\":1"),
         "drives[0].rate_limiter.bandwidth.size: must be between 0 and 9223372036854775807, got "
         "an out-of-range number"},
        {BW("\"size\":1,\"refill_time\":-5"), "drives[0].rate_limiter.bandwidth.refill_time"},
        {BW("\"size\":1,\"refill_time\":18446744073710"),
         "drives[0].rate_limiter.bandwidth.refill_time: must be between 0 and 18446744073709"},
        {BW("\"size\":1,\"refill_time\":1,\"one_time_burst\":-1"),
         "drives[0].rate_limiter.bandwidth.one_time_burst: must be between 0"},
        {NET(",\"mtu\":67"), "network-interfaces[0].mtu: must be between 68 and 65535, got 67"},
        {NET(",\"mtu\":65536"), "network-interfaces[0].mtu: must be between 68 and 65535"},
        {NET(",\"mtu\":0"), "network-interfaces[0].mtu: must be between 68 and 65535, got 0"},
    };
    RUN_BAD(cases);
}

static void test_missing_required(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {BS(""), "boot-source.kernel_image_path: missing required field"},
        {BS("\"initrd_path\":\"/i\""), "boot-source.kernel_image_path: missing required field"},
        {BS("\"kernel_image_path\":null"), "boot-source.kernel_image_path: expected a string"},
        {MC("\"mem_size_mib\":128"), "machine-config.vcpu_count: missing required field"},
        {MC("\"vcpu_count\":1"), "machine-config.mem_size_mib: missing required field"},
        {MC(""), "machine-config.vcpu_count: missing required field"},
        {DRIVES("{\"path_on_host\":\"/p\",\"is_root_device\":false}"),
         "drives[0].drive_id: missing required field"},
        {DRIVES("{\"drive_id\":\"d\",\"is_root_device\":false}"),
         "drives[0].path_on_host: missing required field"},
        {DRIVES("{\"drive_id\":\"d\",\"path_on_host\":\"/p\"}"),
         "drives[0].is_root_device: missing required field"},
        {NETS("{\"host_dev_name\":\"tap0\"}"), "network-interfaces[0].iface_id: missing required"},
        {NETS("{\"iface_id\":\"eth0\"}"),
         "network-interfaces[0].host_dev_name: missing required field"},
        {BW("\"size\":1"), "drives[0].rate_limiter.bandwidth.refill_time: missing required field"},
        {RL("\"ops\":{\"refill_time\":1}"), "drives[0].rate_limiter.ops.size: missing required"},
        {NET(",\"rx_rate_limiter\":{\"ops\":{}}"),
         "network-interfaces[0].rx_rate_limiter.ops.size: missing required field"},
        {METRICS(""), "metrics.metrics_path: missing required field"},
        {METRICS("\"emit_id\":true"), "metrics.metrics_path: missing required field"},
    };
    RUN_BAD(cases);
}

static void test_strings(void **state)
{
    (void)state;
    static char long_path[8192], long_args[8192], long_id[256];
    char p[4097];
    memset(p, 'x', 4096);
    p[0] = '/';
    p[4096] = '\0';
    snprintf(long_path, sizeof(long_path), BS("\"kernel_image_path\":\"%s\""), p);
    snprintf(long_args, sizeof(long_args), BS("\"kernel_image_path\":\"/k\",\"boot_args\":\"%s\""),
             p);
    snprintf(long_id, sizeof(long_id),
             DRIVES("{\"drive_id\":\"%s\",\"path_on_host\":\"/p\",\"is_root_device\":false}"),
             "a123456789b123456789c123456789d123456789e123456789f123456789g1234");
    const struct bad_case cases[] = {
        {long_path, "boot-source.kernel_image_path: too long (4096 bytes, at most 4095)"},
        {long_args, "boot-source.boot_args: too long (4096 bytes, at most 2047)"},
        {long_id, "drives[0].drive_id: must be 1 to 64 characters of A-Z, a-z, 0-9 and _"},
        {BS("\"kernel_image_path\":\"\""), "boot-source.kernel_image_path: must not be empty"},
        {BS("\"kernel_image_path\":\"/k\",\"initrd_path\":\"\""),
         "boot-source.initrd_path: must not be empty"},
        {BS("\"kernel_image_path\":\"/k\\u0000/evil\""),
         "boot-source.kernel_image_path: must not contain a NUL character"},
        {BS("\"kernel_image_path\":\"/k\",\"boot_args\":\"a\\u0000b\""),
         "boot-source.boot_args: must not contain a NUL"},
        {DRIVES("{\"drive_id\":\"\",\"path_on_host\":\"/p\",\"is_root_device\":false}"),
         "drives[0].drive_id: must be 1 to 64 characters"},
        {DRIVES("{\"drive_id\":\"root-fs\",\"path_on_host\":\"/p\",\"is_root_device\":false}"),
         "drives[0].drive_id: must be 1 to 64 characters of A-Z, a-z, 0-9 and _, got \"root-fs\""},
        {DRIVES("{\"drive_id\":\"a/b\",\"path_on_host\":\"/p\",\"is_root_device\":false}"),
         "drives[0].drive_id: must be"},
        {DRIVES("{\"drive_id\":\"d\",\"path_on_host\":\"\",\"is_root_device\":false}"),
         "drives[0].path_on_host: must not be empty"},
        {NETS("{\"iface_id\":\"eth 0\",\"host_dev_name\":\"t\"}"),
         "network-interfaces[0].iface_id: must be 1 to 64 characters"},
        {NETS("{\"iface_id\":\"eth0\",\"host_dev_name\":\"\"}"),
         "network-interfaces[0].host_dev_name: must not be empty"},
        {NETS("{\"iface_id\":\"eth0\",\"host_dev_name\":\"abcdefghijklmnop\"}"),
         "network-interfaces[0].host_dev_name: at most 15 characters (IFNAMSIZ)"},
        {NETS("{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap/0\"}"),
         "network-interfaces[0].host_dev_name: \"tap/0\" is not a valid interface name"},
        {NETS("{\"iface_id\":\"eth0\",\"host_dev_name\":\"..\"}"), "is not a valid interface name"},
        {NETS("{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap 0\"}"),
         "is not a valid interface name"},
        {LOGGER("\"log_path\":\"\""), "logger.log_path: must not be empty"},
        {LOGGER("\"module\":\"\""), "logger.module: must not be empty"},
        {METRICS("\"metrics_path\":\"\""), "metrics.metrics_path: must not be empty"},
        {DRIVES("{\"drive_id\":\"d\",\"path_on_host\":\"/p\",\"is_root_device\":true,"
                "\"partuuid\":\"x y\"}"),
         "drives[0].partuuid: must not be empty or hold spaces"},
        {DRIVES("{\"drive_id\":\"d\",\"path_on_host\":\"/p\",\"is_root_device\":true,"
                "\"partuuid\":\"\"}"),
         "drives[0].partuuid: must not be empty or hold spaces"},
        /* Untrusted text in messages is made printable. */
        {DRIVES("{\"drive_id\":\"\\u001b[31m\",\"path_on_host\":\"/p\",\"is_root_device\":false}"),
         "got \"?[31m\""},
    };
    RUN_BAD(cases);
}

static void test_unknown_keys(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"{\"foo\": 1}", "foo: unknown field"},
        {"{\"boot_source\": {}}", "boot_source: unknown field"},
        {"{\"serial\": null}", "serial: unknown field"},
        {BS("\"kernel_image_path\":\"/k\",\"initrd\":\"/i\""), "boot-source.initrd: unknown field"},
        {MC(MC_OK ",\"foo\":1"), "machine-config.foo: unknown field"},
        {MC(MC_OK ",\"ht_enabled\":false"), "machine-config.ht_enabled: unknown field"},
        {DRIVE(",\"readonly\":true"), "drives[0].readonly: unknown field"},
        {DRIVES("{" D_OK "},{\"drive_id\":\"d1\",\"path_on_host\":\"/q\",\"is_root_device\":false,"
                "\"x\":1}"),
         "drives[1].x: unknown field"},
        {RL("\"iops\":{}"), "drives[0].rate_limiter.iops: unknown field"},
        {BW("\"size\":1,\"refill_time\":1,\"burst\":1"),
         "drives[0].rate_limiter.bandwidth.burst: unknown field"},
        {NET(",\"allow_mmds_requests\":true"),
         "network-interfaces[0].allow_mmds_requests: unknown field"},
        {NET(",\"tx_rate_limiter\":{\"ops\":{\"size\":1,\"refill_time\":1,\"q\":1}}"),
         "network-interfaces[0].tx_rate_limiter.ops.q: unknown field"},
        {LOGGER("\"path\":\"/l\""), "logger.path: unknown field"},
        {METRICS("\"metrics_path\":\"/m\",\"format\":\"json\""), "metrics.format: unknown field"},
        {"{\"\\u0007bell\\nx\": 1}", "?bell?x: unknown field"},
    };
    RUN_BAD(cases);
}

static void test_enums(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {DRIVE(",\"cache_type\":\"unsafe\""),
         "drives[0].cache_type: must be \"Unsafe\" or \"Writeback\", got \"unsafe\""},
        {DRIVE(",\"cache_type\":\"WriteThrough\""), "drives[0].cache_type: must be"},
        {DRIVE(",\"io_engine\":\"io_uring\""),
         "drives[0].io_engine: must be \"Sync\" or \"Async\", got \"io_uring\""},
        {DRIVE(",\"io_engine\":\"\""), "drives[0].io_engine: must be"},
        {LOGGER("\"level\":\"Verbose\""),
         "logger.level: must be one of Error, Warning, Info, Debug, Trace, Off (any case), got "
         "\"Verbose\""},
        {LOGGER("\"level\":\"\""), "logger.level: must be one of"},
        {MC(MC_OK ",\"cpu_template\":\"none\""),
         "machine-config.cpu_template: must be \"None\", got \"none\""},
        {MC(MC_OK ",\"cpu_template\":\"/path/t.json\""), "machine-config.cpu_template: must be"},
        {MC(MC_OK ",\"huge_pages\":\"1G\""),
         "machine-config.huge_pages: must be \"None\", \"2M\" or \"Transparent\", got \"1G\""},
    };
    RUN_BAD(cases);
}

static void test_unsupported(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"{\"balloon\":{\"amount_mib\":1,\"deflate_on_oom\":true}}",
         "balloon: Ember does not provide a balloon device"},
        {"{\"vsock\":{\"guest_cid\":3,\"uds_path\":\"/v\"}}",
         "vsock: Ember does not provide a vsock device"},
        {"{\"entropy\":{}}", "entropy: Ember does not provide an entropy device"},
        {"{\"mmds-config\":{\"network_interfaces\":[]}}",
         "mmds-config: Ember does not provide MMDS"},
        {"{\"pmem\":[{\"id\":\"p\",\"path_on_host\":\"/p\"}]}",
         "pmem: Ember does not provide pmem devices"},
        {"{\"cpu-config\":\"/t.json\"}", "cpu-config: give the template inline"},
        {"{\"memory-hotplug\":{\"total_size_mib\":1024}}",
         "memory-hotplug: Ember does not provide memory hotplug"},
        {"{\"balloon\":false}", "balloon: Ember does not provide a balloon device"},
        {DRIVES("{\"drive_id\":\"d\",\"socket\":\"/vhost.sock\",\"is_root_device\":false}"),
         "drives[0].socket: Ember does not provide vhost-user drives"},
        {MC("\"vcpu_count\":3,\"mem_size_mib\":128,\"smt\":true"),
         "machine-config.vcpu_count: must be 1 or an even number when smt is true, got 3"},
        {MC(MC_OK ",\"cpu_template\":\"T2\""),
         "machine-config.cpu_template: Ember does not provide Firecracker's static CPU template "
         "\"T2\""},
        {MC(MC_OK ",\"cpu_template\":\"C3\""), "static CPU template \"C3\""},
        {MC("\"vcpu_count\":1,\"mem_size_mib\":129,\"huge_pages\":\"2M\""),
         "machine-config.mem_size_mib: must be a multiple of 2 with huge_pages \"2M\", got 129"},
        {MC("\"vcpu_count\":1,\"mem_size_mib\":3,\"huge_pages\":\"Transparent\""),
         "must be a multiple of 2 with huge_pages \"Transparent\""},
    };
    RUN_BAD(cases);
}

static void test_drive_rules(void **state)
{
    (void)state;
    static char too_many[4096];
    snprintf(too_many, sizeof(too_many), "{\"drives\":[");
    for (int i = 0; i <= CONFIG_MAX_DRIVES; i++)
        snprintf(too_many + strlen(too_many), sizeof(too_many) - strlen(too_many),
                 "%s{\"drive_id\":\"d%d\",\"path_on_host\":\"/p\",\"is_root_device\":false}",
                 i ? "," : "", i);
    strcat(too_many, "]}");
    static const struct bad_case cases[] = {
        {DRIVES("{\"drive_id\":\"a\",\"path_on_host\":\"/p\",\"is_root_device\":false},"
                "{\"drive_id\":\"b\",\"path_on_host\":\"/p\",\"is_root_device\":false},"
                "{\"drive_id\":\"a\",\"path_on_host\":\"/q\",\"is_root_device\":false}"),
         "drives[2].drive_id: duplicate id \"a\" (drives[0])"},
        {DRIVES("{\"drive_id\":\"r1\",\"path_on_host\":\"/p\",\"is_root_device\":true},"
                "{\"drive_id\":\"r2\",\"path_on_host\":\"/q\",\"is_root_device\":true}"),
         "drives[1].is_root_device: only one drive can be the root device (drives[0] \"r1\" "
         "already is)"},
    };
    RUN_BAD(cases);
    expect_bad(too_many, "drives: at most 19 drives, got 20");
    /* The limit is the device slots, drives and interfaces together. */
    static char mixed[4096];
    snprintf(mixed, sizeof(mixed), "{\"drives\":[");
    for (int i = 0; i < 10; i++)
        snprintf(mixed + strlen(mixed), sizeof(mixed) - strlen(mixed),
                 "%s{\"drive_id\":\"d%d\",\"path_on_host\":\"/p\",\"is_root_device\":false}",
                 i ? "," : "", i);
    strcat(mixed, "],\"network-interfaces\":[");
    for (int i = 0; i < 10; i++)
        snprintf(mixed + strlen(mixed), sizeof(mixed) - strlen(mixed),
                 "%s{\"iface_id\":\"n%d\",\"host_dev_name\":\"tap%d\"}", i ? "," : "", i, i);
    strcat(mixed, "]}");
    expect_bad(mixed, "at most 19 devices in all (one interrupt line each), got 10 drives and "
                      "10 interfaces");
}

static void test_net_rules(void **state)
{
    (void)state;
    static char too_many[4096];
    snprintf(too_many, sizeof(too_many), "{\"network-interfaces\":[");
    for (int i = 0; i <= CONFIG_MAX_NETS; i++)
        snprintf(too_many + strlen(too_many), sizeof(too_many) - strlen(too_many),
                 "%s{\"iface_id\":\"n%d\",\"host_dev_name\":\"tap%d\"}", i ? "," : "", i, i);
    strcat(too_many, "]}");
    static const struct bad_case cases[] = {
        {NETS("{\"iface_id\":\"e\",\"host_dev_name\":\"t0\"},"
              "{\"iface_id\":\"e\",\"host_dev_name\":\"t1\"}"),
         "network-interfaces[1].iface_id: duplicate id \"e\" (network-interfaces[0])"},
        {NETS("{\"iface_id\":\"e0\",\"host_dev_name\":\"t0\"},"
              "{\"iface_id\":\"e1\",\"host_dev_name\":\"t0\"}"),
         "network-interfaces[1].host_dev_name: \"t0\" is already used by network-interfaces[0]"},
        {NETS("{\"iface_id\":\"e0\",\"host_dev_name\":\"t0\",\"guest_mac\":\"02:00:00:00:00:01\"},"
              "{\"iface_id\":\"e1\",\"host_dev_name\":\"t1\",\"guest_mac\":\"02:00:00:00:00:01\"}"),
         "network-interfaces[1].guest_mac: 02:00:00:00:00:01 is already used by "
         "network-interfaces[0]"},
    };
    RUN_BAD(cases);
    expect_bad(too_many, "network-interfaces: at most 19 interfaces, got 20");
}

static void test_bad_macs(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "06:00:ac:10:00",
        "06:00:ac:10:00:02:03",
        "06-00-ac-10-00-02",
        "0600.ac10.0002",
        "060:0a:c1:00:00:2",
        "6:0:ac:10:0:2",
        "06:00:ac:10:00:0g",
        "06:00:ac:10:00:02 ",
        " 06:00:ac:10:00:02",
        "06:00:ac:10:00:+2",
        "06::00:ac:10:00:02",
        "0600ac100002",
        "06:00:ac:10:00:02\\u0000",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char doc[256];
        snprintf(doc, sizeof(doc), NET(",\"guest_mac\":\"%s\""), bad[i]);
        expect_bad(doc, "network-interfaces[0].guest_mac: ");
        if (!strstr(bad[i], "\\u0000"))
            expect_bad(doc, "must be six hex pairs separated by colons (aa:bb:cc:dd:ee:ff)");
    }
    /* Multicast and zero addresses are accepted, as Firecracker. */
    struct vm_config mc;
    expect_ok(NET(",\"guest_mac\":\"01:00:5e:00:00:01\""), &mc);
    assert_int_equal(mc.nets[0].guest_mac[0], 1);
    config_free(&mc);

    /* Upper and lower case both parse; output is lower case. */
    struct vm_config c;
    expect_ok(NET(",\"guest_mac\":\"AA:bb:Cc:dD:0E:f0\""), &c);
    static const uint8_t mac[6] = {0xaa, 0xbb, 0xcc, 0xdd, 0x0e, 0xf0};
    assert_memory_equal(c.nets[0].guest_mac, mac, 6);
    char *s = config_to_json(&c);
    assert_non_null(strstr(s, "aa:bb:cc:dd:0e:f0"));
    free(s);
    config_free(&c);
}

static void test_metrics_properties(void **state)
{
    (void)state;
    static char doc[8192];
    snprintf(doc, sizeof(doc), "{\"metrics\":{\"metrics_path\":\"/m\",\"properties\":{");
    for (int i = 0; i <= CONFIG_MAX_METRICS_PROPS; i++)
        snprintf(doc + strlen(doc), sizeof(doc) - strlen(doc), "%s\"k%d\":\"v\"", i ? "," : "", i);
    strcat(doc, "}}}");
    expect_bad(doc, "metrics.properties: at most 64 properties, got 65");
    expect_bad(METRICS("\"metrics_path\":\"/m\",\"properties\":{\"\":\"v\"}"),
               "property names must be 1 to 256 bytes");
    expect_bad(METRICS("\"metrics_path\":\"/m\",\"properties\":{\"a\":\"x\",\"b\":null}"),
               "metrics.properties.b: expected a string, got null");
}

/* ---- unchanged on failure ------------------------------------------------ */

static void test_unchanged_on_failure(void **state)
{
    (void)state;
    /* Errors found late (after sections were parsed into the temporary):
     * the cross-device check, the last section, the last drive. */
    expect_bad("{\"boot-source\":{\"kernel_image_path\":\"/new\"},"
               "\"drives\":[{\"drive_id\":\"x\",\"path_on_host\":\"/p\",\"is_root_device\":true},"
               "{\"drive_id\":\"x\",\"path_on_host\":\"/p\",\"is_root_device\":false}]}",
               "drives[1].drive_id: duplicate id");
    expect_bad("{\"boot-source\":{\"kernel_image_path\":\"/new\"},\"logger\":{\"level\":\"Info\"},"
               "\"metrics\":{\"metrics_path\":\"/m\",\"properties\":{\"a\":\"b\",\"c\":7}}}",
               "metrics.properties.c: expected a string");
    expect_bad("{\"network-interfaces\":[{\"iface_id\":\"a\",\"host_dev_name\":\"t\","
               "\"rx_rate_limiter\":{\"bandwidth\":{\"size\":1,\"refill_time\":1}},"
               "\"tx_rate_limiter\":{\"ops\":{\"size\":1}}}]}",
               "network-interfaces[0].tx_rate_limiter.ops.refill_time: missing required field");

    /* Section parsers too. */
    struct drive_config d = {0};
    struct json_object *o =
        json_tokener_parse("{\"drive_id\":\"a\",\"path_on_host\":\"/p\",\"is_root_device\":true}");
    assert_int_equal(config_parse_drive(o, &d), 0);
    json_object_put(o);
    char *id = d.drive_id;
    o = json_tokener_parse("{\"drive_id\":\"b\",\"path_on_host\":\"/q\",\"is_root_device\":true,"
                           "\"cache_type\":\"Sometimes\"}");
    assert_true(config_parse_drive(o, &d) < 0);
    assert_string_equal(err_msg(), "drive.cache_type: must be \"Unsafe\" or \"Writeback\", got "
                                   "\"Sometimes\"");
    json_object_put(o);
    assert_ptr_equal(d.drive_id, id);
    assert_string_equal(d.path_on_host, "/p");
    config_drive_free(&d);
}

/* ---- section parsers, as the REST API uses them -------------------------- */

static void test_section_parsers(void **state)
{
    (void)state;
    struct machine_config m = {.vcpu_count = 1, .mem_size_mib = 128};
    struct json_object *o = json_tokener_parse("{\"vcpu_count\":33,\"mem_size_mib\":128}");
    assert_int_equal(config_parse_machine_config(o, &m), -EINVAL);
    assert_string_equal(err_msg(), "machine-config.vcpu_count: must be between 1 and 32, got 33");
    assert_int_equal(m.vcpu_count, 1);
    json_object_put(o);

    /* PUT resets what is not given; the CPU template file is kept. */
    m.cpu_template = strdup("/etc/ember/t.json");
    m.track_dirty_pages = true;
    o = json_tokener_parse("{\"vcpu_count\":4,\"mem_size_mib\":512}");
    assert_int_equal(config_parse_machine_config(o, &m), 0);
    json_object_put(o);
    assert_int_equal(m.vcpu_count, 4);
    assert_int_equal(m.mem_size_mib, 512);
    assert_false(m.track_dirty_pages);
    assert_string_equal(m.cpu_template, "/etc/ember/t.json");

    /* PATCH changes only what is given. */
    o = json_tokener_parse("{\"mem_size_mib\":1024}");
    assert_int_equal(config_patch_machine_config(o, &m), 0);
    json_object_put(o);
    assert_int_equal(m.vcpu_count, 4);
    assert_int_equal(m.mem_size_mib, 1024);
    o = json_tokener_parse("{}");
    assert_true(config_patch_machine_config(o, &m) < 0);
    assert_non_null(strstr(err_msg(), "machine-config: nothing to update"));
    json_object_put(o);
    o = json_tokener_parse("{\"vcpu_count\":0}");
    assert_true(config_patch_machine_config(o, &m) < 0);
    json_object_put(o);
    assert_int_equal(m.vcpu_count, 4);

    struct json_object *j = config_machine_config_to_json(&m);
    assert_non_null(j);
    assert_string_equal(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN),
                        "{\"vcpu_count\":4,\"mem_size_mib\":1024,\"smt\":false,"
                        "\"track_dirty_pages\":false,\"huge_pages\":\"None\"}");
    json_object_put(j);
    free(m.cpu_template);

    struct boot_source b = {0};
    o = json_tokener_parse("{\"kernel_image_path\":\"/k\",\"boot_args\":\"console=ttyS0\"}");
    assert_int_equal(config_parse_boot_source(o, &b), 0);
    json_object_put(o);
    o = json_tokener_parse("{\"kernel_image_path\":\"/k2\"}");
    assert_int_equal(config_parse_boot_source(o, &b), 0); /* replaces, frees the old */
    json_object_put(o);
    assert_string_equal(b.kernel_image_path, "/k2");
    assert_null(b.boot_args);
    config_boot_source_free(&b);

    struct net_config n = {0};
    o = json_tokener_parse("{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\",\"mtu\":9000}");
    assert_int_equal(config_parse_net(o, &n), 0);
    json_object_put(o);
    assert_int_equal(n.mtu, 9000);
    o = json_tokener_parse("{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\",\"mtu\":9}");
    assert_true(config_parse_net(o, &n) < 0);
    assert_non_null(strstr(err_msg(), "network-interface.mtu: must be between 68 and 65535"));
    json_object_put(o);
    config_net_free(&n);

    struct logger_config l = {0};
    o = json_tokener_parse("{\"log_path\":\"/l\",\"level\":\"Trace\"}");
    assert_int_equal(config_parse_logger(o, &l), 0);
    json_object_put(o);
    assert_int_equal(l.level, LOG_TRACE);
    config_logger_free(&l);

    struct metrics_config mc = {0};
    o = json_tokener_parse("{\"emit_id\":true}");
    assert_true(config_parse_metrics(o, &mc) < 0);
    assert_string_equal(err_msg(), "metrics.metrics_path: missing required field");
    json_object_put(o);
    config_metrics_free(&mc);

    struct rate_limiter rl = {0};
    o = json_tokener_parse("{\"ops\":{\"size\":10,\"refill_time\":100}}");
    assert_int_equal(config_parse_rate_limiter(o, &rl), 0);
    json_object_put(o);
    assert_true(rl.ops.set);
    assert_false(rl.bandwidth.set);
    o = json_tokener_parse("{\"ops\":{\"size\":10}}");
    assert_true(config_parse_rate_limiter(o, &rl) < 0);
    assert_string_equal(err_msg(), "rate_limiter.ops.refill_time: missing required field");
    json_object_put(o);
}

static void test_cpu_template_kept(void **state)
{
    (void)state;
    struct vm_config c;
    config_init(&c);
    c.machine.cpu_template = strdup("/t.json");
    assert_int_equal(parse(FULL, &c), 0);
    assert_string_equal(c.machine.cpu_template, "/t.json");
    assert_int_equal(c.machine.vcpu_count, 2);
    config_free(&c);
    assert_null(c.machine.cpu_template);
}

static void test_validate(void **state)
{
    (void)state;
    struct vm_config c;
    config_init(&c);
    assert_int_equal(config_validate(&c), 0);
    c.machine.vcpu_count = 0;
    assert_true(config_validate(&c) < 0);
    assert_non_null(strstr(err_msg(), "machine-config.vcpu_count"));
    c.machine.vcpu_count = 1;
    c.machine.smt = true;
    assert_int_equal(config_validate(&c), 0);
    c.machine.vcpu_count = 3;
    assert_true(config_validate(&c) < 0);
    assert_non_null(strstr(err_msg(), "machine-config.vcpu_count"));
    c.machine.vcpu_count = 1;
    c.machine.smt = false;
    c.n_drives = CONFIG_MAX_DRIVES + 1;
    assert_true(config_validate(&c) < 0);
    c.n_drives = 0;
    c.has_metrics = true;
    assert_true(config_validate(&c) < 0);
    assert_non_null(strstr(err_msg(), "metrics.metrics_path"));
    c.has_metrics = false;
    config_free(&c);

    assert_true(config_id_valid("rootfs"));
    assert_true(config_id_valid("A_1"));
    assert_false(config_id_valid(""));
    assert_false(config_id_valid("a.b"));
    assert_false(config_id_valid(NULL));
}

/* ---- files --------------------------------------------------------------- */

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void test_load_file(void **state)
{
    (void)state;
    struct vm_config c;
    char dir[] = "/tmp/ember-test-config-XXXXXX";
    char path[256];
    assert_non_null(mkdtemp(dir));

    config_init(&c);
    snprintf(path, sizeof(path), "%s/missing.json", dir);
    assert_int_equal(config_load_file(path, &c), -ENOENT);
    assert_non_null(strstr(err_msg(), path));
    assert_non_null(strstr(err_msg(), "No such file or directory"));

    snprintf(path, sizeof(path), "%s/vm.json", dir);
    write_file(path, FULL, strlen(FULL));
    assert_int_equal(config_load_file(path, &c), 0);
    assert_int_equal(c.n_drives, 2);

    /* A field error carries the file's path and the field's. */
    const char *bad = "{\"machine-config\":{\"vcpu_count\":64,\"mem_size_mib\":128}}";
    write_file(path, bad, strlen(bad));
    assert_true(config_load_file(path, &c) < 0);
    char want[512];
    snprintf(want, sizeof(want), "%s: machine-config.vcpu_count: must be between 1 and 32, got 64",
             path);
    assert_string_equal(err_msg(), want);
    assert_int_equal(c.machine.vcpu_count, 2); /* unchanged */

    write_file(path, "{\"drives\":[", 11);
    assert_true(config_load_file(path, &c) < 0);
    snprintf(want, sizeof(want), "%s: malformed JSON at offset 11: ", path);
    assert_non_null(strstr(err_msg(), want));

    /* Too big: one byte over the cap. */
    char *big = malloc(CONFIG_FILE_MAX + 1);
    assert_non_null(big);
    memset(big, ' ', CONFIG_FILE_MAX + 1);
    big[0] = '{';
    big[CONFIG_FILE_MAX] = '}';
    write_file(path, big, CONFIG_FILE_MAX + 1);
    assert_int_equal(config_load_file(path, &c), -EFBIG);
    assert_non_null(strstr(err_msg(), "larger than 1048576 bytes"));
    /* Exactly the cap is fine. */
    big[CONFIG_FILE_MAX - 1] = '}';
    write_file(path, big, CONFIG_FILE_MAX);
    assert_int_equal(config_load_file(path, &c), 0);
    free(big);

    /* A directory is not a configuration file. */
    assert_true(config_load_file(dir, &c) < 0);
    assert_non_null(strstr(err_msg(), dir));

    config_free(&c);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_valid_full),
        cmocka_unit_test(test_firecracker_export_accepted),
        cmocka_unit_test(test_valid_variants),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_to_json_shape),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_range_errors),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_enums),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_drive_rules),
        cmocka_unit_test(test_net_rules),
        cmocka_unit_test(test_bad_macs),
        cmocka_unit_test(test_metrics_properties),
        cmocka_unit_test(test_unchanged_on_failure),
        cmocka_unit_test(test_section_parsers),
        cmocka_unit_test(test_cpu_template_kept),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
