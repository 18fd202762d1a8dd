/* config.h - the one configuration model of a microVM.
 *
 * Filled from Firecracker's JSON (api/config_json.c) by --config-file and,
 * later, by the REST API; read by the VMM when the VM is built. Every field
 * has been validated by the time it is stored here.
 */
#ifndef EMBER_CONFIG_H
#define EMBER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define CONFIG_MAX_VCPUS 32
/* Firecracker's limit on devices is its device slots: one GSI each, 5..23 of
 * the IOAPIC's 24 pins, 19 devices of any kind (Ember's VDEV_MAX too). */
#define CONFIG_MAX_DEVICES 19
#define CONFIG_MAX_DRIVES CONFIG_MAX_DEVICES
#define CONFIG_MAX_NETS CONFIG_MAX_DEVICES
#define CONFIG_ID_MAX 64     /* drive_id / iface_id: [A-Za-z0-9_]{1,64} */
#define CONFIG_PATH_MAX 4095 /* host paths, bytes */
#define CONFIG_BOOT_ARGS_MAX                                                                       \
    2047 /* boot_args, bytes: Firecracker's x86 limit (2048 with the NUL) */
#define CONFIG_MEM_MAX_MIB (1u << 20) /* 1 TiB; the VMM checks what the host can map */
#define CONFIG_MAX_METRICS_PROPS 64
/* A device's busy-poll budget after its ring runs empty (Ember's own option,
 * set for every drive or interface by --blk-poll-us / --net-poll-us; not part
 * of Firecracker's JSON). */
#define CONFIG_POLL_US_DEFAULT 20
#define CONFIG_POLL_US_MAX 1000

/* A token bucket; `set` false: no limit on this resource. size 0 or
 * refill_time_ms 0 also means "no limit" (as Firecracker). refill_time_ms is
 * at most CONFIG_REFILL_MAX_MS, so converting it to ns cannot overflow. */
#define CONFIG_REFILL_MAX_MS (UINT64_MAX / 1000000u)
struct rate_bucket {
    bool set;
    uint64_t size;
    uint64_t one_time_burst;
    uint64_t refill_time_ms;
};

struct rate_limiter {
    struct rate_bucket bandwidth;
    struct rate_bucket ops;
};

struct boot_source {
    char *kernel_image_path; /* required */
    char *initrd_path;       /* NULL: none */
    char *boot_args;         /* NULL: Ember's default */
};

/* machine-config.huge_pages: how guest RAM is backed. */
enum huge_pages { HUGE_PAGES_NONE = 0, HUGE_PAGES_2M, HUGE_PAGES_TRANSPARENT };

struct machine_config {
    unsigned vcpu_count;   /* 1..32; 1 or even when smt */
    uint64_t mem_size_mib; /* >= 1; a multiple of 2 with huge pages */
    bool smt;              /* two threads per core in the guest's CPUID topology */
    bool track_dirty_pages;
    enum huge_pages huge_pages;
    /* NULL or a path to a CPU template JSON file. Never set from
     * Firecracker's JSON: there `cpu_template` accepts only "None" (Ember has
     * no static templates); the file comes from Ember's own command-line
     * flag and is not part of GET /vm/config. */
    char *cpu_template;
};

enum cache_type { CACHE_UNSAFE = 0, CACHE_WRITEBACK };
enum io_engine { IO_ENGINE_SYNC = 0, IO_ENGINE_ASYNC };

struct drive_config {
    char *drive_id;
    char *path_on_host;
    bool is_root_device;
    bool is_read_only;
    char *partuuid; /* NULL if absent */
    enum cache_type cache_type;
    enum io_engine io_engine;
    struct rate_limiter rate_limiter;
    unsigned poll_us; /* CONFIG_POLL_US_*; 0: no polling */
};

struct net_config {
    char *iface_id;
    char *host_dev_name;
    bool has_mac;
    uint8_t guest_mac[6];
    unsigned mtu; /* 0: not set */
    struct rate_limiter rx_rate_limiter;
    struct rate_limiter tx_rate_limiter;
    unsigned poll_us; /* CONFIG_POLL_US_*; 0: no polling */
};

enum log_level { LOG_ERROR = 0, LOG_WARNING, LOG_INFO, LOG_DEBUG, LOG_TRACE, LOG_OFF };

struct logger_config {
    char *log_path;       /* NULL: not redirected (Firecracker allows a logger without a path) */
    enum log_level level; /* default LOG_INFO */
    bool show_level;
    bool show_log_origin;
    char *module; /* NULL: no filter; else only lines from this module */
};

struct metrics_property {
    char *key;
    char *value;
};

struct metrics_config {
    char *metrics_path; /* required when has_metrics */
    bool emit_id;       /* add the instance id as top-level "id" on each line */
    int n_properties;   /* operator key/values emitted under "properties" */
    struct metrics_property *properties;
};

/* PUT /serial: console output to a file or FIFO instead of stdout, and an
 * optional byte bucket; bytes over the rate are dropped and counted. */
struct serial_config {
    char *serial_out_path; /* NULL: stdout */
    struct rate_bucket rate_limiter;
};

struct vm_config {
    bool has_boot_source;
    struct boot_source boot;
    struct machine_config machine;
    int n_drives;
    struct drive_config drives[CONFIG_MAX_DRIVES];
    int n_nets;
    struct net_config nets[CONFIG_MAX_NETS];
    bool has_logger;
    struct logger_config logger;
    bool has_metrics;
    struct metrics_config metrics;
    bool has_serial;
    struct serial_config serial;
    /* PUT /cpu-config / "cpu-config": a custom CPU template as JSON text
     * (validated by the VMM), or NULL. Applied over --cpu-template's file. */
    char *cpu_config;
};

/* Defaults: 1 vCPU, 128 MiB, smt false, no devices. */
void config_init(struct vm_config *cfg);
/* Free every string and reset to config_init()'s defaults. */
void config_free(struct vm_config *cfg);

/* Free one section's strings (and zero the struct), for callers that replace a
 * section (the REST API's PUT /drives/{id} ...). */
void config_boot_source_free(struct boot_source *b);
void config_drive_free(struct drive_config *d);
void config_net_free(struct net_config *n);
void config_logger_free(struct logger_config *l);
void config_metrics_free(struct metrics_config *m);
void config_serial_free(struct serial_config *s);

/* True if `id` is a valid drive_id / iface_id: 1 to CONFIG_ID_MAX characters
 * of [A-Za-z0-9_] (Firecracker's rule for ids in API paths). */
bool config_id_valid(const char *id);

/* Checks across sections and devices: ids unique, at most one root drive,
 * host_dev_name and guest_mac unique, counts within limits. The error names
 * the field (e.g. "drives[2].drive_id: duplicate id \"rootfs\" (drives[0])").
 * The per-field rules are checked by the parsers in api/config_json.h. */
int config_validate(const struct vm_config *cfg);

/* PUT /snapshot/create and PUT /snapshot/load (Firecracker's SnapshotCreateParams and
 * SnapshotLoadParams), validated by api/config_json.c; the strings are malloc'ed and
 * freed with config_snapshot_*_free. */
enum snapshot_type { SNAPSHOT_FULL = 0, SNAPSHOT_DIFF };
struct snapshot_create_params {
    enum snapshot_type type;
    char *snapshot_path, *mem_file_path;
};

enum mem_backend { MEM_BACKEND_FILE = 0, MEM_BACKEND_UFFD };
struct net_override {
    char *iface_id, *host_dev_name;
};
struct snapshot_load_params {
    char *snapshot_path;
    enum mem_backend backend;
    char *backend_path; /* the memory file, or the page-fault handler's socket */
    bool track_dirty_pages, resume_vm, clock_realtime;
    int n_overrides;
    struct net_override overrides[CONFIG_MAX_NETS];
};
void config_snapshot_create_free(struct snapshot_create_params *p);
void config_snapshot_load_free(struct snapshot_load_params *p);

#endif
