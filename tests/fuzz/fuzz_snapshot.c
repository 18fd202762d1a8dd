/* fuzz_snapshot.c - libFuzzer harness: the snapshot file reader (vmm/base/snapfile.h) on
 * arbitrary bytes. A file is taken only if every check passes; then every section
 * it reports must lie inside the input and be found again by its (type, index). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../vmm/base/snapfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct snap_reader r;
    if (snapr_parse(&r, data, size, "fuzz input") != 0)
        return 0;
    for (uint32_t i = 0; i < r.n_sections; i++) {
        const struct snap_section *s = &r.sections[i];
        if (s->data < data || s->data + s->len > data + size)
            abort();
        if (snapr_find(&r, s->type, s->index) != s)
            abort(); /* (type, index) must be unique */
        volatile uint8_t sum = 0;
        for (uint64_t k = 0; k < s->len; k++)
            sum ^= s->data[k];
        (void)sum;
    }
    snapr_close(&r);
    return 0;
}
