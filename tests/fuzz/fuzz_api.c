/* fuzz_api.c - libFuzzer harness: HTTP request parsing, routing and the
 * endpoints' JSON handling, on a VMM that is never started (InstanceStart
 * is answered by a stub that refuses). Responses must always be
 * well-formed; nothing may crash or leak. */
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/http.h"
#include "../../api/routes.h"
#include "../../vmm/base/err.h"

/* The VMM side: never started (start refuses), so the post-boot ops are never reached;
 * they refuse too, should routing ever call one early. */
static int refuse(void *vmm)
{
    (void)vmm;
    return err_set(-ENOTSUP, "not in the fuzzer");
}
static int no_start(void *vmm, const struct vm_config *cfg)
{
    (void)cfg;
    return refuse(vmm);
}
static bool not_paused(void *vmm)
{
    (void)vmm;
    return false;
}
static int no_drive(void *vmm, const char *id, const char *path, const struct rate_limiter *rl)
{
    (void)id, (void)path, (void)rl;
    return refuse(vmm);
}
static int no_net(void *vmm, const char *id, const struct rate_limiter *rx,
                  const struct rate_limiter *tx)
{
    (void)id, (void)rx, (void)tx;
    return refuse(vmm);
}
static int keep_logger(void *vmm, const struct vm_config *cfg)
{
    (void)vmm, (void)cfg;
    return 0; /* the fuzzer's own stderr stays as it is */
}
static int no_create(void *vmm, const struct vm_config *cfg, const struct snapshot_create_params *p)
{
    (void)cfg, (void)p;
    return refuse(vmm);
}
static int no_load(void *vmm, struct vm_config *cfg, const struct snapshot_load_params *p)
{
    (void)cfg, (void)p;
    return refuse(vmm);
}
static const struct api_vm_ops fuzz_ops = {
    .create_snapshot = no_create,
    .load_snapshot = no_load,
    .start = no_start,
    .pause = refuse,
    .resume = refuse,
    .is_paused = not_paused,
    .ctrl_alt_del = refuse,
    .update_drive = no_drive,
    .update_net = no_net,
    .apply_logger = keep_logger,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct api_vmm a;
    memset(&a, 0, sizeof(a));
    config_init(&a.cfg);
    a.id = "fuzz";
    a.ops = &fuzz_ops;
    struct http_parser p;
    http_parser_init(&p, 0);
    const char *buf = (const char *)data;
    while (size > 0) {
        size_t used = 0;
        int r = http_parse(&p, buf, size, &used);
        if (used > size)
            abort();
        buf += used;
        size -= used;
        if (r != HTTP_PARSE_DONE)
            break;
        char *body = NULL;
        int status = api_route(&a, &p.req, &body);
        if (status < 200 || status > 599)
            abort();
        if (status >= 400 && (!body || !strstr(body, "fault_message")))
            abort();
        free(body);
        http_parser_reset(&p);
    }
    http_parser_free(&p);
    config_free(&a.cfg);
    return 0;
}
