/* Ember test guest: virtio-mmio discovery, initialisation and split
 * virtqueues (polling, no interrupts).  See virtio.h and README.md. */
#include "virtio.h"

struct vdev vdevs[VIO_MAX_DEVS];
int n_vdevs;
u64 ram_top;
int vio_want_indirect, vio_want_event_idx;

#define DMA_BASE 0x1000000ULL /* 16 MiB: above the image, below the initrd */
static u64 dma_next = DMA_BASE;

void *dma_alloc(u64 size)
{
	u64 p = dma_next;
	size = (size + 4095) & ~4095ULL;
	dma_next += size;
	if (ram_top && dma_next > ram_top && dma_next > 0xd0000000ULL) {
		print("virtio: out of DMA memory\n");
		guest_exit();
	}
	memset((void *)(uintptr_t)p, 0, size);
	return (void *)(uintptr_t)p;
}

u64 parse_num(const char **sp)
{
	const char *s = *sp;
	u64 v = 0;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		for (;;) {
			char c = *s;
			if (c >= '0' && c <= '9')
				v = v * 16 + (u64)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v = v * 16 + (u64)(c - 'a' + 10);
			else if (c >= 'A' && c <= 'F')
				v = v * 16 + (u64)(c - 'A' + 10);
			else
				break;
			s++;
		}
	} else {
		while (*s >= '0' && *s <= '9')
			v = v * 10 + (u64)(*s++ - '0');
	}
	switch (*s) {
	case 'k': case 'K': v <<= 10; s++; break;
	case 'm': case 'M': v <<= 20; s++; break;
	case 'g': case 'G': v <<= 30; s++; break;
	default: break;
	}
	*sp = s;
	return v;
}

u64 tsc_per_ms(void)
{
	static u64 cached;
	if (!cached) {
		u32 r[4];
		cpuid0(0x40000000, 0, r);
		if (r[0] >= 0x40000010) {
			cpuid0(0x40000010, 0, r);
			cached = r[0]; /* TSC kHz (VMware/KVM timing leaf) */
		}
		if (!cached || cached > 10000000)
			cached = 3000000; /* assume ~3 GHz */
	}
	return cached;
}

void delay_ms(u64 ms)
{
	u64 start = rdtsc(), c = ms * tsc_per_ms();
	while (rdtsc() - start < c)
		cpu_relax();
}

/* virtio_mmio.device=<size>@<base>:<irq>[:<id>] */
void vio_scan_cmdline(const char *s)
{
	static const char key[] = "virtio_mmio.device=";
	while (s && *s) {
		while (*s == ' ')
			s++;
		if (strncmp_prefix(s, "vio-indirect"))
			vio_want_indirect = 1;
		if (strncmp_prefix(s, "vio-event-idx"))
			vio_want_event_idx = 1;
		int n = strncmp_prefix(s, key);
		if (n && n_vdevs < VIO_MAX_DEVS) {
			const char *p = s + n;
			u64 size = parse_num(&p);
			if (*p == '@') {
				p++;
				u64 base = parse_num(&p);
				u64 irq = 0;
				if (*p == ':') {
					p++;
					irq = parse_num(&p);
				}
				int dup = 0;
				for (int i = 0; i < n_vdevs; i++)
					dup |= vdevs[i].base == base;
				if (size >= 0x100 && base && !dup) {
					struct vdev *d = &vdevs[n_vdevs++];
					d->base = base;
					d->irq = (u32)irq;
				}
			}
		}
		while (*s && *s != ' ')
			s++;
	}
	/* Identify (reading only the identification registers). */
	for (int i = 0; i < n_vdevs; i++) {
		struct vdev *d = &vdevs[i];
		if (vio_r32(d, VIO_MAGIC) != 0x74726976) {
			print("virtio: 0x%lx: bad magic 0x%x\n", d->base, vio_r32(d, VIO_MAGIC));
			continue;
		}
		d->version = vio_r32(d, VIO_VERSION);
		d->device_id = vio_r32(d, VIO_DEVICE_ID);
	}
}

struct vdev *vio_find(u32 device_id, int n)
{
	for (int i = 0; i < n_vdevs; i++)
		if (vdevs[i].device_id == device_id && vdevs[i].version == 2 && n-- == 0)
			return &vdevs[i];
	return NULL;
}

void vio_reset(struct vdev *d)
{
	vio_w32(d, VIO_STATUS, 0);
	for (int i = 0; i < 1000000 && vio_r32(d, VIO_STATUS) != 0; i++)
		cpu_relax();
	d->up = 0;
}

static int setup_queue(struct vdev *d, int i, u32 qmax)
{
	struct vq *q = &d->q[i];
	vio_w32(d, VIO_QUEUE_SEL, (u32)i);
	if (vio_r32(d, VIO_QUEUE_READY)) {
		print("virtio: 0x%lx: queue %d already ready\n", d->base, i);
		return -1;
	}
	u32 max = vio_r32(d, VIO_QUEUE_NUM_MAX);
	if (!max) {
		print("virtio: 0x%lx: queue %d not available\n", d->base, i);
		return -1;
	}
	u32 num = max < qmax ? max : qmax;
	if (num > VQ_MAX)
		num = VQ_MAX;
	q->num = (u16)num;
	q->index = (u16)i;
	/* Allocate once: a device re-initialised after a reset reuses its rings. */
	if (!q->desc) {
		q->desc = dma_alloc(16 * VQ_MAX);
		q->avail = dma_alloc(6 + 2 * VQ_MAX);
		q->used = dma_alloc(6 + 8 * VQ_MAX);
	} else {
		memset(q->desc, 0, 16 * VQ_MAX);
		memset((void *)q->avail, 0, 6 + 2 * VQ_MAX);
		memset((void *)q->used, 0, 6 + 8 * VQ_MAX);
	}
	q->avail_idx = q->last_used = q->kicked_idx = 0;
	q->avail[0] = 1; /* VIRTQ_AVAIL_F_NO_INTERRUPT: we poll */
	q->event_idx = (d->features >> VF_EVENT_IDX) & 1;
	vio_w32(d, VIO_QUEUE_NUM, num);
	u64 a[3] = {(u64)(uintptr_t)q->desc, (u64)(uintptr_t)q->avail, (u64)(uintptr_t)q->used};
	for (int k = 0; k < 3; k++) {
		vio_w32(d, VIO_QUEUE_DESC + 0x10 * (u32)k, (u32)a[k]);
		vio_w32(d, VIO_QUEUE_DESC + 0x10 * (u32)k + 4, (u32)(a[k] >> 32));
	}
	vio_w32(d, VIO_QUEUE_READY, 1);
	return 0;
}

int vio_init(struct vdev *d, u64 want, int nq, u32 qmax, const char *tag)
{
	if (d->version != 2) {
		print("%s: legacy virtio-mmio version %u not supported\n", tag, d->version);
		return -1;
	}
	vio_reset(d);
	vio_w32(d, VIO_STATUS, VS_ACK);
	vio_w32(d, VIO_STATUS, VS_ACK | VS_DRIVER);
	u64 dev = 0;
	for (u32 sel = 0; sel < 2; sel++) {
		vio_w32(d, VIO_DEV_FEATURES_SEL, sel);
		dev |= (u64)vio_r32(d, VIO_DEV_FEATURES) << (32 * sel);
	}
	want |= 1ULL << VF_VERSION_1;
	if (vio_want_indirect)
		want |= 1ULL << VF_INDIRECT;
	if (vio_want_event_idx)
		want |= 1ULL << VF_EVENT_IDX;
	if (!(dev & (1ULL << VF_VERSION_1))) {
		print("%s: device does not offer VERSION_1\n", tag);
		return -1;
	}
	d->features = dev & want;
	for (u32 sel = 0; sel < 2; sel++) {
		vio_w32(d, VIO_DRV_FEATURES_SEL, sel);
		vio_w32(d, VIO_DRV_FEATURES, (u32)(d->features >> (32 * sel)));
	}
	vio_w32(d, VIO_STATUS, VS_ACK | VS_DRIVER | VS_FEATURES_OK);
	if (!(vio_r32(d, VIO_STATUS) & VS_FEATURES_OK)) {
		print("%s: FEATURES_OK refused\n", tag);
		return -1;
	}
	d->nq = nq;
	for (int i = 0; i < nq; i++)
		if (setup_queue(d, i, qmax))
			return -1;
	vio_w32(d, VIO_STATUS, VS_ACK | VS_DRIVER | VS_FEATURES_OK | VS_DRIVER_OK);
	u32 st = vio_r32(d, VIO_STATUS);
	if (st & (VS_NEEDS_RESET | VS_FAILED)) {
		print("%s: device status 0x%x after DRIVER_OK\n", tag, st);
		return -1;
	}
	d->up = 1;
	return 0;
}

void vq_push(struct vq *q, u16 head)
{
	q->avail[2 + (q->avail_idx % q->num)] = head;
	barrier();
	q->avail_idx++;
	q->avail[1] = q->avail_idx;
}

void vq_kick_force(struct vdev *d, struct vq *q)
{
	mb();
	q->kicked_idx = q->avail_idx;
	vio_w32(d, VIO_QUEUE_NOTIFY, q->index);
}

void vq_kick(struct vdev *d, struct vq *q)
{
	mb();
	u16 old = q->kicked_idx, new = q->avail_idx;
	int need;
	if (q->event_idx) {
		u16 ev = q->used[2 + 4 * q->num]; /* avail_event after the ring */
		need = (u16)(new - ev - 1) < (u16)(new - old);
	} else {
		need = !(q->used[0] & 1);
	}
	q->kicked_idx = new;
	if (need)
		vio_w32(d, VIO_QUEUE_NOTIFY, q->index);
}

int vq_pop(struct vq *q, u32 *len)
{
	if (q->used[1] == q->last_used)
		return -1;
	barrier();
	volatile u32 *e = (volatile u32 *)(q->used + 2) + 2 * (q->last_used % q->num);
	u32 id = e[0];
	if (len)
		*len = e[1];
	q->last_used++;
	if (q->event_idx)
		q->avail[2 + q->num] = q->last_used; /* used_event */
	return (int)id;
}

int vq_wait(struct vq *q, u32 *len, u64 timeout_ms)
{
	u64 start = rdtsc(), lim = timeout_ms * tsc_per_ms();
	for (;;) {
		int id = vq_pop(q, len);
		if (id >= 0)
			return id;
		if (rdtsc() - start > lim)
			return -1;
		cpu_relax();
	}
}
