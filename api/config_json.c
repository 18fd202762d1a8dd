/* config_json.c - Firecracker's JSON configuration <-> struct vm_config
 * (see config_json.h): one strict parser and one serializer per section,
 * the whole document, and --config-file loading. */
#include "config_json.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../vmm/base/err.h"
#include "../vmm/base/log.h"
#include "json_util.h"

#define OPT (JU_NULLABLE)
#define REQ (JU_REQUIRED)
#define MODULE_MAX 256
#define PROP_KEY_MAX 256
#define PROP_VALUE_MAX 1024
#define IFNAME_MAX 15 /* IFNAMSIZ - 1 */

/* ---- names --------------------------------------------------------------- */

static const char *const cache_names[] = {
    [CACHE_UNSAFE] = "Unsafe", [CACHE_WRITEBACK] = "Writeback"};
static const char *const engine_names[] = {[IO_ENGINE_SYNC] = "Sync", [IO_ENGINE_ASYNC] = "Async"};

const char *config_cache_type_name(enum cache_type t)
{
    return (unsigned)t < 2 ? cache_names[t] : "?";
}

const char *config_io_engine_name(enum io_engine e)
{
    return (unsigned)e < 2 ? engine_names[e] : "?";
}

const char *config_huge_pages_name(enum huge_pages h)
{
    return h == HUGE_PAGES_2M ? "2M" : h == HUGE_PAGES_TRANSPARENT ? "Transparent" : "None";
}

/* "PATH.KEY: must be A or B, got "x"" for enumerated strings. */
static int bad_enum(const char *path, const char *key, const char *allowed, const char *got)
{
    char p[JU_PATH_MAX], g[72];
    ju_join(p, sizeof(p), path, key);
    ju_printable(g, sizeof(g), got, strlen(got));
    return err_set(-EINVAL, "%s: must be %s, got \"%s\"", p, allowed, g);
}

/* ---- shared field rules -------------------------------------------------- */

static int get_path(struct json_object *o, const char *path, const char *key, unsigned flags,
                    char **out)
{
    return ju_dup_string(o, path, key, flags | JU_NONEMPTY, CONFIG_PATH_MAX, out);
}

static int get_id(struct json_object *o, const char *path, const char *key, char **out)
{
    const char *s;
    int rc = ju_get_string(o, path, key, REQ, 4096, &s);
    if (rc < 0)
        return rc;
    if (!config_id_valid(s)) {
        char p[JU_PATH_MAX], g[72];
        ju_join(p, sizeof(p), path, key);
        ju_printable(g, sizeof(g), s, strlen(s));
        return err_set(-EINVAL, "%s: must be 1 to %d characters of A-Z, a-z, 0-9 and _, got \"%s\"",
                       p, CONFIG_ID_MAX, g);
    }
    *out = strdup(s);
    if (!*out)
        return err_set(-ENOMEM, "%s: out of memory", path);
    return 0;
}

/* A member that must be absent (or null): Firecracker features Ember lacks. */
static int refuse(struct json_object *o, const char *path, const char *key, const char *what)
{
    struct json_object *v;
    if (json_object_object_get_ex(o, key, &v) && !json_object_is_type(v, json_type_null)) {
        char p[JU_PATH_MAX];
        ju_join(p, sizeof(p), path, key);
        return err_set(-EINVAL, "%s: %s", p, what);
    }
    return 0;
}

/* ---- rate limiter -------------------------------------------------------- */

static int parse_bucket(struct json_object *o, const char *path, struct rate_bucket *out)
{
    static const char *const keys[] = {"size", "one_time_burst", "refill_time", NULL};
    struct rate_bucket b = {.set = true};
    int64_t v;
    int rc;

    if ((rc = ju_expect_object(o, path)) < 0 || (rc = ju_check_keys(o, path, keys)) < 0)
        return rc;
    if ((rc = ju_get_int(o, path, "size", REQ, 0, INT64_MAX, &v)) < 0)
        return rc;
    b.size = (uint64_t)v;
    if ((rc = ju_get_int(o, path, "one_time_burst", OPT, 0, INT64_MAX, &v)) < 0)
        return rc;
    if (rc)
        b.one_time_burst = (uint64_t)v;
    if ((rc = ju_get_int(o, path, "refill_time", REQ, 0, (int64_t)CONFIG_REFILL_MAX_MS, &v)) < 0)
        return rc;
    b.refill_time_ms = (uint64_t)v;
    *out = b;
    return 0;
}

static int parse_rate_limiter(struct json_object *o, const char *path, struct rate_limiter *out)
{
    static const char *const keys[] = {"bandwidth", "ops", NULL};
    static const char *const names[] = {"bandwidth", "ops"};
    struct rate_limiter rl = {0};
    struct rate_bucket *b[] = {&rl.bandwidth, &rl.ops};
    int rc;

    if ((rc = ju_expect_object(o, path)) < 0 || (rc = ju_check_keys(o, path, keys)) < 0)
        return rc;
    for (int i = 0; i < 2; i++) {
        struct json_object *v;
        char p[JU_PATH_MAX];
        if ((rc = ju_get_typed(o, path, names[i], OPT, json_type_object, &v)) < 0)
            return rc;
        ju_join(p, sizeof(p), path, names[i]);
        if (rc && (rc = parse_bucket(v, p, b[i])) < 0)
            return rc;
    }
    *out = rl;
    return 0;
}

int config_parse_rate_limiter(struct json_object *o, struct rate_limiter *out)
{
    return parse_rate_limiter(o, "rate_limiter", out);
}

int config_parse_serial(struct json_object *o, struct serial_config *out)
{
    static const char *const keys[] = {"serial_out_path", "rate_limiter", NULL};
    const char *path = "serial";
    struct serial_config s = {0};
    struct json_object *v;
    char p[JU_PATH_MAX];
    int rc;

    if ((rc = ju_expect_object(o, path)) < 0 || (rc = ju_check_keys(o, path, keys)) < 0)
        return rc;
    if ((rc = get_path(o, path, "serial_out_path", OPT, &s.serial_out_path)) < 0)
        return rc;
    if ((rc = ju_get_typed(o, path, "rate_limiter", OPT, json_type_object, &v)) < 0)
        goto fail;
    if (rc) {
        ju_join(p, sizeof(p), path, "rate_limiter");
        if ((rc = parse_bucket(v, p, &s.rate_limiter)) < 0)
            goto fail;
    }
    config_serial_free(out);
    *out = s;
    return 0;
fail:
    config_serial_free(&s);
    return rc;
}

/* Optional rate limiter member `key` of `o`: 1 if present and valid, 0 if
 * absent, -errno if invalid (the PATCH parsers count what was given). */
static int get_rate_limiter(struct json_object *o, const char *path, const char *key,
                            struct rate_limiter *out)
{
    struct json_object *v;
    char p[JU_PATH_MAX];
    int rc = ju_get_typed(o, path, key, OPT, json_type_object, &v);
    if (rc <= 0)
        return rc;
    ju_join(p, sizeof(p), path, key);
    rc = parse_rate_limiter(v, p, out);
    return rc < 0 ? rc : 1;
}

/* ---- boot-source --------------------------------------------------------- */

static int parse_boot_source(struct json_object *o, const char *path, struct boot_source *out)
{
    static const char *const keys[] = {"kernel_image_path", "initrd_path", "boot_args", NULL};
    struct boot_source b = {0};
    int rc;

    if ((rc = ju_expect_object(o, path)) < 0 || (rc = ju_check_keys(o, path, keys)) < 0)
        return rc;
    if ((rc = get_path(o, path, "kernel_image_path", REQ, &b.kernel_image_path)) < 0 ||
        (rc = get_path(o, path, "initrd_path", OPT, &b.initrd_path)) < 0 ||
        (rc = ju_dup_string(o, path, "boot_args", OPT, CONFIG_BOOT_ARGS_MAX, &b.boot_args)) < 0) {
        config_boot_source_free(&b);
        return rc;
    }
    config_boot_source_free(out);
    *out = b;
    return 0;
}

int config_parse_boot_source(struct json_object *o, struct boot_source *out)
{
    return parse_boot_source(o, "boot-source", out);
}

/* ---- machine-config ------------------------------------------------------ */

static int parse_machine(struct json_object *o, const char *path, struct machine_config *out,
                         bool patch)
{
    static const char *const keys[] = {"vcpu_count",        "mem_size_mib", "smt", "cpu_template",
                                       "track_dirty_pages", "huge_pages",   NULL};
    static const char *const fc_templates[] = {"C3", "T2", "T2S", "T2CL", "T2A", "V1N1", NULL};
    /* PUT: the fields given over the defaults; PATCH: over the current values.
     * Either way the CPU template file (set by flag) is kept. */
    struct machine_config m = *out;
    unsigned need = patch ? OPT : REQ;
    int64_t v;
    const char *s;
    char p[JU_PATH_MAX], g[72];
    int rc;

    if ((rc = ju_expect_object(o, path)) < 0 || (rc = ju_check_keys(o, path, keys)) < 0)
        return rc;
    if (patch && json_object_object_length(o) == 0)
        return err_set(-EINVAL, "%s: nothing to update (give at least one field)", path);
    if (!patch) {
        m.smt = false;
        m.track_dirty_pages = false;
    }
    if ((rc = ju_get_int(o, path, "vcpu_count", need, 1, CONFIG_MAX_VCPUS, &v)) < 0)
        return rc;
    if (rc)
        m.vcpu_count = (unsigned)v;
    if ((rc = ju_get_int(o, path, "mem_size_mib", need, 1, CONFIG_MEM_MAX_MIB, &v)) < 0)
        return rc;
    if (rc)
        m.mem_size_mib = (uint64_t)v;
    if ((rc = ju_get_bool(o, path, "smt", OPT, &m.smt)) < 0)
        return rc;
    if ((rc = ju_get_string(o, path, "cpu_template", OPT, 64, &s)) < 0)
        return rc;
    if (rc && strcmp(s, "None") != 0) {
        for (const char *const *t = fc_templates; *t; t++) {
            if (strcmp(s, *t) == 0) {
                ju_join(p, sizeof(p), path, "cpu_template");
                return err_set(-EINVAL,
                               "%s: Ember does not provide Firecracker's static CPU template "
                               "\"%s\"; must be \"None\" (Ember takes a CPU template file "
                               "through its own command-line flag)",
                               p, s);
            }
        }
        return bad_enum(path, "cpu_template", "\"None\"", s);
    }
    if ((rc = ju_get_bool(o, path, "track_dirty_pages", OPT, &m.track_dirty_pages)) < 0)
        return rc;
    if ((rc = ju_get_string(o, path, "huge_pages", OPT, 64, &s)) < 0)
        return rc;
    if (rc) {
        if (strcmp(s, "None") == 0)
            m.huge_pages = HUGE_PAGES_NONE;
        else if (strcmp(s, "2M") == 0)
            m.huge_pages = HUGE_PAGES_2M;
        else if (strcmp(s, "Transparent") == 0)
            m.huge_pages = HUGE_PAGES_TRANSPARENT;
        else
            return bad_enum(path, "huge_pages", "\"None\", \"2M\" or \"Transparent\"", s);
    } else if (!patch) {
        m.huge_pages = HUGE_PAGES_NONE;
    }
    (void)g;
    /* As Firecracker: 1 or an even vCPU count with SMT; whole 2 MiB pages. */
    if (m.smt && m.vcpu_count > 1 && m.vcpu_count % 2) {
        ju_join(p, sizeof(p), path, "vcpu_count");
        return err_set(-EINVAL, "%s: must be 1 or an even number when smt is true, got %u", p,
                       m.vcpu_count);
    }
    if (m.huge_pages != HUGE_PAGES_NONE && m.mem_size_mib % 2) {
        ju_join(p, sizeof(p), path, "mem_size_mib");
        return err_set(-EINVAL, "%s: must be a multiple of 2 with huge_pages \"%s\", got %llu", p,
                       config_huge_pages_name(m.huge_pages), (unsigned long long)m.mem_size_mib);
    }
    *out = m;
    return 0;
}

int config_parse_machine_config(struct json_object *o, struct machine_config *out)
{
    return parse_machine(o, "machine-config", out, false);
}

int config_patch_machine_config(struct json_object *o, struct machine_config *out)
{
    return parse_machine(o, "machine-config", out, true);
}

/* ---- drives -------------------------------------------------------------- */

/* partuuid goes on the kernel command line (root=PARTUUID=...): Firecracker
 * takes any string; Ember refuses only what would split or end that word. */
static bool partuuid_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == '"')
            return false;
    return true;
}

static int parse_drive(struct json_object *o, const char *path, struct drive_config *out)
{
    static const char *const keys[] = {
        "drive_id",   "path_on_host", "is_root_device", "partuuid", "is_read_only",
        "cache_type", "io_engine",    "rate_limiter",   "socket",   NULL};
    struct drive_config d = {.poll_us = CONFIG_POLL_US_DEFAULT};
    const char *s;
    char p[JU_PATH_MAX], g[72];
    int rc;

    if ((rc = ju_expect_object(o, path)) < 0 || (rc = ju_check_keys(o, path, keys)) < 0)
        return rc;
    if ((rc = refuse(o, path, "socket",
                     "Ember does not provide vhost-user drives; give path_on_host")) < 0)
        return rc;
    if ((rc = get_id(o, path, "drive_id", &d.drive_id)) < 0)
        goto fail;
    if ((rc = get_path(o, path, "path_on_host", REQ, &d.path_on_host)) < 0)
        goto fail;
    if ((rc = ju_get_bool(o, path, "is_root_device", REQ, &d.is_root_device)) < 0)
        goto fail;
    if ((rc = ju_get_bool(o, path, "is_read_only", OPT, &d.is_read_only)) < 0)
        goto fail;
    if ((rc = ju_get_string(o, path, "partuuid", OPT, 4096, &s)) < 0)
        goto fail;
    if (rc) {
        /* As Firecracker: any string; it only matters on the root drive
         * (root=PARTUUID=...), and is kept but unused on the others. */
        ju_join(p, sizeof(p), path, "partuuid");
        if (!partuuid_ok(s)) {
            ju_printable(g, sizeof(g), s, strlen(s));
            rc = err_set(-EINVAL,
                         "%s: must not be empty or hold spaces, quotes or control characters "
                         "(it goes on the kernel command line), got \"%s\"",
                         p, g);
            goto fail;
        }
        if (!(d.partuuid = strdup(s))) {
            rc = err_set(-ENOMEM, "%s: out of memory", p);
            goto fail;
        }
    }
    if ((rc = ju_get_string(o, path, "cache_type", OPT, 64, &s)) < 0)
        goto fail;
    if (rc) {
        if (strcmp(s, "Unsafe") == 0) {
            d.cache_type = CACHE_UNSAFE;
        } else if (strcmp(s, "Writeback") == 0) {
            d.cache_type = CACHE_WRITEBACK;
        } else {
            rc = bad_enum(path, "cache_type", "\"Unsafe\" or \"Writeback\"", s);
            goto fail;
        }
    }
    if ((rc = ju_get_string(o, path, "io_engine", OPT, 64, &s)) < 0)
        goto fail;
    if (rc) {
        if (strcmp(s, "Sync") == 0) {
            d.io_engine = IO_ENGINE_SYNC;
        } else if (strcmp(s, "Async") == 0) {
            d.io_engine = IO_ENGINE_ASYNC;
        } else {
            rc = bad_enum(path, "io_engine", "\"Sync\" or \"Async\"", s);
            goto fail;
        }
    }
    if ((rc = get_rate_limiter(o, path, "rate_limiter", &d.rate_limiter)) < 0)
        goto fail;
    config_drive_free(out);
    *out = d;
    return 0;
fail:
    config_drive_free(&d);
    return rc;
}

int config_parse_drive(struct json_object *o, struct drive_config *out)
{
    return parse_drive(o, "drive", out);
}

/* ---- network interfaces -------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int parse_mac(const char *p, const char *s, size_t len, uint8_t mac[6])
{
    char g[72];
    ju_printable(g, sizeof(g), s, len);
    if (len != 17)
        goto syntax;
    for (int i = 0; i < 6; i++) {
        int hi = hexval(s[3 * i]), lo = hexval(s[3 * i + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':'))
            goto syntax;
        mac[i] = (uint8_t)(hi << 4 | lo);
    }
    /* Any address, as Firecracker (a multicast or zero MAC is the caller's
     * choice; the guest driver decides what to make of it). */
    return 0;
syntax:
    return err_set(-EINVAL,
                   "%s: must be six hex pairs separated by colons (aa:bb:cc:dd:ee:ff), "
                   "got \"%s\"",
                   p, g);
}

static int check_ifname(const char *p, const char *s)
{
    char g[72];
    size_t n = strlen(s);
    ju_printable(g, sizeof(g), s, n);
    if (n > IFNAME_MAX)
        return err_set(-EINVAL, "%s: at most %d characters (IFNAMSIZ), got \"%s\"", p, IFNAME_MAX,
                       g);
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strpbrk(s, "/: \t\n\v\f\r"))
        return err_set(-EINVAL, "%s: \"%s\" is not a valid interface name", p, g);
    return 0;
}

int config_parse_drive_patch(struct json_object *o, struct drive_patch *out)
{
    static const char *const keys[] = {"drive_id", "path_on_host", "rate_limiter", NULL};
    const char *path = "drive";
    struct drive_patch d = {0};
    int rc, n = 0;

    if ((rc = ju_expect_object(o, path)) < 0 || (rc = ju_check_keys(o, path, keys)) < 0)
        return rc;
    if ((rc = get_id(o, path, "drive_id", &d.drive_id)) < 0)
        goto fail;
    if ((rc = get_path(o, path, "path_on_host", OPT, &d.path_on_host)) < 0)
        goto fail;
    n += rc;
    if ((rc = get_rate_limiter(o, path, "rate_limiter", &d.rate_limiter)) < 0)
        goto fail;
    d.has_rate_limiter = rc > 0;
    n += rc;
    if (n == 0) {
        rc = err_set(-EINVAL, "drive: give path_on_host and/or rate_limiter to update");
        goto fail;
    }
    *out = d;
    return 0;
fail:
    config_drive_patch_free(&d);
    return rc;
}

int config_parse_net_patch(struct json_object *o, struct net_patch *out)
{
    static const char *const keys[] = {"iface_id", "rx_rate_limiter", "tx_rate_limiter", NULL};
    const char *path = "network-interface";
    struct net_patch n = {0};
    int rc;

    if ((rc = ju_expect_object(o, path)) < 0 || (rc = ju_check_keys(o, path, keys)) < 0)
        return rc;
    if ((rc = get_id(o, path, "iface_id", &n.iface_id)) < 0)
        goto fail;
    if ((rc = get_rate_limiter(o, path, "rx_rate_limiter", &n.rx_rate_limiter)) < 0)
        goto fail;
    n.has_rx = rc > 0;
    if ((rc = get_rate_limiter(o, path, "tx_rate_limiter", &n.tx_rate_limiter)) < 0)
        goto fail;
    n.has_tx = rc > 0;
    /* Neither limiter given: a valid no-op, as Firecracker. */
    *out = n;
    return 0;
fail:
    config_net_patch_free(&n);
    return rc;
}

void config_drive_patch_free(struct drive_patch *p)
{
    free(p->drive_id);
    free(p->path_on_host);
    memset(p, 0, sizeof(*p));
}

void config_net_patch_free(struct net_patch *p)
{
    free(p->iface_id);
    memset(p, 0, sizeof(*p));
}

static int parse_net(struct json_object *o, const char *path, struct net_config *out)
{
    static const char *const keys[] = {"iface_id",        "host_dev_name",   "guest_mac", "mtu",
                                       "rx_rate_limiter", "tx_rate_limiter", NULL};
    struct net_config n = {.poll_us = CONFIG_POLL_US_DEFAULT};
    struct json_object *v;
    const char *s;
    char p[JU_PATH_MAX];
    int64_t mtu;
    int rc;

    if ((rc = ju_expect_object(o, path)) < 0 || (rc = ju_check_keys(o, path, keys)) < 0)
        return rc;
    if ((rc = get_id(o, path, "iface_id", &n.iface_id)) < 0)
        goto fail;
    if ((rc = ju_get_string(o, path, "host_dev_name", REQ | JU_NONEMPTY, 4096, &s)) < 0)
        goto fail;
    ju_join(p, sizeof(p), path, "host_dev_name");
    if ((rc = check_ifname(p, s)) < 0)
        goto fail;
    if (!(n.host_dev_name = strdup(s))) {
        rc = err_set(-ENOMEM, "%s: out of memory", p);
        goto fail;
    }
    if ((rc = ju_get_string(o, path, "guest_mac", OPT, 4096, &s)) < 0)
        goto fail;
    if (rc) {
        json_object_object_get_ex(o, "guest_mac", &v);
        ju_join(p, sizeof(p), path, "guest_mac");
        if ((rc = parse_mac(p, s, (size_t)json_object_get_string_len(v), n.guest_mac)) < 0)
            goto fail;
        n.has_mac = true;
    }
    if ((rc = ju_get_int(o, path, "mtu", OPT, 68, 65535, &mtu)) < 0)
        goto fail;
    if (rc)
        n.mtu = (unsigned)mtu;
    if ((rc = get_rate_limiter(o, path, "rx_rate_limiter", &n.rx_rate_limiter)) < 0 ||
        (rc = get_rate_limiter(o, path, "tx_rate_limiter", &n.tx_rate_limiter)) < 0)
        goto fail;
    config_net_free(out);
    *out = n;
    return 0;
fail:
    config_net_free(&n);
    return rc;
}

int config_parse_net(struct json_object *o, struct net_config *out)
{
    return parse_net(o, "network-interface", out);
}

/* ---- logger and metrics -------------------------------------------------- */

static int parse_logger(struct json_object *o, const char *path, struct logger_config *out)
{
    static const char *const keys[] = {"log_path",        "level",  "show_level",
                                       "show_log_origin", "module", NULL};
    struct logger_config l = {.level = LOG_INFO};
    const char *s;
    int rc;

    if ((rc = ju_expect_object(o, path)) < 0 || (rc = ju_check_keys(o, path, keys)) < 0)
        return rc;
    if ((rc = get_path(o, path, "log_path", OPT, &l.log_path)) < 0)
        goto fail;
    if ((rc = ju_get_string(o, path, "level", OPT, 64, &s)) < 0)
        goto fail;
    if (rc && log_level_parse(s, &l.level) < 0) {
        /* Firecracker matches levels case-insensitively and also takes "Warn". */
        rc =
            bad_enum(path, "level", "one of Error, Warning, Info, Debug, Trace, Off (any case)", s);
        goto fail;
    }
    if ((rc = ju_get_bool(o, path, "show_level", OPT, &l.show_level)) < 0 ||
        (rc = ju_get_bool(o, path, "show_log_origin", OPT, &l.show_log_origin)) < 0 ||
        (rc = ju_dup_string(o, path, "module", OPT | JU_NONEMPTY, MODULE_MAX, &l.module)) < 0)
        goto fail;
    config_logger_free(out);
    *out = l;
    return 0;
fail:
    config_logger_free(&l);
    return rc;
}

int config_parse_logger(struct json_object *o, struct logger_config *out)
{
    return parse_logger(o, "logger", out);
}

static int parse_metrics(struct json_object *o, const char *path, struct metrics_config *out)
{
    static const char *const keys[] = {"metrics_path", "emit_id", "properties", NULL};
    struct metrics_config m = {0};
    struct json_object *props;
    char p[JU_PATH_MAX];
    int rc;

    if ((rc = ju_expect_object(o, path)) < 0 || (rc = ju_check_keys(o, path, keys)) < 0)
        return rc;
    if ((rc = get_path(o, path, "metrics_path", REQ, &m.metrics_path)) < 0 ||
        (rc = ju_get_bool(o, path, "emit_id", OPT, &m.emit_id)) < 0 ||
        (rc = ju_get_typed(o, path, "properties", OPT, json_type_object, &props)) < 0)
        goto fail;
    if (rc) {
        int count = json_object_object_length(props);
        ju_join(p, sizeof(p), path, "properties");
        if (count > CONFIG_MAX_METRICS_PROPS) {
            rc = err_set(-EINVAL, "%s: at most %d properties, got %d", p, CONFIG_MAX_METRICS_PROPS,
                         count);
            goto fail;
        }
        if (count > 0 && !(m.properties = calloc((size_t)count, sizeof(*m.properties)))) {
            rc = err_set(-ENOMEM, "%s: out of memory", p);
            goto fail;
        }
        json_object_object_foreach(props, key, val)
        {
            (void)val;
            char kp[JU_PATH_MAX];
            size_t klen = strlen(key);
            ju_join(kp, sizeof(kp), p, key);
            if (klen == 0 || klen > PROP_KEY_MAX) {
                rc = err_set(-EINVAL, "%s: property names must be 1 to %d bytes", kp, PROP_KEY_MAX);
                goto fail;
            }
            struct metrics_property *mp = &m.properties[m.n_properties];
            if ((rc = ju_dup_string(props, p, key, REQ, PROP_VALUE_MAX, &mp->value)) < 0)
                goto fail;
            if (!(mp->key = strdup(key))) {
                free(mp->value);
                mp->value = NULL;
                rc = err_set(-ENOMEM, "%s: out of memory", kp);
                goto fail;
            }
            m.n_properties++;
        }
    }
    config_metrics_free(out);
    *out = m;
    return 0;
fail:
    config_metrics_free(&m);
    return rc;
}

int config_parse_metrics(struct json_object *o, struct metrics_config *out)
{
    return parse_metrics(o, "metrics", out);
}

/* ---- the whole document -------------------------------------------------- */

/* Firecracker sections Ember does not provide, and what to say. */
static const struct {
    const char *key;
    const char *what;
} unsupported[] = {
    {"balloon", "Ember does not provide a balloon device"},
    {"vsock", "Ember does not provide a vsock device"},
    {"entropy", "Ember does not provide an entropy device"},
    {"mmds-config", "Ember does not provide MMDS (the microVM metadata service)"},
    {"pmem", "Ember does not provide pmem devices"},
    {"memory-hotplug", "Ember does not provide memory hotplug"},
};

static const char *const doc_keys[] = {
    "boot-source", "machine-config", "drives",     "network-interfaces",
    "logger",      "metrics",        "cpu-config", NULL};

static int check_top_keys(struct json_object *doc)
{
    json_object_object_foreach(doc, key, val)
    {
        bool known = false;
        for (const char *const *k = doc_keys; *k && !known; k++)
            known = strcmp(*k, key) == 0;
        if (known)
            continue;
        for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
            if (strcmp(unsupported[i].key, key) == 0) {
                /* null (and [] for pmem) is how Firecracker prints "none". */
                if (json_object_is_type(val, json_type_null) ||
                    (json_object_is_type(val, json_type_array) &&
                     json_object_array_length(val) == 0))
                    goto next;
                return err_set(-EINVAL, "%s: %s", key, unsupported[i].what);
            }
        }
        char p[JU_PATH_MAX];
        ju_join(p, sizeof(p), "", key);
        return err_set(-EINVAL, "%s: unknown field", p);
    next:;
    }
    return 0;
}

static int parse_doc(struct json_object *doc, struct vm_config *c)
{
    struct json_object *v;
    char p[JU_PATH_MAX];
    int rc;

    if ((rc = ju_expect_object(doc, "")) < 0 || (rc = check_top_keys(doc)) < 0)
        return rc;

    if ((rc = ju_get_typed(doc, "", "boot-source", OPT, json_type_object, &v)) < 0)
        return rc;
    if (rc) {
        if ((rc = parse_boot_source(v, "boot-source", &c->boot)) < 0)
            return rc;
        c->has_boot_source = true;
    }
    if ((rc = ju_get_typed(doc, "", "machine-config", OPT, json_type_object, &v)) < 0)
        return rc;
    if (rc && (rc = parse_machine(v, "machine-config", &c->machine, false)) < 0)
        return rc;

    /* A custom CPU template inline (checked by the VMM before it is used);
     * Firecracker also takes a path to one here: Ember's is --cpu-template. */
    if (json_object_object_get_ex(doc, "cpu-config", &v) &&
        json_object_is_type(v, json_type_string))
        return err_set(-EINVAL, "cpu-config: give the template inline (a JSON object); a "
                                "template file is Ember's --cpu-template flag");
    if ((rc = ju_get_typed(doc, "", "cpu-config", OPT, json_type_object, &v)) < 0)
        return rc;
    if (rc && !(c->cpu_config = strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN))))
        return err_set(-ENOMEM, "cpu-config: out of memory");
    if ((rc = ju_get_typed(doc, "", "drives", OPT, json_type_array, &v)) < 0)
        return rc;
    if (rc) {
        size_t n = json_object_array_length(v);
        if (n > CONFIG_MAX_DRIVES)
            return err_set(-EINVAL, "drives: at most %d drives, got %zu", CONFIG_MAX_DRIVES, n);
        for (size_t i = 0; i < n; i++) {
            ju_index(p, sizeof(p), "drives", i);
            if ((rc = parse_drive(json_object_array_get_idx(v, i), p, &c->drives[i])) < 0)
                return rc;
            c->n_drives++;
        }
    }
    if ((rc = ju_get_typed(doc, "", "network-interfaces", OPT, json_type_array, &v)) < 0)
        return rc;
    if (rc) {
        size_t n = json_object_array_length(v);
        if (n > CONFIG_MAX_NETS)
            return err_set(-EINVAL, "network-interfaces: at most %d interfaces, got %zu",
                           CONFIG_MAX_NETS, n);
        for (size_t i = 0; i < n; i++) {
            ju_index(p, sizeof(p), "network-interfaces", i);
            if ((rc = parse_net(json_object_array_get_idx(v, i), p, &c->nets[i])) < 0)
                return rc;
            c->n_nets++;
        }
    }

    if ((rc = ju_get_typed(doc, "", "logger", OPT, json_type_object, &v)) < 0)
        return rc;
    if (rc) {
        if ((rc = parse_logger(v, "logger", &c->logger)) < 0)
            return rc;
        c->has_logger = true;
    }
    if ((rc = ju_get_typed(doc, "", "metrics", OPT, json_type_object, &v)) < 0)
        return rc;
    if (rc) {
        if ((rc = parse_metrics(v, "metrics", &c->metrics)) < 0)
            return rc;
        c->has_metrics = true;
    }
    return config_validate(c);
}

int config_parse_json(const char *text, size_t len, struct vm_config *out)
{
    struct json_object *doc = NULL;
    struct vm_config tmp;
    int rc;

    if (!text)
        return err_set(-EINVAL, "malformed JSON at offset 0: no document");
    if ((rc = ju_parse(text, len, &doc)) < 0)
        return rc;
    config_init(&tmp);
    rc = parse_doc(doc, &tmp);
    json_object_put(doc);
    if (rc < 0) {
        config_free(&tmp);
        return rc;
    }
    /* The CPU template file comes from a flag, never from this JSON. */
    tmp.machine.cpu_template = out->machine.cpu_template;
    out->machine.cpu_template = NULL;
    config_free(out);
    *out = tmp;
    return 0;
}

int config_load_file(const char *path, struct vm_config *out)
{
    char *buf = NULL;
    size_t len = 0;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return err_set(-errno, "%s: %s", path, strerror(errno));
    /* One byte more than the cap, to tell "exactly the cap" from "too big".
     * Read until EOF: the file may be a pipe (--config-file <(...)). */
    buf = malloc(CONFIG_FILE_MAX + 1);
    if (!buf) {
        close(fd);
        return err_set(-ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = err_set(-errno, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > CONFIG_FILE_MAX) {
            rc = err_set(-EFBIG, "%s: larger than %u bytes", path, CONFIG_FILE_MAX);
            goto out;
        }
    }
    rc = config_parse_json(buf, len, out);
    if (rc < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", err_msg());
        err_set(rc, "%s: %s", path, msg);
    }
out:
    free(buf);
    close(fd);
    return rc;
}

/* ---- serializing --------------------------------------------------------- */

/* Builders that remember an allocation failure in *bad and carry on. */
static void put(struct json_object *o, const char *key, struct json_object *v, bool *bad)
{
    if (!o) {
        json_object_put(v);
        *bad = true;
        return;
    }
    if (json_object_object_add(o, key, v) < 0) {
        json_object_put(v);
        *bad = true;
    }
}

static void put_new(struct json_object *o, const char *key, struct json_object *v, bool *bad)
{
    if (!v)
        *bad = true;
    put(o, key, v, bad);
}

static void put_str(struct json_object *o, const char *key, const char *s, bool *bad)
{
    if (s)
        put_new(o, key, json_object_new_string(s), bad);
    else
        put(o, key, NULL, bad);
}

static void put_u64(struct json_object *o, const char *key, uint64_t v, bool *bad)
{
    put_new(o, key, json_object_new_int64((int64_t)v), bad);
}

static void put_bool(struct json_object *o, const char *key, bool v, bool *bad)
{
    put_new(o, key, json_object_new_boolean(v), bad);
}

static struct json_object *done(struct json_object *o, bool bad)
{
    if (bad) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* As Firecracker: a bucket with size or refill_time 0 is no limit and prints
 * as null; one_time_burst is null when not given (0). */
static bool bucket_active(const struct rate_bucket *b)
{
    return b->set && b->size && b->refill_time_ms;
}

static struct json_object *bucket_json(const struct rate_bucket *b, bool *bad)
{
    if (!bucket_active(b))
        return NULL;
    struct json_object *o = json_object_new_object();
    put_u64(o, "size", b->size, bad);
    if (b->one_time_burst)
        put_u64(o, "one_time_burst", b->one_time_burst, bad);
    else
        put(o, "one_time_burst", NULL, bad);
    put_u64(o, "refill_time", b->refill_time_ms, bad);
    if (!o)
        *bad = true;
    return o;
}

/* Adds `key`: the limiter, or null when it has no bucket (as Firecracker). */
static void put_rate_limiter(struct json_object *o, const char *key, const struct rate_limiter *rl,
                             bool *bad)
{
    if (!bucket_active(&rl->bandwidth) && !bucket_active(&rl->ops)) {
        put(o, key, NULL, bad);
        return;
    }
    struct json_object *r = json_object_new_object();
    put(r, "bandwidth", bucket_json(&rl->bandwidth, bad), bad);
    put(r, "ops", bucket_json(&rl->ops, bad), bad);
    put_new(o, key, r, bad);
}

struct json_object *config_boot_source_to_json(const struct boot_source *b)
{
    bool bad = false;
    struct json_object *o = json_object_new_object();
    put_str(o, "kernel_image_path", b->kernel_image_path ? b->kernel_image_path : "", &bad);
    put_str(o, "initrd_path", b->initrd_path, &bad);
    put_str(o, "boot_args", b->boot_args, &bad);
    return done(o, bad || !o);
}

struct json_object *config_machine_config_to_json(const struct machine_config *m)
{
    bool bad = false;
    struct json_object *o = json_object_new_object();
    put_u64(o, "vcpu_count", m->vcpu_count, &bad);
    put_u64(o, "mem_size_mib", m->mem_size_mib, &bad);
    put_bool(o, "smt", m->smt, &bad);
    put_bool(o, "track_dirty_pages", m->track_dirty_pages, &bad);
    put_str(o, "huge_pages", config_huge_pages_name(m->huge_pages), &bad);
    return done(o, bad || !o);
}

struct json_object *config_drive_to_json(const struct drive_config *d)
{
    bool bad = false;
    struct json_object *o = json_object_new_object();
    put_str(o, "drive_id", d->drive_id, &bad);
    put_str(o, "partuuid", d->partuuid, &bad);
    put_bool(o, "is_root_device", d->is_root_device, &bad);
    put_str(o, "cache_type", config_cache_type_name(d->cache_type), &bad);
    put_bool(o, "is_read_only", d->is_read_only, &bad);
    put_str(o, "path_on_host", d->path_on_host, &bad);
    put_rate_limiter(o, "rate_limiter", &d->rate_limiter, &bad);
    put_str(o, "io_engine", config_io_engine_name(d->io_engine), &bad);
    put_str(o, "socket", NULL, &bad);
    return done(o, bad || !o);
}

struct json_object *config_net_to_json(const struct net_config *n)
{
    bool bad = false;
    char mac[18];
    struct json_object *o = json_object_new_object();
    put_str(o, "iface_id", n->iface_id, &bad);
    put_str(o, "host_dev_name", n->host_dev_name, &bad);
    if (n->has_mac) {
        snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->guest_mac[0],
                 n->guest_mac[1], n->guest_mac[2], n->guest_mac[3], n->guest_mac[4],
                 n->guest_mac[5]);
        put_str(o, "guest_mac", mac, &bad);
    } else {
        put_str(o, "guest_mac", NULL, &bad);
    }
    if (n->mtu)
        put_u64(o, "mtu", n->mtu, &bad);
    put_rate_limiter(o, "rx_rate_limiter", &n->rx_rate_limiter, &bad);
    put_rate_limiter(o, "tx_rate_limiter", &n->tx_rate_limiter, &bad);
    return done(o, bad || !o);
}

struct json_object *config_logger_to_json(const struct logger_config *l)
{
    bool bad = false;
    struct json_object *o = json_object_new_object();
    put_str(o, "log_path", l->log_path, &bad);
    put_str(o, "level", log_level_name(l->level), &bad);
    put_bool(o, "show_level", l->show_level, &bad);
    put_bool(o, "show_log_origin", l->show_log_origin, &bad);
    put_str(o, "module", l->module, &bad);
    return done(o, bad || !o);
}

struct json_object *config_metrics_to_json(const struct metrics_config *m)
{
    bool bad = false;
    struct json_object *o = json_object_new_object();
    put_str(o, "metrics_path", m->metrics_path, &bad);
    put_bool(o, "emit_id", m->emit_id, &bad);
    if (m->n_properties > 0) {
        struct json_object *p = json_object_new_object();
        for (int i = 0; i < m->n_properties; i++)
            put_str(p, m->properties[i].key, m->properties[i].value, &bad);
        put_new(o, "properties", p, &bad);
    }
    return done(o, bad || !o);
}

/* Every top-level key Firecracker's GET /vm/config prints, null or [] where
 * unset (Ember's absent devices always), so the output is a valid
 * Firecracker configuration file and a valid --config-file. */
struct json_object *config_to_json_object(const struct vm_config *cfg)
{
    bool bad = false;
    struct json_object *o = json_object_new_object();
    struct json_object *drives = json_object_new_array();
    struct json_object *nets = json_object_new_array();

    put(o, "balloon", NULL, &bad);
    for (int i = 0; drives && i < cfg->n_drives; i++) {
        struct json_object *d = config_drive_to_json(&cfg->drives[i]);
        if (!d || json_object_array_add(drives, d) < 0) {
            json_object_put(d);
            bad = true;
        }
    }
    put_new(o, "drives", drives, &bad);
    if (cfg->has_boot_source)
        put_new(o, "boot-source", config_boot_source_to_json(&cfg->boot), &bad);
    else
        put(o, "boot-source", NULL, &bad);
    if (cfg->cpu_config) {
        struct json_object *t = NULL;
        if (ju_parse(cfg->cpu_config, strlen(cfg->cpu_config), &t) < 0)
            bad = true;
        put(o, "cpu-config", t, &bad);
    } else {
        put(o, "cpu-config", NULL, &bad);
    }
    if (cfg->has_logger)
        put_new(o, "logger", config_logger_to_json(&cfg->logger), &bad);
    else
        put(o, "logger", NULL, &bad);
    put_new(o, "machine-config", config_machine_config_to_json(&cfg->machine), &bad);
    if (cfg->has_metrics)
        put_new(o, "metrics", config_metrics_to_json(&cfg->metrics), &bad);
    else
        put(o, "metrics", NULL, &bad);
    put(o, "mmds-config", NULL, &bad);
    for (int i = 0; nets && i < cfg->n_nets; i++) {
        struct json_object *n = config_net_to_json(&cfg->nets[i]);
        if (!n || json_object_array_add(nets, n) < 0) {
            json_object_put(n);
            bad = true;
        }
    }
    put_new(o, "network-interfaces", nets, &bad);
    put(o, "vsock", NULL, &bad);
    put(o, "entropy", NULL, &bad);
    put_new(o, "pmem", json_object_new_array(), &bad);
    put(o, "memory-hotplug", NULL, &bad);
    return done(o, bad || !o);
}

char *config_to_json(const struct vm_config *cfg)
{
    struct json_object *o = config_to_json_object(cfg);
    if (!o)
        return NULL;
    const char *s = json_object_to_json_string_ext(
        o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *r = s ? strdup(s) : NULL;
    json_object_put(o);
    return r;
}
