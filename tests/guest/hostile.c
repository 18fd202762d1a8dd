/* Ember test guest: hostile modes (`hostile=CASE,SEED`, README.md).
 * Each does one bad thing on blk0, prints what the device answered, then
 * proves blk1 (if present) still works and blk0 works again after a reset.
 * Both drives are expected to hold the sector pattern with SEED. */
#include "virtio.h"

static const char *cases[] = {"loop", "longchain", "pastram", "overflow", "nested",
			      "zerolen", "ringsout", "storm", "availjump", NULL};

static int match(const char *s, const char *w)
{
	int n = strncmp_prefix(s, w);
	return n && (s[n] == ',' || s[n] == ' ' || !s[n]) ? n : 0;
}

static u64 storm_count = 1000000;

static void run_case(int c, struct blk *b)
{
	struct vdev *d = b->d;
	struct vq *q = &d->q[0];
	u8 *hdr = b->hdr;
	static u8 *data, *tab, *tab2;
	if (!data) {
		data = dma_alloc(1 << 20);
		tab = dma_alloc(16 * 1024);
		tab2 = dma_alloc(4096);
	}
	*(volatile u32 *)hdr = VBLK_T_IN;
	*(volatile u32 *)(hdr + 4) = 0;
	*(volatile u64 *)(hdr + 8) = 0;
	hdr[16] = 0xff;
	u64 H = (u64)(uintptr_t)hdr, S = H + 16, D = (u64)(uintptr_t)data;
	struct vdesc *t = (struct vdesc *)tab, *t2 = (struct vdesc *)tab2;
	int expect_ok = 0, pushed = 1;
	switch (c) {
	case 0: /* loop: 0 -> 1 -> 2 -> 0 */
		q->desc[0] = (struct vdesc){H, 16, VD_NEXT, 1};
		q->desc[1] = (struct vdesc){D, 512, VD_NEXT | VD_WRITE, 2};
		q->desc[2] = (struct vdesc){S, 1, VD_NEXT | VD_WRITE, 0};
		break;
	case 1: { /* indirect table with queue size + 1 entries */
		u32 n = (u32)q->num + 1;
		t[0] = (struct vdesc){H, 16, VD_NEXT, 1};
		for (u32 i = 1; i + 1 < n; i++)
			t[i] = (struct vdesc){D + (i - 1) * 512, 512, VD_NEXT | VD_WRITE, (u16)(i + 1)};
		t[n - 1] = (struct vdesc){S, 1, VD_WRITE, 0};
		q->desc[0] = (struct vdesc){(u64)(uintptr_t)t, 16 * n, VD_INDIRECT, 0};
		break;
	}
	case 2: /* data buffer past the end of RAM */
		q->desc[0] = (struct vdesc){H, 16, VD_NEXT, 1};
		q->desc[1] = (struct vdesc){vio_addr_past_ram(), 4096, VD_NEXT | VD_WRITE, 2};
		q->desc[2] = (struct vdesc){S, 1, VD_WRITE, 0};
		break;
	case 3: /* addr + len wraps around 2^64 */
		q->desc[0] = (struct vdesc){H, 16, VD_NEXT, 1};
		q->desc[1] = (struct vdesc){0xfffffffffffff000ULL, 0x2000, VD_NEXT | VD_WRITE, 2};
		q->desc[2] = (struct vdesc){S, 1, VD_WRITE, 0};
		break;
	case 4: /* an indirect table that points to another indirect table */
		t2[0] = (struct vdesc){D, 512, VD_NEXT | VD_WRITE, 1};
		t2[1] = (struct vdesc){S, 1, VD_WRITE, 0};
		t[0] = (struct vdesc){H, 16, VD_NEXT, 1};
		t[1] = (struct vdesc){(u64)(uintptr_t)t2, 32, VD_INDIRECT, 0};
		q->desc[0] = (struct vdesc){(u64)(uintptr_t)t, 32, VD_INDIRECT, 0};
		break;
	case 5: /* zero-length data and status buffers */
		q->desc[0] = (struct vdesc){H, 16, VD_NEXT, 1};
		q->desc[1] = (struct vdesc){D, 0, VD_NEXT | VD_WRITE, 2};
		q->desc[2] = (struct vdesc){S, 0, VD_WRITE, 0};
		break;
	case 6: { /* rings outside RAM: set up queue 0 by hand, then DRIVER_OK */
		vio_reset(d);
		vio_w32(d, VIO_STATUS, VS_ACK | VS_DRIVER);
		vio_w32(d, VIO_DRV_FEATURES_SEL, 1);
		vio_w32(d, VIO_DRV_FEATURES, 1); /* VERSION_1 */
		vio_w32(d, VIO_DRV_FEATURES_SEL, 0);
		vio_w32(d, VIO_DRV_FEATURES, 0);
		vio_w32(d, VIO_STATUS, VS_ACK | VS_DRIVER | VS_FEATURES_OK);
		vio_w32(d, VIO_QUEUE_SEL, 0);
		vio_w32(d, VIO_QUEUE_NUM, q->num);
		u64 bad = vio_addr_past_ram();
		for (u32 k = 0; k < 3; k++) {
			vio_w32(d, VIO_QUEUE_DESC + 0x10 * k, (u32)(bad + k * 0x10000));
			vio_w32(d, VIO_QUEUE_DESC + 0x10 * k + 4, (u32)((bad + k * 0x10000) >> 32));
		}
		vio_w32(d, VIO_QUEUE_READY, 1);
		vio_w32(d, VIO_STATUS, VS_ACK | VS_DRIVER | VS_FEATURES_OK | VS_DRIVER_OK);
		vio_w32(d, VIO_QUEUE_NOTIFY, 0);
		pushed = 0;
		break;
	}
	case 7: /* a valid read, then a storm of notifications */
		expect_ok = 1;
		q->desc[0] = (struct vdesc){H, 16, VD_NEXT, 1};
		q->desc[1] = (struct vdesc){D, 512, VD_NEXT | VD_WRITE, 2};
		q->desc[2] = (struct vdesc){S, 1, VD_WRITE, 0};
		break;
	case 8: /* avail idx far ahead of what the ring can hold */
		pushed = 0;
		q->avail_idx = (u16)(q->avail_idx + 1000);
		q->avail[1] = q->avail_idx;
		vq_kick_force(d, q);
		break;
	}
	if (pushed) {
		vq_push(q, 0);
		vq_kick_force(d, q);
	}
	if (c == 7) {
		u64 t0 = rdtsc();
		for (u64 i = 0; i < storm_count; i++)
			vio_w32(d, VIO_QUEUE_NOTIFY, 0);
		print("hostile: storm notifies=%lu ms=%lu\n", storm_count, (rdtsc() - t0) / tsc_per_ms());
	}
	u32 len = 0;
	int id = pushed ? vq_wait(q, &len, 2000) : (delay_ms(500), -1);
	u32 st = vio_r32(d, VIO_STATUS);
	u8 status = hdr[16];
	print("hostile: case=%s completed=%d used-len=%u status=%u device-status=0x%x needs-reset=%d\n",
	      cases[c], id >= 0, id >= 0 ? len : 0, status, st, (st & VS_NEEDS_RESET) ? 1 : 0);
	int ok = id >= 0 && status == 0 && !(st & (VS_NEEDS_RESET | VS_FAILED));
	if (expect_ok)
		print("hostile: good-request %s\n", ok ? "ok" : "FAILED");
	else
		print("hostile: bad-request %s\n", ok ? "SUCCEEDED" : "failed");
}

void hostile_run(const char *s)
{
	while (s && *s) {
		while (*s == ' ')
			s++;
		int n = strncmp_prefix(s, "hostile=");
		if (n) {
			const char *v = s + n;
			int c, k = 0;
			for (c = 0; cases[c]; c++)
				if ((k = match(v, cases[c])))
					break;
			u64 seed = 0;
			if (cases[c] && v[k] == ',') {
				const char *p = v + k + 1;
				seed = parse_num(&p);
				if (*p == ',') {
					p++;
					storm_count = parse_num(&p);
				}
			}
			struct blk *b = cases[c] ? blk_get(0) : NULL;
			if (!cases[c])
				print("hostile: unknown case\n");
			if (b) {
				/* Indirect descriptors on, for the table cases. */
				vio_want_indirect = 1;
				if (vio_init(b->d, (1ULL << VBLK_F_RO) | (1ULL << VBLK_F_FLUSH), 1, 256, b->tag) == 0) {
					run_case(c, b);
					struct blk *other = n_blks > 1 ? blk_get(1) : NULL;
					if (other)
						print("hostile: other-device %s\n",
						      blk_read_check(other, seed) == 0 ? "ok" : "FAILED");
					int r = vio_init(b->d, (1ULL << VBLK_F_RO) | (1ULL << VBLK_F_FLUSH), 1, 256, b->tag);
					print("hostile: same-device-after-reset %s\n",
					      r == 0 && blk_read_check(b, seed) == 0 ? "ok" : "FAILED");
				}
			}
		}
		while (*s && *s != ' ')
			s++;
	}
}
