/* test_elf.c - unit tests for the ELF vmlinux loader (boot/elf.c): valid
 * images with and without the PVH note, truncation and hostile headers. */
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

#define NAME "test.elf"

static int setup(void **state)
{
    return ti_gm_setup(state, 64 * MIB);
}

static int teardown(void **state)
{
    return ti_gm_teardown(state);
}

static const struct elf_opts base_opts = {
    .paddr = 0x200000, .filesz = 0x3000, .memsz = 0x5000, .entry = 0x200100};

/* Load `img` and expect failure with a message naming the kernel and containing `frag`. */
static void expect_fail(struct guest_mem *gm, const uint8_t *img, size_t len, const char *frag)
{
    struct kernel_info ki;
    err_clear();
    int rc = elf_load(gm, img, len, NAME, &ki);
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(err_msg(), "kernel " NAME ": "));
    if (!strstr(err_msg(), frag))
        fail_msg("message \"%s\" lacks \"%s\"", err_msg(), frag);
}

static void test_valid_no_note(void **state)
{
    struct guest_mem *gm = *state;
    size_t len;
    uint8_t *img = ti_elf(&base_opts, &len);
    /* Dirty the bss range to check it gets zeroed. */
    memset(gm_ptr(gm, 0x200000, 0x5000), 0xcc, 0x5000);
    struct kernel_info ki;
    assert_int_equal(elf_load(gm, img, len, NAME, &ki), 0);
    assert_int_equal(ki.kind, KERNEL_KIND_ELF);
    assert_int_equal(ki.entry64, 0x200100);
    assert_int_equal(ki.pvh_entry, 0);
    assert_int_equal(ki.load_lo, 0x200000);
    assert_int_equal(ki.load_hi, 0x205000);
    const uint8_t *g = gm_ptr(gm, 0x200000, 0x5000);
    for (unsigned i = 0; i < 0x3000; i++)
        assert_int_equal(g[i], ti_pattern(i));
    for (unsigned i = 0x3000; i < 0x5000; i++)
        assert_int_equal(g[i], 0);
    free(img);
}

static void test_valid_note(void **state, int size)
{
    struct guest_mem *gm = *state;
    struct elf_opts o = base_opts;
    o.note_size = size;
    o.pvh = 0x200040;
    size_t len;
    uint8_t *img = ti_elf(&o, &len);
    struct kernel_info ki;
    assert_int_equal(elf_load(gm, img, len, NAME, &ki), 0);
    assert_int_equal(ki.pvh_entry, 0x200040);
    assert_int_equal(ki.entry64, 0x200100);
    free(img);
}

static void test_valid_note4(void **state)
{
    test_valid_note(state, 4);
}

static void test_valid_note8(void **state)
{
    test_valid_note(state, 8);
}

static void test_virtual_entry(void **state)
{
    struct guest_mem *gm = *state;
    struct elf_opts o = {.paddr = 0x1000000,
                         .vaddr = 0xffffffff81000000ULL,
                         .filesz = 0x2000,
                         .entry = 0xffffffff81000123ULL};
    size_t len;
    uint8_t *img = ti_elf(&o, &len);
    struct kernel_info ki;
    assert_int_equal(elf_load(gm, img, len, NAME, &ki), 0);
    assert_int_equal(ki.entry64, 0x1000123);
    /* A virtual entry outside every segment is refused. */
    ti_ehdr(img)->e_entry = 0xffffffff90000000ULL;
    expect_fail(gm, img, len, "virtual entry point 0xffffffff90000000");
    free(img);
}

static void test_truncated(void **state)
{
    struct guest_mem *gm = *state;
    struct elf_opts o = base_opts;
    o.note_size = 4;
    o.pvh = 0x200040;
    size_t len;
    uint8_t *img = ti_elf(&o, &len);
    const struct {
        size_t len;
        const char *frag;
    } cuts[] = {
        {4, "truncated ELF header"},
        {63, "truncated ELF header"},
        {64, "program headers"},
        {64 + 56 + 10, "program headers"},
        {TI_ELF_NOTE_OFF + 8, "segment 0"},
        {TI_ELF_SEG_OFF, "segment 0"},
        {len - 1, "segment 0 (file offset 0x1000 +0x3000) runs past the end of the file"},
    };
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        uint8_t *cut = malloc(cuts[i].len);
        memcpy(cut, img, cuts[i].len);
        expect_fail(gm, cut, cuts[i].len, cuts[i].frag);
        free(cut);
    }
    /* The note segment itself running past the file. */
    ti_phdr(img, 1)->p_filesz = len;
    expect_fail(gm, img, len, "segment 1");
    free(img);
}

static void test_bad_ident(void **state)
{
    struct guest_mem *gm = *state;
    size_t len;
    uint8_t *img = ti_elf(&base_opts, &len);
    ti_ehdr(img)->e_ident[EI_CLASS] = ELFCLASS32;
    expect_fail(gm, img, len, "not ELF64");
    ti_ehdr(img)->e_ident[EI_CLASS] = ELFCLASS64;
    ti_ehdr(img)->e_ident[EI_DATA] = ELFDATA2MSB;
    expect_fail(gm, img, len, "little-endian");
    ti_ehdr(img)->e_ident[EI_DATA] = ELFDATA2LSB;
    ti_ehdr(img)->e_machine = EM_386;
    expect_fail(gm, img, len, "not x86_64");
    ti_ehdr(img)->e_machine = EM_AARCH64;
    expect_fail(gm, img, len, "not x86_64");
    ti_ehdr(img)->e_machine = EM_X86_64;
    ti_ehdr(img)->e_type = ET_DYN;
    expect_fail(gm, img, len, "ET_EXEC");
    ti_ehdr(img)->e_type = ET_EXEC;
    img[0] = 'X';
    expect_fail(gm, img, len, "not an ELF file");
    free(img);
}

static void test_hostile_phdrs(void **state)
{
    struct guest_mem *gm = *state;
    size_t len;
    uint8_t *img = ti_elf(&base_opts, &len);
    Elf64_Ehdr *eh = ti_ehdr(img);

    eh->e_phoff = len;
    expect_fail(gm, img, len, "program headers");
    eh->e_phoff = UINT64_MAX - 8;
    expect_fail(gm, img, len, "program headers");
    eh->e_phoff = TI_ELF_PHOFF;

    eh->e_phnum = 0xfffe;
    expect_fail(gm, img, len, "program headers (65534 at 0x40)");
    eh->e_phnum = 0xffff;
    expect_fail(gm, img, len, "e_phnum 65535");
    eh->e_phnum = 0;
    expect_fail(gm, img, len, "e_phnum 0");
    eh->e_phnum = 1;

    eh->e_phentsize = 32;
    expect_fail(gm, img, len, "e_phentsize 32");
    eh->e_phentsize = sizeof(Elf64_Phdr);

    Elf64_Phdr *ph = ti_phdr(img, 0);
    ph->p_filesz = 0x6000; /* > memsz 0x5000, but also past the file */
    expect_fail(gm, img, len, "segment 0");
    ph->p_filesz = 0x3000;
    ph->p_memsz = 0x2000;
    expect_fail(gm, img, len, "p_filesz 0x3000 larger than p_memsz 0x2000");
    ph->p_memsz = 0x5000;

    ph->p_offset = 0xfffffffffffff000ULL; /* offset + filesz wraps */
    expect_fail(gm, img, len, "runs past the end of the file");
    ph->p_offset = TI_ELF_SEG_OFF;

    ph->p_type = PT_NULL;
    expect_fail(gm, img, len, "no loadable (PT_LOAD) segment");
    ph->p_type = PT_LOAD;

    /* Entry point outside every segment. */
    eh->e_entry = 0x300000;
    expect_fail(gm, img, len, "entry point 0x300000 is not inside any loaded segment");
    eh->e_entry = 0x200100;

    /* Still loadable after all that. */
    struct kernel_info ki;
    assert_int_equal(elf_load(gm, img, len, NAME, &ki), 0);
    free(img);
}

static void test_segment_placement(void **state)
{
    struct guest_mem *gm = *state;
    size_t len;
    uint8_t *img = ti_elf(&base_opts, &len);
    Elf64_Phdr *ph = ti_phdr(img, 0);

    /* Crosses the end of the 64 MiB of RAM. */
    ph->p_paddr = 63 * MIB;
    ph->p_memsz = 2 * MIB;
    ti_ehdr(img)->e_entry = 63 * MIB;
    expect_fail(gm, img, len, "segment 0 at 0x3f00000 (+0x200000) is outside guest memory");

    /* Wraps around the address space. */
    ph->p_paddr = 0xffffffffffff0000ULL;
    ph->p_memsz = 0x20000;
    expect_fail(gm, img, len, "segment 0 at 0xffffffffffff0000 (+0x20000) is outside guest memory");
    ph->p_memsz = 0x5000;
    expect_fail(gm, img, len, "segment 0 at 0xffffffffffff0000 (+0x5000) is outside");

    /* Over Ember's boot data. */
    ph->p_paddr = 0x7000;
    expect_fail(gm, img, len, "below 1 MiB");
    free(img);
}

static void test_hostile_notes(void **state)
{
    struct guest_mem *gm = *state;
    struct elf_opts o = base_opts;
    o.note_size = 4;
    o.pvh = 0x200040;
    size_t len;
    uint8_t *img = ti_elf(&o, &len);
    Elf64_Nhdr *xen = (Elf64_Nhdr *)(img + TI_ELF_NOTE_OFF + 20);

    xen->n_descsz = 0xffffffff;
    expect_fail(gm, img, len, "descriptor of 4294967295 bytes runs past the segment");
    xen->n_descsz = 0xfffffffc;
    expect_fail(gm, img, len, "runs past the segment");
    xen->n_descsz = 2;
    expect_fail(gm, img, len, "2-byte descriptor");
    xen->n_descsz = 4;

    xen->n_namesz = 0xffffffff;
    expect_fail(gm, img, len, "name of 4294967295 bytes runs past the segment");
    xen->n_namesz = 4;

    /* PVH entry outside the loaded image, or zero. */
    uint32_t bad = 0x900000;
    memcpy(img + TI_ELF_NOTE_OFF + 20 + 16, &bad, 4);
    expect_fail(gm, img, len, "PVH entry 0x900000 is not inside any loaded segment");
    bad = 0;
    memcpy(img + TI_ELF_NOTE_OFF + 20 + 16, &bad, 4);
    expect_fail(gm, img, len, "PVH entry 0x0");
    free(img);

    /* 8-byte descriptor above 4 GiB. */
    o.note_size = 8;
    o.pvh = 0x100200040ULL;
    img = ti_elf(&o, &len);
    expect_fail(gm, img, len, "PVH entry 0x100200040 is not a 32-bit address");
    free(img);

    /* A note of another owner with type 18 is ignored; a segment holding only
     * part of a note header is fine (trailing bytes). */
    o.note_size = 4;
    o.pvh = 0x200040;
    img = ti_elf(&o, &len);
    memcpy(img + TI_ELF_NOTE_OFF + 20 + 12, "Xem", 4);
    ti_phdr(img, 1)->p_filesz += 6;
    struct kernel_info ki;
    assert_int_equal(elf_load(gm, img, len, NAME, &ki), 0);
    assert_int_equal(ki.pvh_entry, 0);
    free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid_no_note, setup, teardown),
        cmocka_unit_test_setup_teardown(test_valid_note4, setup, teardown),
        cmocka_unit_test_setup_teardown(test_valid_note8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_virtual_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_ident, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_phdrs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_placement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_notes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
