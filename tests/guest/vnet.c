/* Ember test guest: virtio-net driver and its test modes (README.md).
 * Answers ARP and ICMP echo for its IP, echoes UDP on a port, counts
 * sequence-numbered UDP datagrams on another, can stall its RX ring, and
 * can send a burst of UDP datagrams (bench), and can hand the device one
 * malformed chain first (`net-hostile=CASE`). */
#include "layout.h"
#include "virtio.h"

#define VNET_F_MTU 3
#define VNET_F_MAC 5
#define HDR 12 /* virtio_net_hdr_v1 */
#define BUF 2048
#define QUIT "quit"

struct net {
	struct vdev *d;
	u8 mac[6], ip[4], peer_ip[4], peer_mac[6];
	int have_peer_mac;
	u8 *rx, *tx;
	u8 tx_busy[VQ_MAX];
	u16 tx_next;
	u16 mtu;
	u64 rx_frames, tx_frames, arp, icmp, udp_echo, counted, dup, bad_csum, other, rx_bytes;
	u8 seen[8192]; /* bitmap of counted sequence numbers (65536) */
};
static struct net net0;

static u16 get16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static void put16(u8 *p, u16 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }
static int eq(const u8 *a, const u8 *b, int n)
{
	for (int i = 0; i < n; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

static u32 csum_add(u32 sum, const u8 *p, u32 n)
{
	for (u32 i = 0; i + 1 < n; i += 2)
		sum += (u32)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		sum += (u32)(p[n - 1] << 8);
	return sum;
}

static u16 csum_fold(u32 sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (u16)~sum;
}

/* UDP checksum over pseudo-header + udp (length from the UDP header). */
static u16 udp_csum(const u8 *ip, const u8 *udp, u16 ulen)
{
	u32 sum = csum_add(0, ip + 12, 8);
	sum += 17 + ulen;
	return csum_fold(csum_add(sum, udp, ulen));
}

static void parse_ip(const char *s, u8 *ip)
{
	for (int i = 0; i < 4; i++) {
		u64 v = parse_num(&s);
		ip[i] = (u8)v;
		if (*s == '.')
			s++;
	}
}

static void tx_reclaim(struct net *n)
{
	int id;
	while ((id = vq_pop(&n->d->q[1], NULL)) >= 0)
		if (id < VQ_MAX)
			n->tx_busy[id] = 0;
}

/* A zeroed TX frame buffer (after the vnet header), waiting for a free slot. */
static u8 *tx_get(struct net *n, u16 *slot)
{
	struct vq *q = &n->d->q[1];
	u16 s = n->tx_next;
	u64 start = rdtsc();
	while (n->tx_busy[s]) {
		tx_reclaim(n);
		if (rdtsc() - start > 5000 * tsc_per_ms()) {
			print("net0: tx timeout\n");
			return NULL;
		}
	}
	n->tx_next = (u16)((s + 1) % q->num);
	*slot = s;
	u8 *b = n->tx + (u64)s * BUF;
	memset(b, 0, HDR);
	return b + HDR;
}

static void tx_send(struct net *n, u16 slot, u32 len, int kick)
{
	struct vq *q = &n->d->q[1];
	q->desc[slot] = (struct vdesc){(u64)(uintptr_t)(n->tx + (u64)slot * BUF), HDR + len, 0, 0};
	n->tx_busy[slot] = 1;
	vq_push(q, slot);
	if (kick)
		vq_kick(n->d, q);
	n->tx_frames++;
}

static void rx_post(struct net *n, u16 id)
{
	struct vq *q = &n->d->q[0];
	q->desc[id] = (struct vdesc){(u64)(uintptr_t)(n->rx + (u64)id * BUF), BUF, VD_WRITE, 0};
	vq_push(q, id);
}

static void send_arp(struct net *n, int op, const u8 *tmac, const u8 *tip)
{
	u16 slot;
	u8 *f = tx_get(n, &slot);
	if (!f)
		return;
	static const u8 bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	memcpy(f, op == 1 ? bcast : tmac, 6);
	memcpy(f + 6, n->mac, 6);
	put16(f + 12, 0x0806);
	u8 *a = f + 14;
	put16(a, 1);
	put16(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, (u16)op);
	memcpy(a + 8, n->mac, 6);
	memcpy(a + 14, n->ip, 4);
	memcpy(a + 18, op == 1 ? (const u8 *)"\0\0\0\0\0\0" : tmac, 6);
	memcpy(a + 24, tip, 4);
	tx_send(n, slot, 60, 1);
}

static void ip_finish(u8 *ip, u16 total, u8 proto, const u8 *src, const u8 *dst)
{
	ip[0] = 0x45;
	ip[1] = 0;
	put16(ip + 2, total);
	put16(ip + 4, 0);
	put16(ip + 6, 0x4000); /* DF */
	ip[8] = 64;
	ip[9] = proto;
	put16(ip + 10, 0);
	memcpy(ip + 12, src, 4);
	memcpy(ip + 16, dst, 4);
	put16(ip + 10, csum_fold(csum_add(0, ip, 20)));
}

/* Build a UDP datagram to dst (mac/ip) with payload; returns frame length. */
static u32 build_udp(struct net *n, u8 *f, const u8 *dmac, const u8 *dip, u16 sport, u16 dport,
		     const u8 *payload, u16 plen)
{
	memcpy(f, dmac, 6);
	memcpy(f + 6, n->mac, 6);
	put16(f + 12, 0x0800);
	u8 *ip = f + 14, *udp = ip + 20;
	put16(udp, sport);
	put16(udp + 2, dport);
	put16(udp + 4, (u16)(8 + plen));
	put16(udp + 6, 0);
	if (payload)
		memcpy(udp + 8, payload, plen);
	ip_finish(ip, (u16)(28 + plen), 17, n->ip, dip);
	u16 c = udp_csum(ip, udp, (u16)(8 + plen));
	put16(udp + 6, c ? c : 0xffff);
	u32 len = 14 + 28 + plen;
	return len < 60 ? 60 : len;
}

static struct {
	u16 echo_port, count_port;
	u64 stall_ms, timeout_s;
	u64 tx_n, tx_port, tx_size;
	int quit, counting_started;
	int irq;             /* net-irq: sleep on RX interrupts instead of spinning */
	const char *hostile; /* net-hostile=CASE */
} cfg;

static void print_irq_counts(void)
{
	print("net0: woken by rx-irq=%lu timer=%lu\n", irq_count(IRQ_VECTOR), irq_count(TIMER_VECTOR));
}

/* ---- net-hostile=CASE: one malformed chain before the normal work ---- */

static const char *net_hostile_cases[] = {"loop", "pastram", "overflow", "nested", "short",
					  "huge", "rxshort", "rxpastram", NULL};

static int hostile_case(const char *v)
{
	for (int c = 0; net_hostile_cases[c]; c++) {
		int k = strncmp_prefix(v, net_hostile_cases[c]);
		if (k && (v[k] == ' ' || !v[k]))
			return c;
	}
	return -1;
}

/* RX cases: spoil RX buffer 0 before the device sees the ring. The device
 * must hand it back unused (rx_poll prints "bad rx used id=0 len=0"). */
static void hostile_rx(struct net *n, int c)
{
	struct vq *q = &n->d->q[0];
	if (c == 6)
		q->desc[0].len = 8; /* shorter than the vnet header */
	else if (c == 7)
		q->desc[0].addr = vio_addr_past_ram();
}

/* TX cases: one bad chain on descriptors num-2, num-1 (the echo loop's
 * frames use the low ones first), then wait for the device's answer. */
static void hostile_tx(struct net *n, int c)
{
	struct vq *q = &n->d->q[1];
	u16 B = (u16)(q->num - 2);
	u64 F = (u64)(uintptr_t)(n->tx + (u64)B * BUF); /* a zeroed header + frame */
	static struct vdesc *t, *t2;
	if (!t) {
		t = dma_alloc(4096);
		t2 = dma_alloc(4096);
	}
	switch (c) {
	case 0: /* loop: B -> B+1 -> B */
		q->desc[B] = (struct vdesc){F, HDR, VD_NEXT, (u16)(B + 1)};
		q->desc[B + 1] = (struct vdesc){F + HDR, 60, VD_NEXT, B};
		break;
	case 1: /* past the end of RAM */
		q->desc[B] = (struct vdesc){vio_addr_past_ram(), HDR + 60, 0, 0};
		break;
	case 2: /* addr + len wraps around 2^64 */
		q->desc[B] = (struct vdesc){0xfffffffffffff000ULL, 0x2000, 0, 0};
		break;
	case 3: /* an indirect table pointing to another */
		t2[0] = (struct vdesc){F + HDR, 60, 0, 0};
		t[0] = (struct vdesc){F, HDR, VD_NEXT, 1};
		t[1] = (struct vdesc){(u64)(uintptr_t)t2, 16, VD_INDIRECT, 0};
		q->desc[B] = (struct vdesc){(u64)(uintptr_t)t, 32, VD_INDIRECT, 0};
		break;
	case 4: /* shorter than the vnet header */
		q->desc[B] = (struct vdesc){F, 8, 0, 0};
		break;
	case 5: /* 40 x 2 KiB: a frame longer than any the device takes */
		for (u16 i = 0; i < 40; i++)
			t[i] = (struct vdesc){(u64)(uintptr_t)(n->tx + (u64)(64 + i) * BUF), BUF,
					      (u16)(i + 1 < 40 ? VD_NEXT : 0), (u16)(i + 1)};
		q->desc[B] = (struct vdesc){(u64)(uintptr_t)t, 40 * 16, VD_INDIRECT, 0};
		break;
	}
	vq_push(q, B);
	vq_kick_force(n->d, q);
	u32 len = 0;
	int id = vq_wait(q, &len, 2000);
	u32 st = vio_r32(n->d, VIO_STATUS);
	print("net-hostile: case=%s completed=%d id-ok=%d used-len=%u needs-reset=%d\n",
	      net_hostile_cases[c], id >= 0, id == B, id >= 0 ? len : 0, (st & VS_NEEDS_RESET) ? 1 : 0);
}

/* Handle one received frame (after the vnet header). */
static void rx_frame(struct net *n, u8 *f, u32 len, const u8 *vhdr)
{
	n->rx_frames++;
	n->rx_bytes += len;
	if (vhdr[0] & 1) /* NEEDS_CSUM without GUEST_CSUM negotiated */
		n->bad_csum++;
	if (len < 14) {
		n->other++;
		return;
	}
	u16 type = get16(f + 12);
	if (type == 0x0806 && len >= 42) {
		u8 *a = f + 14;
		u16 op = get16(a + 6);
		if (op == 1 && eq(a + 24, n->ip, 4)) {
			n->arp++;
			u8 smac[6], sip[4];
			memcpy(smac, a + 8, 6);
			memcpy(sip, a + 14, 4);
			send_arp(n, 2, smac, sip);
		} else if (op == 2 && eq(a + 14, n->peer_ip, 4)) {
			memcpy(n->peer_mac, a + 8, 6);
			n->have_peer_mac = 1;
		}
		return;
	}
	if (type != 0x0800 || len < 34) {
		n->other++;
		return;
	}
	u8 *ip = f + 14;
	u32 ihl = (u32)(ip[0] & 15) * 4;
	u16 total = get16(ip + 2);
	if ((ip[0] >> 4) != 4 || ihl < 20 || total < ihl || 14 + (u32)total > len) {
		n->other++;
		return;
	}
	if (csum_fold(csum_add(0, ip, ihl)) != 0) {
		n->bad_csum++;
		return;
	}
	if (!eq(ip + 16, n->ip, 4)) {
		n->other++;
		return;
	}
	u8 *l4 = ip + ihl;
	u32 l4len = total - ihl;
	u8 smac[6], sip[4];
	memcpy(smac, f + 6, 6);
	memcpy(sip, ip + 12, 4);
	if (ip[9] == 1 && l4len >= 8 && l4[0] == 8) {
		if (csum_fold(csum_add(0, l4, l4len)) != 0) {
			n->bad_csum++;
			return;
		}
		n->icmp++;
		u16 slot;
		u8 *o = tx_get(n, &slot);
		if (!o || l4len > 1500 - 20)
			return;
		memcpy(o, smac, 6);
		memcpy(o + 6, n->mac, 6);
		put16(o + 12, 0x0800);
		u8 *oip = o + 14, *icmp = oip + 20;
		memcpy(icmp, l4, l4len);
		icmp[0] = 0;
		put16(icmp + 2, 0);
		put16(icmp + 2, csum_fold(csum_add(0, icmp, l4len)));
		ip_finish(oip, (u16)(20 + l4len), 1, n->ip, sip);
		u32 flen = 34 + l4len;
		tx_send(n, slot, flen < 60 ? 60 : flen, 1);
		return;
	}
	if (ip[9] != 17 || l4len < 8) {
		n->other++;
		return;
	}
	u16 ulen = get16(l4 + 4);
	if (ulen < 8 || ulen > l4len || (get16(l4 + 6) && udp_csum(ip, l4, ulen) != 0)) {
		n->bad_csum++;
		return;
	}
	u16 sport = get16(l4), dport = get16(l4 + 2);
	u8 *pl = l4 + 8;
	u16 plen = (u16)(ulen - 8);
	if (plen == 4 && eq(pl, (const u8 *)QUIT, 4) && (dport == cfg.echo_port || dport == cfg.count_port)) {
		cfg.quit = 1;
		return;
	}
	if (dport == cfg.echo_port && cfg.echo_port) {
		n->udp_echo++;
		if (cfg.irq && plen == 4 && eq(pl, (const u8 *)"irqs", 4))
			print_irq_counts();
		/* "disk:..." is first written to blk0's sector 0 (zero-padded) and flushed. */
		if (plen >= 5 && plen <= 512 && eq(pl, (const u8 *)"disk:", 5) && blk_get(0)) {
			static u8 *sec;
			if (!sec)
				sec = dma_alloc(4096);
			memset(sec, 0, 512);
			memcpy(sec, pl, plen);
			if (blk_io(blk_get(0), VBLK_T_OUT, 0, sec, 512) != 0 ||
			    blk_io(blk_get(0), VBLK_T_FLUSH, 0, NULL, 0) != 0)
				return; /* no echo: the write failed */
		}
		u16 slot;
		u8 *o = tx_get(n, &slot);
		if (!o || plen > 1472)
			return;
		tx_send(n, slot, build_udp(n, o, smac, sip, dport, sport, pl, plen), 1);
		return;
	}
	if (dport == cfg.count_port && cfg.count_port) {
		if (!cfg.counting_started) {
			cfg.counting_started = 1;
			print("bench-start: net rx\n");
		}
		n->counted++;
		if (plen >= 4) {
			u32 seq = (u32)pl[0] | (u32)pl[1] << 8 | (u32)pl[2] << 16 | (u32)pl[3] << 24;
			if (seq < 65536) {
				if (n->seen[seq >> 3] & (1 << (seq & 7)))
					n->dup++;
				n->seen[seq >> 3] |= (u8)(1 << (seq & 7));
			}
		}
		return;
	}
	n->other++;
}

/* Process every used RX buffer, re-post it; returns how many. */
static int rx_poll(struct net *n)
{
	struct vq *q = &n->d->q[0];
	int got = 0, id;
	u32 len;
	while ((id = vq_pop(q, &len)) >= 0) {
		if (id < q->num && len >= HDR && len <= BUF) {
			u8 *b = n->rx + (u64)id * BUF;
			rx_frame(n, b + HDR, len - HDR, b);
		} else {
			print("net0: bad rx used id=%d len=%u\n", id, len);
		}
		if (id < q->num)
			rx_post(n, (u16)id);
		got++;
	}
	if (got)
		vq_kick(n->d, q);
	return got;
}

static void net_bench_tx(struct net *n)
{
	/* Resolve the peer's MAC. */
	for (int tries = 0; tries < 10 && !n->have_peer_mac; tries++) {
		send_arp(n, 1, NULL, n->peer_ip);
		u64 start = rdtsc();
		while (!n->have_peer_mac && rdtsc() - start < 500 * tsc_per_ms())
			if (!rx_poll(n))
				tx_reclaim(n);
	}
	if (!n->have_peer_mac) {
		print("net0: peer did not answer ARP\n");
		return;
	}
	u16 size = (u16)(cfg.tx_size < 4 ? 4 : cfg.tx_size > 1472 ? 1472 : cfg.tx_size);
	static u8 payload[1472];
	print("bench-start: net tx n=%lu size=%u\n", cfg.tx_n, size);
	for (u64 i = 0; i < cfg.tx_n; i++) {
		payload[0] = (u8)i, payload[1] = (u8)(i >> 8), payload[2] = (u8)(i >> 16), payload[3] = (u8)(i >> 24);
		u16 slot;
		u8 *o = tx_get(n, &slot);
		if (!o)
			break;
		u32 len = build_udp(n, o, n->peer_mac, n->peer_ip, (u16)cfg.tx_port, (u16)cfg.tx_port, payload, size);
		tx_send(n, slot, len, (i & 15) == 15 || i + 1 == cfg.tx_n);
		rx_poll(n);
	}
	vq_kick_force(n->d, &n->d->q[1]);
	/* Wait until the device has consumed everything. */
	u64 start = rdtsc();
	for (;;) {
		tx_reclaim(n);
		int busy = 0;
		for (int i = 0; i < n->d->q[1].num; i++)
			busy |= n->tx_busy[i];
		if (!busy || rdtsc() - start > 5000 * tsc_per_ms())
			break;
	}
	print("bench-end: net tx frames=%lu bytes=%lu\n", cfg.tx_n, cfg.tx_n * size);
}

void vnet_run(const char *s)
{
	const char *ipstr = NULL, *peer = NULL;
	cfg.timeout_s = 60;
	for (const char *p = s; p && *p;) {
		while (*p == ' ')
			p++;
		u64 a[3] = {0, 0, 0};
		int k;
		if ((k = strncmp_prefix(p, "net-ip=")))
			ipstr = p + k;
		else if ((k = strncmp_prefix(p, "net-peer=")))
			peer = p + k;
		else if ((k = strncmp_prefix(p, "net-echo="))) {
			tok_args(p + k, a, 1);
			cfg.echo_port = (u16)a[0];
		} else if ((k = strncmp_prefix(p, "net-count="))) {
			tok_args(p + k, a, 1);
			cfg.count_port = (u16)a[0];
		} else if ((k = strncmp_prefix(p, "net-stall="))) {
			tok_args(p + k, a, 1);
			cfg.stall_ms = a[0];
		} else if ((k = strncmp_prefix(p, "net-timeout="))) {
			tok_args(p + k, a, 1);
			cfg.timeout_s = a[0];
		} else if ((k = strncmp_prefix(p, "net-irq")) && (p[k] == ' ' || !p[k])) {
			cfg.irq = 1;
		} else if ((k = strncmp_prefix(p, "net-hostile="))) {
			cfg.hostile = p + k;
		} else if ((k = strncmp_prefix(p, "net-tx="))) {
			tok_args(p + k, a, 3);
			cfg.tx_n = a[0], cfg.tx_port = a[1], cfg.tx_size = a[2];
		}
		while (*p && *p != ' ')
			p++;
	}
	int hc = cfg.hostile ? hostile_case(cfg.hostile) : -1;
	if (cfg.hostile && hc < 0)
		print("net-hostile: unknown case\n");
	if (hc >= 0)
		vio_want_indirect = 1; /* for the table cases */
	struct vdev *d;
	for (int i = 0; (d = vio_find(VIRTIO_ID_NET, i)); i++) {
		char tag[8] = {'n', 'e', 't', (char)('0' + i), 0};
		if (vio_init(d, (1ULL << VNET_F_MAC) | (1ULL << VNET_F_MTU), 2, 256, tag))
			continue;
		u8 mac[6];
		for (int j = 0; j < 6; j++)
			mac[j] = vio_r8(d, VIO_CONFIG + (u32)j);
		u16 mtu = (d->features >> VNET_F_MTU) & 1 ? (u16)(vio_r8(d, VIO_CONFIG + 10) | vio_r8(d, VIO_CONFIG + 11) << 8) : 0;
		print("%s: mac=%x:%x:%x:%x:%x:%x mtu=%u features=0x%lx\n", tag, mac[0], mac[1], mac[2],
		      mac[3], mac[4], mac[5], mtu, d->features);
		if (i == 0) {
			net0.d = d;
			memcpy(net0.mac, mac, 6);
			net0.mtu = mtu;
		}
	}
	struct net *n = &net0;
	if (!n->d || !ipstr)
		return;
	parse_ip(ipstr, n->ip);
	if (peer)
		parse_ip(peer, n->peer_ip);
	n->rx = dma_alloc((u64)VQ_MAX * BUF);
	n->tx = dma_alloc((u64)VQ_MAX * BUF);
	struct vq *rq = &n->d->q[0];
	for (u16 i = 0; i < rq->num; i++)
		rx_post(n, i);
	if (hc >= 6)
		hostile_rx(n, hc);
	vq_kick_force(n->d, rq);
	if (hc >= 0 && hc < 6)
		hostile_tx(n, hc);
	print("net0: ready ip=%u.%u.%u.%u rx-buffers=%u\n", n->ip[0], n->ip[1], n->ip[2], n->ip[3], rq->num);

	if (cfg.stall_ms) {
		print("net0: stalled\n");
		u64 start = rdtsc();
		while ((u16)(rq->used[1] - rq->last_used) < rq->num && rdtsc() - start < 20000 * tsc_per_ms())
			cpu_relax();
		print("net0: ring-full used=%u\n", (u16)(rq->used[1] - rq->last_used));
		delay_ms(cfg.stall_ms);
		print("net0: resumed\n");
	}
	if (cfg.tx_n && peer)
		net_bench_tx(n);
	if (cfg.echo_port || cfg.count_port) {
		if (cfg.irq) {
			irq_route(n->d->irq);
			rq->avail[0] = 0; /* interrupts for used RX buffers (or used_event) */
			print("net0: sleeping on irq %u\n", n->d->irq);
		}
		u64 start = rdtsc(), lim = cfg.timeout_s * 1000 * tsc_per_ms();
		while (!cfg.quit) {
			if (!rx_poll(n)) {
				tx_reclaim(n);
				if (rdtsc() - start > lim) {
					print("net0: timeout\n");
					break;
				}
				if (!cfg.irq) {
					cpu_relax();
					continue;
				}
				vio_w32(n->d, VIO_INT_ACK, vio_r32(n->d, VIO_INT_STATUS));
				if (rq->used[1] == rq->last_used)
					irq_wait(); /* an RX interrupt or the timer's tick */
			}
		}
		if (cfg.counting_started)
			print("bench-end: net rx frames=%lu\n", n->counted);
		if (cfg.irq)
			print_irq_counts();
		u64 distinct = 0;
		for (int i = 0; i < 8192; i++)
			for (int b = 0; b < 8; b++)
				distinct += (n->seen[i] >> b) & 1;
		print("net0: rx=%lu tx=%lu arp=%lu icmp=%lu udp-echo=%lu counted=%lu distinct=%lu dup=%lu "
		      "bad-csum=%lu other=%lu\n",
		      n->rx_frames, n->tx_frames, n->arp, n->icmp, n->udp_echo, n->counted, distinct, n->dup,
		      n->bad_csum, n->other);
		/* Let the last replies leave before the reset. */
		delay_ms(50);
		tx_reclaim(n);
	}
}
