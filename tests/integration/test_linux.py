"""test_linux.py - slow: the Linux kernel from `make images` boots under
Ember with the busybox initramfs, on 1 and 2 vCPUs, all the way through user
space: our init writes the boot timer, runs the shell command given as
`ember.cmd=` on the kernel command line and reboots through the i8042.

On a PVM host (HOST-NOTES.md) the host fragment of the command line
(build/images/cmdline-host.txt, see resources/README.md) is appended: it
enables the gated kernel patches that let Linux user space run there. The
VMM itself gets no special case.
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
    args = linux_args(ctx, 'ember.cmd="echo cpus=$(nproc); exit 3"')
    cfg = {
        "boot-source": {"kernel_image_path": ctx.image("vmlinux"),
                        "initrd_path": ctx.image("initramfs.cpio"), "boot_args": args},
        "machine-config": {"vcpu_count": vcpus, "mem_size_mib": 256, "smt": False},
    }
    res = run_ember(ctx, cfg, timeout=600, name="linux%d" % vcpus)
    out = res.out.replace("\r", "")
    check(("Kernel command line: " + args) in out, "kernel saw a different command line", res)
    if vcpus == 1:
        check("Brought up 1 node, 1 CPU" in out, "CPU count", res)
    else:
        check("smp: Brought up 1 node, %d CPUs" % vcpus in out, "CPU count", res)
    m = re.search(r"Memory: (\d+)K/(\d+)K available", out)
    check(m is not None, "no Memory: line", res)
    total_k = int(m.group(2))
    check(240 * 1024 < total_k <= 256 * 1024, "kernel saw %d KiB of RAM" % total_k, res)
    check("Run /init as init process" in out, "kernel did not reach Run /init", res)
    # User space: the shell ran, saw every CPU, and its exit status came back.
    check("\ncpus=%d\n" % vcpus in out, "user space did not see %d CPUs" % vcpus, res)
    check("ember-init: command exited with status 3" in out, "init did not run the command", res)
    check(re.search(r"Guest-boot-time = \d+ us", res.err) is not None, "no boot-timer line", res)
    check(res.rc == 0 and "guest reset via i8042" in res.err, "init's reboot must end Ember with 0",
          res)
    return res


@test("slow")
def test_linux_initramfs_1cpu(ctx):
    boot_linux(ctx, 1)


@test("slow")
def test_linux_initramfs_2cpus(ctx):
    boot_linux(ctx, 2)
