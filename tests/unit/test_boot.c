/* test_boot.c - end-to-end unit tests for boot_load() (boot/boot.c) on
 * temporary kernel/initrd files: zero page, PVH start info, GDT, page
 * tables, protocol selection, initrd placement and the error paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../boot/boot.h"
#include "../../boot/layout.h"
#include "../../boot/pvh.h"
#include "../../vmm/base/err.h"
#include "test_boot_images.h"

#include <errno.h>
#include <sys/stat.h>

static int setup(void **state)
{
    return ti_gm_setup(state, 64 * MIB);
}

static int teardown(void **state)
{
    return ti_gm_teardown(state);
}

static const struct elf_opts elf_plain = {
    .paddr = 0x200000, .filesz = 0x3000, .memsz = 0x5000, .entry = 0x200100};
static const struct elf_opts elf_pvh = {.paddr = 0x200000,
                                        .filesz = 0x3000,
                                        .memsz = 0x5000,
                                        .entry = 0x200100,
                                        .note_size = 4,
                                        .pvh = 0x200040};

static char *elf_file(const struct elf_opts *o)
{
    size_t len;
    uint8_t *img = ti_elf(o, &len);
    char *path = ti_tmpfile(img, len);
    free(img);
    return path;
}

static char *bz_file(const struct bz_opts *o)
{
    size_t len;
    uint8_t *img = ti_bz(o, &len);
    char *path = ti_tmpfile(img, len);
    free(img);
    return path;
}

/* An initrd of `len` bytes with a recognizable pattern. */
static char *initrd_file(size_t len)
{
    uint8_t *d = malloc(len);
    for (size_t i = 0; i < len; i++)
        d[i] = (uint8_t)(i ^ 0x5a);
    char *path = ti_tmpfile(d, len);
    free(d);
    return path;
}

static void check_initrd(struct guest_mem *gm, uint64_t addr, size_t len)
{
    const uint8_t *g = gm_ptr(gm, addr, len);
    assert_non_null(g);
    for (size_t i = 0; i < len; i++)
        if (g[i] != (uint8_t)(i ^ 0x5a))
            fail_msg("initrd byte %zu differs", i);
}

static void check_common(struct guest_mem *gm, enum boot_protocol proto, const char *cmdline)
{
    uint64_t gdt[4];
    assert_int_equal(gm_read(gm, LAYOUT_GDT, gdt, sizeof(gdt)), 0);
    assert_int_equal(gdt[0], 0);
    assert_int_equal(gdt[1], 0);
    assert_int_equal(gdt[2],
                     proto == BOOT_PROTO_PVH ? 0x00cf9b000000ffffULL : 0x00af9b000000ffffULL);
    assert_int_equal(gdt[3], 0x00cf93000000ffffULL);
    uint64_t e;
    assert_int_equal(gm_read(gm, LAYOUT_PML4, &e, 8), 0);
    assert_int_equal(e, LAYOUT_PDPT | 3);
    assert_int_equal(gm_read(gm, LAYOUT_PDPT, &e, 8), 0);
    assert_int_equal(e, LAYOUT_PD | 3);
    assert_int_equal(gm_read(gm, LAYOUT_PD, &e, 8), 0);
    assert_int_equal(e, 0x83);
    assert_int_equal(gm_read(gm, LAYOUT_PD + 511 * 8, &e, 8), 0);
    assert_int_equal(e, (511ULL << 21) | 0x83);
    assert_string_equal((const char *)gm_ptr(gm, LAYOUT_CMDLINE, 1), cmdline);
    assert_memory_equal(gm_ptr(gm, LAYOUT_EBDA, 4), "_MP_", 4);
}

static void expect_fail(struct guest_mem *gm, const struct boot_spec *spec, int err,
                        const char *frag)
{
    struct boot_entry be;
    err_clear();
    assert_int_equal(boot_load(gm, spec, &be), err);
    if (!strstr(err_msg(), frag))
        fail_msg("message \"%s\" lacks \"%s\"", err_msg(), frag);
}

static void test_elf_linux64(void **state)
{
    struct guest_mem *gm = *state;
    char *k = elf_file(&elf_plain);
    char *rd = initrd_file(10000);
    const char *cl = "console=ttyS0 reboot=k";
    struct boot_spec spec = {.kernel_path = k, .initrd_path = rd, .cmdline = cl, .vcpus = 2};
    struct boot_entry be;
    assert_int_equal(boot_load(gm, &spec, &be), 0);
    assert_int_equal(be.proto, BOOT_PROTO_LINUX64);
    assert_int_equal(be.rip, 0x200100);
    assert_int_equal(be.rsi, LAYOUT_ZERO_PAGE);
    assert_int_equal(be.rbx, 0);
    assert_int_equal(be.rsp, LAYOUT_BOOT_STACK);
    assert_int_equal(be.kernel_end, 0x205000);
    assert_int_equal(be.initrd_addr, 64 * MIB - 3 * 4096);
    assert_int_equal(be.initrd_size, 10000);
    check_initrd(gm, be.initrd_addr, 10000);
    check_common(gm, BOOT_PROTO_LINUX64, cl);

    struct boot_params bp;
    assert_int_equal(gm_read(gm, LAYOUT_ZERO_PAGE, &bp, sizeof(bp)), 0);
    assert_int_equal(bp.hdr.boot_flag, 0xaa55);
    assert_int_equal(bp.hdr.header, 0x53726448);
    assert_int_equal(bp.hdr.version, 0x020f);
    assert_int_equal(bp.hdr.type_of_loader, 0xff);
    assert_true(bp.hdr.loadflags & LOADED_HIGH);
    assert_int_equal(bp.hdr.cmd_line_ptr, LAYOUT_CMDLINE);
    assert_int_equal(bp.ext_cmd_line_ptr, 0);
    assert_int_equal(bp.hdr.ramdisk_image, 64 * MIB - 3 * 4096);
    assert_int_equal(bp.hdr.ramdisk_size, 10000);
    assert_int_equal(bp.ext_ramdisk_image, 0);
    assert_int_equal(bp.ext_ramdisk_size, 0);
    assert_int_equal(bp.e820_entries, 3);
    assert_int_equal(bp.e820_table[0].addr, 0);
    assert_int_equal(bp.e820_table[0].size, 0x9fc00);
    assert_int_equal(bp.e820_table[0].type, 1);
    assert_int_equal(bp.e820_table[1].addr, 0x9fc00);
    assert_int_equal(bp.e820_table[1].type, 2);
    assert_int_equal(bp.e820_table[2].addr, MIB);
    assert_int_equal(bp.e820_table[2].size, 63 * MIB);
    assert_int_equal(bp.e820_table[2].type, 1);
    assert_int_equal(bp.sentinel, 0);

    /* The kernel itself. */
    const uint8_t *g = gm_ptr(gm, 0x200000, 0x3000);
    for (unsigned i = 0; i < 0x3000; i++)
        assert_int_equal(g[i], ti_pattern(i));
    ti_rmfile(k);
    ti_rmfile(rd);
}

static void test_elf_pvh(void **state)
{
    struct guest_mem *gm = *state;
    char *k = elf_file(&elf_pvh);
    char *rd = initrd_file(5000);
    struct boot_spec spec = {.kernel_path = k, .initrd_path = rd, .cmdline = "pvh", .vcpus = 1};
    struct boot_entry be;
    assert_int_equal(boot_load(gm, &spec, &be), 0); /* AUTO -> PVH */
    assert_int_equal(be.proto, BOOT_PROTO_PVH);
    assert_int_equal(be.rip, 0x200040);
    assert_int_equal(be.rbx, LAYOUT_PVH_INFO);
    assert_int_equal(be.rsi, 0);
    assert_int_equal(be.rsp, LAYOUT_BOOT_STACK);
    assert_int_equal(be.initrd_addr, 64 * MIB - 2 * 4096);
    check_initrd(gm, be.initrd_addr, 5000);
    check_common(gm, BOOT_PROTO_PVH, "pvh");

    struct hvm_start_info si;
    assert_int_equal(gm_read(gm, LAYOUT_PVH_INFO, &si, sizeof(si)), 0);
    assert_int_equal(si.magic, 0x336ec578);
    assert_int_equal(si.version, 1);
    assert_int_equal(si.flags, 0);
    assert_int_equal(si.nr_modules, 1);
    assert_int_equal(si.modlist_paddr, PVH_MODLIST_ADDR);
    assert_int_equal(si.cmdline_paddr, LAYOUT_CMDLINE);
    assert_int_equal(si.rsdp_paddr, 0);
    assert_int_equal(si.memmap_paddr, PVH_MEMMAP_ADDR);
    assert_int_equal(si.memmap_entries, 3);
    assert_int_equal(si.reserved, 0);
    struct hvm_modlist_entry mod;
    assert_int_equal(gm_read(gm, si.modlist_paddr, &mod, sizeof(mod)), 0);
    assert_int_equal(mod.paddr, be.initrd_addr);
    assert_int_equal(mod.size, 5000);
    assert_int_equal(mod.cmdline_paddr, 0);
    struct hvm_memmap_table_entry mm[3];
    assert_int_equal(gm_read(gm, si.memmap_paddr, mm, sizeof(mm)), 0);
    assert_int_equal(mm[0].addr, 0);
    assert_int_equal(mm[0].size, 0x9fc00);
    assert_int_equal(mm[0].type, 1);
    assert_int_equal(mm[1].addr, 0x9fc00);
    assert_int_equal(mm[1].size, 0x60400);
    assert_int_equal(mm[1].type, 2);
    assert_int_equal(mm[2].addr, MIB);
    assert_int_equal(mm[2].size, 63 * MIB);
    assert_int_equal(mm[2].type, 1);
    assert_int_equal(mm[2].reserved, 0);

    /* Explicit PVH, no initrd: no module list. */
    spec.proto = BOOT_PROTO_PVH;
    spec.initrd_path = NULL;
    assert_int_equal(boot_load(gm, &spec, &be), 0);
    assert_int_equal(be.proto, BOOT_PROTO_PVH);
    assert_int_equal(be.initrd_addr, 0);
    assert_int_equal(be.initrd_size, 0);
    assert_int_equal(gm_read(gm, LAYOUT_PVH_INFO, &si, sizeof(si)), 0);
    assert_int_equal(si.nr_modules, 0);
    assert_int_equal(si.modlist_paddr, 0);

    /* The same kernel forced onto the 64-bit protocol. */
    spec.proto = BOOT_PROTO_LINUX64;
    assert_int_equal(boot_load(gm, &spec, &be), 0);
    assert_int_equal(be.proto, BOOT_PROTO_LINUX64);
    assert_int_equal(be.rip, 0x200100);
    assert_int_equal(be.rsi, LAYOUT_ZERO_PAGE);
    check_common(gm, BOOT_PROTO_LINUX64, "pvh");
    ti_rmfile(k);
    ti_rmfile(rd);
}

static void test_pvh_5g(void **state)
{
    (void)state;
    struct guest_mem gm;
    assert_int_equal(guest_mem_init(&gm, 5 * GIB, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END), 0);
    char *k = elf_file(&elf_pvh);
    char *rd = initrd_file(4096);
    struct boot_spec spec = {.kernel_path = k, .initrd_path = rd, .cmdline = "", .vcpus = 32};
    struct boot_entry be;
    assert_int_equal(boot_load(&gm, &spec, &be), 0);
    /* Default initrd_addr_max for an ELF: below 0x38000000. */
    assert_int_equal(be.initrd_addr, 0x38000000 - 4096);
    struct hvm_start_info si;
    assert_int_equal(gm_read(&gm, LAYOUT_PVH_INFO, &si, sizeof(si)), 0);
    assert_int_equal(si.memmap_entries, 4);
    struct hvm_memmap_table_entry mm[4];
    assert_int_equal(gm_read(&gm, si.memmap_paddr, mm, sizeof(mm)), 0);
    assert_int_equal(mm[2].size, 0xd0000000ULL - MIB);
    assert_int_equal(mm[3].addr, 4 * GIB);
    assert_int_equal(mm[3].size, 5 * GIB - 0xd0000000ULL);
    assert_int_equal(mm[3].type, 1);
    ti_rmfile(k);
    ti_rmfile(rd);
    guest_mem_free(&gm);
}

static void test_bzimage(void **state)
{
    struct guest_mem *gm = *state;
    struct bz_opts o = ti_bz_defaults();
    o.initrd_addr_max = 32 * MIB - 1;
    char *k = bz_file(&o);
    char *rd = initrd_file(3 * 4096);
    struct boot_spec spec = {.kernel_path = k, .initrd_path = rd, .cmdline = "bz", .vcpus = 1};
    struct boot_entry be;
    assert_int_equal(boot_load(gm, &spec, &be), 0);
    assert_int_equal(be.proto, BOOT_PROTO_LINUX64);
    assert_int_equal(be.rip, 0x100200);
    assert_int_equal(be.rsi, LAYOUT_ZERO_PAGE);
    assert_int_equal(be.kernel_end, 24 * MIB);
    assert_int_equal(be.initrd_addr, 32 * MIB - 3 * 4096); /* below initrd_addr_max */
    check_initrd(gm, be.initrd_addr, 3 * 4096);
    check_common(gm, BOOT_PROTO_LINUX64, "bz");

    struct boot_params bp;
    assert_int_equal(gm_read(gm, LAYOUT_ZERO_PAGE, &bp, sizeof(bp)), 0);
    assert_int_equal(bp.hdr.setup_sects, 4);
    assert_int_equal(bp.hdr.boot_flag, 0xaa55);
    assert_int_equal(bp.hdr.header, 0x53726448);
    assert_int_equal(bp.hdr.version, 0x020f);
    assert_int_equal(bp.hdr.type_of_loader, 0xff);
    assert_true(bp.hdr.loadflags & LOADED_HIGH);
    assert_int_equal(bp.hdr.kernel_alignment, 0x200000);
    assert_int_equal(bp.hdr.relocatable_kernel, 1);
    assert_int_equal(bp.hdr.xloadflags, o.xloadflags);
    assert_int_equal(bp.hdr.cmdline_size, 2047);
    assert_int_equal(bp.hdr.init_size, 8 * MIB);
    assert_int_equal(bp.hdr.pref_address, 0x1000000);
    assert_int_equal(bp.hdr.cmd_line_ptr, LAYOUT_CMDLINE);
    assert_int_equal(bp.hdr.ramdisk_image, be.initrd_addr);
    assert_int_equal(bp.hdr.ramdisk_size, 3 * 4096);
    assert_int_equal(bp.e820_entries, 3);

    /* The kernel's cmdline_size (2047) is the limit. */
    char *cl = malloc(2049);
    memset(cl, 'c', 2048);
    cl[2047] = '\0';
    spec.cmdline = cl;
    assert_int_equal(boot_load(gm, &spec, &be), 0);
    cl[2047] = 'c';
    cl[2048] = '\0';
    expect_fail(gm, &spec, -EINVAL, "boot_args: command line is 2048 bytes, the limit is 2047");
    free(cl);
    spec.cmdline = "bz";

    /* PVH is for ELF kernels only. */
    spec.proto = BOOT_PROTO_PVH;
    expect_fail(gm, &spec, -EINVAL,
                "is a bzImage; the PVH boot protocol (--boot-protocol pvh) needs an ELF vmlinux");
    ti_rmfile(k);
    ti_rmfile(rd);
}

static void test_protocol_errors(void **state)
{
    struct guest_mem *gm = *state;
    char *k = elf_file(&elf_plain);
    struct boot_spec spec = {.kernel_path = k, .cmdline = "", .vcpus = 1};
    spec.proto = BOOT_PROTO_PVH;
    expect_fail(gm, &spec, -EINVAL, "has no XEN_ELFNOTE_PHYS32_ENTRY note");
    assert_non_null(strstr(err_msg(), k));
    spec.proto = (enum boot_protocol)7;
    expect_fail(gm, &spec, -EINVAL, "boot protocol 7 is unknown");
    spec.proto = BOOT_PROTO_AUTO;
    spec.vcpus = 0;
    expect_fail(gm, &spec, -EINVAL, "MP table: 0 vCPUs");
    ti_rmfile(k);
}

static void test_identity_map_limit(void **state)
{
    (void)state;
    struct guest_mem gm;
    assert_int_equal(guest_mem_init(&gm, 2 * GIB, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END), 0);
    struct elf_opts o = elf_pvh;
    o.paddr = 0x60000000; /* 1.5 GiB */
    o.entry = 0x60000100;
    o.pvh = 0x60000040;
    char *k = elf_file(&o);
    struct boot_spec spec = {.kernel_path = k, .cmdline = "", .vcpus = 1};
    struct boot_entry be;
    assert_int_equal(boot_load(&gm, &spec, &be), 0); /* PVH: no paging, fine */
    assert_int_equal(be.proto, BOOT_PROTO_PVH);
    spec.proto = BOOT_PROTO_LINUX64;
    expect_fail(&gm, &spec, -EINVAL, "beyond the 1 GiB identity map");
    ti_rmfile(k);
    guest_mem_free(&gm);
}

static void test_file_errors(void **state)
{
    struct guest_mem *gm = *state;
    struct boot_spec spec = {.kernel_path = "/nonexistent/vmlinux", .cmdline = "", .vcpus = 1};
    expect_fail(gm, &spec, -ENOENT,
                "kernel /nonexistent/vmlinux: cannot open: No such file or directory");
    spec.kernel_path = "/";
    expect_fail(gm, &spec, -EINVAL, "kernel /: not a regular file");
    spec.kernel_path = "";
    expect_fail(gm, &spec, -EINVAL, "kernel_image_path");
    spec.kernel_path = NULL;
    expect_fail(gm, &spec, -EINVAL, "kernel_image_path");

    char *empty = ti_tmpfile("", 0);
    spec.kernel_path = empty;
    expect_fail(gm, &spec, -EINVAL, "file is empty");
    assert_non_null(strstr(err_msg(), empty));

    char junk[4096];
    memset(junk, 0x90, sizeof(junk));
    char *j = ti_tmpfile(junk, sizeof(junk));
    spec.kernel_path = j;
    expect_fail(gm, &spec, -EINVAL, ": not an ELF vmlinux or bzImage");

    /* A truncated ELF on disk: the loader's message names the path. */
    size_t len;
    uint8_t *img = ti_elf(&elf_plain, &len);
    char *trunc = ti_tmpfile(img, len - 100);
    free(img);
    spec.kernel_path = trunc;
    expect_fail(gm, &spec, -EINVAL, "runs past the end of the file");
    assert_non_null(strstr(err_msg(), trunc));

    /* initrd problems. */
    char *k = elf_file(&elf_plain);
    spec.kernel_path = k;
    spec.initrd_path = "/nonexistent/initrd";
    expect_fail(gm, &spec, -ENOENT, "initrd /nonexistent/initrd: cannot open");
    spec.initrd_path = empty;
    expect_fail(gm, &spec, -EINVAL, "initrd ");
    assert_non_null(strstr(err_msg(), "file is empty"));

    ti_rmfile(empty);
    ti_rmfile(j);
    ti_rmfile(trunc);
    ti_rmfile(k);
}

static void test_initrd_too_big(void **state)
{
    (void)state;
    struct guest_mem gm;
    assert_int_equal(guest_mem_init(&gm, 4 * MIB, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END), 0);
    char *k = elf_file(&elf_plain); /* kernel ends at 0x205000 */
    char *rd = initrd_file(4 * MIB - 0x205000 + 1);
    struct boot_spec spec = {.kernel_path = k, .initrd_path = rd, .cmdline = "", .vcpus = 1};
    struct boot_entry be;
    err_clear();
    assert_int_equal(boot_load(&gm, &spec, &be), -EINVAL);
    char want[512];
    snprintf(want, sizeof(want),
             "initrd %s: 2076673 bytes do not fit between the kernel end 0x205000 and 0x400000",
             rd);
    assert_string_equal(err_msg(), want);
    ti_rmfile(rd);
    /* Exactly the room left. */
    rd = initrd_file(4 * MIB - 0x205000);
    spec.initrd_path = rd;
    assert_int_equal(boot_load(&gm, &spec, &be), 0);
    assert_int_equal(be.initrd_addr, 0x205000);
    check_initrd(&gm, be.initrd_addr, 4 * MIB - 0x205000);
    ti_rmfile(rd);
    ti_rmfile(k);
    guest_mem_free(&gm);
}

static void test_initrd_place(void **state)
{
    struct guest_mem *gm = *state; /* 64 MiB */
    struct kernel_info ki = {.kind = KERNEL_KIND_ELF, .load_lo = MIB, .load_hi = 0x205001};
    uint64_t a = 0;
    assert_int_equal(initrd_place(gm, &ki, 1, "rd", &a), 0);
    assert_int_equal(a, 64 * MIB - 4096);
    assert_int_equal(initrd_place(gm, &ki, 4096, "rd", &a), 0);
    assert_int_equal(a, 64 * MIB - 4096);
    assert_int_equal(initrd_place(gm, &ki, 4097, "rd", &a), 0);
    assert_int_equal(a, 64 * MIB - 8192);
    /* The kernel end is rounded up to a page: 0x206000. */
    assert_int_equal(initrd_place(gm, &ki, 64 * MIB - 0x206000, "rd", &a), 0);
    assert_int_equal(a, 0x206000);
    err_clear();
    assert_int_equal(initrd_place(gm, &ki, 64 * MIB - 0x206000 + 1, "rd", &a), -EINVAL);
    assert_string_equal(
        err_msg(),
        "initrd rd: 64987137 bytes do not fit between the kernel end 0x205001 and 0x4000000");
    assert_int_equal(initrd_place(gm, &ki, 0, "rd", &a), -EINVAL);
    assert_int_equal(initrd_place(gm, &ki, UINT64_MAX, "rd", &a), -EINVAL);

    /* Kernel above the initrd limit: nothing fits. */
    ki.load_hi = 65 * MIB;
    assert_int_equal(initrd_place(gm, &ki, 1, "rd", &a), -EINVAL);

    /* Large guests: the limit is initrd_addr_max, not the end of low RAM. */
    struct guest_mem big;
    assert_int_equal(
        guest_mem_init(&big, 3 * GIB + GIB / 2, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END), 0);
    ki.load_hi = 0x205000;
    assert_int_equal(initrd_place(&big, &ki, 4096, "rd", &a), 0);
    assert_int_equal(a, 0x38000000 - 4096);
    ki.kind = KERNEL_KIND_BZIMAGE;
    ki.initrd_addr_max = 0x7fffffff;
    assert_int_equal(initrd_place(&big, &ki, 4096, "rd", &a), 0);
    assert_int_equal(a, 0x80000000 - 4096);
    ki.initrd_addr_max = 0xffffffff; /* capped by the MMIO gap */
    assert_int_equal(initrd_place(&big, &ki, 4096, "rd", &a), 0);
    assert_int_equal(a, 0xd0000000 - 4096);
    guest_mem_free(&big);
}

static void test_small_guest(void **state)
{
    (void)state;
    struct guest_mem gm;
    assert_int_equal(guest_mem_init(&gm, MIB, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END), 0);
    char *k = elf_file(&elf_plain);
    struct boot_spec spec = {.kernel_path = k, .cmdline = "", .vcpus = 1};
    expect_fail(&gm, &spec, -EINVAL, "guest memory: 1024 KiB is too small to boot (minimum 2 MiB)");
    guest_mem_free(&gm);
    /* 2 MiB: the kernel at 0x200000 does not fit. */
    assert_int_equal(guest_mem_init(&gm, 2 * MIB, LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_END), 0);
    expect_fail(&gm, &spec, -EINVAL, "is outside guest memory");
    guest_mem_free(&gm);
    ti_rmfile(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_elf_linux64, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elf_pvh, setup, teardown),
        cmocka_unit_test(test_pvh_5g),
        cmocka_unit_test_setup_teardown(test_bzimage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_errors, setup, teardown),
        cmocka_unit_test(test_identity_map_limit),
        cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
        cmocka_unit_test(test_initrd_too_big),
        cmocka_unit_test_setup_teardown(test_initrd_place, setup, teardown),
        cmocka_unit_test(test_small_guest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
