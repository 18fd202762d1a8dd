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
 * When the ring runs empty the device polls it for drive_config.poll_us
 * through the event loop (evloop.h) before asking the guest to kick again.
 * Requests are parsed by blk_parse_request() (pure, fuzzed). Constants come
 * from <linux/virtio_blk.h>.
 */
#ifndef EMBER_VIRTIO_BLK_H
#define EMBER_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/virtio_blk.h> /* VIRTIO_BLK_F_*, VIRTIO_BLK_T_*, VIRTIO_BLK_S_*, ID_BYTES */
#include <linux/virtio_ids.h> /* VIRTIO_ID_BLOCK */

#include "../vmm/base/config.h"
#include "../vmm/base/evloop.h"
#include "../vmm/base/rate_limiter.h"
#include "device.h"
#include "mmio.h"

/* The kind table for the VM's device registry (device.h). */
extern const struct virtio_kind virtio_blk_kind;

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

/* Open the drive's file and build the device (nothing is attached yet).
 * Errors name the drive id and path (and the engine if io_uring fails). */
/* Open cfg's path_on_host as blk_create() would (read-write unless
 * is_read_only; a regular file or block device) and close it again: the
 * check PUT /drives makes at the request. 0 or -errno naming the field. */
int blk_check(const struct drive_config *cfg);
int blk_create(struct blk_dev **out, const struct drive_config *cfg, const struct guest_mem *mem);
void blk_destroy(struct blk_dev *b);
struct virtio_mmio *blk_transport(struct blk_dev *b);
/* Register the device's own fds (io_uring eventfd, rate-limiter timer) and
 * its poller; the kick and work fds are the transport's (vmmio_attach).
 * blk_destroy() takes them off the loop again, so destroy devices before
 * evloop_close(). */
int blk_attach(struct blk_dev *b, struct evloop *ev);

/* PATCH /drives after boot: swap the backing file (new capacity, config
 * interrupt) and/or the rate limiter. path NULL: keep; rl NULL: keep.
 * Main thread, with t->lock held (vmmio_lock); with the Async engine, requests
 * in flight on the old file complete first. A refused new file changes nothing. */
int blk_update(struct blk_dev *b, const char *path, const struct rate_limiter *rl);

#endif
