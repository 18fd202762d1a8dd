/* test_bzimage.c - unit tests for the bzImage loader (boot/bzimage.c): a valid
 * synthesized image, truncation, bad magic, old protocols, no 64-bit entry,
 * setup_sects past the file, init_size beyond RAM. */
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

#define NAME "test.bz"

static int setup(void **state)
{
    return ti_gm_setup(state, 64 * MIB);
}

static int teardown(void **state)
{
    return ti_gm_teardown(state);
}

static void expect_fail(struct guest_mem *gm, const uint8_t *img, size_t len, const char *frag)
{
    struct kernel_info ki;
    err_clear();
    assert_int_equal(kernel_load(gm, img, len, NAME, &ki), -EINVAL);
    assert_non_null(strstr(err_msg(), "kernel " NAME ": "));
    if (!strstr(err_msg(), frag))
        fail_msg("message \"%s\" lacks \"%s\"", err_msg(), frag);
}

static void check_loaded(struct guest_mem *gm, const struct kernel_info *ki, const uint8_t *img,
                         const struct bz_opts *o)
{
    assert_int_equal(ki->kind, KERNEL_KIND_BZIMAGE);
    assert_int_equal(ki->entry64, 0x100200);
    assert_int_equal(ki->pvh_entry, 0);
    assert_int_equal(ki->load_lo, LAYOUT_KERNEL);
    /* Decompression area: max(align_up(1 MiB, 2 MiB), pref_address 16 MiB) + init_size. */
    assert_int_equal(ki->load_hi, 16 * MIB + o->init_size);
    assert_int_equal(ki->boot_version, o->version);
    assert_int_equal(ki->cmdline_size, o->cmdline_size);
    assert_int_equal(ki->initrd_addr_max, o->initrd_addr_max);
    assert_int_equal(ki->setup_header_len, TI_BZ_HDR_END - 0x1f1);
    assert_memory_equal(ki->setup_header, img + 0x1f1, ki->setup_header_len);
    const uint8_t *g = gm_ptr(gm, LAYOUT_KERNEL, o->pm_size);
    assert_non_null(g);
    for (uint64_t i = 0; i < o->pm_size; i++)
        if (g[i] != ti_pattern(i))
            fail_msg("guest byte 0x%llx differs", (unsigned long long)i);
}

static void test_valid(void **state)
{
    struct guest_mem *gm = *state;
    struct bz_opts o = ti_bz_defaults();
    size_t len;
    uint8_t *img = ti_bz(&o, &len);
    struct kernel_info ki;
    assert_int_equal(bzimage_load(gm, img, len, NAME, &ki), 0);
    check_loaded(gm, &ki, img, &o);
    memset(&ki, 0, sizeof(ki));
    assert_int_equal(kernel_load(gm, img, len, NAME, &ki), 0);
    check_loaded(gm, &ki, img, &o);
    free(img);
}

static void test_setup_sects_zero_means_4(void **state)
{
    struct guest_mem *gm = *state;
    struct bz_opts o = ti_bz_defaults();
    o.setup_sects = 0;
    size_t len;
    uint8_t *img = ti_bz(&o, &len);
    assert_int_equal(len, 5 * 512 + o.pm_size);
    struct kernel_info ki;
    assert_int_equal(kernel_load(gm, img, len, NAME, &ki), 0);
    check_loaded(gm, &ki, img, &o);
    free(img);
}

static void test_more_setup_sects(void **state)
{
    struct guest_mem *gm = *state;
    struct bz_opts o = ti_bz_defaults();
    o.setup_sects = 30;
    size_t len;
    uint8_t *img = ti_bz(&o, &len);
    struct kernel_info ki;
    assert_int_equal(kernel_load(gm, img, len, NAME, &ki), 0);
    check_loaded(gm, &ki, img, &o);
    free(img);
}

static void test_truncated(void **state)
{
    struct guest_mem *gm = *state;
    struct bz_opts o = ti_bz_defaults();
    size_t len;
    uint8_t *img = ti_bz(&o, &len);
    struct kernel_info ki;
    /* Too short to even see "HdrS": not recognized. */
    err_clear();
    assert_int_equal(kernel_load(gm, img, 0x204, NAME, &ki), -EINVAL);
    assert_string_equal(err_msg(), "kernel " NAME ": not an ELF vmlinux or bzImage");
    /* Recognized but the header is cut. */
    expect_fail(gm, img, 0x208, "truncated bzImage (520 bytes");
    expect_fail(gm, img, 0x263, "truncated bzImage");
    /* Setup only, no protected-mode part. */
    expect_fail(gm, img, ti_bz_pm_off(&o), "setup_sects 4 puts the kernel at 0xa00, past the end");
    /* Directly through bzimage_load as well. */
    err_clear();
    assert_int_equal(bzimage_load(gm, img, 0x100, NAME, &ki), -EINVAL);
    assert_non_null(strstr(err_msg(), "truncated bzImage (256 bytes"));
    free(img);
}

static void test_bad_magic(void **state)
{
    struct guest_mem *gm = *state;
    struct bz_opts o = ti_bz_defaults();
    size_t len;
    uint8_t *img = ti_bz(&o, &len);
    struct kernel_info ki;
    img[0x203] = 'X'; /* "HXrS" */
    expect_fail(gm, img, len, "not an ELF vmlinux or bzImage");
    err_clear();
    assert_int_equal(bzimage_load(gm, img, len, NAME, &ki), -EINVAL);
    assert_non_null(
        strstr(err_msg(), "no bzImage setup header (boot_flag 0xaa55, header 0x53725848)"));
    img[0x203] = 'd';
    img[0x1fe] = 0;
    expect_fail(gm, img, len, "not an ELF vmlinux or bzImage");
    err_clear();
    assert_int_equal(bzimage_load(gm, img, len, NAME, &ki), -EINVAL);
    assert_non_null(strstr(err_msg(), "boot_flag 0xaa00"));
    free(img);
}

static void test_versions(void **state)
{
    struct guest_mem *gm = *state;
    struct bz_opts o = ti_bz_defaults();
    size_t len;
    o.version = 0x0205;
    uint8_t *img = ti_bz(&o, &len);
    expect_fail(gm, img, len, "boot protocol 2.05 is older than 2.06");
    free(img);
    o.version = 0x020a;
    img = ti_bz(&o, &len);
    expect_fail(gm, img, len, "boot protocol 2.10 predates xloadflags");
    free(img);
    o.version = 0x020c; /* oldest accepted */
    img = ti_bz(&o, &len);
    struct kernel_info ki;
    assert_int_equal(kernel_load(gm, img, len, NAME, &ki), 0);
    assert_int_equal(ki.boot_version, 0x020c);
    free(img);
}

static void test_no_kernel64(void **state)
{
    struct guest_mem *gm = *state;
    struct bz_opts o = ti_bz_defaults();
    o.xloadflags = XLF_CAN_BE_LOADED_ABOVE_4G;
    size_t len;
    uint8_t *img = ti_bz(&o, &len);
    expect_fail(gm, img, len, "xloadflags 0x2 lacks XLF_KERNEL_64");
    free(img);
}

static void test_setup_sects_huge(void **state)
{
    struct guest_mem *gm = *state;
    struct bz_opts o = ti_bz_defaults();
    size_t len;
    uint8_t *img = ti_bz(&o, &len); /* 0xa00 + 64 KiB = 0x10a00 bytes */
    img[0x1f1] = 255;
    expect_fail(gm, img, len,
                "setup_sects 255 puts the kernel at 0x20000, past the end of the file");
    img[0x1f1] = 0x85; /* (0x85+1)*512 = 0x10c00 > 0x10a00 */
    expect_fail(gm, img, len, "setup_sects 133");
    free(img);
}

static void test_init_size(void **state)
{
    struct guest_mem *gm = *state;
    struct bz_opts o = ti_bz_defaults();
    size_t len;
    o.init_size = 48 * MIB; /* 16 + 48 = 64 MiB: exactly fits */
    uint8_t *img = ti_bz(&o, &len);
    struct kernel_info ki;
    assert_int_equal(kernel_load(gm, img, len, NAME, &ki), 0);
    assert_int_equal(ki.load_hi, 64 * MIB);
    free(img);
    o.init_size = 48 * MIB + 4096;
    img = ti_bz(&o, &len);
    expect_fail(gm, img, len,
                "init_size 0x3001000 at 0x1000000 does not fit in guest RAM below 0x4000000");
    free(img);
    o.init_size = 0xffffffff;
    img = ti_bz(&o, &len);
    expect_fail(gm, img, len, "init_size 0xffffffff");
    free(img);
    o.init_size = 0;
    img = ti_bz(&o, &len);
    /* ti_bz treats 0 as given: init_size 0 is refused. */
    expect_fail(gm, img, len, "init_size 0x0");
    free(img);
}

static void test_pm_too_big(void **state)
{
    (void)state;
    struct guest_mem small;
    assert_int_equal(guest_mem_init(&small, 2 * MIB, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END),
                     0);
    struct bz_opts o = ti_bz_defaults();
    o.pm_size = MIB + 4096;
    size_t len;
    uint8_t *img = ti_bz(&o, &len);
    expect_fail(&small, img, len, "1052672 bytes at 0x100000 do not fit in guest memory (2 MiB)");
    free(img);
    guest_mem_free(&small);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setup_sects_zero_means_4, setup, teardown),
        cmocka_unit_test_setup_teardown(test_more_setup_sects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_magic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_kernel64, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setup_sects_huge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pm_too_big, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
