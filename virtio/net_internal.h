/* net_internal.h - virtio-net's tap handler, for unit tests to call directly
 * (in Ember the main loop calls it on the tap's EPOLLIN). */
#ifndef EMBER_VIRTIO_NET_INTERNAL_H
#define EMBER_VIRTIO_NET_INTERNAL_H

#include "net.h"

/* Process the tap's readable side now (what the loop does on EPOLLIN; takes
 * t->lock). For tests, and harmless at any time. */
void net_rx_poll(struct net_dev *n);

#endif
