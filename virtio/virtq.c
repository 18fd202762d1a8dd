/* virtq.c - split virtqueues (virtio 1.2 section 2.7): ring mapping, the
 * bounded descriptor-chain walker, used-ring updates and notification
 * suppression both ways (see virtq.h). Every guest address goes through
 * gm_ptr(); descriptors are copied out of guest memory once before use. */
#include "virtq.h"

#include "../vmm/base/err.h"
#include "../vmm/base/metrics.h"

#include <errno.h>
#include <string.h>

/* Guest-visible layouts (struct vring_desc, vring_used_elem: <linux/virtio_ring.h>),
 * little-endian; Ember runs on x86_64 hosts. */
_Static_assert(sizeof(struct vring_desc) == 16, "descriptor layout");
_Static_assert(sizeof(struct vring_used_elem) == 8, "used element layout");

/* Ring offsets: avail = flags, idx, ring[N], used_event;
 *               used  = flags, idx, ring[N] (8 bytes each), avail_event. */
#define AVAIL_FLAGS 0
#define AVAIL_IDX 2
#define AVAIL_RING 4
#define USED_FLAGS 0
#define USED_IDX 2
#define USED_RING 4

static inline uint16_t *u16_at(void *base, uint64_t off)
{
    return (uint16_t *)((uint8_t *)base + off);
}

static inline uint16_t *avail_ring(const struct virtq *q, unsigned i)
{
    return u16_at(q->avail, AVAIL_RING + 2u * i);
}

static inline uint16_t *used_event(const struct virtq *q)
{
    return u16_at(q->avail, AVAIL_RING + 2u * q->size);
}

static inline uint16_t *avail_event(const struct virtq *q)
{
    return u16_at(q->used, USED_RING + 8u * q->size);
}

static inline uint16_t load16(const uint16_t *p, int order)
{
    return __atomic_load_n(p, order);
}

static inline void store16(uint16_t *p, uint16_t v, int order)
{
    __atomic_store_n(p, v, order);
}

void virtq_reset(struct virtq *q)
{
    memset(q, 0, sizeof(*q));
}

static int map_ring(const struct guest_mem *mem, uint64_t gpa, uint64_t len, uint64_t align,
                    const char *ring, void **out)
{
    if (gpa & (align - 1))
        return err_set(-EINVAL, "%s ring at 0x%llx is not %llu-byte aligned", ring,
                       (unsigned long long)gpa, (unsigned long long)align);
    void *p = gm_ptr(mem, gpa, len);
    if (!p)
        return err_set(-EINVAL, "%s ring [0x%llx, +%llu) is outside guest RAM", ring,
                       (unsigned long long)gpa, (unsigned long long)len);
    *out = p;
    return 0;
}

int virtq_activate(struct virtq *q, const struct virtq_regs *r, const struct guest_mem *mem,
                   bool event_idx)
{
    uint32_t n = r->size;
    if (n == 0 || n > VIRTQ_MAX_SIZE || (n & (n - 1)))
        return err_set(-EINVAL, "queue size %u is not a power of two in 1..%u", n, VIRTQ_MAX_SIZE);
    void *desc, *avail, *used;
    int rc = map_ring(mem, r->desc_gpa, 16ull * n, 16, "descriptor", &desc);
    if (rc == 0)
        rc = map_ring(mem, r->avail_gpa, 6ull + 2ull * n, 2, "available", &avail);
    if (rc == 0)
        rc = map_ring(mem, r->used_gpa, 6ull + 8ull * n, 4, "used", &used);
    if (rc < 0)
        return rc;
    q->size = (uint16_t)n;
    q->mem = mem;
    q->event_idx = event_idx;
    q->desc = desc;
    q->avail = avail;
    q->used = used;
    q->last_avail = 0;
    q->used_idx = 0;
    q->signalled = 0;
    q->signalled_valid = false;
    q->broken = false;
    q->notify_off = false;
    return 0;
}

/* Copy one descriptor out of guest memory; the compiler barrier keeps the
 * walker working on this snapshot even if the guest rewrites the table. */
static inline void read_desc(const uint8_t *table, unsigned i, struct vring_desc *d)
{
    memcpy(d, table + 16u * i, sizeof(*d));
    __asm__ volatile("" ::: "memory");
}

static int bad_chain(const char *fmt, unsigned a, unsigned b)
{
    METRIC_INC(virtio_bad_chains);
    return err_set(-EBADMSG, fmt, a, b);
}

/* Walk the chain starting at `head`. Zero-length buffers are accepted and
 * contribute no segment (they carry no bytes, so their WRITE flag does not
 * count for the readable-before-writable order; NEXT is still followed). */
static int walk_chain(const struct virtq *q, uint16_t head, struct virtq_chain *c)
{
    const uint8_t *table = q->desc;
    unsigned table_n = q->size;
    bool indirect = false, seen_write = false;
    unsigned count = 0; /* buffer descriptors read, direct and indirect */
    unsigned idx = head;
    uint64_t total = 0;

    for (;;) {
        if (idx >= table_n)
            return bad_chain("descriptor index %u out of range (table of %u)", idx, table_n);
        if (count++ >= q->size)
            return bad_chain("chain at head %u longer than the queue size %u (loop?)", head,
                             q->size);
        struct vring_desc d;
        read_desc(table, idx, &d);

        if (d.flags & VRING_DESC_F_INDIRECT) {
            if (indirect)
                return bad_chain("nested indirect table at entry %u (head %u)", idx, head);
            if (d.flags & VRING_DESC_F_NEXT)
                return bad_chain("indirect descriptor %u also has NEXT (head %u)", idx, head);
            if (d.len == 0 || (d.len % 16) || d.len > 16u * VIRTQ_MAX_SIZE)
                return bad_chain("indirect table length %u invalid (head %u)", d.len, head);
            const uint8_t *t = gm_ptr(q->mem, d.addr, d.len);
            if (!t)
                return bad_chain("indirect table of %u bytes outside guest RAM (head %u)", d.len,
                                 head);
            table = t;
            table_n = d.len / 16;
            indirect = true;
            idx = 0;
            count--; /* the pointer to the table carries no buffer */
            continue;
        }

        if (d.len > 0) {
            uint8_t *host = gm_ptr(q->mem, d.addr, d.len);
            if (!host)
                return bad_chain("buffer of %u bytes outside guest RAM (head %u)", d.len, head);
            bool w = (d.flags & VRING_DESC_F_WRITE) != 0;
            if (!w && seen_write)
                return bad_chain("readable buffer after a writable one (entry %u, head %u)", idx,
                                 head);
            total += d.len;
            if (total > UINT32_MAX)
                return bad_chain("chain at head %u longer than 4 GiB (%u segments)", head,
                                 c->n_seg);
            struct virtq_seg *s = &c->seg[c->n_seg++];
            s->host = host;
            s->len = d.len;
            s->write = w;
            if (w) {
                seen_write = true;
                c->in_len += d.len;
            } else {
                c->n_out++;
                c->out_len += d.len;
            }
        }
        if (!(d.flags & VRING_DESC_F_NEXT))
            return 1;
        idx = d.next;
    }
}

int virtq_pop(struct virtq *q, struct virtq_chain *c)
{
    c->head = 0;
    c->n_seg = c->n_out = 0;
    c->out_len = c->in_len = 0;
    if (q->broken)
        return -EIO;
    if (!q->avail)
        return 0;
    uint16_t avail_idx = load16(u16_at(q->avail, AVAIL_IDX), __ATOMIC_ACQUIRE);
    uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
    if (pending > q->size) {
        q->broken = true;
        return err_set(-EIO, "avail index jumped from %u to %u (queue size %u)", q->last_avail,
                       avail_idx, q->size);
    }
    if (pending == 0)
        return 0;
    uint16_t head = load16(avail_ring(q, q->last_avail & (q->size - 1u)), __ATOMIC_RELAXED);
    q->last_avail++;
    if (q->event_idx && !q->notify_off) {
        store16(avail_event(q), q->last_avail, __ATOMIC_RELAXED);
        gm_mark_dirty(q->mem, avail_event(q), 2);
    }
    c->head = head;
    if (head >= q->size)
        return bad_chain("head index %u out of range (queue size %u)", head, q->size);
    int rc = walk_chain(q, head, c);
    if (rc < 0) {
        c->n_seg = c->n_out = 0;
        c->out_len = c->in_len = 0;
        return rc;
    }
    if (q->mem->dirty)
        for (unsigned i = c->n_out; i < c->n_seg; i++)
            gm_mark_dirty(q->mem, c->seg[i].host, c->seg[i].len);
    return rc;
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t len)
{
    if (!q->used)
        return;
    struct vring_used_elem *e = (struct vring_used_elem *)((uint8_t *)q->used + USED_RING +
                                                           8u * (q->used_idx & (q->size - 1u)));
    __atomic_store_n(&e->id, (uint32_t)head, __ATOMIC_RELAXED);
    __atomic_store_n(&e->len, len, __ATOMIC_RELAXED);
    q->used_idx++;
    store16(u16_at(q->used, USED_IDX), q->used_idx, __ATOMIC_RELEASE);
    gm_mark_dirty(q->mem, e, sizeof(*e));
    gm_mark_dirty(q->mem, u16_at(q->used, USED_IDX), 2);
}

bool virtq_needs_interrupt(struct virtq *q)
{
    if (!q->used)
        return false;
    /* The used idx store must be visible before we read the driver's
     * suppression state (pairs with the driver's fence in its enable_cb). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint16_t old = q->signalled;
    bool valid = q->signalled_valid;
    if (!valid && q->used_idx == 0)
        return false; /* nothing pushed since activation */
    q->signalled = q->used_idx;
    q->signalled_valid = true;
    if (!valid)
        return true;
    if (q->used_idx == old)
        return false; /* nothing new since the last check */
    if (q->event_idx)
        return vring_need_event(load16(used_event(q), __ATOMIC_RELAXED), q->used_idx, old) != 0;
    return !(load16(u16_at(q->avail, AVAIL_FLAGS), __ATOMIC_RELAXED) & VRING_AVAIL_F_NO_INTERRUPT);
}

void virtq_notify_enable(struct virtq *q)
{
    q->notify_off = false;
    if (!q->used)
        return;
    gm_mark_dirty(q->mem, q->used, 4u + 8u * q->size + 2u); /* flags or avail_event */
    if (q->event_idx) {
        store16(avail_event(q), q->last_avail, __ATOMIC_RELAXED);
    } else {
        uint16_t *f = u16_at(q->used, USED_FLAGS);
        store16(f, load16(f, __ATOMIC_RELAXED) & (uint16_t)~VRING_USED_F_NO_NOTIFY,
                __ATOMIC_RELAXED);
    }
    /* Full fence: the write above must be visible before the caller re-reads
     * avail->idx (virtq_has_avail), or a kick could be lost. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

void virtq_notify_disable(struct virtq *q)
{
    q->notify_off = true;
    if (!q->used)
        return;
    /* With EVENT_IDX, leaving avail_event behind last_avail suppresses kicks. */
    if (!q->event_idx) {
        gm_mark_dirty(q->mem, q->used, 2);
        uint16_t *f = u16_at(q->used, USED_FLAGS);
        store16(f, load16(f, __ATOMIC_RELAXED) | VRING_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
    }
}

bool virtq_has_avail(const struct virtq *q)
{
    if (!q->avail || q->broken)
        return false;
    return load16(u16_at(q->avail, AVAIL_IDX), __ATOMIC_ACQUIRE) != q->last_avail;
}

static uint64_t segs_copy(const struct virtq_chain *c, bool write, uint64_t off, uint8_t *buf,
                          uint64_t len)
{
    unsigned first = write ? c->n_out : 0;
    unsigned end = write ? c->n_seg : c->n_out;
    uint64_t done = 0;
    for (unsigned i = first; i < end && done < len; i++) {
        const struct virtq_seg *s = &c->seg[i];
        if (off >= s->len) {
            off -= s->len;
            continue;
        }
        uint64_t n = s->len - off;
        if (n > len - done)
            n = len - done;
        if (write)
            memcpy(s->host + off, buf + done, n);
        else
            memcpy(buf + done, s->host + off, n);
        done += n;
        off = 0;
    }
    return done;
}

uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst, uint64_t len)
{
    return segs_copy(c, false, off, dst, len);
}

uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t off, const void *src, uint64_t len)
{
    return segs_copy(c, true, off, (uint8_t *)src, len);
}

void virtq_save(const struct virtq *q, struct virtq_state *s)
{
    *s = (struct virtq_state){
        .last_avail = q->last_avail,
        .used_idx = q->used_idx,
        .signalled = q->signalled,
        .signalled_valid = q->signalled_valid,
        .broken = q->broken,
        .notify_off = q->notify_off,
        .event_idx = q->event_idx,
    };
}

void virtq_restore(struct virtq *q, const struct virtq_state *s)
{
    q->last_avail = s->last_avail;
    q->used_idx = s->used_idx;
    q->signalled = s->signalled;
    q->signalled_valid = s->signalled_valid;
    q->broken = s->broken;
    q->notify_off = s->notify_off;
    q->event_idx = s->event_idx;
}

void virtq_unpop(struct virtq *q, uint16_t n)
{
    q->last_avail = (uint16_t)(q->last_avail - n);
}
