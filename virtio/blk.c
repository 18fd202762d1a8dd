/* blk.c - virtio-blk over virtio-mmio: request parsing, the Sync engine
 * (preadv/pwritev/fdatasync on the main thread) and the Async engine
 * (io_uring: one SQE per request, one submit per kick, completions reaped in
 * batches from an eventfd on the main loop), polling an emptied ring through
 * the event loop, rate limiting, drive update, and the kind table.
 */
#include "blk_internal.h"
#include "blk.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fs.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../vmm/base/container_of.h"
#include "../vmm/base/err.h"
#include "../vmm/base/log.h"
#include "../vmm/base/metrics.h"

#define BLK_SECTOR 512u
#define BLK_HDR_LEN 16u
#define BLK_CFG_LEN 24u /* capacity, size_max, seg_max, geometry, blk_size */
#define BLK_SLOTS VIRTQ_MAX_SIZE
#define BLK_REAP_BATCH 32

/* One request the kernel is working on (Async engine). */
struct blk_slot {
    uint16_t head;
    uint8_t type;
    uint8_t *status;
    uint32_t used_len; /* reported on success */
    uint64_t off;      /* file offset of what is left */
    uint64_t left;     /* bytes left to transfer */
    struct iovec *iov; /* malloc'd, n_iov entries; [iov_first, n_iov) left */
    unsigned n_iov, iov_first;
};

struct blk_dev {
    struct virtio_dev dev; /* first: ops get &b->dev.t */
    char *path;
    int fd;
    bool read_only;
    enum cache_type cache;
    enum io_engine engine;
    unsigned poll_us;  /* after the ring runs empty (0: kick at once) */
    uint64_t capacity; /* sectors */
    struct rl rl;

    /* The chain being worked on, and one kept back by the rate limiter or
     * a full engine (processed first next time). */
    struct virtq_chain chain;
    struct virtq_chain pending;
    bool has_pending;
    bool engine_blocked; /* no free slot: resume on completions */
    bool bad_chain_logged;
    bool bad_req_logged;
    struct iovec iov[VIRTQ_MAX_SIZE]; /* Sync engine scratch */

    /* Async engine. */
    bool rl_ok;
    bool ring_ok;
    struct io_uring ring;
    int efd;
    unsigned n_inflight;
    unsigned n_free;
    uint16_t free_list[BLK_SLOTS];
    struct blk_slot slots[BLK_SLOTS];

    struct evloop *ev;
    struct ev_handler ev_uring, ev_rl;
    struct ev_poller poller; /* the emptied ring, on the loop's polling phase */
    bool cq_quiet;           /* completions do not signal efd: the poller looks */
    bool uring_on_loop, rl_on_loop;
};

static struct blk_dev *to_blk(struct virtio_mmio *t)
{
    return container_of(t, struct blk_dev, dev.t);
}

/* ---- parsing (pure) ---------------------------------------------------- */

int blk_parse_request(const struct virtq_chain *c, uint64_t capacity_sectors,
                      struct blk_request *req)
{
    memset(req, 0, sizeof(*req));
    if (c->n_seg > VIRTQ_MAX_SIZE || c->n_out > c->n_seg)
        return -EINVAL;
    uint64_t out_len = 0, in_len = 0;
    for (unsigned i = 0; i < c->n_seg; i++) {
        if (c->seg[i].write != (i >= c->n_out))
            return -EINVAL;
        if (i < c->n_out)
            out_len += c->seg[i].len;
        else
            in_len += c->seg[i].len;
    }
    /* The status byte: the last byte of the last non-empty writable segment. */
    for (unsigned i = c->n_seg; i > c->n_out; i--) {
        const struct virtq_seg *s = &c->seg[i - 1];
        if (s->len && s->host) {
            req->status = s->host + s->len - 1;
            break;
        }
    }
    if (!req->status || out_len < BLK_HDR_LEN)
        return -EINVAL;

    uint8_t hdr[BLK_HDR_LEN];
    virtq_chain_read(c, 0, hdr, BLK_HDR_LEN);
    uint32_t type;
    uint64_t sector;
    memcpy(&type, hdr, 4);
    memcpy(&sector, hdr + 8, 8);
    req->type = le32toh(type);
    req->sector = le64toh(sector);

    uint64_t out_data = out_len - BLK_HDR_LEN, in_data = in_len - 1;
    switch (req->type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT:
        if (req->type == VIRTIO_BLK_T_IN ? out_data != 0 : in_data != 0)
            return -EINVAL; /* data on the wrong side */
        req->data_len = req->type == VIRTIO_BLK_T_IN ? in_data : out_data;
        if (req->data_len % BLK_SECTOR)
            return -EINVAL;
        if (req->sector > capacity_sectors ||
            req->data_len / BLK_SECTOR > capacity_sectors - req->sector)
            return -EINVAL;
        return 0;
    case VIRTIO_BLK_T_GET_ID:
        if (out_data != 0)
            return -EINVAL;
        req->data_len = in_data;
        return 0;
    default: /* FLUSH (data ignored) and unknown types (UNSUPP) */
        req->data_len = 0;
        return 0;
    }
}

/* ---- files -------------------------------------------------------------- */

/* Open and check a drive's backing file; *size in bytes. */
static int blk_open_file(const char *id, const char *path, bool ro, int *fd_out, uint64_t *size)
{
    int fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return err_set(-e, "drives[%s].path_on_host: cannot open %s%s: %s", id, path,
                       ro ? " read-only" : " read-write", strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return err_set(-e, "drives[%s].path_on_host: cannot stat %s: %s", id, path, strerror(e));
    }
    uint64_t sz;
    if (S_ISREG(st.st_mode)) {
        sz = (uint64_t)st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        if (ioctl(fd, BLKGETSIZE64, &sz) < 0) {
            int e = errno;
            close(fd);
            return err_set(-e,
                           "drives[%s].path_on_host: cannot get the size of block device %s: %s",
                           id, path, strerror(e));
        }
    } else {
        close(fd);
        return err_set(-EINVAL, "drives[%s].path_on_host: %s is not a regular file or block device",
                       id, path);
    }
    if (sz % BLK_SECTOR) {
        /* As Firecracker: whole sectors only, with a warning. */
        log_warn("drives[%s].path_on_host: size of %s (%llu bytes) is not a multiple of %u "
                 "bytes; the last %llu bytes are not visible to the guest",
                 id, path, (unsigned long long)sz, BLK_SECTOR,
                 (unsigned long long)(sz % BLK_SECTOR));
        sz -= sz % BLK_SECTOR;
    }
    *fd_out = fd;
    *size = sz;
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

/* Build iovecs for `len` bytes from offset `off` of segments [from, to). */
static unsigned build_iov(const struct virtq_chain *c, unsigned from, unsigned to, uint64_t off,
                          uint64_t len, struct iovec *iov)
{
    unsigned n = 0;
    for (unsigned i = from; i < to && len; i++) {
        const struct virtq_seg *s = &c->seg[i];
        if (off >= s->len) {
            off -= s->len;
            continue;
        }
        uint64_t take = s->len - off;
        if (take > len)
            take = len;
        iov[n].iov_base = s->host + off;
        iov[n].iov_len = take;
        n++;
        len -= take;
        off = 0;
    }
    return n;
}

/* Drop `done` bytes from the front of iov[*first, n). */
static void iov_advance(struct iovec *iov, unsigned n, unsigned *first, uint64_t done)
{
    while (*first < n && done) {
        struct iovec *v = &iov[*first];
        if (done >= v->iov_len) {
            done -= v->iov_len;
            (*first)++;
        } else {
            v->iov_base = (uint8_t *)v->iov_base + done;
            v->iov_len -= done;
            done = 0;
        }
    }
}

static uint32_t used_len_of(uint64_t data)
{
    return data >= UINT32_MAX ? UINT32_MAX : (uint32_t)(data + 1);
}

/* Complete a request now: status byte, used entry. */
static void finish(struct blk_dev *b, uint16_t head, uint8_t *status, uint8_t st, uint32_t len)
{
    *status = st;
    virtq_push(&b->dev.t.queues[0], head, len);
}

/* Sync engine: transfer everything, retrying short transfers. */
static int sync_rw(int fd, bool write, struct iovec *iov, unsigned n, uint64_t off, uint64_t len)
{
    unsigned first = 0;
    while (len) {
        ssize_t r = write ? pwritev(fd, iov + first, (int)(n - first), (off_t)off)
                          : preadv(fd, iov + first, (int)(n - first), (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO; /* end of file inside the capacity (file shrunk) */
        iov_advance(iov, n, &first, (uint64_t)r);
        off += (uint64_t)r;
        len -= (uint64_t)r;
    }
    return 0;
}

/* ---- Async engine ------------------------------------------------------- */

static void slot_free(struct blk_dev *b, unsigned i)
{
    free(b->slots[i].iov);
    b->slots[i].iov = NULL;
    b->free_list[b->n_free++] = (uint16_t)i;
    b->n_inflight--;
}

/* Queue the (rest of the) transfer of slot i; false if no SQE. */
static bool slot_prep(struct blk_dev *b, unsigned i)
{
    struct blk_slot *s = &b->slots[i];
    struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
    if (!sqe) {
        io_uring_submit(&b->ring);
        sqe = io_uring_get_sqe(&b->ring);
        if (!sqe)
            return false;
    }
    switch (s->type) {
    case VIRTIO_BLK_T_IN:
        io_uring_prep_readv(sqe, 0, s->iov + s->iov_first, s->n_iov - s->iov_first, s->off);
        break;
    case VIRTIO_BLK_T_OUT:
        io_uring_prep_writev(sqe, 0, s->iov + s->iov_first, s->n_iov - s->iov_first, s->off);
        break;
    default: /* FLUSH: after every earlier request (writes included) completed */
        io_uring_prep_fsync(sqe, 0, IORING_FSYNC_DATASYNC);
        sqe->flags |= IOSQE_IO_DRAIN;
        break;
    }
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, i);
    return true;
}

/* Take a slot for a request; -EAGAIN when all are busy. */
static int async_start(struct blk_dev *b, const struct virtq_chain *c,
                       const struct blk_request *req)
{
    if (b->n_free == 0)
        return -EAGAIN;
    unsigned i = b->free_list[b->n_free - 1];
    struct blk_slot *s = &b->slots[i];
    memset(s, 0, sizeof(*s));
    s->head = c->head;
    s->type = (uint8_t)req->type;
    s->status = req->status;
    s->off = req->sector * BLK_SECTOR;
    s->left = req->data_len;
    s->used_len = req->type == VIRTIO_BLK_T_IN ? used_len_of(req->data_len) : 1;
    if (req->type != VIRTIO_BLK_T_FLUSH && req->data_len) {
        s->iov = malloc(sizeof(*s->iov) * (c->n_seg ? c->n_seg : 1));
        if (!s->iov)
            return -ENOMEM;
        if (req->type == VIRTIO_BLK_T_IN)
            s->n_iov = build_iov(c, c->n_out, c->n_seg, 0, req->data_len, s->iov);
        else
            s->n_iov = build_iov(c, 0, c->n_out, BLK_HDR_LEN, req->data_len, s->iov);
    }
    if (!slot_prep(b, i)) {
        free(s->iov);
        s->iov = NULL;
        return -EBUSY;
    }
    b->n_free--;
    b->n_inflight++;
    return 0;
}

/* Handle one completion. deliver false: the device forgot its queue (reset,
 * destroy): only release the slot. Returns true if a used entry was pushed. */
static bool async_cqe(struct blk_dev *b, const struct io_uring_cqe *cqe, bool deliver,
                      bool *resubmitted)
{
    uint64_t i = io_uring_cqe_get_data64(cqe);
    if (i >= BLK_SLOTS)
        return false;
    struct blk_slot *s = &b->slots[i];
    int res = cqe->res;
    uint8_t st = VIRTIO_BLK_S_OK;
    if (!deliver) {
        slot_free(b, (unsigned)i);
        return false;
    }
    if (s->type == VIRTIO_BLK_T_FLUSH) {
        if (res < 0)
            st = VIRTIO_BLK_S_IOERR;
    } else if (res == -EAGAIN || res == -EINTR) {
        if (slot_prep(b, (unsigned)i)) {
            *resubmitted = true;
            return false;
        }
        st = VIRTIO_BLK_S_IOERR;
    } else if (res <= 0 && s->left) {
        st = VIRTIO_BLK_S_IOERR; /* error, or end of file inside the capacity */
    } else if ((uint64_t)res < s->left) {
        /* Short transfer: go on with the rest. */
        iov_advance(s->iov, s->n_iov, &s->iov_first, (uint64_t)res);
        s->off += (uint64_t)res;
        s->left -= (uint64_t)res;
        if (slot_prep(b, (unsigned)i)) {
            *resubmitted = true;
            return false;
        }
        st = VIRTIO_BLK_S_IOERR;
    }
    if (st != VIRTIO_BLK_S_OK) {
        METRIC_INC(block_execute_fails);
        log_debug("drive %s: async request (type %u) failed: %s", b->dev.id, s->type,
                  res < 0 ? strerror(-res) : "short transfer");
    }
    finish(b, s->head, s->status, st, st == VIRTIO_BLK_S_OK ? s->used_len : 1);
    slot_free(b, (unsigned)i);
    return true;
}

/* Reap every completion available now. */
static bool async_reap(struct blk_dev *b, bool deliver)
{
    struct io_uring_cqe *cqes[BLK_REAP_BATCH];
    bool pushed = false, resub = false;
    unsigned n;
    while ((n = io_uring_peek_batch_cqe(&b->ring, cqes, BLK_REAP_BATCH)) > 0) {
        for (unsigned k = 0; k < n; k++)
            pushed |= async_cqe(b, cqes[k], deliver, &resub);
        io_uring_cq_advance(&b->ring, n);
    }
    if (resub || io_uring_sq_ready(&b->ring))
        io_uring_submit(&b->ring);
    return pushed;
}

/* Wait for every request in flight (lock held). */
static void async_drain(struct blk_dev *b, bool deliver)
{
    bool pushed = false;
    while (b->ring_ok && b->n_inflight) {
        int r = io_uring_submit_and_wait(&b->ring, 1);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME) {
            log_error("drive %s: waiting for %u in-flight requests failed: %s", b->dev.id,
                      b->n_inflight, strerror(-r));
            break;
        }
        pushed |= async_reap(b, deliver);
    }
    if (pushed)
        vmmio_signal_used(&b->dev.t, 0);
}

/* Hand a request to io_uring. -EAGAIN: all slots busy; the rate-limiter
 * tokens it took (one op, `bytes`) are given back and the queue waits for
 * completions. */
static int async_submit(struct blk_dev *b, const struct virtq_chain *c,
                        const struct blk_request *req, uint64_t bytes)
{
    int r = async_start(b, c, req);
    if (r == -EAGAIN) {
        rl_manual_replenish(&b->rl, RL_OPS, 1);
        if (bytes)
            rl_manual_replenish(&b->rl, RL_BYTES, bytes);
        METRIC_INC(block_io_engine_throttled_events);
        b->engine_blocked = true;
    }
    return r;
}

/* ---- request execution -------------------------------------------------- */

/* A chain that cannot carry a request: IOERR if it has a status byte, else
 * returned unused. One warning, then debug lines. */
static void blk_invalid(struct blk_dev *b, const struct virtq_chain *c,
                        const struct blk_request *req, bool *pushed)
{
    METRIC_INC(block_invalid_reqs_count);
    if (!b->bad_req_logged)
        log_warn("drive %s: invalid request (%s); further ones are logged at debug level",
                 b->dev.id,
                 req->status ? "answered IOERR" : "no status byte: failed with length 0");
    else
        log_debug("drive %s: invalid request (%s)", b->dev.id,
                  req->status ? "answered IOERR" : "no status byte");
    b->bad_req_logged = true;
    if (req->status)
        finish(b, c->head, req->status, VIRTIO_BLK_S_IOERR, 1);
    else
        virtq_push(&b->dev.t.queues[0], c->head, 0);
    *pushed = true;
}

/* The rate limiter's say: one op, plus the bytes of a transfer. All or nothing. */
static bool blk_charge(struct blk_dev *b, const struct blk_request *req)
{
    bool io = req->type == VIRTIO_BLK_T_IN || req->type == VIRTIO_BLK_T_OUT;
    if (!rl_consume(&b->rl, RL_OPS, 1)) {
        METRIC_INC(block_rate_limiter_throttled_events);
        return false;
    }
    if (io && req->data_len && !rl_consume(&b->rl, RL_BYTES, req->data_len)) {
        rl_manual_replenish(&b->rl, RL_OPS, 1);
        METRIC_INC(block_rate_limiter_throttled_events);
        return false;
    }
    return true;
}

/* Outcome of one request: answered now (status byte, used length), handed to
 * io_uring (answered on its completion), or to be tried again later. */
enum blk_outcome { BLK_DONE, BLK_SUBMITTED, BLK_AGAIN };

static enum blk_outcome blk_rw(struct blk_dev *b, const struct virtq_chain *c,
                               const struct blk_request *req, uint8_t *st, uint32_t *len)
{
    bool wr = req->type == VIRTIO_BLK_T_OUT;
    if (wr && b->read_only) {
        *st = VIRTIO_BLK_S_IOERR;
        return BLK_DONE;
    }
    if (wr) {
        METRIC_INC(block_write_count);
        METRIC_ADD(block_write_bytes, req->data_len);
    } else {
        METRIC_INC(block_read_count);
        METRIC_ADD(block_read_bytes, req->data_len);
    }
    if (req->data_len == 0) {
        *len = wr ? 1 : used_len_of(0);
        return BLK_DONE;
    }
    if (b->engine == IO_ENGINE_ASYNC) {
        int r = async_submit(b, c, req, req->data_len);
        if (r == 0)
            return BLK_SUBMITTED;
        if (r == -EAGAIN)
            return BLK_AGAIN;
        *st = VIRTIO_BLK_S_IOERR;
        return BLK_DONE;
    }
    unsigned n = wr ? build_iov(c, 0, c->n_out, BLK_HDR_LEN, req->data_len, b->iov)
                    : build_iov(c, c->n_out, c->n_seg, 0, req->data_len, b->iov);
    int r = sync_rw(b->fd, wr, b->iov, n, req->sector * BLK_SECTOR, req->data_len);
    if (r < 0) {
        log_debug("drive %s: %s at sector %llu failed: %s", b->dev.id, wr ? "write" : "read",
                  (unsigned long long)req->sector, strerror(-r));
        *st = VIRTIO_BLK_S_IOERR;
    } else if (!wr) {
        *len = used_len_of(req->data_len);
    }
    return BLK_DONE;
}

/* FLUSH: every write the guest saw completed reaches the file before this
 * request completes (fdatasync, or io_uring's FSYNC after all earlier ones). */
static enum blk_outcome blk_flush(struct blk_dev *b, const struct virtq_chain *c,
                                  const struct blk_request *req, uint8_t *st)
{
    METRIC_INC(block_flush_count);
    if (b->cache != CACHE_WRITEBACK)
        return BLK_DONE; /* Unsafe: FLUSH not offered; answered OK, as Firecracker */
    if (b->engine == IO_ENGINE_ASYNC) {
        int r = async_submit(b, c, req, 0);
        if (r == 0)
            return BLK_SUBMITTED;
        if (r == -EAGAIN)
            return BLK_AGAIN;
        *st = VIRTIO_BLK_S_IOERR;
        return BLK_DONE;
    }
    while (fdatasync(b->fd) < 0) {
        if (errno != EINTR) {
            log_warn("drive %s: fdatasync of %s failed: %s", b->dev.id, b->path, strerror(errno));
            *st = VIRTIO_BLK_S_IOERR;
            break;
        }
    }
    return BLK_DONE;
}

/* GET_ID: the drive id, NUL-padded to VIRTIO_BLK_ID_BYTES; returns the used length. */
static uint32_t blk_get_id(struct blk_dev *b, const struct virtq_chain *c,
                           const struct blk_request *req)
{
    METRIC_INC(block_get_id_count);
    char id[VIRTIO_BLK_ID_BYTES] = {0};
    size_t idl = strlen(b->dev.id);
    memcpy(id, b->dev.id, idl < sizeof(id) ? idl : sizeof(id));
    uint64_t want = req->data_len < sizeof(id) ? req->data_len : sizeof(id);
    return (uint32_t)virtq_chain_write(c, 0, id, want) + 1;
}

/* Handle one chain. Returns 0 (answered or submitted) or -EAGAIN (throttled
 * by the rate limiter or the engine: keep the chain for later). Sets *pushed
 * if a used entry was added. */
static int blk_handle(struct blk_dev *b, const struct virtq_chain *c, bool *pushed)
{
    struct blk_request req;
    if (blk_parse_request(c, b->capacity, &req) < 0) {
        blk_invalid(b, c, &req, pushed);
        return 0;
    }
    if (!blk_charge(b, &req))
        return -EAGAIN;
    uint8_t st = VIRTIO_BLK_S_OK;
    uint32_t len = 1;
    enum blk_outcome o = BLK_DONE;
    switch (req.type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT:
        o = blk_rw(b, c, &req, &st, &len);
        break;
    case VIRTIO_BLK_T_FLUSH:
        o = blk_flush(b, c, &req, &st);
        break;
    case VIRTIO_BLK_T_GET_ID:
        len = blk_get_id(b, c, &req);
        break;
    default:
        st = VIRTIO_BLK_S_UNSUPP;
        break;
    }
    if (o == BLK_AGAIN)
        return -EAGAIN;
    if (o == BLK_SUBMITTED)
        return 0;
    if (st == VIRTIO_BLK_S_IOERR)
        METRIC_INC(block_execute_fails);
    finish(b, c->head, req.status, st, st == VIRTIO_BLK_S_OK ? len : 1);
    *pushed = true;
    return 0;
}

/* Keep a chain the limiter or a full engine refused, for the next run. */
static void keep_chain(struct virtq_chain *dst, const struct virtq_chain *src)
{
    dst->head = src->head;
    dst->n_seg = src->n_seg;
    dst->n_out = src->n_out;
    dst->out_len = src->out_len;
    dst->in_len = src->in_len;
    memcpy(dst->seg, src->seg, sizeof(src->seg[0]) * src->n_seg);
}

/* While the poller is armed it looks at the completion queue itself, so
 * completions need not signal the eventfd (an epoll_wait and a read for each
 * would cost more than the requests). Turned on again when polling ends;
 * what may have completed meanwhile is then signalled by hand. */
static void cq_signal(struct blk_dev *b, bool on)
{
    if (!b->ring_ok || b->cq_quiet == !on)
        return;
    if (io_uring_cq_eventfd_toggle(&b->ring, on) < 0)
        return; /* a kernel without the flag: always signalled */
    b->cq_quiet = !on;
    if (on && (b->n_inflight || io_uring_cq_ready(&b->ring)) && eventfd_write(b->efd, 1) < 0)
        log_debug("drive %s: eventfd write: %s", b->dev.id, strerror(errno));
}

/* The ring is empty: hand back what is done (submit, reap, interrupt), then,
 * with a poll budget, keep notifications off and let the event loop watch
 * the avail ring for it, so that a guest with more requests coming need not
 * kick. False: no polling, the caller asks for kicks again. */
static bool blk_start_polling(struct blk_dev *b, bool *pushed)
{
    if (!b->poll_us || !b->ev)
        return false;
    cq_signal(b, false); /* before the submit: reads from the page cache complete in it */
    if (b->ring_ok && io_uring_sq_ready(&b->ring)) {
        io_uring_submit(&b->ring);
        *pushed |= async_reap(b, true);
    }
    if (*pushed)
        vmmio_signal_used(&b->dev.t, 0);
    *pushed = false;
    evloop_poll(b->ev, &b->poller, b->poll_us);
    return true;
}

/* A malformed chain: returned with length 0, logged once as a warning. */
static void bad_chain(struct blk_dev *b, uint16_t head, bool *pushed)
{
    if (!b->bad_chain_logged)
        log_warn("drive %s: malformed descriptor chain: %s (further ones are logged at debug "
                 "level)",
                 b->dev.id, err_msg());
    else
        log_debug("drive %s: malformed descriptor chain: %s", b->dev.id, err_msg());
    b->bad_chain_logged = true;
    virtq_push(&b->dev.t.queues[0], head, 0);
    *pushed = true;
}

/* Polling is over (reset, pause): completions signal again. */
static void poll_stop(struct blk_dev *b)
{
    if (b->ev)
        evloop_poll_cancel(b->ev, &b->poller);
    cq_signal(b, true);
}

/* blk_run without the poller bookkeeping. */
static bool run_queue(struct blk_dev *b)
{
    struct virtq *q = &b->dev.t.queues[0];
    bool pushed = false;
    if (!q->avail || q->broken || rl_is_blocked(&b->rl) || b->engine_blocked || b->dev.t.quiesced)
        return false;
    for (;;) {
        virtq_notify_disable(q);
        for (;;) {
            const struct virtq_chain *c;
            if (b->has_pending) {
                c = &b->pending;
            } else {
                int r = virtq_pop(q, &b->chain);
                if (r == 0) {
                    if (blk_start_polling(b, &pushed))
                        goto out; /* the loop's poller takes it from here */
                    break;
                }
                if (r == -EBADMSG) { /* counted by virtq_pop */
                    bad_chain(b, b->chain.head, &pushed);
                    continue;
                }
                if (r < 0) {
                    vmmio_needs_reset(&b->dev.t, "the avail ring is corrupt");
                    goto out;
                }
                c = &b->chain;
            }
            if (blk_handle(b, c, &pushed) == -EAGAIN) {
                if (!b->has_pending)
                    keep_chain(&b->pending, c);
                b->has_pending = true;
                goto out; /* resumed by the limiter's timer or by completions */
            }
            b->has_pending = false;
        }
        virtq_notify_enable(q);
        if (!virtq_has_avail(q))
            break;
    }
out:
    if (b->ring_ok && io_uring_sq_ready(&b->ring)) {
        int r = io_uring_submit(&b->ring);
        if (r < 0)
            log_warn("drive %s: io_uring submit failed: %s (retried on the next event)", b->dev.id,
                     strerror(-r));
    }
    return pushed;
}

/* Process the queue (t->lock held). Returns true if used entries were pushed
 * (the caller signals once). */
static bool blk_run(struct blk_dev *b)
{
    if (b->ev)
        evloop_poll_cancel(b->ev, &b->poller);
    bool pushed = run_queue(b);
    if (!ev_poller_armed(&b->poller))
        cq_signal(b, true);
    return pushed;
}

/* ---- the loop's poller ---------------------------------------------------- */

static bool poll_ready(struct ev_poller *p)
{
    struct blk_dev *b = container_of(p, struct blk_dev, poller);
    /* Completions count too: the loop looks at their eventfd less often while
     * pollers find work (evloop.h). */
    return atomic_load(&b->dev.t.pending) || virtq_has_avail(&b->dev.t.queues[0]) ||
           (b->ring_ok && io_uring_cq_ready(&b->ring));
}

/* Reap what io_uring completed, then serve the ring if asked to (`run`), if
 * a queue waiting for a free slot can go on, or if completions were handed
 * back with a poll budget (a guest at QD1 answers each completion with its
 * next request: poll for it rather than wait for a kick). One interrupt for
 * everything pushed. t->lock held. */
static void reap_and_run(struct blk_dev *b, bool run)
{
    bool pushed = b->ring_ok && io_uring_cq_ready(&b->ring) && async_reap(b, true);
    if (b->engine_blocked && b->n_free && b->dev.t.activated) {
        b->engine_blocked = false;
        run = true;
    }
    if (pushed && b->poll_us)
        run = true;
    if (run && b->dev.t.activated)
        pushed |= blk_run(b);
    if (pushed)
        vmmio_signal_used(&b->dev.t, 0);
}

static void poll_run(struct ev_poller *p)
{
    struct blk_dev *b = container_of(p, struct blk_dev, poller);
    vmmio_lock(&b->dev.t);
    if (b->dev.t.activated && !b->dev.t.quiesced)
        reap_and_run(b, true);
    vmmio_unlock(&b->dev.t);
}

/* Nothing came within the budget: ask for kicks again (and close the race
 * with a request added meanwhile). */
static void poll_expired(struct ev_poller *p)
{
    struct blk_dev *b = container_of(p, struct blk_dev, poller);
    vmmio_lock(&b->dev.t);
    struct virtq *q = &b->dev.t.queues[0];
    if (b->dev.t.activated && q->avail) {
        virtq_notify_enable(q);
        if (virtq_has_avail(q) && blk_run(b))
            vmmio_signal_used(&b->dev.t, 0);
    }
    if (!ev_poller_armed(p))
        cq_signal(b, true);
    vmmio_unlock(&b->dev.t);
}

/* ---- transport ops ------------------------------------------------------ */

static void blk_config_read(struct virtio_mmio *t, uint64_t off, uint8_t *data, uint32_t len)
{
    struct blk_dev *b = to_blk(t);
    uint8_t cfg[BLK_CFG_LEN] = {0};
    uint64_t cap = htole64(b->capacity);
    uint32_t seg_max = htole32(VIRTQ_MAX_SIZE - 2), blk_size = htole32(BLK_SECTOR);
    memcpy(cfg + 0, &cap, 8);
    memcpy(cfg + 12, &seg_max, 4);
    memcpy(cfg + 20, &blk_size, 4);
    for (uint32_t i = 0; i < len; i++)
        data[i] = off < BLK_CFG_LEN && i < BLK_CFG_LEN - off ? cfg[off + i] : 0;
}

static void blk_config_write(struct virtio_mmio *t, uint64_t off, const uint8_t *data, uint32_t len)
{
    (void)t, (void)off, (void)data, (void)len; /* read-only config */
    METRIC_INC(block_cfg_fails);
}

static int blk_activate(struct virtio_mmio *t)
{
    struct blk_dev *b = to_blk(t);
    b->has_pending = false;
    b->engine_blocked = false;
    return 0;
}

static void blk_reset(struct virtio_mmio *t)
{
    struct blk_dev *b = to_blk(t);
    async_drain(b, false); /* the kernel must not write into forgotten buffers */
    poll_stop(b);
    b->has_pending = false;
    b->engine_blocked = false;
}

/* A pause: what io_uring still does completes into the guest's rings, and a
 * chain held back (limiter, full engine) goes back to the ring, so nothing is
 * in flight or held while paused (and none is lost or repeated by a snapshot). */
static void blk_quiesce(struct virtio_mmio *t, bool on)
{
    struct blk_dev *b = to_blk(t);
    if (!on)
        return; /* the transport kicks the queue */
    poll_stop(b);
    async_drain(b, true);
    if (b->has_pending)
        virtq_unpop(&t->queues[0], 1);
    b->has_pending = false;
    b->engine_blocked = false;
}

static void blk_queue_notify(struct virtio_mmio *t, unsigned q)
{
    struct blk_dev *b = to_blk(t);
    METRIC_INC(block_queue_event_count);
    if (q != 0)
        return;
    if (blk_run(b))
        vmmio_signal_used(t, 0);
}

static const struct virtio_mmio_ops blk_ops = {
    .config_read = blk_config_read,
    .config_write = blk_config_write,
    .activate = blk_activate,
    .reset = blk_reset,
    .queue_notify = blk_queue_notify,
    .quiesce = blk_quiesce,
};

/* ---- lifecycle ---------------------------------------------------------- */

static int async_setup(struct blk_dev *b)
{
    int r = io_uring_queue_init(BLK_SLOTS, &b->ring, 0);
    if (r < 0)
        return err_set(r, "drive %s: cannot set up the Async (io_uring) engine: %s", b->dev.id,
                       strerror(-r));
    b->ring_ok = true;
    r = io_uring_register_files(&b->ring, &b->fd, 1);
    if (r < 0)
        return err_set(r, "drive %s: Async (io_uring) engine cannot register %s: %s", b->dev.id,
                       b->path, strerror(-r));
    b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (b->efd < 0) {
        r = -errno;
        return err_set(r, "drive %s: Async (io_uring) engine: eventfd: %s", b->dev.id,
                       strerror(-r));
    }
    r = io_uring_register_eventfd(&b->ring, b->efd);
    if (r < 0)
        return err_set(r, "drive %s: Async (io_uring) engine cannot register its eventfd: %s",
                       b->dev.id, strerror(-r));
    for (unsigned i = 0; i < BLK_SLOTS; i++)
        b->free_list[i] = (uint16_t)(BLK_SLOTS - 1 - i);
    b->n_free = BLK_SLOTS;
    return 0;
}

int blk_check(const struct drive_config *cfg)
{
    int fd;
    uint64_t size;
    int rc = blk_open_file(cfg->drive_id, cfg->path_on_host, cfg->is_read_only, &fd, &size);
    if (rc == 0)
        close(fd);
    return rc;
}

int blk_create(struct blk_dev **out, const struct drive_config *cfg, const struct guest_mem *mem)
{
    *out = NULL;
    struct blk_dev *b = calloc(1, sizeof(*b));
    if (!b)
        return err_set(-ENOMEM, "drive %s: out of memory", cfg->drive_id);
    b->fd = -1;
    b->efd = -1;
    b->dev.t.work_fd = -1;
    b->dev.kind = &virtio_blk_kind;
    snprintf(b->dev.id, sizeof(b->dev.id), "%s", cfg->drive_id);
    b->path = strdup(cfg->path_on_host);
    int rc;
    if (!b->path) {
        rc = err_set(-ENOMEM, "drive %s: out of memory", cfg->drive_id);
        goto fail;
    }
    b->read_only = cfg->is_read_only;
    b->cache = cfg->cache_type;
    b->engine = cfg->io_engine;
    b->poll_us = cfg->poll_us > CONFIG_POLL_US_MAX ? CONFIG_POLL_US_MAX : cfg->poll_us;
    b->poller = (struct ev_poller){.ready = poll_ready, .run = poll_run, .expired = poll_expired};
    uint64_t size;
    if ((rc = blk_open_file(b->dev.id, b->path, b->read_only, &b->fd, &size)))
        goto fail;
    b->capacity = size / BLK_SECTOR;
    if ((rc = rl_init(&b->rl, &cfg->rate_limiter))) {
        rc = err_set(rc, "drive %s: cannot set up its rate limiter: %s", b->dev.id, strerror(-rc));
        goto fail;
    }
    b->rl_ok = true;
    if (b->engine == IO_ENGINE_ASYNC && (rc = async_setup(b)))
        goto fail;

    struct virtio_mmio *t = &b->dev.t;
    t->device_id = VIRTIO_ID_BLOCK;
    t->device_features = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE);
    if (b->read_only)
        t->device_features |= 1ull << VIRTIO_BLK_F_RO;
    if (b->cache == CACHE_WRITEBACK)
        t->device_features |= 1ull << VIRTIO_BLK_F_FLUSH;
    t->n_queues = 1;
    t->ops = &blk_ops;
    t->name = b->dev.id;
    t->mem = mem;
    if ((rc = vmmio_init(t)))
        goto fail;
    *out = b;
    return 0;

fail:
    if (b->ring_ok)
        io_uring_queue_exit(&b->ring);
    if (b->efd >= 0)
        close(b->efd);
    if (b->rl_ok)
        rl_destroy(&b->rl);
    if (b->fd >= 0)
        close(b->fd);
    free(b->path);
    free(b);
    return rc;
}

void blk_destroy(struct blk_dev *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->dev.t.lock);
    async_drain(b, false);
    pthread_mutex_unlock(&b->dev.t.lock);
    if (b->ev) {
        evloop_poll_cancel(b->ev, &b->poller);
        if (b->uring_on_loop)
            evloop_del(b->ev, &b->ev_uring);
        if (b->rl_on_loop)
            evloop_del(b->ev, &b->ev_rl);
    }
    if (b->ring_ok)
        io_uring_queue_exit(&b->ring);
    if (b->efd >= 0)
        close(b->efd);
    rl_destroy(&b->rl);
    vmmio_destroy(&b->dev.t);
    if (b->fd >= 0)
        close(b->fd);
    free(b->path);
    free(b);
}

struct virtio_mmio *blk_transport(struct blk_dev *b)
{
    return &b->dev.t;
}

void blk_async_complete(struct blk_dev *b)
{
    vmmio_lock(&b->dev.t);
    if (b->ring_ok && !b->dev.t.quiesced) {
        uint64_t v;
        if (read(b->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
            log_debug("drive %s: eventfd read: %s", b->dev.id, strerror(errno));
        reap_and_run(b, false);
    }
    vmmio_unlock(&b->dev.t);
}

bool blk_completions_signal(struct blk_dev *b)
{
    vmmio_lock(&b->dev.t);
    bool on = !b->cq_quiet;
    vmmio_unlock(&b->dev.t);
    return on;
}

unsigned blk_in_flight(struct blk_dev *b)
{
    vmmio_lock(&b->dev.t);
    unsigned n = b->n_inflight;
    vmmio_unlock(&b->dev.t);
    return n;
}

static void on_uring(struct ev_handler *h, uint32_t events)
{
    (void)events;
    blk_async_complete(container_of(h, struct blk_dev, ev_uring));
}

void blk_rate_limiter_expired(struct blk_dev *b)
{
    vmmio_lock(&b->dev.t);
    rl_timer_expired(&b->rl);
    if (b->dev.t.activated && blk_run(b))
        vmmio_signal_used(&b->dev.t, 0);
    vmmio_unlock(&b->dev.t);
}

static void on_rl_timer(struct ev_handler *h, uint32_t events)
{
    (void)events;
    blk_rate_limiter_expired(container_of(h, struct blk_dev, ev_rl));
}

/* Put the limiter's timer on the loop (again, if it changed). */
static int attach_rl(struct blk_dev *b)
{
    if (!b->ev)
        return 0;
    if (b->rl_on_loop && b->ev_rl.fd == b->rl.timer_fd)
        return 0;
    if (b->rl_on_loop) {
        evloop_del(b->ev, &b->ev_rl);
        b->rl_on_loop = false;
    }
    if (b->rl.timer_fd < 0)
        return 0;
    int rc = evloop_add(b->ev, &b->ev_rl, b->rl.timer_fd, EPOLLIN, on_rl_timer);
    if (rc)
        return err_set(rc, "drive %s: cannot watch its rate-limiter timer: %s", b->dev.id,
                       strerror(-rc));
    b->rl_on_loop = true;
    return 0;
}

int blk_attach(struct blk_dev *b, struct evloop *ev)
{
    b->ev = ev;
    if (b->ring_ok && !b->uring_on_loop) {
        int rc = evloop_add(ev, &b->ev_uring, b->efd, EPOLLIN, on_uring);
        if (rc)
            return err_set(rc, "drive %s: cannot watch its io_uring completions: %s", b->dev.id,
                           strerror(-rc));
        b->uring_on_loop = true;
    }
    return attach_rl(b);
}

int blk_update(struct blk_dev *b, const char *path, const struct rate_limiter *rl)
{
    int rc = 0;
    if (path) {
        int fd;
        uint64_t size;
        char *p = strdup(path);
        if (!p) {
            rc = err_set(-ENOMEM, "drive %s: out of memory", b->dev.id);
            goto out;
        }
        if ((rc = blk_open_file(b->dev.id, p, b->read_only, &fd, &size))) {
            free(p);
            goto out;
        }
        if (b->ring_ok) {
            async_drain(b, true); /* every request finishes on the old file */
            rc = io_uring_register_files_update(&b->ring, 0, &fd, 1);
            if (rc < 0) {
                close(fd);
                free(p);
                rc = err_set(rc, "drive %s: Async (io_uring) engine cannot register %s: %s",
                             b->dev.id, path, strerror(-rc));
                goto out;
            }
            rc = 0;
        }
        close(b->fd);
        b->fd = fd;
        free(b->path);
        b->path = p;
        b->capacity = size / BLK_SECTOR;
        vmmio_config_changed(&b->dev.t);
        METRIC_INC(block_update_count);
        log_info("drive %s: now backed by %s (%llu sectors)", b->dev.id, b->path,
                 (unsigned long long)b->capacity);
    }
    if (rl) {
        if ((rc = rl_update(&b->rl, rl))) {
            rc = err_set(rc, "drive %s: cannot update its rate limiter: %s", b->dev.id,
                         strerror(-rc));
            goto out;
        }
        if ((rc = attach_rl(b)))
            goto out;
        if (!path)
            METRIC_INC(block_update_count);
        /* A chain kept back by the old limits may be allowed now. */
        if (b->dev.t.activated && b->has_pending && blk_run(b))
            vmmio_signal_used(&b->dev.t, 0);
    }
out:
    return rc;
}

/* ---- the kind table (device.h) ------------------------------------------- */

/* The i-th drive in placement order: the root drive first (so it is /dev/vda),
 * then the others in configuration order. */
static const struct drive_config *nth_drive(const struct vm_config *cfg, int i)
{
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < cfg->n_drives; k++)
            if (cfg->drives[k].is_root_device == (pass == 0) && i-- == 0)
                return &cfg->drives[k];
    return NULL;
}

static int kind_count(const struct vm_config *cfg)
{
    return cfg->n_drives;
}

static int kind_create(const struct vm_config *cfg, int i, const struct guest_mem *mem,
                       struct virtio_dev **out)
{
    const struct drive_config *dc = nth_drive(cfg, i);
    struct blk_dev *b;
    if (!dc)
        return err_set(-EINVAL, "drives: no drive %d", i);
    int rc = blk_create(&b, dc, mem);
    *out = rc ? NULL : &b->dev;
    return rc;
}

/* The root drive: root=/dev/vda (or its partuuid), ro or rw. */
static int kind_cmdline(const struct vm_config *cfg, char *buf, size_t cap)
{
    const struct drive_config *d = nth_drive(cfg, 0);
    if (!d || !d->is_root_device)
        return 0;
    size_t n = strlen(buf);
    int w = d->partuuid
                ? snprintf(buf + n, cap - n, " root=PARTUUID=%s %s", d->partuuid,
                           d->is_read_only ? "ro" : "rw")
                : snprintf(buf + n, cap - n, " root=/dev/vda %s", d->is_read_only ? "ro" : "rw");
    return w < 0 || (size_t)w >= cap - n ? -E2BIG : 0;
}

static int kind_attach(struct virtio_dev *d, struct evloop *ev)
{
    return blk_attach(container_of(d, struct blk_dev, dev), ev);
}

static int kind_update(struct virtio_dev *d, const struct device_update *u)
{
    return blk_update(container_of(d, struct blk_dev, dev), u->path_on_host, u->rate_limiter);
}

static void kind_destroy(struct virtio_dev *d)
{
    blk_destroy(container_of(d, struct blk_dev, dev));
}

/* A drive's own state: its limiter. */
static size_t kind_save(struct virtio_dev *d, void *buf)
{
    struct blk_dev *b = container_of(d, struct blk_dev, dev);
    rl_save(&b->rl, buf);
    return sizeof(struct rl_state);
}

static int kind_restore(struct virtio_dev *d, const void *buf, size_t len)
{
    struct blk_dev *b = container_of(d, struct blk_dev, dev);
    if (len != sizeof(struct rl_state))
        return err_set(-EINVAL, "drives %s: saved state of %zu bytes, expected %zu", d->id, len,
                       sizeof(struct rl_state));
    rl_restore(&b->rl, buf);
    return 0;
}

const struct virtio_kind virtio_blk_kind = {
    .section = "drives",
    .count = kind_count,
    .create = kind_create,
    .cmdline = kind_cmdline,
    .attach = kind_attach,
    .update = kind_update,
    .destroy = kind_destroy,
    .save = kind_save,
    .restore = kind_restore,
};
