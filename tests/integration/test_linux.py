"""test_linux.py - slow: the Linux kernel from `make images` boots under
Ember with the initramfs and reaches user space (`Run /init`).

On a PVM host (HOST-NOTES.md) Linux user space cannot run: the kernel gets
to `Run /init`, then either KVM stops the guest with an emulation failure
(Ember's exit status 4) or init dies on its first system call, the kernel
panics ("Attempted to kill init") and panic=1 reboots it (status 5).
Elsewhere init runs, writes the boot timer and reboots (status 0). The host fragment of the command line
(build/images/cmdline-host.txt) is added only on a PVM host.
"""
import re

from harness import check, is_pvm_host, run_ember, test


def linux_args(ctx, extra=""):
    args = "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux " + extra
    if is_pvm_host():
        with open(ctx.image("cmdline-host.txt")) as f:
            args += " " + f.read().strip()
    return args.strip()


def boot_linux(ctx, vcpus):
    args = linux_args(ctx, "ember.cmd=true")
    cfg = {
        "boot-source": {"kernel_image_path": ctx.image("vmlinux"),
                        "initrd_path": ctx.image("initramfs.cpio"), "boot_args": args},
        "machine-config": {"vcpu_count": vcpus, "mem_size_mib": 256, "smt": False},
    }
    res = run_ember(ctx, cfg, timeout=600, name="linux%d" % vcpus)
    check("Run /init as init process" in res.out, "kernel did not reach Run /init", res)
    check(("Kernel command line: " + args) in res.out, "kernel saw a different command line", res)
    if vcpus == 1:
        check("Brought up 1 node, 1 CPU" in res.out, "CPU count", res)
    else:
        check(re.search(r"smp: Brought up 1 node, %d CPUs" % vcpus, res.out) is not None,
              "CPU count", res)
    m = re.search(r"Memory: (\d+)K/(\d+)K available", res.out)
    check(m is not None, "no Memory: line", res)
    total_k = int(m.group(2))
    check(240 * 1024 < total_k <= 256 * 1024, "kernel saw %d KiB of RAM" % total_k, res)
    check("Freeing unused kernel image" in res.out or "Run /init" in res.out, "init stage", res)
    if is_pvm_host():
        check(res.rc in (0, 4, 5), "unexpected exit status", res)
        if res.rc == 4:
            check(re.search(r"KVM internal error .* at RIP 0x[0-9a-f]+", res.err) is not None,
                  "status 4 must come with the reason line", res)
        if res.rc == 5:
            check("Kernel panic - not syncing" in res.out and "guest panicked" in res.err,
                  "status 5 must come from a kernel panic", res)
    else:
        check(res.rc == 0, "init should reboot the guest", res)
        check(re.search(r"Guest-boot-time = \d+ us", res.err) is not None, "boot timer", res)
    return res


@test("slow")
def test_linux_initramfs_1cpu(ctx):
    boot_linux(ctx, 1)


@test("slow")
def test_linux_initramfs_2cpus(ctx):
    boot_linux(ctx, 2)
