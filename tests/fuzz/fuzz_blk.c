/* fuzz_blk.c - libFuzzer harness: the virtio-blk request parser
 * (blk_parse_request) over descriptor chains built from the input: segment
 * count, readable/writable split, per-segment lengths and flags, capacity
 * and the bytes the segments hold. Each segment is its own heap allocation,
 * so ASan catches any byte read or pointer handed out beyond a segment. A
 * successful parse must describe a request the engines can run safely.
 *
 * Input: n_seg (1 byte), n_out (1 byte), capacity (8 bytes), then per
 * segment len (2 bytes LE, low 13 bits used) and flags (1 byte, bit 0 = writable), then the
 * segment contents in order (zero-filled when the input runs out). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../virtio/blk_internal.h"

#define MAX_SEG 64

static struct virtq_chain chain;

static const uint8_t *take(const uint8_t **p, size_t *left, size_t n)
{
    if (*left < n)
        return NULL;
    const uint8_t *r = *p;
    *p += n;
    *left -= n;
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data;
    size_t left = size;
    const uint8_t *h = take(&p, &left, 10);
    if (!h)
        return 0;
    unsigned n_seg = h[0] % (MAX_SEG + 1);
    unsigned n_out = n_seg ? h[1] % (n_seg + 1) : 0;
    uint64_t capacity;
    memcpy(&capacity, h + 2, 8);

    memset(&chain, 0, sizeof(chain));
    chain.n_seg = n_seg;
    chain.n_out = n_out;
    uint8_t *bufs[MAX_SEG] = {0};
    for (unsigned i = 0; i < n_seg; i++) {
        const uint8_t *s = take(&p, &left, 3);
        uint32_t len = s ? (uint32_t)(s[0] | s[1] << 8) & 0x1fff : 0;
        bool write = s ? (s[2] & 1) : i >= n_out;
        bufs[i] = malloc(len ? len : 1);
        if (!bufs[i])
            abort();
        chain.seg[i] = (struct virtq_seg){len ? bufs[i] : NULL, len, write};
        if (write)
            chain.in_len += len;
        else
            chain.out_len += len;
    }
    for (unsigned i = 0; i < n_seg; i++) {
        size_t n = chain.seg[i].len < left ? chain.seg[i].len : left;
        if (n)
            memcpy(bufs[i], p, n);
        memset(bufs[i] + n, 0, chain.seg[i].len - n);
        p += n;
        left -= n;
    }

    struct blk_request req;
    int rc = blk_parse_request(&chain, capacity, &req);
    if (rc != 0 && rc != -EINVAL)
        abort();
    if (req.status) {
        /* The status byte is the last byte of a writable segment. */
        bool found = false;
        for (unsigned i = n_out; i < n_seg; i++)
            if (chain.seg[i].len && req.status == chain.seg[i].host + chain.seg[i].len - 1 &&
                chain.seg[i].write)
                found = true;
        if (!found)
            abort();
        *req.status = 0; /* writable: ASan checks it is inside the segment */
    }
    if (rc == 0) {
        if (!req.status)
            abort();
        uint64_t in = 0, out = 0;
        for (unsigned i = 0; i < n_seg; i++) {
            if ((i >= n_out) != chain.seg[i].write)
                abort(); /* a chain with inconsistent flags must be refused */
            if (i >= n_out)
                in += chain.seg[i].len;
            else
                out += chain.seg[i].len;
        }
        if (out < 16 || in < 1)
            abort();
        if (req.type == VIRTIO_BLK_T_IN || req.type == VIRTIO_BLK_T_OUT) {
            if (req.data_len % 512 || req.sector > capacity ||
                req.data_len / 512 > capacity - req.sector)
                abort();
            if (req.type == VIRTIO_BLK_T_IN && (req.data_len != in - 1 || out != 16))
                abort();
            if (req.type == VIRTIO_BLK_T_OUT && (req.data_len != out - 16 || in != 1))
                abort();
        } else if (req.type == VIRTIO_BLK_T_GET_ID) {
            if (req.data_len != in - 1 || out != 16)
                abort();
        } else if (req.data_len != 0) {
            abort();
        }
    }
    for (unsigned i = 0; i < n_seg; i++)
        free(bufs[i]);
    return 0;
}
