"""test_bad_input.py - bad configuration and bad kernels: one clear line on
stderr naming the field or file, exit status 1, no core dump, nothing left."""
import json
import os
import struct
import subprocess

from harness import check, guest_config, run_ember, test


def expect_error(ctx, config, needle, args=()):
    before = set(os.listdir(ctx.workdir))
    res = run_ember(ctx, config, args=args)
    check(res.rc == 1, "expected exit status 1", res)
    lines = [l for l in res.err.splitlines() if l.strip()]
    check(len(lines) == 1, "expected exactly one line on stderr", res)
    check(lines[0].startswith("ember: "), "error line must start with 'ember: '", res)
    check(needle in lines[0], "error must mention %r" % needle, res)
    check(res.out == "", "nothing on the console", res)
    after = set(os.listdir(ctx.workdir))
    check(after - before <= {"vm.json"}, "files left behind: %s" % (after - before), res)
    return lines[0]


def write(ctx, name, data):
    path = os.path.join(ctx.workdir, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


@test("fast")
def test_missing_kernel(ctx):
    expect_error(ctx, guest_config("/nonexistent/vmlinux"), "/nonexistent/vmlinux")


@test("fast")
def test_unreadable_kernel(ctx):
    # A directory cannot be read as a kernel image.
    expect_error(ctx, guest_config(ctx.workdir), ctx.workdir)


@test("fast")
def test_empty_and_garbage_kernel(ctx):
    expect_error(ctx, guest_config(write(ctx, "empty", b"")), "empty")
    expect_error(ctx, guest_config(write(ctx, "garbage", os.urandom(8192))), "garbage")


@test("fast")
def test_truncated_elf(ctx):
    with open(ctx.guest("guest-pvh.elf"), "rb") as f:
        img = f.read()
    for cut in (20, 64, 100, len(img) // 2):
        expect_error(ctx, guest_config(write(ctx, "trunc%d" % cut, img[:cut])), "trunc%d" % cut)


@test("fast")
def test_corrupt_elf_header(ctx):
    with open(ctx.guest("guest-pvh.elf"), "rb") as f:
        img = bytearray(f.read())
    bad = bytearray(img)
    struct.pack_into("<Q", bad, 0x20, 0xfffffffffffff000)  # e_phoff far past the end
    expect_error(ctx, guest_config(write(ctx, "badphoff", bytes(bad))), "badphoff")
    bad = bytearray(img)
    struct.pack_into("<H", bad, 0x12, 3)  # e_machine = i386
    expect_error(ctx, guest_config(write(ctx, "badmachine", bytes(bad))), "badmachine")


@test("fast")
def test_truncated_bzimage(ctx):
    with open(ctx.guest("guest.bzImage"), "rb") as f:
        img = f.read()
    for cut in (0x250, 1024):
        expect_error(ctx, guest_config(write(ctx, "bz%d" % cut, img[:cut])), "bz%d" % cut)


@test("fast")
def test_segment_outside_ram(ctx):
    # Move the first PT_LOAD segment to 1 GiB; the VM has 128 MiB.
    with open(ctx.guest("guest-64.elf"), "rb") as f:
        img = bytearray(f.read())
    phoff, = struct.unpack_from("<Q", img, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", img, 0x36)
    for i in range(phnum):
        off = phoff + i * phentsize
        if struct.unpack_from("<I", img, off)[0] == 1:  # PT_LOAD
            struct.pack_into("<Q", img, off + 0x18, 0x40000000)  # p_paddr
            break
    line = expect_error(ctx, guest_config(write(ctx, "far.elf", bytes(img))), "far.elf")
    check("outside guest memory" in line, "error must say the segment is outside RAM: " + line)


@test("fast")
def test_memory_too_small(ctx):
    expect_error(ctx, guest_config(ctx.guest("guest-pvh.elf"), mem_mib=1), "mem_size_mib")


@test("fast")
def test_initrd_does_not_fit(ctx):
    big = write(ctx, "big.initrd", b"\0" * (70 << 20))
    expect_error(ctx, guest_config(ctx.guest("guest-pvh.elf"), mem_mib=64, initrd=big), "big.initrd")


@test("fast")
def test_missing_initrd(ctx):
    expect_error(ctx, guest_config(ctx.guest("guest-pvh.elf"), initrd="/nonexistent/initrd"),
                 "/nonexistent/initrd")


@test("fast")
def test_cmdline_too_long(ctx):
    expect_error(ctx, guest_config(ctx.guest("guest-pvh.elf"), boot_args="k" * 4096), "boot_args")


@test("fast")
def test_vcpu_count_out_of_range(ctx):
    for n in (0, 33):
        expect_error(ctx, guest_config(ctx.guest("guest-pvh.elf"), vcpus=n), "vcpu_count")


@test("fast")
def test_mem_size_out_of_range(ctx):
    expect_error(ctx, guest_config(ctx.guest("guest-pvh.elf"), mem_mib=0), "mem_size_mib")
    expect_error(ctx, guest_config(ctx.guest("guest-pvh.elf"), mem_mib=64 << 20), "mem_size_mib")


@test("fast")
def test_malformed_json(ctx):
    expect_error(ctx, '{"boot-source": {', "vm.json")
    expect_error(ctx, '{"boot-source": {}} trailing', "vm.json")


@test("fast")
def test_unknown_key(ctx):
    cfg = guest_config(ctx.guest("guest-pvh.elf"))
    cfg["machine-config"]["turbo"] = True
    expect_error(ctx, cfg, "turbo")
    cfg = guest_config(ctx.guest("guest-pvh.elf"))
    cfg["gpu"] = {}
    expect_error(ctx, cfg, "gpu")


@test("fast")
def test_bad_cpu_template(ctx):
    path = write(ctx, "tpl.json", b'{"cpuid_modifiers": [{"leaf": "0x1", "modifiers": '
                 b'[{"register": "exx", "bitmap": "0b1"}]}]}')
    expect_error(ctx, guest_config(ctx.guest("guest-pvh.elf")), "register",
                 args=["--cpu-template", path])


@test("fast")
def test_bad_flags(ctx):
    expect_error(ctx, guest_config(ctx.guest("guest-pvh.elf")), "--boot-protocol",
                 args=["--boot-protocol", "bios"])
    expect_error(ctx, guest_config(ctx.guest("guest-pvh.elf")), "--frobnicate",
                 args=["--frobnicate"])


@test("fast")
def test_no_kvm(ctx):
    # A private mount namespace with an empty /dev: Ember must say /dev/kvm is missing.
    path = os.path.join(ctx.workdir, "vm.json")
    with open(path, "w") as f:
        json.dump(guest_config(ctx.guest("guest-pvh.elf")), f)
    p = subprocess.run(["unshare", "-m", "sh", "-c",
                        'mount -t tmpfs none /dev && exec "$0" --no-api --config-file "$1"',
                        ctx.ember, path], capture_output=True, timeout=30)
    err = p.stderr.decode()
    check(p.returncode == 1, "status %d: %s" % (p.returncode, err))
    check(err.startswith("ember: /dev/kvm: not found") and err.count("\n") == 1,
          "expected one line naming /dev/kvm: %r" % err)
