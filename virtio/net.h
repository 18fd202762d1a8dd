/* net.h - virtio-net (device id 1) over virtio-mmio, backed by a tap.
 *
 * The tap named by host_dev_name must exist; it is opened through
 * /dev/net/tun with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (and TUNSETVNETHDRSZ
 * 12, the virtio 1.x header) and set non-blocking. Features: VIRTIO_NET_F_MAC
 * (guest_mac), VIRTIO_NET_F_MTU (mtu), VIRTIO_NET_F_CSUM / GUEST_CSUM,
 * GUEST_TSO4/6, GUEST_UFO, HOST_TSO4/6, HOST_UFO, MRG_RXBUF (the offloads the
 * driver acks are passed to the tap with TUNSETOFFLOAD). Queues: 0 RX, 1 TX.
 * Nothing is dropped by Ember when the guest's RX ring is full: the tap is
 * taken off the loop (EPOLLIN) until the driver returns RX buffers. Constants
 * come from <linux/virtio_net.h>.
 */
#ifndef EMBER_VIRTIO_NET_H
#define EMBER_VIRTIO_NET_H

#include <stdint.h>

#include <linux/virtio_ids.h> /* VIRTIO_ID_NET */
#include <linux/virtio_net.h> /* VIRTIO_NET_F_*, struct virtio_net_hdr_v1 */

#include "../vmm/base/config.h"
#include "../vmm/base/evloop.h"
#include "../vmm/base/rate_limiter.h"
#include "device.h"
#include "mmio.h"

#define VIRTIO_NET_HDR_LEN sizeof(struct virtio_net_hdr_v1) /* 12 */

/* The kind table for the VM's device registry (device.h). */
extern const struct virtio_kind virtio_net_kind;

struct net_dev;

/* Open the tap and build the device; errors name the iface id and tap. */
/* Open and set up cfg's tap as net_create() would, then close it: the
 * check PUT /network-interfaces makes at the request. 0 or -errno. */
int net_check(const struct net_config *cfg);
int net_create(struct net_dev **out, const struct net_config *cfg, const struct guest_mem *mem);
void net_destroy(struct net_dev *n);
struct virtio_mmio *net_transport(struct net_dev *n);
/* Register the tap fd and rate-limiter timers on the main loop. */
int net_attach(struct net_dev *n, struct evloop *ev);
/* PATCH /network-interfaces after boot: replace the rate limiters (NULL:
 * keep that one). Throttled queues are re-polled. Main thread, with t->lock
 * held (vmmio_lock), as blk_update(). */
int net_update(struct net_dev *n, const struct rate_limiter *rx, const struct rate_limiter *tx);
#endif
