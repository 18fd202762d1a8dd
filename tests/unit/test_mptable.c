/* test_mptable.c - unit tests for the MP table (boot/mptable.c): checksums,
 * processor entries for 1/2/32 vCPUs, IOAPIC and routing, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../boot/boot.h"
#include "../../boot/layout.h"
#include "../../vmm/base/err.h"
#include "test_boot_images.h"

#include <errno.h>

static int setup(void **state)
{
    return ti_gm_setup(state, 16 * MIB);
}

static int teardown(void **state)
{
    return ti_gm_teardown(state);
}

static uint8_t sum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    return s;
}

static uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Parse and check the tables written for `vcpus`. */
static void check_tables(struct guest_mem *gm, unsigned vcpus)
{
    const uint8_t *mpf = gm_ptr(gm, LAYOUT_EBDA, 16);
    assert_memory_equal(mpf, "_MP_", 4);
    assert_int_equal(mpf[8], 1); /* length in paragraphs */
    assert_int_equal(mpf[9], 4); /* spec rev 1.4 */
    assert_int_equal(sum(mpf, 16), 0);
    uint32_t phys = rd32(mpf + 4);
    assert_true(phys >= LAYOUT_EBDA && phys < 0xa0000);

    const uint8_t *mpc = gm_ptr(gm, phys, 44);
    assert_memory_equal(mpc, "PCMP", 4);
    uint16_t len = rd16(mpc + 4);
    assert_true(phys + len <= 0xa0000);
    assert_int_equal(mpc[6], 4);
    mpc = gm_ptr(gm, phys, len);
    assert_int_equal(sum(mpc, len), 0);
    assert_int_equal(rd32(mpc + 36), LAYOUT_LAPIC);
    uint16_t count = rd16(mpc + 34);

    unsigned cpus = 0, buses = 0, ioapics = 0, intsrc = 0, lint = 0;
    const uint8_t *p = mpc + 44, *end = mpc + len;
    for (unsigned i = 0; i < count; i++) {
        assert_true(p < end);
        switch (p[0]) {
        case 0:
            assert_int_equal(p[1], cpus);              /* APIC id = index */
            assert_int_equal(p[3], cpus == 0 ? 3 : 1); /* enabled, BSP on 0 */
            assert_int_equal(rd32(p + 4), 0x600);
            assert_int_equal(rd32(p + 8), 0x201);
            cpus++;
            p += 20;
            break;
        case 1:
            assert_memory_equal(p + 2, "ISA   ", 6);
            buses++;
            p += 8;
            break;
        case 2:
            assert_int_equal(p[1], vcpus); /* IOAPIC id */
            assert_int_equal(p[2], 0x11);
            assert_int_equal(p[3], 1);
            assert_int_equal(rd32(p + 4), LAYOUT_IOAPIC);
            ioapics++;
            p += 8;
            break;
        case 3:
            assert_int_equal(p[1], 0);      /* INT */
            assert_int_equal(p[5], intsrc); /* ISA IRQ n */
            assert_int_equal(p[6], vcpus);  /* -> this IOAPIC */
            assert_int_equal(p[7], intsrc); /* pin n */
            intsrc++;
            p += 8;
            break;
        case 4:
            assert_int_equal(p[1], lint == 0 ? 3 : 1); /* ExtINT, NMI */
            assert_int_equal(p[6], 0xff);
            assert_int_equal(p[7], lint); /* LINT0, LINT1 */
            lint++;
            p += 8;
            break;
        default:
            fail_msg("unknown MP entry type %u", p[0]);
        }
    }
    assert_ptr_equal(p, end);
    assert_int_equal(cpus, vcpus);
    assert_int_equal(buses, 1);
    assert_int_equal(ioapics, 1);
    assert_true(intsrc >= 16);
    assert_int_equal(lint, 2);

    /* BDA: EBDA segment and base memory. */
    uint16_t seg, basek;
    assert_int_equal(gm_read(gm, 0x40e, &seg, 2), 0);
    assert_int_equal(gm_read(gm, 0x413, &basek, 2), 0);
    assert_int_equal(seg, 0x9fc0);
    assert_int_equal(basek, 639);
}

static void test_counts(void **state)
{
    struct guest_mem *gm = *state;
    const unsigned n[] = {1, 2, 32};
    for (size_t i = 0; i < 3; i++) {
        memset(gm_ptr(gm, LAYOUT_EBDA, 0x400), 0x5a, 0x400);
        assert_int_equal(mptable_write(gm, n[i]), 0);
        check_tables(gm, n[i]);
    }
}

static void test_limits(void **state)
{
    struct guest_mem *gm = *state;
    err_clear();
    assert_int_equal(mptable_write(gm, 0), -EINVAL);
    assert_non_null(strstr(err_msg(), "MP table: 0 vCPUs"));
    /* The largest count that fits in the 1 KiB EBDA, and one more. */
    unsigned max = 1;
    while (mptable_write(gm, max + 1) == 0)
        max++;
    assert_true(max >= 32);
    check_tables(gm, max);
    err_clear();
    assert_int_equal(mptable_write(gm, max + 1), -EINVAL);
    assert_non_null(strstr(err_msg(), "do not fit in the 1024 bytes at 0x9fc00"));
    assert_int_equal(mptable_write(gm, 255), -EINVAL);
    assert_int_equal(mptable_write(gm, 100000), -EINVAL);
}

static void test_small_guest(void **state)
{
    (void)state;
    struct guest_mem gm;
    assert_int_equal(guest_mem_init(&gm, 0x9f000, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END), 0);
    err_clear();
    assert_int_equal(mptable_write(&gm, 1), -EFAULT);
    assert_non_null(strstr(err_msg(), "outside guest memory"));
    guest_mem_free(&gm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test(test_small_guest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
