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
#include "../../vmm/err.h"

static int no_start(struct api_vmm *a)
{
    (void)a;
    return err_set(-ENOTSUP, "not in the fuzzer");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct api_vmm a;
    memset(&a, 0, sizeof(a));
    config_init(&a.cfg);
    a.id = "fuzz";
    a.start = no_start;
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
