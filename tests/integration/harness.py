"""harness.py - shared pieces of Ember's integration tests.

Tests are plain functions registered with @test(group); run.py runs a group
and prints `N passed, N failed`. Helpers here start `ember` on a JSON config
in a scratch directory and return what the host saw: exit status, console
(stdout), log (stderr).
"""
import json
import os
import re
import select
import signal
import subprocess
import tempfile
import time

TESTS = []
# Every test runs under a watchdog (run.py): past its limit it fails with its name, the traceback
# shows what it was waiting on, and the processes it started are killed.
DEFAULT_TEST_TIMEOUT_S = 300


class Ctx:
    """What every test gets: paths to the binaries and a scratch directory."""

    def __init__(self, ember, guest_dir, images, workdir):
        self.ember = os.path.abspath(ember)
        self.guest_dir = os.path.abspath(guest_dir)
        self.images = os.path.abspath(images) if images else None
        self.workdir = workdir

    def guest(self, name):
        return os.path.join(self.guest_dir, name)

    def image(self, name):
        return os.path.join(self.images, name)


def test(group, timeout=DEFAULT_TEST_TIMEOUT_S):
    """Register a test of `group`; `timeout` is its watchdog limit in seconds."""
    def deco(fn):
        fn.timeout = timeout
        TESTS.append((group, fn))
        return fn
    return deco


class TestTimeout(Exception):
    """Raised inside a test by the watchdog when it ran past its limit."""


def read_lines(stream, timeout, what):
    """Yield the lines (bytes, without the newline) of a child's pipe until EOF. If none arrives
    for `timeout` seconds, fail naming `what` the test was waiting for."""
    fd = stream.fileno()
    buf = b""
    while True:
        nl = buf.find(b"\n")
        if nl >= 0:
            line, buf = buf[:nl], buf[nl + 1:]
            yield line.rstrip(b"\r")
            continue
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise AssertionError("no output for %g s while waiting for %s" % (timeout, what))
        chunk = os.read(fd, 65536)
        if not chunk:
            if buf:
                yield buf
            return
        buf += chunk


def wait_until(cond, timeout, what):
    """Poll cond() until it is true; fail naming `what` after `timeout` seconds."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out after %g s waiting for %s" % (timeout, what))
        time.sleep(0.005)


def vcpus_parked(pid, within=2.0):
    """True if every vCPU thread of Ember `pid` is blocked in the kernel on a futex (parked by
    a pause) within `within` s: a parked vCPU cannot run guest code. A thread that counted
    itself parked, which is when the pause answers, may still be on its way into the futex
    wait (runnable, on a loaded host); the callers check separately that no guest code runs."""
    def parked():
        tids = []
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
                if f.read().startswith("ember_vcpu"):
                    tids.append(t)
        if not tids:
            return False
        for t in tids:
            with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open("/proc/%d/task/%s/wchan" % (pid, t)) as f:
                wchan = f.read()
            if state != "S" or "futex" not in wchan:
                return False
        return True
    end = time.monotonic() + within
    while not parked():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def children():
    """Pids of this process's children (live or zombie)."""
    me, out = os.getpid(), []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                out.append(int(d))
    return out


def kill_children():
    """SIGKILL and reap whatever a test left running; returns how many there were."""
    pids = children()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    for pid in pids:
        while True:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                break
            if time.monotonic() > deadline:
                raise AssertionError("process %d does not die of SIGKILL (state %s)" % (
                    pid, open("/proc/%d/stat" % pid).read().split(") ")[1][:1]))
            time.sleep(0.01)
    return len(pids)


class Result:
    def __init__(self, rc, out, err, seconds):
        self.rc = rc
        self.out = out
        self.err = err
        self.seconds = seconds

    def lines(self, prefix):
        """Values of the guest report lines `prefix: value`."""
        return [l[len(prefix) + 2:] for l in self.out.splitlines() if l.startswith(prefix + ": ")]

    def line(self, prefix):
        vals = self.lines(prefix)
        assert len(vals) == 1, "expected one '%s:' line, got %r\n%s" % (prefix, vals, self.describe())
        return vals[0]

    def describe(self):
        return "exit status %s\n--- console ---\n%s\n--- stderr ---\n%s" % (
            self.rc, self.out[-3000:], self.err[-3000:])


def run_ember(ctx, config, args=(), timeout=30, name="vm", stdin=subprocess.DEVNULL, prefix=()):
    """Write `config` (a dict, or a str written verbatim) and run ember --no-api on it, after
    `prefix` (e.g. ip netns exec NS)."""
    path = os.path.join(ctx.workdir, name + ".json")
    with open(path, "w") as f:
        f.write(config if isinstance(config, str) else json.dumps(config))
    cmd = list(prefix) + [ctx.ember, "--no-api", "--config-file", path] + list(args)
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdin=stdin, capture_output=True, timeout=timeout, cwd=ctx.workdir)
    return Result(p.returncode, p.stdout.decode("utf-8", "replace"),
                  p.stderr.decode("utf-8", "replace"), time.monotonic() - t0)


def guest_config(kernel, boot_args="", vcpus=1, mem_mib=128, initrd=None):
    cfg = {
        "boot-source": {"kernel_image_path": kernel, "boot_args": boot_args},
        "machine-config": {"vcpu_count": vcpus, "mem_size_mib": mem_mib, "smt": False},
    }
    if initrd:
        cfg["boot-source"]["initrd_path"] = initrd
    return cfg


def check(cond, msg, res=None):
    if not cond:
        raise AssertionError(msg + ("\n" + res.describe() if res else ""))


def expected_e820(mem_bytes):
    gap = 0xd0000000
    low = min(mem_bytes, gap)
    e = [(0, 0x9fc00, 1), (0x9fc00, 0x100000 - 0x9fc00, 2), (0x100000, low - 0x100000, 1)]
    if mem_bytes > low:
        e.append((1 << 32, mem_bytes - low, 1))
    return e


def parse_e820(res):
    out = []
    for v in res.lines("e820"):
        m = re.fullmatch(r"0x([0-9a-fA-F]+) 0x([0-9a-fA-F]+) (\d+)", v.strip())
        check(m, "bad e820 line %r" % v, res)
        out.append((int(m.group(1), 16), int(m.group(2), 16), int(m.group(3))))
    return out


def is_pvm_host():
    return os.path.exists("/sys/module/kvm_pvm")


def scratch_dir():
    return tempfile.mkdtemp(prefix="ember-it-")
