/* mmio_internal.h - the transport's work handler, for unit tests to call
 * directly (in Ember the main loop calls it when the work eventfd fires). */
#ifndef EMBER_VIRTIO_MMIO_INTERNAL_H
#define EMBER_VIRTIO_MMIO_INTERNAL_H

#include "mmio.h"

/* Main thread: the work eventfd fired (also what tests call after a Status
 * write). Takes and releases the lock. */
void vmmio_do_work(struct virtio_mmio *t);

#endif
