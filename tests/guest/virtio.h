/* Ember test guest: a polling virtio-mmio (version 2) driver core.
 * Devices come from `virtio_mmio.device=<size>@<addr>:<irq>` command-line
 * entries (as Linux finds them); split virtqueues live in guest RAM taken from
 * a bump allocator; no interrupts: the driver polls the used rings. */
#ifndef EMBER_TEST_GUEST_VIRTIO_H
#define EMBER_TEST_GUEST_VIRTIO_H

#include "guest.h"

#define VIO_MAGIC 0x000
#define VIO_VERSION 0x004
#define VIO_DEVICE_ID 0x008
#define VIO_DEV_FEATURES 0x010
#define VIO_DEV_FEATURES_SEL 0x014
#define VIO_DRV_FEATURES 0x020
#define VIO_DRV_FEATURES_SEL 0x024
#define VIO_QUEUE_SEL 0x030
#define VIO_QUEUE_NUM_MAX 0x034
#define VIO_QUEUE_NUM 0x038
#define VIO_QUEUE_READY 0x044
#define VIO_QUEUE_NOTIFY 0x050
#define VIO_INT_STATUS 0x060
#define VIO_INT_ACK 0x064
#define VIO_STATUS 0x070
#define VIO_QUEUE_DESC 0x080
#define VIO_QUEUE_AVAIL 0x090
#define VIO_QUEUE_USED 0x0a0
#define VIO_CONFIG_GEN 0x0fc
#define VIO_CONFIG 0x100

#define VS_ACK 1
#define VS_DRIVER 2
#define VS_DRIVER_OK 4
#define VS_FEATURES_OK 8
#define VS_NEEDS_RESET 64
#define VS_FAILED 128

#define VF_INDIRECT 28
#define VF_EVENT_IDX 29
#define VF_VERSION_1 32

#define VD_NEXT 1
#define VD_WRITE 2
#define VD_INDIRECT 4

#define VIO_MAX_DEVS 8
#define VQ_MAX 256

struct vdesc {
	u64 addr;
	u32 len;
	u16 flags, next;
};

struct vq {
	u16 num, index;
	struct vdesc *desc;
	volatile u16 *avail; /* flags, idx, ring[num], used_event */
	volatile u16 *used;  /* flags, idx, {u32 id, u32 len}[num], avail_event */
	u16 avail_idx;       /* next avail idx to publish */
	u16 last_used;       /* next used entry to consume */
	u16 kicked_idx;      /* avail idx at the last notify decision */
	int event_idx;
};

struct vdev {
	u64 base;
	u32 irq, device_id, version;
	u64 features; /* negotiated */
	struct vq q[2];
	int nq;
	int up; /* DRIVER_OK done */
};

extern struct vdev vdevs[VIO_MAX_DEVS];
extern int n_vdevs;
extern u64 ram_top; /* end of the highest RAM range (from e820) */
/* Never guest RAM: 1 MiB past the end of RAM below the MMIO gap, or 1 GiB
 * past the top of RAM (the hostile modes' bad addresses). */
static inline u64 vio_addr_past_ram(void)
{
	return ram_top < 0xc0000000ULL ? ram_top + 0x100000 : ram_top + GiB;
}

/* Wanted optional features (options). */
extern int vio_want_indirect, vio_want_event_idx;

static inline u32 vio_r32(const struct vdev *d, u32 off) { return *(volatile u32 *)(uintptr_t)(d->base + off); }
static inline void vio_w32(const struct vdev *d, u32 off, u32 v) { *(volatile u32 *)(uintptr_t)(d->base + off) = v; }
static inline u8 vio_r8(const struct vdev *d, u32 off) { return *(volatile u8 *)(uintptr_t)(d->base + off); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline void mb(void) { __asm__ volatile("mfence" ::: "memory"); }

/* Page-aligned zeroed guest memory (identity: address == physical). */
void *dma_alloc(u64 size);
u64 parse_num(const char **s); /* 0x.. or decimal, optional K/M/G suffix */
void vio_scan_cmdline(const char *cmdline);
/* Reset, negotiate (device-specific `want` | VERSION_1 | options), set up
 * nq queues of at most qmax entries, DRIVER_OK. 0 or -1 (printed). */
int vio_init(struct vdev *d, u64 want, int nq, u32 qmax, const char *tag);
void vio_reset(struct vdev *d);
/* Put a chain head on the avail ring (no notify). */
void vq_push(struct vq *q, u16 head);
/* Notify if the device wants it (EVENT_IDX / NO_NOTIFY aware). */
void vq_kick(struct vdev *d, struct vq *q);
void vq_kick_force(struct vdev *d, struct vq *q);
/* A used element, or -1 if none yet. */
int vq_pop(struct vq *q, u32 *len);
/* Poll until an element is used; -1 on timeout (ms). */
int vq_wait(struct vq *q, u32 *len, u64 timeout_ms);
u64 tsc_per_ms(void);
void delay_ms(u64 ms);

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLK 2
#define VBLK_F_SEG_MAX 2
#define VBLK_F_RO 5
#define VBLK_F_BLK_SIZE 6
#define VBLK_F_FLUSH 9
#define VBLK_T_IN 0
#define VBLK_T_OUT 1
#define VBLK_T_FLUSH 4
#define VBLK_T_GET_ID 8

struct blk {
	struct vdev *d;
	int idx, ro, flush;
	u64 capacity; /* sectors */
	char tag[8];  /* "blk0" */
	char id[21];
	u8 *hdr;      /* per slot: 16-byte header, status byte at +16 */
	u8 *ind;      /* per slot: 3-entry indirect table */
};
extern struct blk blks[VIO_MAX_DEVS];
extern int n_blks;
struct blk *blk_get(u64 i);
/* Request slot s uses descriptors 3s..3s+2 (or one indirect descriptor at 3s). */
void blk_submit(struct blk *b, int slot, u32 type, u64 sector, void *buf, u32 len);
u8 blk_status(struct blk *b, int slot);
int blk_io(struct blk *b, u32 type, u64 sector, void *buf, u32 len);
int blk_read_check(struct blk *b, u64 seed);
void pattern_fill(void *buf, u64 sector, u64 nsec, u64 seed);
int tok_args(const char *s, u64 *a, int max);

/* vblk.c / vnet.c: run from main.c after the report. */
void vblk_probe_all(void);
void vblk_run(const char *cmdline);
void vnet_run(const char *cmdline);
void hostile_run(const char *cmdline);
/* Find the n-th device of a type (0-based), or NULL. */
struct vdev *vio_find(u32 device_id, int n);

#endif
