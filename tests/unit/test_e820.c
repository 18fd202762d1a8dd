/* test_e820.c - unit tests for the e820 map (boot/e820.c): exact entries for
 * guests below, across and above the MMIO gap, and too-small guests. */
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

static void check_map(uint64_t size, const struct e820_entry *want, int n_want)
{
    struct guest_mem gm;
    assert_int_equal(guest_mem_init(&gm, size, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END), 0);
    struct e820_entry e[8];
    memset(e, 0xee, sizeof(e));
    int n = e820_build(&gm, e, 8);
    assert_int_equal(n, n_want);
    for (int i = 0; i < n; i++) {
        assert_int_equal(e[i].addr, want[i].addr);
        assert_int_equal(e[i].size, want[i].size);
        assert_int_equal(e[i].type, want[i].type);
    }
    /* Entries are sorted and do not overlap. */
    for (int i = 1; i < n; i++)
        assert_true(e[i].addr >= e[i - 1].addr + e[i - 1].size);
    /* RAM adds up to the guest's size. */
    uint64_t ram = 0;
    for (int i = 0; i < n; i++)
        if (e[i].type == E820_RAM)
            ram += e[i].size;
    assert_int_equal(ram, size - (LAYOUT_HIMEM - 0x9fc00));
    guest_mem_free(&gm);
}

static void test_64m(void **state)
{
    (void)state;
    const struct e820_entry want[] = {
        {0, 0x9fc00, E820_RAM},
        {0x9fc00, 0x60400, E820_RESERVED},
        {0x100000, 63 * MIB, E820_RAM},
    };
    check_map(64 * MIB, want, 3);
}

static void test_3g(void **state)
{
    (void)state;
    const struct e820_entry want[] = {
        {0, 0x9fc00, E820_RAM},
        {0x9fc00, 0x60400, E820_RESERVED},
        {0x100000, 3 * GIB - MIB, E820_RAM},
    };
    check_map(3 * GIB, want, 3);
}

static void test_3_5g(void **state)
{
    (void)state;
    const struct e820_entry want[] = {
        {0, 0x9fc00, E820_RAM},
        {0x9fc00, 0x60400, E820_RESERVED},
        {0x100000, 0xd0000000ULL - MIB, E820_RAM},
        {4 * GIB, 0x10000000ULL, E820_RAM}, /* 3.5 GiB - 3.25 GiB */
    };
    check_map(3 * GIB + GIB / 2, want, 4);
}

static void test_5g(void **state)
{
    (void)state;
    const struct e820_entry want[] = {
        {0, 0x9fc00, E820_RAM},
        {0x9fc00, 0x60400, E820_RESERVED},
        {0x100000, 0xd0000000ULL - MIB, E820_RAM},
        {4 * GIB, 5 * GIB - 0xd0000000ULL, E820_RAM},
    };
    check_map(5 * GIB, want, 4);
}

static void test_exactly_gap(void **state)
{
    (void)state;
    const struct e820_entry want[] = {
        {0, 0x9fc00, E820_RAM},
        {0x9fc00, 0x60400, E820_RESERVED},
        {0x100000, 0xd0000000ULL - MIB, E820_RAM},
    };
    check_map(0xd0000000ULL, want, 3);
}

static void test_too_small(void **state)
{
    (void)state;
    const uint64_t sizes[] = {4096, 0x9f000, 0xa0000, MIB};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct guest_mem gm;
        assert_int_equal(guest_mem_init(&gm, sizes[i], LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END),
                         0);
        struct e820_entry e[8];
        err_clear();
        assert_int_equal(e820_build(&gm, e, 8), -EINVAL);
        assert_non_null(strstr(err_msg(), "guest memory: "));
        assert_non_null(strstr(err_msg(), "too small"));
        guest_mem_free(&gm);
    }
    /* Just above 1 MiB works: one page of high RAM. */
    const struct e820_entry want[] = {
        {0, 0x9fc00, E820_RAM},
        {0x9fc00, 0x60400, E820_RESERVED},
        {0x100000, 4096, E820_RAM},
    };
    check_map(MIB + 4096, want, 3);
}

static void test_table_too_small(void **state)
{
    (void)state;
    struct guest_mem gm;
    assert_int_equal(guest_mem_init(&gm, 5 * GIB, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END), 0);
    struct e820_entry e[3];
    err_clear();
    assert_int_equal(e820_build(&gm, e, 3), -EINVAL);
    assert_non_null(strstr(err_msg(), "e820: 4 entries do not fit in a table of 3"));
    guest_mem_free(&gm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_64m),
        cmocka_unit_test(test_3g),
        cmocka_unit_test(test_3_5g),
        cmocka_unit_test(test_5g),
        cmocka_unit_test(test_exactly_gap),
        cmocka_unit_test(test_too_small),
        cmocka_unit_test(test_table_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
