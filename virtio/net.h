/* net.h - virtio-net (device id 1) over virtio-mmio, backed by a tap.
 *
 * The tap named by host_dev_name must exist; it is opened through
 * /dev/net/tun with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (and TUNSETVNETHDRSZ
 * 12, the virtio 1.x header) and set non-blocking. Features: VIRTIO_NET_F_MAC
 * (guest_mac), VIRTIO_NET_F_MTU (mtu), VIRTIO_NET_F_CSUM / GUEST_CSUM,
 * GUEST_TSO4/6, GUEST_UFO, HOST_TSO4/6, HOST_UFO, MRG_RXBUF (the offloads the
 * driver acks are passed to the tap with TUNSETOFFLOAD). Queues: 0 RX, 1 TX.
 * Nothing is dropped by Ember when the guest's RX ring is full: the tap is
 * taken off the loop (EPOLLIN) until the driver returns RX buffers.
 */
#ifndef EMBER_VIRTIO_NET_H
#define EMBER_VIRTIO_NET_H

#include <stdint.h>

#include "../vmm/config.h"
#include "../vmm/evloop.h"
#include "mmio.h"
#include "rate_limiter.h"

#define VIRTIO_ID_NET 1

#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MTU 3
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_UFO 10
#define VIRTIO_NET_F_HOST_TSO4 11
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_HOST_UFO 14
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16

#define VIRTIO_NET_HDR_LEN 12 /* struct virtio_net_hdr_v1 */

struct net_dev;

/* Busy-poll budget (--net-poll-us; 0 turns it off): when the RX ring runs
 * out of buffers while frames wait, or the TX ring runs empty, the main
 * thread watches the ring this long before asking the driver to kick. */
#define NET_POLL_US_DEFAULT 20
extern unsigned net_poll_us;

/* Open the tap and build the device; errors name the iface id and tap. */
int net_create(struct net_dev **out, const struct net_config *cfg, const struct guest_mem *mem);
void net_destroy(struct net_dev *n);
struct virtio_mmio *net_transport(struct net_dev *n);
/* Register the tap fd and rate-limiter timers on the main loop. */
int net_attach(struct net_dev *n, struct evloop *ev);
/* PATCH /network-interfaces after boot: replace the rate limiters (NULL:
 * keep that one). Throttled queues are re-polled. With t->lock held, as
 * blk_update(). */
int net_update(struct net_dev *n, const struct rate_limiter *rx, const struct rate_limiter *tx);
/* Process the tap's readable side now (what the loop does on EPOLLIN; takes
 * t->lock). For tests, and harmless at any time. */
void net_rx_poll(struct net_dev *n);

#endif
