/* fuzz_snapshot.c - libFuzzer harness: the snapshot file reader (vmm/base/snapfile.h) on
 * arbitrary bytes. A file is taken only if every check passes; then every section
 * it reports must lie inside the input and be found again by its (type, index).
 * Inputs whose first byte is odd get a correct checksum written into their header
 * first, so the mutations reach the section walk behind the CRC check. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../vmm/base/snapfile.h"

static void fix_crc(uint8_t *buf, size_t size)
{
    uint32_t crc = snap_crc32(0, buf + SNAPFILE_HEADER_LEN, size - SNAPFILE_HEADER_LEN);
    for (int i = 0; i < 4; i++)
        buf[28 + i] = (uint8_t)(crc >> (8 * i));
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, input, size);
    if (size > SNAPFILE_HEADER_LEN && (copy[0] & 1)) {
        copy[0] = 'E'; /* the magic's first byte back */
        fix_crc(copy, size);
    }
    const uint8_t *data = copy;
    struct snap_reader r;
    if (snapr_parse(&r, data, size, "fuzz input") != 0) {
        free(copy);
        return 0;
    }
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
    free(copy);
    return 0;
}
