/* blk_internal.h - virtio-blk's event handlers, for unit tests to call directly
 * (in Ember the main loop calls them through the device's ev_handlers). */
#ifndef EMBER_VIRTIO_BLK_INTERNAL_H
#define EMBER_VIRTIO_BLK_INTERNAL_H

#include "blk.h"

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
/* Whether io_uring completions signal the eventfd now: not while the
 * device's poller is armed (it looks at the completion queue itself). */
bool blk_completions_signal(struct blk_dev *b);

#endif
