"""test_nested.py - group "nested": tests that run on the host and start the nested KVM machine
themselves (tools/with-kvm --nested), so they run the same on a host with or without /dev/kvm.

- with-kvm itself: COMMAND's exit status, stdout and stderr apart, the working directory and the
  environment; inside, a working /dev/kvm, fresh /proc, /sys, /dev, devpts, cgroup2 and tmpfs on
  /tmp, /run and /dev/shm, a tap in a network namespace and a device node, a CPU with SVM and
  without ERMS (and with ERMS under `--cpu max`); with-kvm run inside takes the direct path. A
  time-out ends with 124 and SIGINT with 130, each leaving no process and no job directory behind.
  A machine whose heartbeat stops is wedged: 123 with its registers, and --retry-wedged runs the
  command again in a fresh one.
- A power cut: Ember's drive is a file on ext4 on the nested machine's virtio disk (a raw file
  here). The test guest writes numbered records, flushes each, and prints `durable: K`; at a
  marker the test SIGKILLs the outer QEMU, which to the nested kernel is a power cut (its page
  cache is gone). The host then replays the journal (e2fsck) and reads the drive file out of the
  image (debugfs): every record flushed before the marker must be there. 20 rounds, Sync and
  Async engines in turn; a round whose machine wedged before its marker runs again (3 at most).
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

from harness import check, read_lines, test
from test_virtio_blk import pattern

HERE = os.path.dirname(os.path.abspath(__file__))
WITH_KVM = os.path.join(HERE, "..", "..", "tools", "with-kvm")
JOB_PARENT = "/var/tmp"


def with_kvm(args, cmd, **kw):
    return subprocess.Popen([sys.executable, WITH_KVM, "--nested"] + list(args) + ["--"] + cmd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def finish(p, timeout):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError("with-kvm did not end within %d s\n%s" % (timeout, err.decode()))
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def leftovers(p):
    """The nested machine and job directory of with-kvm process `p`, if still there."""
    tag = "%s/with-kvm.%d." % (JOB_PARENT, p.pid)
    qemus = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"qemu-system-x86_64") and tag.encode() in b" ".join(argv):
                qemus.append(int(d))
    jobs = [d for d in os.listdir(JOB_PARENT) if os.path.join(JOB_PARENT, d).startswith(tag)]
    return qemus, jobs


# What the command checks inside; each line it prints is `name=value`.
INSIDE = r"""
import fcntl, os, subprocess, sys
def mounted(path):
    for l in open("/proc/mounts"):
        f = l.split()
        if f[1] == path:
            return f[2]
    return "none"
kvm = os.open("/dev/kvm", os.O_RDWR)
print("api=%d" % fcntl.ioctl(kvm, 0xAE00, 0))
os.close(fcntl.ioctl(kvm, 0xAE01, 0))
print("create_vm=ok")
print("cwd=" + os.getcwd())
print("env=" + os.environ.get("WITH_KVM_TEST", ""))
print("nested=" + os.environ.get("EMBER_IN_NESTED", ""))
for p in ("/", "/proc", "/sys", "/dev", "/dev/pts", "/tmp", "/run", "/dev/shm", "/sys/fs/cgroup"):
    print("mount %s=%s" % (p, mounted(p)))
print("controllers=" + open("/sys/fs/cgroup/cgroup.controllers").read().strip())
flags = [l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")][0]
print("svm=%d" % ("svm" in flags))
print("erms=%d" % ("erms" in flags))
def sh(*c):
    return subprocess.run(list(c), capture_output=True).returncode
ns = "wkt%d" % os.getpid()
print("netns=%d" % sh("ip", "netns", "add", ns))
print("tap=%d" % sh("ip", "-n", ns, "tuntap", "add", "dev", "tapw0", "mode", "tap"))
print("veth=%d" % sh("ip", "-n", ns, "link", "add", "va", "type", "veth", "peer", "name", "vb"))
sh("ip", "netns", "del", ns)
os.mknod("/tmp/wk-null", 0o20666, os.makedev(1, 3))
with open("/tmp/wk-null", "w") as f:
    print("mknod=%d" % f.write("x"))
print("to stderr", file=sys.stderr)
sys.exit(7)
"""


@test("nested", timeout=300)
def test_with_kvm_runs_a_command_nested(ctx):
    env = dict(os.environ, WITH_KVM_TEST="a b 'c'")
    p = with_kvm(["-t", "240"], [sys.executable, "-c", INSIDE], cwd=ctx.workdir, env=env)
    rc, out, err = finish(p, 280)
    desc = "exit %d\n--- stdout ---\n%s\n--- stderr ---\n%s" % (rc, out, err)
    check(rc == 7, "the command's exit status did not come back\n" + desc)
    check("running in a nested KVM machine (QEMU TCG, kvm_amd)" in err, "no line saying how it ran\n" + desc)
    check("to stderr" in err and "to stderr" not in out, "stderr was not kept apart\n" + desc)
    got = dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
    check(got.get("api") == "12" and got.get("create_vm") == "ok", "no working /dev/kvm inside\n" + desc)
    check(got.get("cwd") == ctx.workdir, "working directory (under /tmp here)\n" + desc)
    check(got.get("env") == "a b 'c'" and got.get("nested") == "1", "environment\n" + desc)
    for path, fs in (("/", "9p"), ("/proc", "proc"), ("/sys", "sysfs"), ("/dev", "devtmpfs"),
                     ("/dev/pts", "devpts"), ("/tmp", "tmpfs"), ("/run", "tmpfs"),
                     ("/dev/shm", "tmpfs"), ("/sys/fs/cgroup", "cgroup2")):
        check(got.get("mount " + path) == fs, "%s is not %s inside\n%s" % (path, fs, desc))
    check({"memory", "cpu"} <= set(got.get("controllers", "").split()), "cgroup2 controllers\n" + desc)
    # The default CPU model has SVM and leaves out ERMS (TCG emulates `rep stosb` bytewise).
    check(got.get("svm") == "1" and got.get("erms") == "0", "CPU flags inside\n" + desc)
    check("-cpu max,-erms,-fsrm" in err, "the line saying how it ran names no CPU model\n" + desc)
    for k in ("netns", "tap", "veth"):
        check(got.get(k) == "0", "%s failed inside\n%s" % (k, desc))
    check(got.get("mknod") == "1", "a device node did not work inside\n" + desc)
    check(leftovers(p) == ([], []), "left behind: %r" % (leftovers(p),))


@test("nested", timeout=300)
def test_with_kvm_inside_runs_directly(ctx):
    """Inside the nested machine /dev/kvm works, so with-kvm runs the command directly, and its
    time limit still holds there (124). This machine has `--cpu max`, which keeps ERMS."""
    inner = ("%s %s -- sh -c 'echo direct-ok'; %s %s -t 2 -- sleep 60; echo timeout-rc=$?; "
             "grep -c -w erms /proc/cpuinfo | sed 's/^/erms-cpus=/'") % (
        sys.executable, WITH_KVM, sys.executable, WITH_KVM)
    rc, out, err = finish(with_kvm(["-t", "240", "--cpu", "max"], ["sh", "-c", inner]), 280)
    desc = "exit %d\n--- stdout ---\n%s\n--- stderr ---\n%s" % (rc, out, err)
    check(rc == 0 and "direct-ok" in out, "inner run\n" + desc)
    check("/dev/kvm works: running directly" in err, "the inner run was not direct\n" + desc)
    check("timeout-rc=124" in out, "a direct run's time limit\n" + desc)
    check(re.search(r"erms-cpus=[1-9]", out), "--cpu max: no ERMS inside\n" + desc)


@test("nested", timeout=300)
def test_with_kvm_time_limit_and_interrupt(ctx):
    t0 = time.monotonic()
    p = with_kvm(["-t", "25"], ["sleep", "600"])
    rc, out, err = finish(p, 120)
    check(rc == 124 and "timed out after 25 s" in err, "time-out: exit %d\n%s" % (rc, err))
    check(time.monotonic() - t0 < 60, "the time-out took %.0f s" % (time.monotonic() - t0))
    check(leftovers(p) == ([], []), "left behind after a time-out: %r" % (leftovers(p),))

    p = with_kvm([], ["sleep", "600"])
    for line in read_lines(p.stderr, 120, "with-kvm's `nested machine up` line"):
        if b"nested machine up" in line:
            break
    p.send_signal(signal.SIGINT)
    rc, out, err = finish(p, 60)
    check(rc == 130 and "interrupted (SIGINT)" in err, "SIGINT: exit %d\n%s" % (rc, err))
    check(leftovers(p) == ([], []), "left behind after SIGINT: %r" % (leftovers(p),))


# Inside: on the first run (no FLAG yet) stop every other child of the nested init, its
# heartbeat among them, which is how a wedged machine looks from outside; on the second, say so.
WEDGE = r"""
import os, signal, sys, time
flag = sys.argv[1]
if os.path.exists(flag):
    print("second run")
    sys.exit(3)
open(flag, "w").close()
def ppid(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])
mine, pid = set(), os.getpid()
while pid > 1:
    mine.add(pid)
    pid = ppid(pid)
stopped = 0
for d in os.listdir("/proc"):
    if d.isdigit() and int(d) not in mine:
        try:
            if ppid(int(d)) == 1:
                os.kill(int(d), signal.SIGSTOP)
                stopped += 1
        except OSError:
            pass
print("stopped %d" % stopped, flush=True)
time.sleep(600)
"""


@test("nested", timeout=400)
def test_with_kvm_wedged_machine(ctx):
    """A nested machine whose heartbeat stops is wedged: with-kvm kills it, exits 123 and
    shows the console and each vCPU's registers; with --retry-wedged 1 the command runs again
    in a fresh machine and its exit status comes back."""
    env = dict(os.environ, EMBER_NESTED_HEARTBEAT_S="15")
    flag = os.path.join(ctx.workdir, "wedged-once")  # the working directory is shared in
    cmd = [sys.executable, "-c", WEDGE, "wedged-once"]
    t0 = time.monotonic()
    p = with_kvm(["-t", "150"], cmd, env=env, cwd=ctx.workdir)
    rc, out, err = finish(p, 200)
    desc = "exit %d\n--- stdout ---\n%s\n--- stderr ---\n%s" % (rc, out, err)
    check(re.search(r"^stopped [1-9]", out, re.M), "the heartbeat was not stopped\n" + desc)
    check(rc == 123 and "stopped responding (no heartbeat for 15 s" in err, "no wedge\n" + desc)
    check(re.search(r"RIP=[0-9a-f]{16}", err), "no registers from QEMU's monitor\n" + desc)
    check(time.monotonic() - t0 < 120, "the wedge took %.0f s to see" % (time.monotonic() - t0))
    check(leftovers(p) == ([], []), "left behind after a wedge: %r" % (leftovers(p),))

    os.unlink(flag)
    p = with_kvm(["-t", "250", "--retry-wedged", "1"], cmd, env=env, cwd=ctx.workdir)
    rc, out, err = finish(p, 300)
    desc = "exit %d\n--- stdout ---\n%s\n--- stderr ---\n%s" % (rc, out, err)
    check(rc == 3 and "second run" in out, "the retry's exit status\n" + desc)
    check("running %s again in a fresh one (retry 1 of 1)" % sys.executable in err,
          "no line saying it ran again\n" + desc)
    check(leftovers(p) == ([], []), "left behind after a retry: %r" % (leftovers(p),))


# ---- the power cut -------------------------------------------------------------------------

DRIVE_SECTORS = 2048
ROUNDS = 20


def make_disk(ctx):
    """A 32 MiB ext4 image holding drive.img, every block of it written (so the guest's writes
    overwrite in place and no allocation waits in the journal)."""
    src = os.path.join(ctx.workdir, "disk-src")
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, "drive.img"), "wb") as f:
        f.write(b"\xee" * (DRIVE_SECTORS * 512))
    disk = os.path.join(ctx.workdir, "disk.img")
    if os.path.exists(disk):
        os.unlink(disk)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", src, disk, "32M"], check=True,
                   capture_output=True)
    return disk


def read_drive(ctx, disk):
    """Recover the image as the next boot would (journal replay), then read drive.img out."""
    fsck = subprocess.run(["e2fsck", "-fy", disk], capture_output=True, text=True)
    check(fsck.returncode in (0, 1), "e2fsck of the cut disk: %d\n%s" % (fsck.returncode,
                                                                       fsck.stdout + fsck.stderr))
    out = os.path.join(ctx.workdir, "drive.out")
    subprocess.run(["debugfs", "-R", "dump /drive.img %s" % out, disk], check=True,
                   capture_output=True)
    with open(out, "rb") as f:
        return f.read()


def power_cut_round(ctx, rnd):
    """One power cut: the records the guest flushed but the disk lost, and the last marker
    seen; or None when the nested machine wedged (with-kvm's 123) before the marker came."""
    engine = "Async" if rnd % 2 else "Sync"
    seed = 0x2000 + rnd
    target = random.Random(rnd).randrange(0, 8)
    disk = make_disk(ctx)
    # Inside, /tmp is the nested machine's own: only the working directory (the test's scratch)
    # and host paths outside /tmp are shared, and a checkout may well be under /tmp. So Ember
    # and the guest run from copies in the scratch, named relative to it.
    for src, name in ((ctx.ember, "ember"), (ctx.guest("guest-pvh.elf"), "guest-pvh.elf")):
        if not os.path.exists(os.path.join(ctx.workdir, name)):
            shutil.copy(src, os.path.join(ctx.workdir, name))
    cfg = {"boot-source": {"kernel_image_path": "guest-pvh.elf",
                           "boot_args": "quiet smp=0 blk-durable=0,%d" % seed},
           "machine-config": {"vcpu_count": 1, "mem_size_mib": 128, "smt": False},
           "drives": [{"drive_id": "d0", "path_on_host": "/tmp/pc/drive.img",
                       "is_root_device": False, "is_read_only": False,
                       "cache_type": "Writeback", "io_engine": engine}]}
    with open(os.path.join(ctx.workdir, "pc.json"), "w") as f:
        json.dump(cfg, f)
    pidfile = os.path.join(ctx.workdir, "qemu.pid")
    inner = ("mkdir -p /tmp/pc && mount -t ext4 /dev/vda /tmp/pc && "
             "exec ./ember --no-api --config-file pc.json")
    p = with_kvm(["-t", "300", "-m", "2048", "--disk", disk, "--pidfile", pidfile],
                 ["sh", "-c", inner], cwd=ctx.workdir)
    seen, cut = None, False
    try:
        # with-kvm sees a wedge after 90 s without a heartbeat and ends the output
        for raw in read_lines(p.stdout, 150, "round %d (%s): the guest's `durable: K` markers "
                              "up to %d" % (rnd, engine, target)):
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith("durable: ") and line != "durable: error":
                seen = int(line.split()[1])
                if seen >= target:
                    with open(pidfile) as f:
                        os.kill(int(f.read()), signal.SIGKILL)  # the power cut
                    cut = True
                    break
    finally:
        rc, _, err = finish(p, 60)
    check(leftovers(p) == ([], []), "round %d: left behind: %r" % (rnd, leftovers(p)))
    if not cut and rc == 123:
        print("     round %d (%s): the nested machine wedged before marker %d (last %r); "
              "with-kvm said:\n%s" % (rnd, engine, target, seen, err[-3000:]), flush=True)
        return None
    check(cut, "round %d (%s): no marker %d (last %r), with-kvm exit %d\n%s" % (
        rnd, engine, target, seen, rc, err[-3000:]))
    check(rc == 125, "round %d: with-kvm exit %d after the power cut\n%s" % (rnd, rc, err[-2000:]))
    data = read_drive(ctx, disk)
    return [(rnd, engine, k) for k in range(seen + 1)
            if data[k * 512:(k + 1) * 512] != pattern(k, 1, seed)], seen


WEDGE_RETRIES = 3  # rounds run again, in all, because the emulator wedged (it does, rarely)


@test("nested", timeout=3600)
def test_blk_power_cut(ctx):
    """20 power cuts of the nested machine, each right after a `durable: K` marker: records
    0..K are in the disk image afterwards. A round whose nested machine wedged before its
    marker (no cut, nothing to judge) runs again, at most WEDGE_RETRIES times in all."""
    losses, marks, wedged = [], [], 0
    for rnd in range(ROUNDS):
        while True:
            result = power_cut_round(ctx, rnd)
            if result is not None:
                break
            wedged += 1
            check(wedged <= WEDGE_RETRIES, "the nested machine wedged %d times" % wedged)
            print("     round %d runs again (wedge %d of at most %d)" % (rnd, wedged,
                                                                       WEDGE_RETRIES), flush=True)
        lost, seen = result
        losses += lost
        marks.append(seen)
    check(not losses, "records flushed before the power cut are missing (round, engine, "
          "record): %r" % losses)
    print("     (power cuts after markers %s: nothing lost; %d wedged rounds run again)" % (
        marks, wedged), flush=True)
