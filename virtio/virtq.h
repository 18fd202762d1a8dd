/* virtq.h - split virtqueues (virtio 1.2 section 2.7), walked safely.
 *
 * One module walks descriptor chains for every device. Every ring and buffer
 * address goes through gm_ptr() (vmm/guest_mem.h); a chain is bounded by the
 * queue size (indirect tables included), an indirect table may not nest or be
 * mixed with NEXT, loops are caught by the bound. A malformed chain is
 * reported to the device (which fails that request); a ring that can no
 * longer be trusted (avail index jumping by more than the queue size) makes
 * virtq_pop() return -EIO and the device sets DEVICE_NEEDS_RESET.
 *
 * A queue has two halves: struct virtq_regs, what the driver told the
 * transport (guest-visible registers, plain data), and struct virtq, the
 * device's working state, built from the registers at activation. Only the
 * main thread touches a struct virtq (under the transport's lock); the
 * registers can change under the vCPU thread meanwhile. Ring accesses use
 * acquire/release ordering.
 */
#ifndef EMBER_VIRTQ_H
#define EMBER_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/virtio_ring.h> /* VRING_DESC_F_*, VRING_USED_F_NO_NOTIFY, ... */

#include "../vmm/base/guest_mem.h"

#define VIRTQ_MAX_SIZE 256 /* QueueNumMax offered by every Ember device */

/* One buffer of a chain, already translated to host memory. */
struct virtq_seg {
    uint8_t *host;
    uint32_t len;
    bool write; /* device-writable (VIRTQ_DESC_F_WRITE) */
};

/* A popped chain. Device-readable segments come first, then the writable ones
 * (a chain with a readable segment after a writable one is malformed). */
struct virtq_chain {
    uint16_t head; /* descriptor index to hand back with virtq_push() */
    unsigned n_seg;
    unsigned n_out;           /* segments [0, n_out) are readable, [n_out, n_seg) writable */
    uint64_t out_len, in_len; /* byte totals of each side */
    struct virtq_seg seg[VIRTQ_MAX_SIZE];
};

/* A queue as the driver set it up (QueueNum, QueueReady, the ring addresses). */
struct virtq_regs {
    uint16_t size; /* QueueNum; checked at activation */
    bool ready;
    uint64_t desc_gpa, avail_gpa, used_gpa;
};

/* The device's view of a live queue (set up by virtq_activate()). */
struct virtq {
    uint16_t size; /* a power of two, 1..VIRTQ_MAX_SIZE */
    const struct guest_mem *mem;
    bool event_idx; /* VIRTIO_RING_F_EVENT_IDX negotiated */
    void *desc;     /* host views of the three rings (checked once) */
    void *avail;
    void *used;

    uint16_t last_avail;  /* next avail ring entry to consume */
    uint16_t used_idx;    /* our copy of used->idx */
    uint16_t signalled;   /* used_idx at the last virtq_needs_interrupt() */
    bool signalled_valid; /* false until the first interrupt */
    bool broken;          /* ring untrustworthy: the device needs reset */
    bool notify_off;      /* virtq_notify_disable() in effect (with EVENT_IDX,
                             virtq_pop() then stops advancing avail_event) */
};

/* Forget the queue (nothing mapped, indices zeroed). */
void virtq_reset(struct virtq *q);

/* Check and map the rings of a queue the driver made ready: size a power of
 * two <= VIRTQ_MAX_SIZE, alignment (desc 16, avail 2, used 4), every ring
 * byte inside guest RAM. Returns 0 or -EINVAL (the message names the ring). */
int virtq_activate(struct virtq *q, const struct virtq_regs *r, const struct guest_mem *mem,
                   bool event_idx);

/* Pop the next available chain into *c. Zero-length descriptors are accepted
 * and add no segment (their WRITE flag does not count for the readable-
 * before-writable order; NEXT is followed). With EVENT_IDX and
 * notifications enabled, avail_event follows last_avail. Every -EBADMSG
 * counts metrics.virtio_bad_chains and leaves the reason in err_msg().
 *   1        a well-formed chain is in *c
 *   0        the ring is empty
 *   -EBADMSG the chain at c->head is malformed (address outside RAM, loop or
 *            too long, nested indirect, bad indirect length, readable after
 *            writable, length overflow); it has been consumed: push it back
 *            with length 0 so the driver sees the request fail
 *   -EIO     the avail ring itself is corrupt; q->broken is set */
int virtq_pop(struct virtq *q, struct virtq_chain *c);

/* Put a chain back on the used ring with `len` bytes written into it. */
void virtq_push(struct virtq *q, uint16_t head, uint32_t len);

/* After pushes: whether the driver wants an interrupt now (EVENT_IDX
 * used_event, or the avail ring's NO_INTERRUPT flag). Records the signal. */
bool virtq_needs_interrupt(struct virtq *q);

/* Notification suppression towards the driver: enable asks for kicks (with
 * EVENT_IDX: avail_event = last_avail), disable suppresses them. After
 * enabling, re-check virtq_has_avail() to close the race with the driver. */
void virtq_notify_enable(struct virtq *q);
void virtq_notify_disable(struct virtq *q);

/* True if the driver has made chains available that we have not popped.
 * Cheap (one load of the avail index): the event loop's pollers call it. */
bool virtq_has_avail(const struct virtq *q);

/* A live queue's device-side indices, as a snapshot keeps them (plain data;
 * the ring mappings are rebuilt from struct virtq_regs by virtq_activate). */
struct virtq_state {
    uint16_t last_avail, used_idx, signalled;
    uint8_t signalled_valid, broken, notify_off, event_idx;
};

void virtq_save(const struct virtq *q, struct virtq_state *s);
/* After virtq_activate() from the same registers: the indices back. */
void virtq_restore(struct virtq *q, const struct virtq_state *s);
/* Give back the last `n` chains popped and not pushed (they come out of
 * virtq_pop() again): a device that must not hold chains over a snapshot. */
void virtq_unpop(struct virtq *q, uint16_t n);

/* Copy helpers over a chain's segments: gather `len` bytes starting at byte
 * `off` of the readable side into dst / scatter src into the writable side.
 * Return the number of bytes copied (less if the side is shorter). */
uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst, uint64_t len);
uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t off, const void *src,
                           uint64_t len);

#endif
