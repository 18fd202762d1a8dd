"""test_linux_devices.py - slow: the Linux kernel from `make images` drives
Ember's devices with its own drivers.

- virtio-blk + virtio-net: the kernel probes both devices, mounts a copy of
  rootfs.ext4 from /dev/vda as its root (`VFS: Mounted root`), configures
  eth0 from `ip=`, answers the host's ping over a tap in a network namespace
  the test creates, and our init writes a file to the disk that the host then
  reads back from the image (debugfs).
- Pause, time and Ctrl-Alt-Del over the API: Linux boots from the initramfs
  and prints its wall clock every second; a 5 s pause stops it, and after
  the resume its clock is as far from the host's as before (kvm-clock, with
  KVM_KVMCLOCK_CTRL on pause: no lockup or stall warnings); then
  SendCtrlAltDel reaches the kernel's keyboard driver, Linux restarts, and
  Ember exits 0.
"""
import json
import os
import re
import shutil
import subprocess
import time

from harness import check, test
from test_api import Ember
from test_linux import linux_args

GUEST_IP = "172.16.9.2"
HOST_IP = "172.16.9.1"


def sh(*cmd, check_rc=True):
    p = subprocess.run(list(cmd), capture_output=True, text=True)
    if check_rc and p.returncode != 0:
        raise AssertionError("%s: %s" % (" ".join(cmd), p.stderr.strip()))
    return p


@test("slow")
def test_linux_virtio_root_and_ping(ctx):
    ns = "ember-lx-%d" % os.getpid()
    tap = "tapLX0"
    disk = os.path.join(ctx.workdir, "rootfs.ext4")
    shutil.copyfile(ctx.image("rootfs.ext4"), disk)
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "tuntap", "add", "dev", tap, "mode", "tap")
        sh("ip", "-n", ns, "addr", "add", HOST_IP + "/24", "dev", tap)
        sh("ip", "-n", ns, "link", "set", tap, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        # The host pings as soon as the kernel reports IP-Config (before init
        # runs); the guest's command leaves it 15 s more, then writes the disk.
        cmd = "echo ember-net-up; sleep 15; echo ember-disk-write > /ember-marker; sync; echo ember-wrote-marker"
        args = linux_args(ctx, "ip=%s::%s:255.255.255.0::eth0:off ember.cmd=\"%s\"" % (
            GUEST_IP, HOST_IP, cmd))
        cfg = {
            "boot-source": {"kernel_image_path": ctx.image("vmlinux"), "boot_args": args},
            "machine-config": {"vcpu_count": 1, "mem_size_mib": 256, "smt": False},
            "drives": [{"drive_id": "rootfs", "path_on_host": disk, "is_root_device": True,
                        "is_read_only": False, "cache_type": "Writeback", "io_engine": "Sync"}],
            "network-interfaces": [{"iface_id": "eth0", "host_dev_name": tap,
                                    "guest_mac": "06:00:ac:10:09:02"}],
        }
        cfg_path = os.path.join(ctx.workdir, "vm.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        out_path = os.path.join(ctx.workdir, "console.out")
        err_path = os.path.join(ctx.workdir, "ember.err")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, ctx.ember, "--no-api",
                                     "--config-file", cfg_path],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            pinged = False
            deadline = time.monotonic() + 600
            try:
                while proc.poll() is None and time.monotonic() < deadline:
                    console = open(out_path, "rb").read().decode("utf-8", "replace")
                    if not pinged and "IP-Config: Complete" in console:
                        p = sh("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "2", GUEST_IP,
                               check_rc=False)
                        pinged = p.returncode == 0
                        continue
                    time.sleep(0.5)
            finally:
                if proc.poll() is None:
                    proc.kill()
                rc = proc.wait()
        console = open(out_path, "rb").read().decode("utf-8", "replace").replace("\r", "")
        log = open(err_path, "rb").read().decode("utf-8", "replace")
        desc = "exit %s\n--- console ---\n%s\n--- log ---\n%s" % (rc, console[-4000:], log[-2000:])
        check("virtio_blk virtio0: [vda]" in console, "virtio-blk not probed\n" + desc)
        check(re.search(r"VFS: Mounted root \(ext4 filesystem\)", console) is not None,
              "root not mounted from virtio-blk\n" + desc)
        check("IP-Config: Complete" in console, "eth0 not configured\n" + desc)
        check(pinged, "the guest did not answer the host's ping\n" + desc)
        check("ember-wrote-marker" in console, "init's command did not finish\n" + desc)
        check(rc == 0, "Ember must exit 0 after the guest's reboot\n" + desc)
        p = sh("debugfs", "-R", "cat /ember-marker", disk)
        check(p.stdout.strip() == "ember-disk-write",
              "the guest's write is not in the host file: %r\n%s" % (p.stdout, desc))
    finally:
        sh("ip", "netns", "del", ns, check_rc=False)


@test("slow")
def test_linux_api_pause_time_and_ctrl_alt_del(ctx):
    """Linux over the API: pause 5 s and resume (the guest's clock keeps host
    time, no lockup or stall warnings), then SendCtrlAltDel reboots it."""
    e = Ember(ctx)
    try:
        cmd = ("echo ember-cad-ready; while true; do echo ember-time $(date +%s); sleep 1; done")
        args = linux_args(ctx, 'ember.cmd="%s"' % cmd)
        code, _ = e.curl("PUT", "/boot-source", {"kernel_image_path": ctx.image("vmlinux"),
                                                 "initrd_path": ctx.image("initramfs.cpio"),
                                                 "boot_args": args})
        check(code == 204, "PUT /boot-source: %d" % code)
        code, _ = e.curl("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 256})
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
        time.sleep(5)
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
