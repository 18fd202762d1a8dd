/* routes.h - Firecracker's REST endpoints over Ember's configuration model.
 *
 * Pre-boot PUTs build the configuration; `PUT /actions InstanceStart` calls
 * back into the VMM to build and boot; after that only the post-boot
 * endpoints are accepted. A rejected request changes nothing and gets
 * 400/404/405 with {"fault_message": "..."} naming the field.
 */
#ifndef EMBER_API_ROUTES_H
#define EMBER_API_ROUTES_H

#include <stdbool.h>

#include "../vmm/config.h"
#include "http.h"

struct vm;

struct api_vmm {
    struct vm_config cfg;
    const char *id;
    bool started;
    struct vm *vm; /* set by start() */
    void *opaque;
    /* Build and boot the VM from cfg; 0 or -errno with err_msg() set. */
    int (*start)(struct api_vmm *a);
    /* Apply a newly configured logger (log_path, level, format). */
    int (*apply_logger)(struct api_vmm *a);
};

/* api_route_fn for api/server.h: opaque is a struct api_vmm. */
int api_route(void *opaque, const struct http_request *req, char **body);

#endif
