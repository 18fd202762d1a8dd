/* routes.c - request routing and the endpoint handlers (see routes.h). */
#define _GNU_SOURCE
#include "routes.h"

#include "../vmm/base/err.h"
#include "../vmm/base/log.h"
#include "../vmm/base/metrics.h"
#include "../vmm/base/version.h"
#include "config_json.h"
#include "json_util.h"
#include "snapshot_json.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fault(char **body, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fault(char **body, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t cap = 2 * sizeof(msg) + 64;
    *body = malloc(cap);
    if (*body && http_fault_json(*body, cap, msg) < 0) {
        free(*body);
        *body = NULL;
    }
    return status;
}

static int json_reply(char **body, struct json_object *o)
{
    if (!o)
        return fault(body, 500, "out of memory");
    *body = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return 200;
}

static const char *state_name(struct api_vmm *a)
{
    if (!a->started)
        return "Not started";
    return a->ops->is_paused(a->vmm) ? "Paused" : "Running";
}

/* Parse a request body as one JSON object: 0, or -EINVAL with the fault in *body. */
static int body_object(const struct http_request *req, struct json_object **o, char **body)
{
    if (!req->body || req->body_len == 0) {
        fault(body, 400, "the request needs a JSON body");
        return -EINVAL;
    }
    if (ju_parse(req->body, req->body_len, o) < 0) {
        fault(body, 400, "%s", err_msg());
        return -EINVAL;
    }
    if (!json_object_is_type(*o, json_type_object)) {
        json_object_put(*o);
        fault(body, 400, "the request body must be a JSON object");
        return -EINVAL;
    }
    return 0;
}

/* 0 before InstanceStart; else -EBUSY with the fault in *body. */
static int pre_boot_only(struct api_vmm *a, const char *what, char **body)
{
    if (!a->started)
        return 0;
    fault(body, 400, "%s: the microVM is running; this is only allowed before InstanceStart", what);
    return -EBUSY;
}

/* ---- handlers ---- */

static int get_root(struct api_vmm *a, char **body)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(a->id));
    json_object_object_add(o, "state", json_object_new_string(state_name(a)));
    json_object_object_add(o, "vmm_version", json_object_new_string(EMBER_FC_VERSION));
    json_object_object_add(o, "app_name", json_object_new_string("Ember"));
    json_object_object_add(o, "ember_version", json_object_new_string(EMBER_VERSION));
    return json_reply(body, o);
}

static int put_boot_source(struct api_vmm *a, const struct http_request *req, char **body)
{
    struct json_object *o;
    if (pre_boot_only(a, "boot-source", body) || body_object(req, &o, body))
        return 400;
    struct boot_source b;
    memset(&b, 0, sizeof(b));
    int rc = config_parse_boot_source(o, &b);
    json_object_put(o);
    if (rc)
        return fault(body, 400, "%s", err_msg());
    if (a->ops->check_boot_source && a->ops->check_boot_source(a->vmm, &b) < 0) {
        int st = fault(body, 400, "%s", err_msg());
        config_boot_source_free(&b);
        return st;
    }
    if (a->cfg.has_boot_source)
        config_boot_source_free(&a->cfg.boot);
    a->cfg.boot = b;
    a->cfg.has_boot_source = true;
    return 204;
}

static int machine_config(struct api_vmm *a, const struct http_request *req, char **body)
{
    if (req->method == HTTP_GET)
        return json_reply(body, config_machine_config_to_json(&a->cfg.machine));
    struct json_object *o;
    if (pre_boot_only(a, "machine-config", body) || body_object(req, &o, body))
        return 400;
    struct machine_config m = a->cfg.machine;
    int rc = req->method == HTTP_PUT ? config_parse_machine_config(o, &m)
                                     : config_patch_machine_config(o, &m);
    json_object_put(o);
    if (rc)
        return fault(body, 400, "%s", err_msg());
    a->cfg.machine = m;
    return 204;
}

/* PATCH /drives/{id} (path_on_host, rate_limiter) and
 * /network-interfaces/{id} (rate limiters) on a running VM: the device is
 * updated first, the configuration (GET /vm/config) only if that worked. */
static int patch_device(struct api_vmm *a, const struct http_request *req, const char *id,
                        bool is_drive, char **body)
{
    struct json_object *o;
    const char *what = is_drive ? "drives" : "network-interfaces";
    if (body_object(req, &o, body))
        return 400;
    struct drive_patch dp = {0};
    struct net_patch np = {0};
    int rc = is_drive ? config_parse_drive_patch(o, &dp) : config_parse_net_patch(o, &np);
    json_object_put(o);
    if (rc)
        return fault(body, 400, "%s", err_msg());
    int st = 204;
    const char *body_id = is_drive ? dp.drive_id : np.iface_id;
    int slot = -1;
    int count = is_drive ? a->cfg.n_drives : a->cfg.n_nets;
    for (int i = 0; i < count; i++)
        if (strcmp(is_drive ? a->cfg.drives[i].drive_id : a->cfg.nets[i].iface_id, id) == 0)
            slot = i;
    if (strcmp(body_id, id) != 0) {
        st = fault(body, 400, "%s: the id in the path (%s) differs from the id in the body (%s)",
                   what, id, body_id);
    } else if (slot < 0) {
        st = fault(body, 400, "%s/%s: no such device in this VM", what, id);
    } else if (is_drive) {
        rc = a->ops->update_drive(a->vmm, id, dp.path_on_host,
                                  dp.has_rate_limiter ? &dp.rate_limiter : NULL);
        if (rc) {
            st = fault(body, 400, "%s", err_msg());
        } else {
            struct drive_config *d = &a->cfg.drives[slot];
            if (dp.path_on_host) {
                free(d->path_on_host);
                d->path_on_host = dp.path_on_host;
                dp.path_on_host = NULL;
            }
            if (dp.has_rate_limiter)
                d->rate_limiter = dp.rate_limiter;
        }
    } else {
        rc = a->ops->update_net(a->vmm, id, np.has_rx ? &np.rx_rate_limiter : NULL,
                                np.has_tx ? &np.tx_rate_limiter : NULL);
        if (rc) {
            st = fault(body, 400, "%s", err_msg());
        } else {
            if (np.has_rx)
                a->cfg.nets[slot].rx_rate_limiter = np.rx_rate_limiter;
            if (np.has_tx)
                a->cfg.nets[slot].tx_rate_limiter = np.tx_rate_limiter;
        }
    }
    config_drive_patch_free(&dp);
    config_net_patch_free(&np);
    return st;
}

/* PUT /drives/{id} and /network-interfaces/{id}: insert or replace, then
 * validate the whole configuration; roll back if it no longer holds. */
static int put_device(struct api_vmm *a, const struct http_request *req, const char *id,
                      bool is_drive, char **body)
{
    struct json_object *o;
    const char *what = is_drive ? "drives" : "network-interfaces";
    if (req->method == HTTP_PATCH && a->started)
        return patch_device(a, req, id, is_drive, body);
    if (pre_boot_only(a, what, body) || body_object(req, &o, body))
        return 400;
    if (req->method == HTTP_PATCH) {
        json_object_put(o);
        return fault(body, 400, "%s/%s: PATCH is only allowed after InstanceStart", what, id);
    }
    struct drive_config d;
    struct net_config n;
    memset(&d, 0, sizeof(d));
    memset(&n, 0, sizeof(n));
    int rc = is_drive ? config_parse_drive(o, &d) : config_parse_net(o, &n);
    json_object_put(o);
    if (rc)
        return fault(body, 400, "%s", err_msg());
    const char *body_id = is_drive ? d.drive_id : n.iface_id;
    int chk = 0;
    if (strcmp(body_id, id) == 0 && is_drive && a->ops->check_drive)
        chk = a->ops->check_drive(a->vmm, &d);
    else if (strcmp(body_id, id) == 0 && !is_drive && a->ops->check_net)
        chk = a->ops->check_net(a->vmm, &n);
    if (strcmp(body_id, id) != 0 || chk < 0) {
        int st = chk < 0 ? fault(body, 400, "%s", err_msg())
                         : fault(body, 400,
                                 "%s: the id in the path (%s) differs from the id in the body (%s)",
                                 what, id, body_id);
        if (is_drive)
            config_drive_free(&d);
        else
            config_net_free(&n);
        return st;
    }
    int *count = is_drive ? &a->cfg.n_drives : &a->cfg.n_nets;
    int max = is_drive ? CONFIG_MAX_DRIVES : CONFIG_MAX_NETS;
    int slot = -1;
    for (int i = 0; i < *count; i++) {
        const char *cur = is_drive ? a->cfg.drives[i].drive_id : a->cfg.nets[i].iface_id;
        if (strcmp(cur, id) == 0)
            slot = i;
    }
    bool added = slot < 0;
    if (added && *count == max) {
        if (is_drive)
            config_drive_free(&d);
        else
            config_net_free(&n);
        return fault(body, 400, "%s: at most %d are supported", what, max);
    }
    if (added)
        slot = (*count)++;
    struct drive_config old_d;
    struct net_config old_n;
    if (is_drive) {
        old_d = a->cfg.drives[slot];
        a->cfg.drives[slot] = d;
    } else {
        old_n = a->cfg.nets[slot];
        a->cfg.nets[slot] = n;
    }
    if (config_validate(&a->cfg) != 0) {
        int st = fault(body, 400, "%s", err_msg());
        if (is_drive) {
            config_drive_free(&a->cfg.drives[slot]);
            a->cfg.drives[slot] = old_d;
        } else {
            config_net_free(&a->cfg.nets[slot]);
            a->cfg.nets[slot] = old_n;
        }
        if (added)
            (*count)--;
        return st;
    }
    if (!added) {
        if (is_drive)
            config_drive_free(&old_d);
        else
            config_net_free(&old_n);
    }
    return 204;
}

/* A string copy for the logger merge; false on allocation failure. */
static bool dup_opt(const char *src, char **dst)
{
    *dst = src ? strdup(src) : NULL;
    return !src || *dst;
}

/* PUT /logger merges with the earlier one, as Firecracker's does: the fields
 * given replace the stored ones, the others stay (level falls back to Info
 * when not given). The new configuration is applied first (the log file
 * opened) and stored only if that worked, so a rejected request changes
 * nothing. */
static int put_logger(struct api_vmm *a, const struct http_request *req, char **body)
{
    struct json_object *o, *v;
    if (pre_boot_only(a, "logger", body) || body_object(req, &o, body))
        return 400;
    struct logger_config l;
    memset(&l, 0, sizeof(l));
    int rc = config_parse_logger(o, &l);
#define GIVEN(k) (json_object_object_get_ex(o, k, &v) && !json_object_is_type(v, json_type_null))
    bool g_path = GIVEN("log_path"), g_show = GIVEN("show_level"),
         g_origin = GIVEN("show_log_origin"), g_module = GIVEN("module");
#undef GIVEN
    json_object_put(o);
    if (rc)
        return fault(body, 400, "%s", err_msg());
    if (a->cfg.has_logger) {
        const struct logger_config *cur = &a->cfg.logger;
        bool ok = true;
        if (!g_path) {
            free(l.log_path);
            ok = ok && dup_opt(cur->log_path, &l.log_path);
        }
        if (!g_module) {
            free(l.module);
            ok = ok && dup_opt(cur->module, &l.module);
        }
        if (!g_show)
            l.show_level = cur->show_level;
        if (!g_origin)
            l.show_log_origin = cur->show_log_origin;
        if (!ok) {
            config_logger_free(&l);
            return fault(body, 500, "logger: out of memory");
        }
    }
    struct vm_config trial = a->cfg; /* shallow: only .logger is read */
    trial.logger = l;
    trial.has_logger = true;
    if (a->ops->apply_logger(a->vmm, &trial) < 0) {
        int st = fault(body, 400, "%s", err_msg());
        config_logger_free(&l);
        return st;
    }
    if (a->cfg.has_logger)
        config_logger_free(&a->cfg.logger);
    a->cfg.logger = l;
    a->cfg.has_logger = true;
    return 204;
}

/* PUT /metrics: once, as Firecracker (a second one, or one after
 * --metrics-path, is refused); the file is opened before anything is
 * stored. */
static int put_metrics(struct api_vmm *a, const struct http_request *req, char **body)
{
    struct json_object *o;
    if (pre_boot_only(a, "metrics", body) || body_object(req, &o, body))
        return 400;
    struct metrics_config m;
    memset(&m, 0, sizeof(m));
    int rc = config_parse_metrics(o, &m);
    json_object_put(o);
    if (rc)
        return fault(body, 400, "%s", err_msg());
    if (a->cfg.has_metrics || metrics_configured()) {
        config_metrics_free(&m);
        return fault(body, 400,
                     "metrics: Reinitialization of metrics not allowed. (metrics are "
                     "already configured%s)",
                     a->cfg.has_metrics ? "" : " by --metrics-path");
    }
    if (metrics_open(m.metrics_path) < 0) {
        int st = fault(body, 400, "%s", err_msg());
        config_metrics_free(&m);
        return st;
    }
    a->cfg.metrics = m;
    a->cfg.has_metrics = true;
    return 204;
}

static int put_serial(struct api_vmm *a, const struct http_request *req, char **body)
{
    struct json_object *o;
    if (pre_boot_only(a, "serial", body) || body_object(req, &o, body))
        return 400;
    struct serial_config s;
    memset(&s, 0, sizeof(s));
    int rc = config_parse_serial(o, &s);
    json_object_put(o);
    if (rc)
        return fault(body, 400, "%s", err_msg());
    config_serial_free(&a->cfg.serial);
    a->cfg.serial = s;
    a->cfg.has_serial = true;
    return 204;
}

static int put_actions(struct api_vmm *a, const struct http_request *req, char **body)
{
    static const char *const keys[] = {"action_type", NULL};
    struct json_object *o, *t;
    if (body_object(req, &o, body))
        return 400;
    if (ju_check_keys(o, "actions", keys) < 0 || !json_object_object_get_ex(o, "action_type", &t) ||
        !json_object_is_type(t, json_type_string)) {
        json_object_put(o);
        return fault(body, 400, "%s",
                     err_msg()[0] ? err_msg() : "actions.action_type: expected a string");
    }
    char action[32];
    snprintf(action, sizeof(action), "%s", json_object_get_string(t));
    json_object_put(o);
    if (strcmp(action, "InstanceStart") == 0) {
        if (a->started)
            return fault(body, 400, "InstanceStart: the microVM is already running");
        if (!a->cfg.has_boot_source)
            return fault(body, 400,
                         "InstanceStart: boot-source is not configured "
                         "(PUT /boot-source first)");
        if (a->ops->start(a->vmm, &a->cfg) < 0)
            return fault(body, 400, "InstanceStart: %s", err_msg());
        a->started = true;
        return 204;
    }
    if (strcmp(action, "SendCtrlAltDel") == 0) {
        if (!a->started)
            return fault(body, 400, "SendCtrlAltDel: the microVM is not running");
        if (a->ops->ctrl_alt_del(a->vmm) < 0)
            return fault(body, 400, "SendCtrlAltDel: the i8042 buffer is full; try again");
        return 204;
    }
    if (strcmp(action, "FlushMetrics") == 0) {
        if (!a->started)
            return fault(body, 400,
                         "FlushMetrics: The requested operation is not supported before "
                         "starting the microVM.");
        if (metrics_flush() < 0)
            return fault(body, 400, "FlushMetrics: %s", err_msg());
        return 204;
    }
    err_clear();
    return fault(body, 400,
                 "actions.action_type: unknown action '%s' (InstanceStart, "
                 "SendCtrlAltDel, FlushMetrics)",
                 action);
}

static int patch_vm(struct api_vmm *a, const struct http_request *req, char **body)
{
    static const char *const keys[] = {"state", NULL};
    struct json_object *o, *s;
    if (body_object(req, &o, body))
        return 400;
    if (ju_check_keys(o, "vm", keys) < 0 || !json_object_object_get_ex(o, "state", &s) ||
        !json_object_is_type(s, json_type_string)) {
        json_object_put(o);
        return fault(body, 400, "vm.state: expected \"Paused\" or \"Resumed\"");
    }
    bool pause = strcmp(json_object_get_string(s), "Paused") == 0;
    bool resume = strcmp(json_object_get_string(s), "Resumed") == 0;
    json_object_put(o);
    if (!pause && !resume)
        return fault(body, 400, "vm.state: expected \"Paused\" or \"Resumed\"");
    if (!a->started)
        return fault(body, 400, "vm: the microVM is not running yet");
    if ((pause ? a->ops->pause(a->vmm) : a->ops->resume(a->vmm)) < 0)
        return fault(body, 400, "vm: %s", err_msg());
    return 204;
}

/* True if any pre-boot resource other than logger and metrics was configured
 * (a snapshot load must come first, as in Firecracker). */
static bool vm_configured(const struct api_vmm *a)
{
    struct vm_config d;
    config_init(&d);
    const struct machine_config *m = &a->cfg.machine;
    return a->cfg.has_boot_source || a->cfg.n_drives || a->cfg.n_nets || a->cfg.has_serial ||
           a->cfg.cpu_config || m->vcpu_count != d.machine.vcpu_count ||
           m->mem_size_mib != d.machine.mem_size_mib || m->smt != d.machine.smt ||
           m->track_dirty_pages != d.machine.track_dirty_pages ||
           m->huge_pages != d.machine.huge_pages;
}

static int put_snapshot(struct api_vmm *a, const struct http_request *req, bool create,
                        char **body)
{
    struct json_object *o;
    if (body_object(req, &o, body))
        return 400;
    int rc;
    if (create) {
        struct snapshot_create_params p;
        rc = config_parse_snapshot_create(o, &p);
        json_object_put(o);
        if (rc)
            return fault(body, 400, "%s", err_msg());
        if (!a->started || !a->ops->is_paused(a->vmm))
            rc = err_set(-EINVAL, "the microVM must be paused to create a snapshot (it is %s)",
                         state_name(a));
        else
            rc = a->ops->create_snapshot(a->vmm, &a->cfg, &p);
        config_snapshot_create_free(&p);
        return rc ? fault(body, 400, "CreateSnapshot: %s", err_msg()) : 204;
    }
    struct snapshot_load_params p;
    rc = config_parse_snapshot_load(o, &p);
    json_object_put(o);
    if (rc)
        return fault(body, 400, "%s", err_msg());
    if (a->started)
        rc = err_set(-EINVAL, "loading a snapshot is only allowed before the microVM starts");
    else if (vm_configured(a))
        rc = err_set(-EINVAL, "loading a snapshot is not allowed after configuring boot-specific "
                              "resources (only logger and metrics may come first)");
    else if (!(rc = a->ops->load_snapshot(a->vmm, &a->cfg, &p)))
        a->started = true;
    config_snapshot_load_free(&p);
    return rc ? fault(body, 400, "LoadSnapshot: %s", err_msg()) : 204;
}

/* PUT /cpu-config: Firecracker's custom CPU template (the format
 * --cpu-template reads), checked by the VMM now, applied at InstanceStart. */
static int put_cpu_config(struct api_vmm *a, const struct http_request *req, char **body)
{
    struct json_object *o;
    if (pre_boot_only(a, "cpu-config", body) || body_object(req, &o, body))
        return 400;
    char *text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    if (!text)
        return fault(body, 500, "cpu-config: out of memory");
    if (a->ops->check_cpu_config && a->ops->check_cpu_config(a->vmm, text) < 0) {
        free(text);
        return fault(body, 400, "%s", err_msg());
    }
    free(a->cfg.cpu_config);
    a->cfg.cpu_config = text;
    return 204;
}

/* Endpoints Firecracker has for devices Ember's fixed model lacks. */
static const struct {
    const char *prefix, *what;
} unsupported[] = {
    {"/balloon", "a balloon device"},
    {"/vsock", "a vsock device"},
    {"/entropy", "an entropy device"},
    {"/mmds", "MMDS"},
    {"/pmem", "pmem devices"},
    {"/hotplug", "device hotplug"},
    {"/memory-hotplug", "memory hotplug"},
};

static bool path_is(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static int api_route_inner(void *opaque, const struct http_request *req, char **body);

int api_route(void *opaque, const struct http_request *req, char **body)
{
    int status = api_route_inner(opaque, req, body);
    METRIC_INC(api_requests);
    if (status >= 400)
        METRIC_INC(api_request_errors);
    return status;
}

/* The path as Firecracker matches it: leading '/'s collapsed to one, one
 * trailing '/' dropped ("/drives/rootfs/" is "/drives/rootfs"). */
static void normalize_path(const char *in, char *out, size_t cap)
{
    while (in[0] == '/' && in[1] == '/')
        in++;
    snprintf(out, cap, "%s", in);
    size_t n = strlen(out);
    if (n > 1 && out[n - 1] == '/')
        out[n - 1] = '\0';
}

static int api_route_inner(void *opaque, const struct http_request *req, char **body)
{
    struct api_vmm *a = opaque;
    char path[HTTP_PATH_MAX];
    normalize_path(req->path, path, sizeof(path));
    const char *p = path;
    enum http_method m = req->method;
    *body = NULL;
    err_clear();
    /* Firecracker answers a wrong method on a known path exactly as an unknown
     * path: 400 with this message. */
#define ALLOW(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return fault(body, 400, "Invalid request method and/or path: %s %s.",                  \
                         req->method_name, p);                                                     \
    } while (0)

    if (m == HTTP_GET && req->body_len > 0)
        return fault(body, 400, "GET request cannot have a body.");
    for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++)
        if (path_is(p, unsupported[i].prefix))
            return fault(body, 400, "%s: Ember does not provide %s", p, unsupported[i].what);
    if (strcmp(p, "/") == 0) {
        ALLOW(m == HTTP_GET);
        return get_root(a, body);
    }
    if (strcmp(p, "/version") == 0) {
        ALLOW(m == HTTP_GET);
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "firecracker_version", json_object_new_string(EMBER_FC_VERSION));
        json_object_object_add(o, "ember_version", json_object_new_string(EMBER_VERSION));
        return json_reply(body, o);
    }
    if (strcmp(p, "/boot-source") == 0) {
        ALLOW(m == HTTP_PUT);
        return put_boot_source(a, req, body);
    }
    if (strcmp(p, "/machine-config") == 0) {
        ALLOW(m == HTTP_GET || m == HTTP_PUT || m == HTTP_PATCH);
        return machine_config(a, req, body);
    }
    if (strcmp(p, "/cpu-config") == 0) {
        ALLOW(m == HTTP_PUT);
        return put_cpu_config(a, req, body);
    }
    if (strncmp(p, "/drives/", 8) == 0 || strncmp(p, "/network-interfaces/", 20) == 0) {
        bool drive = p[1] == 'd';
        const char *id = p + (drive ? 8 : 20);
        ALLOW(m == HTTP_PUT || m == HTTP_PATCH);
        if (!config_id_valid(id))
            return fault(body, 400, "%s: invalid id in the path (letters, digits, '_', at most 64)",
                         drive ? "drive_id" : "iface_id");
        return put_device(a, req, id, drive, body);
    }
    if (strcmp(p, "/logger") == 0) {
        ALLOW(m == HTTP_PUT);
        return put_logger(a, req, body);
    }
    if (strcmp(p, "/metrics") == 0) {
        ALLOW(m == HTTP_PUT);
        return put_metrics(a, req, body);
    }
    if (strcmp(p, "/serial") == 0) {
        ALLOW(m == HTTP_PUT);
        return put_serial(a, req, body);
    }
    if (strcmp(p, "/actions") == 0) {
        ALLOW(m == HTTP_PUT);
        return put_actions(a, req, body);
    }
    if (strcmp(p, "/vm") == 0) {
        ALLOW(m == HTTP_PATCH);
        return patch_vm(a, req, body);
    }
    if (strcmp(p, "/snapshot/create") == 0 || strcmp(p, "/snapshot/load") == 0) {
        ALLOW(m == HTTP_PUT);
        return put_snapshot(a, req, p[10] == 'c', body);
    }
    if (strcmp(p, "/vm/config") == 0) {
        ALLOW(m == HTTP_GET);
        char *s = config_to_json(&a->cfg);
        if (!s)
            return fault(body, 500, "out of memory");
        *body = s;
        return 200;
    }
    ALLOW(false);
#undef ALLOW
    return 400;
}
