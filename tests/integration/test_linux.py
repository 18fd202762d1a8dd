"""test_linux.py - slow: the Linux kernel from `make images` under Ember, all the way through
user space, checked from the inside.

- 1, 2 and 4 vCPUs (vmlinux, PVH entry) and once the real bzImage (1 vCPU): the root is a copy of
  rootfs.ext4 on virtio-blk, eth0 is configured from `ip=` on a tap in a network namespace the
  test creates. A script the test writes into the disk image (/check.sh, run by our init as
  `ember.cmd`) reports what user space sees: `nproc`, MemTotal, the root mount and the disk's
  size, eth0's address, a ping to the host, the answer of a command; it writes a marker file,
  and our init reboots through the i8042, which ends Ember with status 0. The host then reads the
  marker back from the image (debugfs).
- The initramfs: user space from initramfs.cpio, a command's exit status reported by init.
- Pause, time and Ctrl-Alt-Del over the API: Linux prints its wall clock every second; a 5 s
  pause stops it, and after the resume its clock is as far from the host's as before
  (kvm-clock, with KVM_KVMCLOCK_CTRL on pause: no lockup or stall warnings); then
  SendCtrlAltDel reaches the kernel's keyboard driver, Linux restarts, and Ember exits 0.

On a PVM host (HOST-NOTES.md of 2026-11-22) the host fragment of the command line
(build/images/cmdline-host.txt, see resources/README.md) is appended: it switches on the gated
kernel patches PVM needs. Anywhere else the kernel is the stock one and nothing is appended.
"""
import json
import os
import re
import shutil
import subprocess
import time

from harness import check, is_pvm_host, run_ember, test
from test_api import Ember

GUEST_IP = "172.16.9.2"
HOST_IP = "172.16.9.1"
GUEST_MAC = "06:00:ac:10:09:02"
MEM_MIB = 256

# Run by init as `ember.cmd`: one `key=value` line per fact, then a marker on the root disk.
CHECK_SH = """#!/bin/sh
echo "lx nproc=$(nproc)"
echo "lx memtotal_kib=$(sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo)"
echo "lx root=$(awk '$2 == "/" {print $3 "," substr($4, 1, 2)}' /proc/mounts)"
echo "lx vda_sectors=$(cat /sys/block/vda/size)"
echo "lx eth0=$(ip -4 -o addr show dev eth0 | awk '{print $4}')"
if ping -c 1 -W 10 %(host)s >/dev/null 2>&1; then echo "lx ping=ok"; else echo "lx ping=fail"; fi
echo "lx answer=$((6 * 7))"
echo ember-disk-write >/ember-marker && sync && echo "lx marker=written"
exit 3
"""


def linux_args(ctx, extra=""):
    args = "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux " + extra
    if is_pvm_host():
        with open(ctx.image("cmdline-host.txt")) as f:
            args += " " + f.read().strip()
    return args.strip()


def sh(*cmd, check_rc=True):
    p = subprocess.run(list(cmd), capture_output=True, text=True)
    if check_rc and p.returncode != 0:
        raise AssertionError("%s: %s" % (" ".join(cmd), p.stderr.strip()))
    return p


class TapNS:
    """A network namespace holding tap `tapLX0` with HOST_IP; Ember runs inside it."""

    def __init__(self):
        self.name = "ember-lx-%d" % os.getpid()
        self.tap = "tapLX0"

    def __enter__(self):
        sh("ip", "netns", "add", self.name)
        sh("ip", "-n", self.name, "tuntap", "add", "dev", self.tap, "mode", "tap")
        sh("ip", "-n", self.name, "addr", "add", HOST_IP + "/24", "dev", self.tap)
        sh("ip", "-n", self.name, "link", "set", self.tap, "up")
        sh("ip", "-n", self.name, "link", "set", "lo", "up")
        return self

    def __exit__(self, *a):
        sh("ip", "netns", "del", self.name, check_rc=False)


def root_disk(ctx):
    """A private copy of rootfs.ext4 with /check.sh written into it (debugfs, no mount)."""
    disk = os.path.join(ctx.workdir, "rootfs.ext4")
    shutil.copyfile(ctx.image("rootfs.ext4"), disk)
    script = os.path.join(ctx.workdir, "check.sh")
    with open(script, "w") as f:
        f.write(CHECK_SH % {"host": HOST_IP})
    sh("debugfs", "-w", "-R", "write %s /check.sh" % script, disk)
    return disk


def kernel_checks(res, out, args, vcpus):
    check(("Kernel command line: " + args) in out, "the kernel saw a different command line", res)
    want = "Brought up 1 node, 1 CPU" if vcpus == 1 else "smp: Brought up 1 node, %d CPUs" % vcpus
    check(want in out, "CPU count: no %r" % want, res)
    m = re.search(r"Memory: (\d+)K/(\d+)K available", out)
    check(m is not None and (MEM_MIB - 16) * 1024 < int(m.group(2)) <= MEM_MIB * 1024,
          "the kernel's Memory: line", res)
    check(re.search(r"Guest-boot-time = \d+ us", res.err) is not None, "no boot-timer line", res)
    check(res.rc == 0 and "guest reset via i8042" in res.err,
          "init's reboot must end Ember with 0 through the i8042", res)


def boot_userspace(ctx, vcpus, kernel):
    disk = root_disk(ctx)
    args = linux_args(ctx, "ip=%s::%s:255.255.255.0::eth0:off ember.cmd=\"sh /check.sh\"" % (
        GUEST_IP, HOST_IP))
    cfg = {
        "boot-source": {"kernel_image_path": ctx.image(kernel), "boot_args": args},
        "machine-config": {"vcpu_count": vcpus, "mem_size_mib": MEM_MIB, "smt": False},
        "drives": [{"drive_id": "rootfs", "path_on_host": disk, "is_root_device": True,
                    "is_read_only": False, "cache_type": "Writeback", "io_engine": "Async"}],
        "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tapLX0",
                                "guest_mac": GUEST_MAC}],
    }
    with TapNS() as ns:
        res = run_ember(ctx, cfg, timeout=600, name="linux%d" % vcpus,
                        prefix=["ip", "netns", "exec", ns.name])
    out = res.out.replace("\r", "")
    got = dict(l[3:].split("=", 1) for l in out.splitlines() if l.startswith("lx ") and "=" in l)
    kernel_checks(res, out, args + " root=/dev/vda rw", vcpus)
    check("virtio_blk virtio0: [vda]" in out and
          re.search(r"VFS: Mounted root \(ext4 filesystem\)", out), "root not on virtio-blk", res)
    check(got.get("nproc") == str(vcpus), "user space saw nproc=%r, not %d" % (
        got.get("nproc"), vcpus), res)
    mem = int(got.get("memtotal_kib") or 0)
    check((MEM_MIB - 16) * 1024 < mem <= MEM_MIB * 1024, "MemTotal %d KiB" % mem, res)
    check(got.get("root") == "ext4,rw", "root mount %r" % got.get("root"), res)
    check(got.get("vda_sectors") == str(os.path.getsize(disk) // 512), "disk size", res)
    check(got.get("eth0") == GUEST_IP + "/24", "eth0 address %r" % got.get("eth0"), res)
    check(got.get("ping") == "ok", "the guest's ping to the host failed", res)
    check(got.get("answer") == "42" and got.get("marker") == "written", "the command", res)
    check("ember-init: command exited with status 3" in out, "init did not report the command",
          res)
    p = sh("debugfs", "-R", "cat /ember-marker", disk)
    check(p.stdout.strip() == "ember-disk-write", "the guest's write is not in the host file: "
          "%r" % p.stdout, res)
    return res


@test("slow")
def test_linux_userspace_1cpu(ctx):
    boot_userspace(ctx, 1, "vmlinux")


@test("slow")
def test_linux_userspace_2cpus(ctx):
    boot_userspace(ctx, 2, "vmlinux")


@test("slow")
def test_linux_userspace_4cpus(ctx):
    boot_userspace(ctx, 4, "vmlinux")


@test("slow")
def test_linux_userspace_bzimage(ctx):
    """The real bzImage: Ember enters its 64-bit entry point; the decompressor runs."""
    res = boot_userspace(ctx, 1, "bzImage")
    check(re.search(r"Booting \S*bzImage \(Linux 64-bit entry", res.err), "not entered as a bzImage",
          res)


@test("slow")
def test_linux_initramfs(ctx):
    args = linux_args(ctx, 'ember.cmd="echo cpus=$(nproc); exit 3"')
    cfg = {
        "boot-source": {"kernel_image_path": ctx.image("vmlinux"),
                        "initrd_path": ctx.image("initramfs.cpio"), "boot_args": args},
        "machine-config": {"vcpu_count": 2, "mem_size_mib": MEM_MIB, "smt": False},
    }
    res = run_ember(ctx, cfg, timeout=600, name="initramfs")
    out = res.out.replace("\r", "")
    kernel_checks(res, out, args, 2)
    check("Run /init as init process" in out, "the kernel did not run /init", res)
    check("\ncpus=2\n" in out, "user space did not see 2 CPUs", res)
    check("ember-init: command exited with status 3" in out, "init did not run the command", res)


@test("slow")
def test_linux_api_pause_time_and_ctrl_alt_del(ctx):
    """Linux over the API: pause 5 s and resume (the guest's clock keeps host time, no lockup
    or stall warnings), then SendCtrlAltDel reboots it."""
    e = Ember(ctx)
    try:
        cmd = ("echo ember-cad-ready; while true; do echo ember-time $(date +%s); sleep 1; done")
        args = linux_args(ctx, 'ember.cmd="%s"' % cmd)
        code, _ = e.curl("PUT", "/boot-source", {"kernel_image_path": ctx.image("vmlinux"),
                                                 "initrd_path": ctx.image("initramfs.cpio"),
                                                 "boot_args": args})
        check(code == 204, "PUT /boot-source: %d" % code)
        code, _ = e.curl("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": MEM_MIB})
        check(code == 204, "PUT /machine-config: %d" % code)
        code, body = e.curl("PUT", "/actions", {"action_type": "InstanceStart"})
        check(code == 204, "InstanceStart: %d %r" % (code, body))
        # The lines the command prints (the kernel also echoes its command line),
        # each paired with the host time at which it was first seen.
        stamp = re.compile(r"^ember-time (\d+)\r?$", re.M)
        seen = []

        def watch(until_count, limit):
            deadline = time.monotonic() + limit
            while len(seen) < until_count and time.monotonic() < deadline:
                check(e.proc.poll() is None, "Ember exited early\n" + e.console()[-3000:] + e.log())
                for v in stamp.findall(e.console())[len(seen):]:
                    seen.append((int(v), time.time()))
                time.sleep(0.1)

        watch(3, 600)
        check(len(seen) >= 3, "Linux did not reach user space")
        # kvm-clock gave the guest the host's wall clock at boot.
        offsets = [g - h for g, h in seen[1:]]
        check(all(abs(o) < 30 for o in offsets), "guest clock offsets from the host: %r" % offsets)

        check(e.curl("PATCH", "/vm", {"state": "Paused"})[0] == 204, "pause")
        n_paused = len(stamp.findall(e.console()))
        time.sleep(5)  # the pause being measured, not a wait for an event
        check(len(stamp.findall(e.console())) == n_paused, "the guest ran while paused")
        for v in stamp.findall(e.console())[len(seen):]:
            seen.append((int(v), time.time()))
        n_before = len(seen)
        check(e.curl("PATCH", "/vm", {"state": "Resumed"})[0] == 204, "resume")
        watch(n_before + 3, 60)
        check(len(seen) >= n_before + 3, "the guest did not run again after resume")
        # Sane time: monotonic, and after the pause the guest's clock is as far
        # from the host's as before it (not frozen by the 5 s, not thrown ahead).
        stamps = [g for g, _ in seen]
        check(stamps == sorted(stamps), "guest time went backwards: %r" % stamps)
        before = max(offsets)
        after = [g - h for g, h in seen[n_before + 1:]]
        check(all(abs(o - before) <= 3 for o in after),
              "guest clock offset %r before the pause, %r after" % (offsets, after))
        for bad in ("soft lockup", "rcu_sched self-detected stall", "rcu: INFO", "hung_task"):
            check(bad not in e.console(), "%r on the console after the pause" % bad)

        code, body = e.curl("PUT", "/actions", {"action_type": "SendCtrlAltDel"})
        check(code == 204, "SendCtrlAltDel: %d %r" % (code, body))
        rc = e.wait(timeout=300)
        check(rc == 0, "Ember exit status %s after Ctrl-Alt-Del\n%s\n%s" % (
            rc, e.console()[-3000:], e.log()[-2000:]))
        check("reboot: Restarting system" in e.console(), "Linux did not restart")
        check("guest reset via i8042" in e.log(), "the guest did not reset through the i8042\n" +
              e.log()[-2000:])
    finally:
        e.kill()
