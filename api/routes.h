/* routes.h - Firecracker's REST endpoints over Ember's configuration model.
 *
 * Pre-boot PUTs build the configuration; `PUT /actions InstanceStart` asks
 * the VMM to build and boot; after that only the post-boot endpoints are
 * accepted. A rejected request changes nothing and gets 400/404/405 with
 * {"fault_message": "..."} naming the field.
 *
 * The API drives the VM only through struct api_vm_ops, which the VMM's
 * main fills in: this layer knows the configuration, never the VM.
 */
#ifndef EMBER_API_ROUTES_H
#define EMBER_API_ROUTES_H

#include <stdbool.h>

#include "../vmm/base/config.h"
#include "http.h"

/* What the API asks of the VMM. Each returns 0 or -errno with err_msg() set,
 * and is only called in the state named. `vmm` is struct api_vmm.vmm. */
struct api_vm_ops {
    /* Not started: build the VM from the configuration and boot it. */
    int (*start)(void *vmm, const struct vm_config *cfg);
    /* Started: stop the vCPUs and devices / let them go again. */
    int (*pause)(void *vmm);
    int (*resume)(void *vmm);
    bool (*is_paused)(void *vmm);
    /* Started: queue Ctrl-Alt-Del on the i8042 (-ENOSPC: its buffer is full). */
    int (*ctrl_alt_del)(void *vmm);
    /* Started: PATCH a drive (new path and/or limiter; NULL: keep) or an
     * interface's limiters; -ENOENT if no device has that id. */
    int (*update_drive)(void *vmm, const char *id, const char *path, const struct rate_limiter *rl);
    int (*update_net)(void *vmm, const char *id, const struct rate_limiter *rx,
                      const struct rate_limiter *tx);
    /* Started and paused: write a snapshot (vmm/snapshot.h). */
    int (*create_snapshot)(void *vmm, const struct vm_config *cfg,
                           const struct snapshot_create_params *p);
    /* Not started, nothing configured but logger/metrics: build the VM from a
     * snapshot; on success *cfg is the restored configuration. On failure
     * nothing changed. */
    int (*load_snapshot)(void *vmm, struct vm_config *cfg, const struct snapshot_load_params *p);
    /* Any time: apply cfg->logger (path, level, format, module); atomic: on
     * an error nothing has changed. */
    int (*apply_logger)(void *vmm, const struct vm_config *cfg);
    /* Not started, at the request that carries them (as Firecracker): open
     * the kernel and initrd and check the command line's length; open a
     * drive's path_on_host as it will be opened; open an interface's tap.
     * NULL: no check. Nothing is kept open; InstanceStart opens again. */
    int (*check_boot_source)(void *vmm, const struct boot_source *b);
    int (*check_drive)(void *vmm, const struct drive_config *d);
    int (*check_net)(void *vmm, const struct net_config *n);
    /* Not started: parse a custom CPU template (PUT /cpu-config's body). */
    int (*check_cpu_config)(void *vmm, const char *json);
};

struct api_vmm {
    struct vm_config cfg;
    const char *id; /* instance id, for GET / */
    bool started;
    const struct api_vm_ops *ops;
    void *vmm;
};

/* api_route_fn for api/server.h: opaque is a struct api_vmm. */
int api_route(void *opaque, const struct http_request *req, char **body);

#endif
