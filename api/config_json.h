/* config_json.h - Firecracker's JSON configuration <-> struct vm_config.
 *
 * Parsing is strict: unknown keys are rejected by name, types and ranges are
 * checked, and a rejected document leaves the output untouched. Each error
 * is recorded with err_set() naming the offending field
 * (e.g. "machine-config.vcpu_count: must be between 1 and 32, got 33").
 * The per-section parsers are the ones the REST API uses for its PUT bodies.
 *
 * Conventions (as Firecracker, whose GET /vm/config prints unset optional
 * fields as null): an optional field may be absent or null, meaning its
 * default; a required field must be present with the right type. Strings
 * holding a NUL are refused; paths are at most CONFIG_PATH_MAX bytes.
 * Firecracker features Ember does not have are refused by name: the sections
 * balloon, vsock, entropy, mmds-config, pmem, memory-hotplug (null or [] is
 * accepted as "not configured"), drives[].socket (vhost-user), a
 * cpu-config given as a path (Ember's is --cpu-template), cpu_template other
 * than "None" (Firecracker's static templates).
 */
#ifndef EMBER_CONFIG_JSON_H
#define EMBER_CONFIG_JSON_H

#include <stddef.h>

#include <json-c/json.h>

#include "../vmm/base/config.h"

/* Largest file config_load_file() reads. */
#define CONFIG_FILE_MAX (1u << 20)

/* Whole document as given to --config-file / returned by GET /vm/config.
 * `out` must have been config_init()ed; on success its old contents are freed
 * and replaced (machine.cpu_template, which JSON never sets, is kept), and
 * the cross-device checks of config_validate() have passed. A document
 * without boot-source parses (has_boot_source false); starting needs one. */
int config_parse_json(const char *text, size_t len, struct vm_config *out);
/* Read (at most CONFIG_FILE_MAX bytes) and parse; errors start with "PATH: ". */
int config_load_file(const char *path, struct vm_config *out);

/* Serialize as Firecracker's FullVmConfiguration (caller frees the string):
 * every top-level key Firecracker prints, null or [] when unset; parsing the
 * result gives the same config.
 * NULL on allocation failure. */
char *config_to_json(const struct vm_config *cfg);
/* The same as a json-c object (caller puts it); NULL on allocation failure. */
struct json_object *config_to_json_object(const struct vm_config *cfg);

/* Per-section parsers (one PUT body each). On success the old contents of
 * *out are freed and replaced; on error *out is untouched. *out must be
 * zeroed or hold a previously parsed value. Errors name the field under the
 * section's name: "boot-source.", "machine-config.", "drive.",
 * "network-interface.", "logger.", "metrics.", "rate_limiter.".
 * config_parse_machine_config leaves out->cpu_template alone. Checks across
 * devices (unique ids, one root drive ...) are config_validate()'s. */
int config_parse_boot_source(struct json_object *o, struct boot_source *out);
int config_parse_machine_config(struct json_object *o, struct machine_config *out);
int config_parse_drive(struct json_object *o, struct drive_config *out);
int config_parse_net(struct json_object *o, struct net_config *out);
int config_parse_logger(struct json_object *o, struct logger_config *out);
int config_parse_metrics(struct json_object *o, struct metrics_config *out);
int config_parse_rate_limiter(struct json_object *o, struct rate_limiter *out);
/* PUT /serial: {"serial_out_path": PATH, "rate_limiter": TokenBucket}, both optional. */
int config_parse_serial(struct json_object *o, struct serial_config *out);
/* PATCH /machine-config: every field optional (at least one), applied over *out. */
int config_patch_machine_config(struct json_object *o, struct machine_config *out);

/* PATCH bodies after boot (Firecracker's PartialDrive / PartialNetworkInterface):
 * the id, and at least one of the optional members. Caller frees the strings
 * with config_patch_free(). Errors name the field ("drive.path_on_host: ..."). */
struct drive_patch {
    char *drive_id;
    char *path_on_host; /* NULL: unchanged */
    bool has_rate_limiter;
    struct rate_limiter rate_limiter;
};
struct net_patch {
    char *iface_id;
    bool has_rx, has_tx;
    struct rate_limiter rx_rate_limiter, tx_rate_limiter;
};
int config_parse_drive_patch(struct json_object *o, struct drive_patch *out);
int config_parse_net_patch(struct json_object *o, struct net_patch *out);
void config_drive_patch_free(struct drive_patch *p);
void config_net_patch_free(struct net_patch *p);

/* Per-section serializers (GET /machine-config ...); NULL on allocation
 * failure. A rate limiter with no bucket set serializes as null. */
struct json_object *config_boot_source_to_json(const struct boot_source *b);
struct json_object *config_machine_config_to_json(const struct machine_config *m);
struct json_object *config_drive_to_json(const struct drive_config *d);
struct json_object *config_net_to_json(const struct net_config *n);
struct json_object *config_logger_to_json(const struct logger_config *l);
struct json_object *config_metrics_to_json(const struct metrics_config *m);

/* Names as they appear in the JSON ("Unsafe", "Sync", "Info"). */
const char *config_cache_type_name(enum cache_type t);
const char *config_io_engine_name(enum io_engine e);
const char *config_huge_pages_name(enum huge_pages h);

#endif
