/* mptable.c - Intel MultiProcessor Specification 1.4 tables at LAYOUT_EBDA:
 * floating pointer, then the configuration table (one processor per vCPU,
 * the ISA bus, one IOAPIC, ISA interrupt routing, LINT0/LINT1), so a guest
 * without ACPI finds its CPUs and IOAPIC. Also points the BDA at the EBDA. */
#include "boot.h"
#include "layout.h"

#include "../vmm/base/err.h"

#include <errno.h>
#include <string.h>

#define MP_EBDA_END 0xa0000ULL
#define MP_BDA_EBDA_SEG 0x40eULL   /* BDA word: EBDA segment */
#define MP_BDA_BASE_MEM_K 0x413ULL /* BDA word: conventional memory in KiB */

#define MP_SPEC_REV 4
#define MP_APIC_VERSION 0x14
#define MP_IOAPIC_VERSION 0x11
#define MP_IOAPIC_PINS 24 /* KVM's in-kernel IOAPIC */
#define MP_CPU_SIGNATURE 0x600
#define MP_CPU_FEATURES 0x201 /* FPU | APIC */

enum { MP_PROCESSOR = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3, MP_LINTSRC = 4 };
enum { MP_IRQ_INT = 0, MP_IRQ_NMI = 1, MP_IRQ_EXTINT = 3 };
#define MP_CPU_ENABLED 1
#define MP_CPU_BSP 2
#define MP_IOAPIC_ENABLED 1
#define MP_BUS_ISA_ID 0

struct mpf_intel {
    char signature[4]; /* "_MP_" */
    uint32_t physptr;
    uint8_t length; /* in 16-byte units */
    uint8_t specification;
    uint8_t checksum;
    uint8_t feature[5];
} __attribute__((packed));

struct mpc_table {
    char signature[4]; /* "PCMP" */
    uint16_t length;
    uint8_t spec;
    uint8_t checksum;
    char oem[8];
    char productid[12];
    uint32_t oemptr;
    uint16_t oemsize;
    uint16_t oemcount; /* entry count */
    uint32_t lapic;
    uint16_t ext_length;
    uint8_t ext_checksum;
    uint8_t reserved;
} __attribute__((packed));

struct mpc_cpu {
    uint8_t type;
    uint8_t apicid;
    uint8_t apicver;
    uint8_t cpuflag;
    uint32_t cpufeature;
    uint32_t featureflag;
    uint32_t reserved[2];
} __attribute__((packed));

struct mpc_bus {
    uint8_t type;
    uint8_t busid;
    char bustype[6];
} __attribute__((packed));

struct mpc_ioapic {
    uint8_t type;
    uint8_t apicid;
    uint8_t apicver;
    uint8_t flags;
    uint32_t apicaddr;
} __attribute__((packed));

struct mpc_intsrc {
    uint8_t type;
    uint8_t irqtype;
    uint16_t irqflag;
    uint8_t srcbus;
    uint8_t srcbusirq;
    uint8_t dstapic;
    uint8_t dstirq;
} __attribute__((packed));

_Static_assert(sizeof(struct mpf_intel) == 16, "mpf_intel");
_Static_assert(sizeof(struct mpc_table) == 44, "mpc_table");
_Static_assert(sizeof(struct mpc_cpu) == 20, "mpc_cpu");
_Static_assert(sizeof(struct mpc_bus) == 8, "mpc_bus");
_Static_assert(sizeof(struct mpc_ioapic) == 8, "mpc_ioapic");
_Static_assert(sizeof(struct mpc_intsrc) == 8, "mpc_intsrc");

static uint8_t mp_checksum(const uint8_t *p, size_t len)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += p[i];
    return (uint8_t)-sum;
}

static size_t mp_size(unsigned vcpus)
{
    return sizeof(struct mpf_intel) + sizeof(struct mpc_table) +
           (size_t)vcpus * sizeof(struct mpc_cpu) + sizeof(struct mpc_bus) +
           sizeof(struct mpc_ioapic) + (MP_IOAPIC_PINS + 2) * sizeof(struct mpc_intsrc);
}

int mptable_write(struct guest_mem *gm, unsigned vcpus)
{
    const size_t room = MP_EBDA_END - LAYOUT_EBDA;
    if (vcpus == 0 || vcpus > 254 || mp_size(vcpus) > room)
        return err_set(-EINVAL, "MP table: %u vCPUs do not fit in the %zu bytes at 0x%llx", vcpus,
                       room, (unsigned long long)LAYOUT_EBDA);
    uint8_t *base = gm_ptr(gm, LAYOUT_EBDA, room);
    if (!base)
        return err_set(-EFAULT, "MP table: EBDA at 0x%llx is outside guest memory",
                       (unsigned long long)LAYOUT_EBDA);

    uint8_t buf[MP_EBDA_END - LAYOUT_EBDA];
    memset(buf, 0, sizeof(buf));
    struct mpf_intel *mpf = (struct mpf_intel *)buf;
    struct mpc_table *mpc = (struct mpc_table *)(buf + sizeof(*mpf));
    uint8_t *p = (uint8_t *)(mpc + 1);
    uint16_t count = 0;

    for (unsigned i = 0; i < vcpus; i++) {
        struct mpc_cpu cpu = {
            .type = MP_PROCESSOR,
            .apicid = (uint8_t)i,
            .apicver = MP_APIC_VERSION,
            .cpuflag = MP_CPU_ENABLED | (i == 0 ? MP_CPU_BSP : 0),
            .cpufeature = MP_CPU_SIGNATURE,
            .featureflag = MP_CPU_FEATURES,
        };
        memcpy(p, &cpu, sizeof(cpu));
        p += sizeof(cpu);
        count++;
    }
    struct mpc_bus bus = {.type = MP_BUS, .busid = MP_BUS_ISA_ID};
    memcpy(bus.bustype, "ISA   ", 6);
    memcpy(p, &bus, sizeof(bus));
    p += sizeof(bus);
    count++;

    const uint8_t ioapic_id = (uint8_t)vcpus;
    struct mpc_ioapic ioapic = {
        .type = MP_IOAPIC,
        .apicid = ioapic_id,
        .apicver = MP_IOAPIC_VERSION,
        .flags = MP_IOAPIC_ENABLED,
        .apicaddr = (uint32_t)LAYOUT_IOAPIC,
    };
    memcpy(p, &ioapic, sizeof(ioapic));
    p += sizeof(ioapic);
    count++;

    /* ISA IRQ n -> IOAPIC pin n, flags 0 (conforms to the bus). Pins 16-23
     * too, as Firecracker does, for virtio-mmio GSIs above 15. */
    for (unsigned irq = 0; irq < MP_IOAPIC_PINS; irq++) {
        struct mpc_intsrc src = {
            .type = MP_INTSRC,
            .irqtype = MP_IRQ_INT,
            .srcbus = MP_BUS_ISA_ID,
            .srcbusirq = (uint8_t)irq,
            .dstapic = ioapic_id,
            .dstirq = (uint8_t)irq,
        };
        memcpy(p, &src, sizeof(src));
        p += sizeof(src);
        count++;
    }
    /* LINT0: ExtINT (the PIC), LINT1: NMI, on every local APIC (0xff). */
    struct mpc_intsrc lint[2] = {
        {.type = MP_LINTSRC, .irqtype = MP_IRQ_EXTINT, .dstapic = 0xff, .dstirq = 0},
        {.type = MP_LINTSRC, .irqtype = MP_IRQ_NMI, .dstapic = 0xff, .dstirq = 1},
    };
    memcpy(p, lint, sizeof(lint));
    p += sizeof(lint);
    count += 2;

    size_t table_len = (size_t)(p - (uint8_t *)mpc);
    memcpy(mpc->signature, "PCMP", 4);
    mpc->length = (uint16_t)table_len;
    mpc->spec = MP_SPEC_REV;
    memcpy(mpc->oem, "EMBER   ", 8);
    memcpy(mpc->productid, "MICROVM     ", 12);
    mpc->oemcount = count;
    mpc->lapic = (uint32_t)LAYOUT_LAPIC;
    mpc->checksum = mp_checksum((uint8_t *)mpc, table_len);

    memcpy(mpf->signature, "_MP_", 4);
    mpf->physptr = (uint32_t)(LAYOUT_EBDA + sizeof(*mpf));
    mpf->length = 1;
    mpf->specification = MP_SPEC_REV;
    mpf->checksum = mp_checksum(buf, sizeof(*mpf));

    memcpy(base, buf, sizeof(buf));

    /* BIOS data area: EBDA segment and base memory size, as a BIOS leaves them. */
    uint16_t ebda_seg = (uint16_t)(LAYOUT_EBDA >> 4);
    uint16_t base_k = (uint16_t)(LAYOUT_EBDA >> 10);
    if (gm_write(gm, MP_BDA_EBDA_SEG, &ebda_seg, 2) < 0 ||
        gm_write(gm, MP_BDA_BASE_MEM_K, &base_k, 2) < 0)
        return err_set(-EFAULT, "MP table: BIOS data area is outside guest memory");
    return 0;
}
