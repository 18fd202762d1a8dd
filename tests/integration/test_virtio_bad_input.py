"""test_virtio_bad_input.py - bad drive and network-interface configuration
(issue 3, item 7): missing image, size not a multiple of 512, a directory,
no permission (an immutable file opened read-write, which fails even for
root), duplicate drive ids, two root devices, malformed MAC, duplicate
host_dev_name, missing tap, busy tap. With --no-api: exactly one line on
stderr naming the device and the field or file, exit status 1, nothing on the
console, nothing left behind. With the API: 400 (at PUT, or at InstanceStart
when only opening the device can tell), nothing half-created: after fixing the
configuration a second InstanceStart boots a guest that sees every device.
Taps exist only inside a network namespace the test creates."""
import json
import re
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, guest_config, read_lines, run_ember, test  # noqa: E402
from test_virtio_api import NsEmber  # noqa: E402
from test_virtio_blk import drive, make_image  # noqa: E402
from test_virtio_net import GUEST_IP, GUEST_MAC, NetNS  # noqa: E402

SEED0, SEED1 = 0x1234, 0x5678


def expect_error(ctx, cfg, needles, prefix=()):
    """ember --no-api on cfg: exit 1, one 'ember: ' line naming every needle."""
    before = set(os.listdir(ctx.workdir))
    path = os.path.join(ctx.workdir, "vm.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    p = subprocess.run(list(prefix) + [ctx.ember, "--no-api", "--config-file", path],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30, cwd=ctx.workdir)
    err = p.stderr.decode("utf-8", "replace")
    desc = "exit %d\n--- stdout ---\n%s\n--- stderr ---\n%s" % (p.returncode, p.stdout[-2000:], err)
    check(p.returncode == 1, "expected exit status 1\n" + desc)
    lines = [l for l in err.splitlines() if l.strip()]
    check(len(lines) == 1 and lines[0].startswith("ember: "), "expected one 'ember: ' line\n" + desc)
    for n in needles:
        check(n in lines[0], "the error should mention %r\n%s" % (n, desc))
    check(p.stdout == b"", "nothing on the console\n" + desc)
    after = set(os.listdir(ctx.workdir))
    check(after - before <= {"vm.json"}, "files left behind: %s" % (after - before))
    return lines[0]


def base_cfg(ctx, args):
    return guest_config(ctx.guest("guest-pvh.elf"), boot_args="quiet smp=0 " + args)


def api_start_fails(ctx, args, drives, nets, bad, needles, fix, check_guest, prefix=(), name="api"):
    """Configure over the API with `bad` the last device (a drive or an
    interface); a 400 at its PUT or at InstanceStart naming `needles`; then
    fix() returns the corrected device, PUT again, InstanceStart succeeds and
    check_guest(console) holds after the guest ends."""
    e = NsEmber(ctx, prefix=prefix, name=name)
    try:
        e.ok("PUT", "/boot-source", {"kernel_image_path": ctx.guest("guest-pvh.elf"),
                                     "boot_args": "quiet smp=0 " + args})
        for d in drives:
            e.ok("PUT", "/drives/" + d["drive_id"], d)
        for n in nets:
            e.ok("PUT", "/network-interfaces/" + n["iface_id"], n)
        is_drive = "drive_id" in bad
        url = ("/drives/" + bad["drive_id"]) if is_drive else ("/network-interfaces/" + bad["iface_id"])
        code, reply = e.curl("PUT", url, bad)
        if code == 204:
            code, reply = e.curl("PUT", "/actions", {"action_type": "InstanceStart"})
        check(code == 400, "bad %r: want 400, got %d %r\n%s" % (bad, code, reply, e.describe()))
        msg = reply["fault_message"]
        for n in needles:
            check(n in msg, "fault_message %r should mention %r" % (msg, n))
        check(e.curl("GET", "/")[1]["state"] == "Not started", "state after a failed start")
        check(e.console() == "", "the guest ran after a failed InstanceStart\n" + e.describe())
        good = fix()
        e.ok("PUT", url, good)
        e.ok("PUT", "/actions", {"action_type": "InstanceStart"})
        rc = e.wait(60)
        check(rc == 0, "ember exit status %s after the retried start\n%s" % (rc, e.describe()))
        check_guest(e.console(), e)
    finally:
        e.kill()


def blk_guest_ok(*sectors):
    def chk(out, e):
        lines = out.splitlines()
        for i, n in enumerate(sectors):
            check("blk%d: read-check ok sectors=%d" % (i, n) in lines,
                  "blk%d not read back\n%s" % (i, e.describe()))
        check("blk%d: no such drive" % len(sectors) not in out and "guest: done" in lines,
              "guest\n" + e.describe())
        check(sum(l.startswith("virtio: dev=") for l in lines) == len(sectors),
              "devices half-created or duplicated\n" + e.describe())
    return chk


# ---- drives ------------------------------------------------------------------

def drive_case(ctx, bad_drive, needles, fix):
    """--no-api with [good d0, bad d1]; then the API with the same, fixed by fix()."""
    good = drive("d0", make_image(ctx, "good.img", 2048, seed=SEED0))
    cfg = base_cfg(ctx, "")
    cfg["drives"] = [good, bad_drive]
    expect_error(ctx, cfg, needles)
    api_start_fails(ctx, "blk-read=0,%d blk-read=1,%d" % (SEED0, SEED1), [good], [], bad_drive,
                    needles, fix, blk_guest_ok(2048, 1024))


def fixed_d1(ctx):
    return lambda: drive("d1", make_image(ctx, "fixed.img", 1024, seed=SEED1))


@test("fast")
def test_drive_missing_image(ctx):
    path = os.path.join(ctx.workdir, "missing.img")
    drive_case(ctx, drive("d1", path), ["d1", path, "No such file"], fixed_d1(ctx))


@test("fast")
def test_drive_size_not_multiple_of_512(ctx):
    path = os.path.join(ctx.workdir, "odd.img")
    with open(path, "wb") as f:
        f.write(b"\0" * (1024 * 512 + 100))
    # As Firecracker: a warning, and the guest sees the whole sectors (1024) only.
    cfg = base_cfg(ctx, "")
    cfg["drives"] = [drive("d1", path)]
    res = run_ember(ctx, cfg)
    check(res.rc == 0, "boot with an odd-sized image", res)
    check(re.search(r"d1.*%s.*not a multiple of 512.*last 100 bytes" % re.escape(path), res.err),
          "the warning names the drive, the file and the tail", res)


@test("fast")
def test_drive_directory_as_image(ctx):
    path = os.path.join(ctx.workdir, "adir")
    os.mkdir(path)
    drive_case(ctx, drive("d1", path), ["d1", path], fixed_d1(ctx))
    # Read-only: opening succeeds, the type check refuses it.
    drive_case(ctx, drive("d1", path, ro=True), ["d1", path, "not a regular file"], fixed_d1(ctx))


@test("fast")
def test_drive_no_permission(ctx):
    """An immutable file cannot be opened for writing, even by root."""
    path = make_image(ctx, "immutable.img", 1024, seed=SEED1)
    p = subprocess.run(["chattr", "+i", path], capture_output=True)
    check(p.returncode == 0, "chattr +i failed (filesystem?): %r" % p.stderr)
    try:
        drive_case(ctx, drive("d1", path), ["d1", path, "read-write", "Operation not permitted"],
                   lambda: drive("d1", path, ro=True))  # read-only is allowed
    finally:
        subprocess.run(["chattr", "-i", path], capture_output=True)


@test("fast")
def test_drive_duplicate_ids_and_two_roots(ctx):
    a = make_image(ctx, "a.img", 2048, seed=SEED0)
    b = make_image(ctx, "b.img", 1024, seed=SEED1)
    cfg = base_cfg(ctx, "")
    cfg["drives"] = [drive("d0", a), drive("d0", b)]
    expect_error(ctx, cfg, ["drives[1].drive_id", "duplicate", "d0"])
    r0, r1 = dict(drive("d0", a), is_root_device=True), dict(drive("d1", b), is_root_device=True)
    cfg["drives"] = [r0, r1]
    expect_error(ctx, cfg, ["drives[1].is_root_device", "d0"])
    # API: the second root device is refused at PUT; made a plain drive it boots.
    api_start_fails(ctx, "blk-read=0,%d blk-read=1,%d" % (SEED0, SEED1), [r0], [], r1,
                    ["is_root_device"], lambda: drive("d1", b), blk_guest_ok(2048, 1024))


# ---- network interfaces -------------------------------------------------------

def iface(name, tap, mac=GUEST_MAC):
    return {"iface_id": name, "host_dev_name": tap, "guest_mac": mac}


def net_guest_ok(out, e):
    lines = out.splitlines()
    check("blk0: read-check ok sectors=2048" in lines, "blk0 after the retry\n" + e.describe())
    check(any(l.startswith("net0: ready ip=") for l in lines), "net0 after the retry\n" + e.describe())
    check(sum(l.startswith("virtio: dev=") for l in lines) == 2,
          "devices half-created or duplicated\n" + e.describe())
    check("guest: done" in lines, "guest\n" + e.describe())


NET_ARGS = "blk-read=0,%d net-ip=%s net-echo=7000 net-timeout=1" % (SEED0, GUEST_IP)


def net_case(ctx, ns, bad, needles, fix, name="api"):
    good = drive("d0", make_image(ctx, "good.img", 2048, seed=SEED0))
    cfg = base_cfg(ctx, "")
    cfg["drives"] = [good]
    cfg["network-interfaces"] = [bad]
    expect_error(ctx, cfg, needles, prefix=ns.prefix())
    api_start_fails(ctx, NET_ARGS, [good], [], bad, needles, fix, net_guest_ok,
                    prefix=ns.prefix(), name=name)


@test("fast")
def test_net_malformed_mac(ctx):
    with NetNS() as ns:
        # (A multicast MAC such as 07:00:ac:10:00:02 is accepted, as Firecracker.)
        for i, mac in enumerate(("06:00:ac:10:00", "06-00-ac-10-00-02", "zz:00:ac:10:00:02")):
            net_case(ctx, ns, iface("n0", ns.tap, mac), ["guest_mac", mac],
                     lambda: iface("n0", ns.tap), name="mac%d" % i)


@test("fast")
def test_net_duplicate_host_dev_name(ctx):
    with NetNS() as ns:
        cfg = base_cfg(ctx, "")
        cfg["network-interfaces"] = [iface("n0", ns.tap), iface("n1", ns.tap, "06:00:ac:10:00:03")]
        expect_error(ctx, cfg, ["network-interfaces[1].host_dev_name", ns.tap], prefix=ns.prefix())
        good = drive("d0", make_image(ctx, "good.img", 2048, seed=SEED0))
        n0 = iface("n0", ns.tap)
        # API: the second interface on the same tap is refused; on its own tap it boots.
        ns.exec(["ip", "tuntap", "add", "dev", "tap1", "mode", "tap"], check=True)

        def chk(out, e):
            check(sum(l.startswith("net1: mac=") for l in out.splitlines()) == 1 or
                  sum(l.startswith("virtio: dev=") for l in out.splitlines()) == 3,
                  "second interface not probed\n" + e.describe())
        api_start_fails(ctx, "blk-read=0,%d" % SEED0, [good], [n0],
                        iface("n1", ns.tap, "06:00:ac:10:00:03"), ["host_dev_name", ns.tap],
                        lambda: iface("n1", "tap1", "06:00:ac:10:00:03"), chk, prefix=ns.prefix())


@test("fast")
def test_net_missing_tap(ctx):
    with NetNS() as ns:
        def fix():
            ns.exec(["ip", "tuntap", "add", "dev", "tap9", "mode", "tap"], check=True)
            ns.exec(["ip", "link", "set", "tap9", "up"], check=True)
            return iface("n0", "tap9")
        net_case(ctx, ns, iface("n0", "tap9"), ["n0", "host_dev_name", "tap9", "does not exist"], fix)


TAP_HOLDER = r"""
import fcntl, os, struct, sys
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", sys.argv[1].encode(), 0x0002 | 0x1000 | 0x4000))
print("held", flush=True)
sys.stdin.read()
"""


@test("fast")
def test_net_tap_busy(ctx):
    with NetNS() as ns:
        holder = subprocess.Popen(ns.prefix() + [sys.executable, "-c", TAP_HOLDER, ns.tap],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            first = next(read_lines(holder.stdout, 30, "the tap holder's `held`"), b"")
            check(first.strip() == b"held", "could not hold the tap")

            def release():
                holder.stdin.close()
                holder.wait(10)
                return iface("n0", ns.tap)
            net_case(ctx, ns, iface("n0", ns.tap), ["n0", "host_dev_name", ns.tap, "busy"], release)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
