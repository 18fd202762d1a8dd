/* test_cmdline.c - unit tests for the command line (boot/cmdline.c): exact
 * copy, the 4095/4096 boundary, kernel-imposed limits, append overflow. */
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

static void test_exact_copy(void **state)
{
    struct guest_mem *gm = *state;
    const char *cl = "console=ttyS0 reboot=k panic=1 virtio_mmio.device=4K@0xd0000000:5";
    memset(gm_ptr(gm, LAYOUT_CMDLINE, LAYOUT_CMDLINE_MAX), 'x', LAYOUT_CMDLINE_MAX);
    assert_int_equal(cmdline_write(gm, cl, LAYOUT_CMDLINE_MAX - 1), 0);
    const char *g = gm_ptr(gm, LAYOUT_CMDLINE, strlen(cl) + 2);
    assert_string_equal(g, cl);
    assert_int_equal(g[strlen(cl) + 1], 'x'); /* nothing written past the NUL */
    /* NULL and "" give an empty line. */
    assert_int_equal(cmdline_write(gm, NULL, LAYOUT_CMDLINE_MAX - 1), 0);
    assert_string_equal(g, "");
    assert_int_equal(cmdline_write(gm, "", 0), 0);
}

static void test_limit_boundary(void **state)
{
    struct guest_mem *gm = *state;
    char *cl = malloc(LAYOUT_CMDLINE_MAX + 1);
    memset(cl, 'a', LAYOUT_CMDLINE_MAX);
    cl[LAYOUT_CMDLINE_MAX - 1] = '\0'; /* 4095 chars */
    assert_int_equal(cmdline_write(gm, cl, LAYOUT_CMDLINE_MAX - 1), 0);
    const char *g = gm_ptr(gm, LAYOUT_CMDLINE, LAYOUT_CMDLINE_MAX);
    assert_int_equal(strlen(g), 4095);
    /* A larger caller limit is clamped to the area. */
    assert_int_equal(cmdline_write(gm, cl, 100000), 0);

    cl[LAYOUT_CMDLINE_MAX - 1] = 'a';
    cl[LAYOUT_CMDLINE_MAX] = '\0'; /* 4096 chars */
    err_clear();
    assert_int_equal(cmdline_write(gm, cl, LAYOUT_CMDLINE_MAX - 1), -EINVAL);
    assert_string_equal(err_msg(), "boot_args: command line is 4096 bytes, the limit is 4095");
    err_clear();
    assert_int_equal(cmdline_write(gm, cl, 100000), -EINVAL);
    assert_string_equal(err_msg(), "boot_args: command line is 4096 bytes, the limit is 4095");

    /* A kernel's smaller cmdline_size. */
    cl[2047] = '\0';
    assert_int_equal(cmdline_write(gm, cl, 2047), 0);
    cl[2047] = 'a';
    cl[2048] = '\0';
    err_clear();
    assert_int_equal(cmdline_write(gm, cl, 2047), -EINVAL);
    assert_string_equal(err_msg(), "boot_args: command line is 2048 bytes, the limit is 2047");
    free(cl);
}

static void test_append(void **state)
{
    (void)state;
    char buf[16] = "";
    assert_int_equal(cmdline_append(buf, sizeof(buf), "a=1"), 0);
    assert_string_equal(buf, "a=1");
    assert_int_equal(cmdline_append(buf, sizeof(buf), "bb=22"), 0);
    assert_string_equal(buf, "a=1 bb=22");
    assert_int_equal(cmdline_append(buf, sizeof(buf), ""), 0);
    assert_string_equal(buf, "a=1 bb=22");
    /* 9 + 1 + 5 = 15 chars: exactly fills 16 bytes. */
    assert_int_equal(cmdline_append(buf, sizeof(buf), "ccccc"), 0);
    assert_string_equal(buf, "a=1 bb=22 ccccc");
    err_clear();
    assert_int_equal(cmdline_append(buf, sizeof(buf), "d"), -E2BIG);
    assert_string_equal(buf, "a=1 bb=22 ccccc"); /* unchanged */
    assert_non_null(strstr(err_msg(), "boot_args: adding \"d\""));

    char b2[8] = "abcdef"; /* 6 chars: " x" would need 9 bytes */
    assert_int_equal(cmdline_append(b2, sizeof(b2), "x"), -E2BIG);
    assert_string_equal(b2, "abcdef");
    char b3[8] = "abcdefg"; /* full: the separator alone does not fit */
    assert_int_equal(cmdline_append(b3, sizeof(b3), "x"), -E2BIG);
    char b4[4] = "";
    assert_int_equal(cmdline_append(b4, sizeof(b4), "abcd"), -E2BIG);
    assert_int_equal(cmdline_append(b4, sizeof(b4), "abc"), 0);
    assert_string_equal(b4, "abc");
    char b5[4] = {'a', 'b', 'c', 'd'}; /* not terminated */
    assert_int_equal(cmdline_append(b5, sizeof(b5), "x"), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exact_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_boundary, setup, teardown),
        cmocka_unit_test(test_append),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
