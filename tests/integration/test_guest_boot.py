"""test_guest_boot.py - boots of Ember's own test guest (tests/guest/): entry
protocols, vCPU counts, memory maps across the MMIO gap, the command line,
initrd, boot timer, CPU templates, reset and triple fault."""
import json
import os
import re
import subprocess

from harness import (check, expected_e820, guest_config, parse_e820, run_ember, test)


def boot(ctx, image="guest-pvh.elf", args=(), **kw):
    res = run_ember(ctx, guest_config(ctx.guest(image), **kw), args=args)
    check(res.rc == 0, "guest did not end with a reset (status 0)", res)
    check(res.line("guest") == "done", "guest did not finish its report", res)
    return res


def check_common(res, entry, vcpus=1, mem_mib=128):
    check(res.line("ember-test-guest") == "entry=" + entry, "wrong entry protocol", res)
    check(res.line("boot-timer") == "written", "guest did not write the boot timer", res)
    m = re.search(r"Guest-boot-time = (\d+) us", res.err)
    check(m is not None, "no Guest-boot-time log line", res)
    check(res.line("hypervisor-bit") == "1", "CPUID hypervisor bit not set", res)
    check(res.line("hypervisor-signature") == "KVMKVMKVM...", "wrong hypervisor signature", res)
    check(res.line("mptable") == "cpus=%d" % vcpus, "MP table vCPU count", res)
    check(res.line("cpus-started") == str(vcpus), "not every vCPU started", res)
    check(parse_e820(res) == expected_e820(mem_mib << 20), "e820 map differs", res)
    check(res.line("mem-probe") == "ok", "guest could not use all of its RAM", res)
    check("guest reset via i8042" in res.err, "reset reason not logged", res)


@test("fast")
def test_pvh_entry(ctx):
    res = boot(ctx, boot_args="console=ttyS0 hello")
    check_common(res, "pvh")
    check(res.line("cmdline") == "console=ttyS0 hello", "command line", res)
    check(res.line("initrd") == "none", "unexpected initrd", res)


@test("fast")
def test_linux64_entry_elf(ctx):
    res = boot(ctx, "guest-64.elf", boot_args="x")
    check_common(res, "linux64")


@test("fast")
def test_linux64_forced_on_pvh_elf(ctx):
    res = boot(ctx, "guest-pvh.elf", args=["--boot-protocol", "linux64"], boot_args="x")
    check_common(res, "linux64")


@test("fast")
def test_pvh_forced_without_note_fails(ctx):
    res = run_ember(ctx, guest_config(ctx.guest("guest-64.elf")), args=["--boot-protocol", "pvh"])
    check(res.rc == 1 and "PVH" in res.err, "forcing PVH without the note must fail clearly", res)


@test("fast")
def test_bzimage_entry(ctx):
    res = boot(ctx, "guest.bzImage", boot_args="bz")
    check_common(res, "linux64")
    check(res.line("cmdline") == "bz", "command line", res)


@test("fast")
def test_smp_2(ctx):
    check_common(boot(ctx, vcpus=2), "pvh", vcpus=2)


@test("fast")
def test_smp_4(ctx):
    check_common(boot(ctx, vcpus=4), "pvh", vcpus=4)


@test("fast")
def test_smp_4_linux64(ctx):
    check_common(boot(ctx, "guest-64.elf", vcpus=4), "linux64", vcpus=4)


@test("fast")
def test_memory_64m(ctx):
    check_common(boot(ctx, mem_mib=64), "pvh", mem_mib=64)


@test("fast")
def test_memory_3g(ctx):
    check_common(boot(ctx, mem_mib=3072), "pvh", mem_mib=3072)


@test("fast")
def test_memory_3_5g_crosses_gap(ctx):
    res = boot(ctx, mem_mib=3584)
    check_common(res, "pvh", mem_mib=3584)
    check(int(res.line("mem-ram-total"), 16) == (3584 << 20) - 0x60400,
          "RAM total (all but the EBDA/BIOS hole)", res)


@test("fast")
def test_memory_5g(ctx):
    check_common(boot(ctx, "guest-64.elf", mem_mib=5120), "linux64", mem_mib=5120)


@test("fast")
def test_cmdline_byte_exact(ctx):
    args = 'a=b "quoted words" x\ty  tail=%s end' % ("z" * 1900)
    res = boot(ctx, boot_args=args)
    check(res.line("cmdline") == args, "command line not delivered byte-exact", res)


@test("fast")
def test_cmdline_longest(ctx):
    # boot_args: at most 2047 bytes, Firecracker's x86 limit (2048 with the NUL).
    args = "k" * 2047
    res = boot(ctx, "guest-64.elf", boot_args=args)
    check(res.line("cmdline") == args, "2047-byte command line", res)
    res = run_ember(ctx, guest_config(ctx.guest("guest-64.elf"), "k" * 2048))
    check(res.rc == 1 and "boot-source.boot_args: too long (2048 bytes, at most 2047)" in res.err,
          "2048-byte boot_args refused naming the field", res)


@test("fast")
def test_default_cmdline(ctx):
    cfg = guest_config(ctx.guest("guest-pvh.elf"))
    del cfg["boot-source"]["boot_args"]
    res = run_ember(ctx, cfg)
    check(res.rc == 0, "boot with default args", res)
    check(res.line("cmdline").startswith("console=ttyS0 reboot=k panic=1"), "default args", res)


@test("fast")
def test_initrd(ctx):
    data = os.urandom(3 * 4096 + 123)
    path = os.path.join(ctx.workdir, "initrd.img")
    with open(path, "wb") as f:
        f.write(data)
    for image, mem in (("guest-pvh.elf", 128), ("guest-64.elf", 256), ("guest.bzImage", 64)):
        res = boot(ctx, image, initrd=path, mem_mib=mem)
        m = re.fullmatch(r"0x([0-9a-f]+) 0x([0-9a-f]+) sum=0x([0-9a-f]+)", res.line("initrd"))
        check(m is not None, "initrd line", res)
        addr, size, csum = int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16)
        check(size == len(data), "initrd size", res)
        check(csum == sum(data) & 0xffffffff, "initrd bytes differ", res)
        check(addr % 4096 == 0 and addr + size <= (mem << 20) and addr + size > (mem << 20) - 8192,
              "initrd not page-aligned at the top of low RAM", res)


@test("fast")
def test_cpu_template(ctx):
    # Leaf 0x40000000 EBX ("KVMK") replaced by "Embr"; the guest reads it at CPL0.
    bits = "".join("1" if (0x72626d45 >> (31 - i)) & 1 else "0" for i in range(32))
    tpl = {"cpuid_modifiers": [{"leaf": "0x40000000", "subleaf": "0x0", "flags": 0,
                                "modifiers": [{"register": "ebx", "bitmap": "0b" + bits}]}]}
    path = os.path.join(ctx.workdir, "tpl.json")
    with open(path, "w") as f:
        json.dump(tpl, f)
    res = boot(ctx, args=["--cpu-template", path])
    check(res.line("hypervisor-signature") == "EmbrVMKVM...", "template not applied", res)


@test("fast")
def test_triple_fault_status(ctx):
    res = run_ember(ctx, guest_config(ctx.guest("guest-pvh.elf"), boot_args="fault=triple"))
    check(res.rc == 3, "triple fault must end with status 3", res)
    check(re.search(r"triple fault .* at RIP 0x[0-9a-f]+", res.err) is not None,
          "reason line names the exit kind and RIP", res)
    check(res.line("guest") == "done", "report before the fault", res)


@test("fast")
def test_panic_status(ctx):
    res = run_ember(ctx, guest_config(ctx.guest("guest-pvh.elf"), boot_args="quiet fault=panic"))
    check(res.rc == 5, "a console panic followed by a reset must end with status 5", res)
    check("guest panicked" in res.err, "reason line", res)


@test("fast")
def test_console_input(ctx):
    # 200 bytes: more than the UART's 64-byte FIFO, so Ember must wait for the
    # guest to drain it and lose nothing.
    data = bytes((ord("a") + i % 26) for i in range(200))
    # Through a pipe: the event loop watches pollable input.
    cfgpath = os.path.join(ctx.workdir, "vm.json")
    with open(cfgpath, "w") as f:
        json.dump(guest_config(ctx.guest("guest-pvh.elf"), boot_args="quiet echo=200"), f)
    p = subprocess.run([ctx.ember, "--no-api", "--config-file", cfgpath], input=data,
                       capture_output=True, timeout=30)
    out = p.stdout.decode()
    check(p.returncode == 0, "status %d\n%s\n%s" % (p.returncode, out, p.stderr.decode()))
    check("echo: " + data.decode() in out, "guest did not receive the input intact:\n" + out)
