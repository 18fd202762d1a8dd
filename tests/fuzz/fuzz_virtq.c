/* fuzz_virtq.c - libFuzzer harness for the split-virtqueue walker
 * (virtio/virtq.c). The input is a small guest's RAM and queue setup:
 *   byte 0      queue size = 1 << (b % 9)
 *   byte 1      bit 0: EVENT_IDX; bit 1: toggle notifications while popping
 *   bytes 2-7   desc, avail and used ring addresses (16-bit LE each)
 *   the rest    the first bytes of guest RAM (64 KiB, zero-filled)
 * Guest RAM is a heap buffer, so ASan flags any pointer the walker hands out
 * beyond it. Every chain is popped until the ring is empty or broken, every
 * segment byte is read or written, and each chain is pushed back. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../vmm/base/guest_mem.h"
#include "../../virtio/virtq.h"

#include <errno.h>

#define RAM_SIZE (64u * 1024)

static struct virtq_chain chain;

static void check(int ok)
{
    if (!ok)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    uint8_t *ram = malloc(RAM_SIZE);
    if (!ram)
        return 0;
    size_t n = size - 8 < RAM_SIZE ? size - 8 : RAM_SIZE;
    memset(ram, 0, RAM_SIZE);
    memcpy(ram, data + 8, n);
    struct guest_mem gm = {.host = ram, .size = RAM_SIZE, .low_size = RAM_SIZE};

    struct virtq q;
    virtq_reset(&q);
    struct virtq_regs r = {.size = (uint16_t)(1u << (data[0] % 9)),
                           .ready = true,
                           .desc_gpa = data[2] | (uint16_t)data[3] << 8,
                           .avail_gpa = data[4] | (uint16_t)data[5] << 8,
                           .used_gpa = data[6] | (uint16_t)data[7] << 8};
    bool event_idx = data[1] & 1, toggle = data[1] & 2;
    if (virtq_activate(&q, &r, &gm, event_idx) < 0)
        goto out;

    volatile uint8_t sink = 0;
    for (unsigned iter = 0; iter < 4 * VIRTQ_MAX_SIZE; iter++) {
        if (toggle) {
            if (iter & 1)
                virtq_notify_disable(&q);
            else
                virtq_notify_enable(&q);
        }
        (void)virtq_has_avail(&q);
        int rc = virtq_pop(&q, &chain);
        if (rc == 0 || rc == -EIO)
            break;
        if (rc == -EBADMSG) {
            check(chain.n_seg == 0);
            virtq_push(&q, chain.head, 0);
            (void)virtq_needs_interrupt(&q);
            continue;
        }
        check(rc == 1);
        check(chain.head < q.size);
        check(chain.n_out <= chain.n_seg && chain.n_seg <= q.size);
        check(chain.out_len + chain.in_len <= UINT32_MAX);
        uint64_t out = 0, in = 0;
        for (unsigned i = 0; i < chain.n_seg; i++) {
            const struct virtq_seg *s = &chain.seg[i];
            check(s->len > 0);
            check(s->host >= ram && s->host + s->len <= ram + RAM_SIZE);
            check(s->write == (i >= chain.n_out));
            if (s->write) {
                in += s->len;
                memset(s->host, 0x5a, s->len);
            } else {
                out += s->len;
                for (uint32_t j = 0; j < s->len; j++)
                    sink ^= s->host[j];
            }
        }
        check(out == chain.out_len && in == chain.in_len);
        uint8_t buf[64];
        (void)virtq_chain_read(&chain, out / 2, buf, sizeof(buf));
        (void)virtq_chain_write(&chain, in / 2, buf, sizeof(buf));
        virtq_push(&q, chain.head, (uint32_t)chain.in_len);
        (void)virtq_needs_interrupt(&q);
    }
    (void)sink;
out:
    free(ram);
    return 0;
}
