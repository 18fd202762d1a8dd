/* blk.h - virtio-blk (device id 2) over virtio-mmio, one file per drive.
 *
 * A raw image file; capacity = file size / 512 (a size that is not a
 * multiple of 512 is refused with an error naming the drive and path).
 * Features: VIRTIO_BLK_F_RO when is_read_only (writes then complete with
 * VIRTIO_BLK_S_IOERR), VIRTIO_BLK_F_FLUSH when cache_type is Writeback (each
 * FLUSH is an fdatasync() that finishes before the request completes),
 * VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE. GET_ID returns the drive id.
 * Engines: Sync (preadv/pwritev on the main thread) and Async (io_uring via
 * liburing: the file registered, completions signalled on an eventfd that
 * sits on the main loop, all requests of one kick submitted together,
 * completions reaped in batches). One queue of VIRTQ_MAX_SIZE entries.
 * Requests are parsed by blk_parse_request() (pure, fuzzed).
 */
#ifndef EMBER_VIRTIO_BLK_H
#define EMBER_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "../vmm/config.h"
#include "../vmm/evloop.h"
#include "mmio.h"
#include "rate_limiter.h"

#define VIRTIO_ID_BLOCK 2

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8

#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES 20

/* One parsed request: header (16 readable bytes), data, status byte (the last
 * writable byte). */
struct blk_request {
    uint32_t type;
    uint64_t sector;
    uint64_t data_len; /* bytes of data between header and status */
    uint8_t *status;   /* host pointer to the status byte */
};

/* Parse a chain (pure: no I/O). Returns 0, or -EINVAL when the chain cannot
 * carry a request (header short, no writable status byte, data for IN not
 * writable / for OUT not readable, length not a multiple of 512, sector range
 * past capacity or overflowing). With -EINVAL, req->status is set if the chain
 * has a writable last byte, so the caller can answer IOERR; else NULL. */
int blk_parse_request(const struct virtq_chain *c, uint64_t capacity_sectors,
                      struct blk_request *req);

struct blk_dev;

/* Busy-poll budget (--blk-poll-us; 0 turns it off): after a drive's ring
 * runs empty, the main thread keeps guest notifications off and watches the
 * ring this long before sleeping, trading a little host CPU (at most this
 * much per burst of I/O; nothing while the guest is idle) for far fewer
 * guest exits: a kick costs far more than 20 us on some hosts. */
#define BLK_POLL_US_DEFAULT 20
extern unsigned blk_poll_us;

/* Open the drive's file and build the device (nothing is attached yet).
 * Errors name the drive id and path (and the engine if io_uring fails). */
int blk_create(struct blk_dev **out, const struct drive_config *cfg, const struct guest_mem *mem);
void blk_destroy(struct blk_dev *b);
struct virtio_mmio *blk_transport(struct blk_dev *b);
/* Register the device's own fds (io_uring eventfd, rate-limiter timer); the
 * kick fds are the transport's (vmmio_attach). blk_destroy() takes them off
 * the loop again, so destroy devices before evloop_close(). */
int blk_attach(struct blk_dev *b, struct evloop *ev);

/* PATCH /drives after boot: swap the backing file (new capacity, config
 * interrupt) and/or the rate limiter. path NULL: keep; rl NULL: keep.
 * Any thread, with t->lock held; with the Async engine, requests in flight on
 * the old file complete first. A refused new file changes nothing. */
int blk_update(struct blk_dev *b, const char *path, const struct rate_limiter *rl);

/* Async engine: reap every completion available now (status bytes, used
 * entries, one interrupt), resubmit short transfers, resume a queue that was
 * waiting for a free slot. Takes t->lock. The main loop calls it when the
 * io_uring eventfd fires; unit tests call it directly. No-op for Sync. */
void blk_async_complete(struct blk_dev *b);
/* Requests the kernel is still working on (Async engine; takes t->lock). */
unsigned blk_in_flight(struct blk_dev *b);
/* The rate limiter's timer fired: clear the block and re-run the queue
 * (takes t->lock). The main loop calls it; exposed for unit tests. */
void blk_rate_limiter_expired(struct blk_dev *b);

#endif
