/* Ember test guest: virtio-blk driver and its test modes (README.md).
 * Sector pattern: every 512-byte sector s of a pattern with seed S holds 32
 * times the 16 bytes {u64 s, u64 S} (little endian). */
#include "virtio.h"

struct blk blks[VIO_MAX_DEVS];
int n_blks;

#define SLOTS 64
#define CHUNK (1u << 20)

static void blk_slot_init(struct blk *b)
{
	if (!b->hdr) {
		b->hdr = dma_alloc(SLOTS * 32);
		b->ind = dma_alloc(SLOTS * 3 * 16);
	}
}

void blk_submit(struct blk *b, int slot, u32 type, u64 sector, void *buf, u32 len)
{
	struct vq *q = &b->d->q[0];
	volatile u8 *h = b->hdr + slot * 32;
	*(volatile u32 *)h = type;
	*(volatile u32 *)(h + 4) = 0;
	*(volatile u64 *)(h + 8) = sector;
	h[16] = 0xff; /* status: 0xff until the device writes it */
	struct vdesc c[3];
	int n = 0;
	c[n++] = (struct vdesc){(u64)(uintptr_t)h, 16, VD_NEXT, 0};
	if (len)
		c[n++] = (struct vdesc){(u64)(uintptr_t)buf, len,
					(u16)(VD_NEXT | (type == VBLK_T_OUT ? 0 : VD_WRITE)), 0};
	c[n++] = (struct vdesc){(u64)(uintptr_t)(h + 16), 1, VD_WRITE, 0};
	u16 head = (u16)(slot * 3);
	if (b->d->features & (1ULL << VF_INDIRECT)) {
		struct vdesc *t = (struct vdesc *)(b->ind + slot * 48);
		for (int i = 0; i < n; i++) {
			t[i] = c[i];
			t[i].next = (u16)(i + 1);
		}
		t[n - 1].flags &= (u16)~VD_NEXT;
		q->desc[head] = (struct vdesc){(u64)(uintptr_t)t, (u32)(16 * n), VD_INDIRECT, 0};
	} else {
		for (int i = 0; i < n; i++) {
			q->desc[head + i] = c[i];
			q->desc[head + i].next = (u16)(head + i + 1);
		}
		q->desc[head + n - 1].flags &= (u16)~VD_NEXT;
	}
	vq_push(q, head);
}

u8 blk_status(struct blk *b, int slot)
{
	return b->hdr[slot * 32 + 16];
}

/* One synchronous request: the status byte, or -1 on timeout / wrong id. */
int blk_io(struct blk *b, u32 type, u64 sector, void *buf, u32 len)
{
	blk_submit(b, 0, type, sector, buf, len);
	vq_kick(b->d, &b->d->q[0]);
	u32 ulen;
	int id = vq_wait(&b->d->q[0], &ulen, 10000);
	if (id != 0)
		return -1;
	return blk_status(b, 0);
}

void pattern_fill(void *buf, u64 sector, u64 nsec, u64 seed)
{
	u64 *w = buf;
	for (u64 s = 0; s < nsec; s++)
		for (int k = 0; k < 64; k += 2) {
			*w++ = sector + s;
			*w++ = seed;
		}
}

/* 0 if the pattern matches, else prints the first difference and returns 1. */
static int pattern_check(const char *tag, const void *buf, u64 sector, u64 nsec, u64 seed)
{
	const u64 *w = buf;
	for (u64 s = 0; s < nsec; s++)
		for (int k = 0; k < 64; k++) {
			u64 want = (k & 1) ? seed : sector + s;
			u64 got = w[s * 64 + (u64)k];
			if (got != want) {
				print("%s: read-check FAIL sector=%lu word=%d got=0x%lx want=0x%lx\n", tag,
				      sector + s, k, got, want);
				return 1;
			}
		}
	return 0;
}

static u8 *chunk_buf(void)
{
	static u8 *buf;
	if (!buf)
		buf = dma_alloc(CHUNK);
	return buf;
}

int blk_read_check(struct blk *b, u64 seed)
{
	u8 *buf = chunk_buf();
	for (u64 s = 0; s < b->capacity;) {
		u64 n = b->capacity - s;
		if (n > CHUNK / 512)
			n = CHUNK / 512;
		int st = blk_io(b, VBLK_T_IN, s, buf, (u32)(n * 512));
		if (st != 0) {
			print("%s: read-check error sector=%lu status=%d\n", b->tag, s, st);
			return -1;
		}
		if (pattern_check(b->tag, buf, s, n, seed))
			return -1;
		s += n;
	}
	print("%s: read-check ok sectors=%lu\n", b->tag, b->capacity);
	return 0;
}

static int blk_probe(struct blk *b, struct vdev *d, int i)
{
	b->d = d;
	b->idx = i;
	b->tag[0] = 'b', b->tag[1] = 'l', b->tag[2] = 'k', b->tag[3] = (char)('0' + i), b->tag[4] = 0;
	u64 want = (1ULL << VBLK_F_RO) | (1ULL << VBLK_F_FLUSH) | (1ULL << VBLK_F_BLK_SIZE) |
		   (1ULL << VBLK_F_SEG_MAX);
	if (vio_init(d, want, 1, 256, b->tag))
		return -1;
	blk_slot_init(b);
	u32 gen;
	do {
		gen = vio_r32(d, VIO_CONFIG_GEN);
		b->capacity = vio_r32(d, VIO_CONFIG) | (u64)vio_r32(d, VIO_CONFIG + 4) << 32;
	} while (gen != vio_r32(d, VIO_CONFIG_GEN));
	b->ro = (d->features >> VBLK_F_RO) & 1;
	b->flush = (d->features >> VBLK_F_FLUSH) & 1;
	static u8 *idbuf;
	if (!idbuf)
		idbuf = dma_alloc(4096);
	memset(idbuf, 0, 32);
	int st = blk_io(b, VBLK_T_GET_ID, 0, idbuf, 20);
	for (int k = 0; k < 20; k++)
		b->id[k] = (idbuf[k] >= 0x20 && idbuf[k] < 0x7f) ? (char)idbuf[k] : 0;
	b->id[20] = 0;
	if (st != 0)
		b->id[0] = 0;
	return st;
}

void vblk_probe_all(void)
{
	for (int i = 0; i < n_vdevs; i++)
		if (vdevs[i].device_id != 0 || vdevs[i].version != 0)
			print("virtio: dev=%d base=0x%lx irq=%u version=%u id=%u\n", i, vdevs[i].base,
			      vdevs[i].irq, vdevs[i].version, vdevs[i].device_id);
	struct vdev *d;
	while (n_blks < VIO_MAX_DEVS && (d = vio_find(VIRTIO_ID_BLK, n_blks))) {
		struct blk *b = &blks[n_blks];
		int st = blk_probe(b, d, n_blks);
		n_blks++;
		if (!d->up)
			continue;
		print("%s: capacity=%lu ro=%d flush=%d id=%s get-id-status=%d features=0x%lx\n", b->tag,
		      b->capacity, b->ro, b->flush, b->id[0] ? b->id : "-", st, d->features);
	}
}

struct blk *blk_get(u64 i)
{
	if (i >= (u64)n_blks || !blks[i].d->up) {
		print("blk%lu: no such drive\n", i);
		return NULL;
	}
	return &blks[i];
}

static void blk_write_pattern(struct blk *b, u64 seed, u64 mib)
{
	u8 *buf = chunk_buf();
	u64 total = mib << 11; /* sectors */
	if (total > b->capacity)
		total = b->capacity;
	for (u64 s = 0; s < total;) {
		u64 n = total - s;
		if (n > CHUNK / 512)
			n = CHUNK / 512;
		pattern_fill(buf, s, n, seed);
		int st = blk_io(b, VBLK_T_OUT, s, buf, (u32)(n * 512));
		if (st != 0) {
			print("%s: write error sector=%lu status=%d\n", b->tag, s, st);
			return;
		}
		s += n;
	}
	int st = blk_io(b, VBLK_T_FLUSH, 0, NULL, 0);
	print("%s: write ok sectors=%lu flush-status=%d\n", b->tag, total, st);
}

static void blk_durable(struct blk *b, u64 seed)
{
	static u8 *rec;
	if (!rec)
		rec = dma_alloc(4096);
	u64 max = b->capacity < 10000 ? b->capacity : 10000;
	for (u64 k = 0; k < max; k++) {
		pattern_fill(rec, k, 1, seed);
		int st = blk_io(b, VBLK_T_OUT, k, rec, 512);
		int fs = blk_io(b, VBLK_T_FLUSH, 0, NULL, 0);
		if (st != 0 || fs != 0) {
			print("%s: durable error record=%lu write=%d flush=%d\n", b->tag, k, st, fs);
			return;
		}
		print("durable: %lu\n", k);
	}
}

static u64 lcg(u64 *x)
{
	*x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
	return *x >> 33;
}

/* kind: 0 randread 1 randwrite 2 seqread 3 seqwrite */
static void blk_bench(struct blk *b, int kind, u64 qd, u64 n)
{
	static const char *names[] = {"randread", "randwrite", "seqread", "seqwrite"};
	static u8 *bufs;
	u32 bs = kind >= 2 ? CHUNK : 4096;
	if (qd < 1)
		qd = 1;
	if (kind >= 2)
		qd = 1;
	if (qd > SLOTS || qd * 3 > b->d->q[0].num)
		qd = b->d->q[0].num / 3 < SLOTS ? b->d->q[0].num / 3 : SLOTS;
	if (!bufs)
		bufs = dma_alloc(SLOTS * 4096);
	u64 units = b->capacity / (bs / 512);
	if (!units) {
		print("%s: bench: drive too small\n", b->tag);
		return;
	}
	u32 type = (kind & 1) ? VBLK_T_OUT : VBLK_T_IN;
	u64 x = 12345, next = 0, submitted = 0, done = 0, errors = 0;
	print("bench-start: blk %s qd=%lu n=%lu bs=%u\n", names[kind], qd, n, bs);
	struct vq *q = &b->d->q[0];
	for (; submitted < n && submitted < qd; submitted++) {
		u64 unit = kind >= 2 ? next++ % units : lcg(&x) % units;
		void *buf = kind >= 2 ? chunk_buf() : bufs + submitted * 4096;
		blk_submit(b, (int)submitted, type, unit * (bs / 512), buf, bs);
	}
	vq_kick(b->d, q);
	while (done < n) {
		int got = 0, id;
		u64 start = rdtsc();
		while ((id = vq_pop(q, NULL)) < 0) {
			if (rdtsc() - start > 10000 * tsc_per_ms()) {
				print("%s: bench timeout done=%lu\n", b->tag, done);
				return;
			}
			cpu_relax();
		}
		do {
			int slot = id / 3;
			if (blk_status(b, slot) != 0)
				errors++;
			done++;
			if (submitted < n) {
				u64 unit = kind >= 2 ? next++ % units : lcg(&x) % units;
				void *buf = kind >= 2 ? chunk_buf() : bufs + (u64)slot * 4096;
				blk_submit(b, slot, type, unit * (bs / 512), buf, bs);
				submitted++;
				got++;
			}
		} while ((id = vq_pop(q, NULL)) >= 0);
		if (got)
			vq_kick(b->d, q);
	}
	print("bench-end: blk %s ops=%lu bytes=%lu errors=%lu\n", names[kind], done, done * bs, errors);
}

/* Read the capacity from config space (generation-consistent); returns the generation. */
static u32 blk_read_capacity(struct blk *b)
{
	u32 gen;
	do {
		gen = vio_r32(b->d, VIO_CONFIG_GEN);
		b->capacity = vio_r32(b->d, VIO_CONFIG) | (u64)vio_r32(b->d, VIO_CONFIG + 4) << 32;
	} while (gen != vio_r32(b->d, VIO_CONFIG_GEN));
	return gen;
}

/* blk-watch: read all of the drive, taking the seed from sector 0, and check
 * the pattern. Prints nothing if the config generation moved meanwhile (the
 * watch loop then handles the change and reads again). */
static void blk_watch_read(struct blk *b, u32 gen, u64 k)
{
	u8 *buf = chunk_buf();
	if (!b->capacity) {
		print("%s: watch-read ok seed=0x0 sectors=0 k=%lu\n", b->tag, k);
		return;
	}
	u64 seed = 0;
	for (u64 s = 0; s < b->capacity;) {
		u64 n = b->capacity - s;
		if (n > CHUNK / 512)
			n = CHUNK / 512;
		int st = blk_io(b, VBLK_T_IN, s, buf, (u32)(n * 512));
		if (vio_r32(b->d, VIO_CONFIG_GEN) != gen)
			return;
		if (st != 0) {
			print("%s: watch-read error sector=%lu status=%d k=%lu\n", b->tag, s, st, k);
			return;
		}
		if (s == 0)
			seed = ((u64 *)buf)[1];
		if (pattern_check(b->tag, buf, s, n, seed))
			return;
		s += n;
	}
	print("%s: watch-read ok seed=0x%lx sectors=%lu k=%lu\n", b->tag, seed, b->capacity, k);
}

/* blk-watch=D,SEED,TIMEOUT_MS[,CHANGES]: read-check with SEED, then poll
 * ConfigGeneration and InterruptStatus bit 1 (config change). On a change:
 * ack, re-read the capacity, print it and read the drive again (seed taken
 * from sector 0). Between changes the drive is re-read every ~200 ms. Ends
 * after CHANGES changes (default 1) or TIMEOUT_MS. */
static void blk_watch(struct blk *b, u64 seed, u64 timeout_ms, u64 want)
{
	struct vdev *d = b->d;
	if (!want)
		want = 1;
	blk_read_check(b, seed);
	u32 gen = blk_read_capacity(b);
	print("%s: watch gen=%u capacity=%lu\n", b->tag, gen, b->capacity);
	u64 tpm = tsc_per_ms(), start = rdtsc(), last = rdtsc(), changes = 0, k = 0;
	while (changes < want) {
		u64 now = rdtsc();
		if (now - start > timeout_ms * tpm) {
			print("%s: watch timeout changes=%lu\n", b->tag, changes);
			return;
		}
		/* Generation first: the device bumps it and sets the ISR bit
		 * together, so a new generation read here implies the bit. */
		u32 g = vio_r32(d, VIO_CONFIG_GEN);
		u32 isr = vio_r32(d, VIO_INT_STATUS);
		if (g != gen || (isr & 2)) {
			if (isr & 2)
				vio_w32(d, VIO_INT_ACK, 2);
			gen = blk_read_capacity(b);
			changes++;
			print("%s: config-change gen=%u isr=0x%x capacity=%lu\n", b->tag, gen, isr,
			      b->capacity);
			blk_watch_read(b, gen, k++);
			last = rdtsc();
			continue;
		}
		if (now - last > 200 * tpm) {
			blk_watch_read(b, gen, k++);
			last = rdtsc();
		}
		cpu_relax();
	}
	print("%s: watch end changes=%lu\n", b->tag, changes);
}

/* Comma-separated numbers after a token's '='. */
int tok_args(const char *s, u64 *a, int max)
{
	int n = 0;
	while (n < max && *s && *s != ' ') {
		a[n++] = parse_num(&s);
		if (*s != ',')
			break;
		s++;
	}
	return n;
}

void vblk_run(const char *s)
{
	while (s && *s) {
		while (*s == ' ')
			s++;
		u64 a[4] = {0, 0, 0, 0};
		int n;
		struct blk *b;
		if ((n = strncmp_prefix(s, "blk-read="))) {
			tok_args(s + n, a, 2);
			if ((b = blk_get(a[0])))
				blk_read_check(b, a[1]);
		} else if ((n = strncmp_prefix(s, "blk-write="))) {
			tok_args(s + n, a, 3);
			if ((b = blk_get(a[0])))
				blk_write_pattern(b, a[1], a[2]);
		} else if ((n = strncmp_prefix(s, "blk-rowrite="))) {
			tok_args(s + n, a, 1);
			if ((b = blk_get(a[0]))) {
				u8 *buf = chunk_buf();
				memset(buf, 0xee, 4096);
				int st = blk_io(b, VBLK_T_OUT, 0, buf, 4096);
				int fs = b->flush ? blk_io(b, VBLK_T_FLUSH, 0, NULL, 0) : -2;
				print("%s: ro-write status=%d flush-status=%d\n", b->tag, st, fs);
			}
		} else if ((n = strncmp_prefix(s, "blk-watch="))) {
			/* blk-watch=DRIVE,SEED,TIMEOUT_MS[,CHANGES] */
			tok_args(s + n, a, 4);
			if ((b = blk_get(a[0])))
				blk_watch(b, a[1], a[2] ? a[2] : 30000, a[3]);
		} else if ((n = strncmp_prefix(s, "blk-durable="))) {
			tok_args(s + n, a, 2);
			if ((b = blk_get(a[0])))
				blk_durable(b, a[1]);
		} else if ((n = strncmp_prefix(s, "blk-bench="))) {
			/* blk-bench=DRIVE,KIND,QD,N  KIND: 0 randread 1 randwrite 2 seqread 3 seqwrite */
			tok_args(s + n, a, 4);
			if ((b = blk_get(a[0])))
				blk_bench(b, (int)(a[1] & 3), a[2], a[3]);
		}
		while (*s && *s != ' ')
			s++;
	}
}
