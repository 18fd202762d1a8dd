"""test_seccomp.py - per-thread seccomp filters (issue 5): a forbidden syscall on
each thread kind ends Ember with 148, names the syscall and thread, and counts
seccomp.num_faults; guests run to completion under the filters (--no-api and
the API lifecycle with pause/resume); --no-seccomp, --export-seccomp and
--seccomp-filter. The triggers need $(BUILD)/ember-testhooks, built beside
ember by `make testhooks` (integration-fast depends on it)."""
import glob
import json
import os
import re
import subprocess

from harness import check, guest_config, run_ember, test, vcpus_parked, wait_until
from test_api import Ember, configure, counters


def testhooks(ctx):
    path = os.path.join(os.path.dirname(ctx.ember), "ember-testhooks")
    check(os.access(path, os.X_OK), "%s is missing: run `make testhooks` (same BUILD)" % path)
    return path


def run_hooked(ctx, trigger, args=(), name="vm", vcpus=2):
    """ember-testhooks --no-api on the test guest with EMBER_TEST_SECCOMP_TRIGGER."""
    cfg = os.path.join(ctx.workdir, name + ".json")
    with open(cfg, "w") as f:
        json.dump(guest_config(ctx.guest("guest-pvh.elf"), boot_args="counter=3", vcpus=vcpus), f)
    env = dict(os.environ)
    env.pop("EMBER_TEST_SECCOMP_TRIGGER", None)
    if trigger:
        env["EMBER_TEST_SECCOMP_TRIGGER"] = trigger
    p = subprocess.run([testhooks(ctx), "--no-api", "--config-file", cfg] + list(args),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30, env=env,
                       cwd=ctx.workdir)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def metrics_lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f]


def check_fault(ctx, kind):
    mpath = os.path.join(ctx.workdir, "m-%s.json" % kind)
    lpath = os.path.join(ctx.workdir, "log-%s.txt" % kind)
    rc, out, err = run_hooked(ctx, kind, ["--metrics-path", mpath, "--log-path", lpath])
    what = "exit %d\n--- stderr ---\n%s\n--- console ---\n%s" % (rc, err[-2000:], out[-1000:])
    check(rc == 148, "forbidden syscall on the %s thread must exit 148: %s" % (kind, what))
    thread = "vcpu [01] thread" if kind == "vcpu" else "vmm thread"
    pat = r"forbidden syscall socket \(41\) on the %s; exiting with status 148" % thread
    check(re.search(pat, err), "stderr line naming socket and the %s thread: %s" % (kind, what))
    with open(lpath) as f:
        log = f.read()
    check(re.search(pat, log), "the log file gets the line too:\n%s" % log)
    check("test hook: the %s thread calls socket" % kind in log, "trigger ran:\n%s" % log)
    total = sum(l["seccomp"]["num_faults"] for l in metrics_lines(mpath))
    last = metrics_lines(mpath)[-1]
    check(total == 1 and last["seccomp"]["num_faults"] == 1,
          "seccomp.num_faults 1 in the last metrics line: %r" % last)
    if kind == "vcpu":
        check("counter: " not in out, "the guest kept running after the fault: %s" % what)


@test("fast")
def test_seccomp_fault_vmm_thread(ctx):
    check_fault(ctx, "vmm")


@test("fast")
def test_seccomp_fault_vcpu_thread(ctx):
    check_fault(ctx, "vcpu")


@test("fast")
def test_seccomp_boot_no_api(ctx):
    """Filters on by default: a 2-vCPU guest runs to its reset, no false kill."""
    res = run_ember(ctx, guest_config(ctx.guest("guest-pvh.elf"), boot_args="counter=20",
                                      vcpus=2))
    check(res.rc == 0, "boot under the filters", res)
    check("guest: done" in res.out and len(res.lines("counter")) == 20, "guest finished", res)
    check("forbidden syscall" not in res.err, "no seccomp fault", res)
    # and the same guest through the test-hooks binary with no trigger
    rc, out, err = run_hooked(ctx, None)
    check(rc == 0 and "guest: done" in out, "ember-testhooks without a trigger: %d\n%s" % (rc, err))


def seccomp_status(pid):
    """{tid: (Seccomp mode, Seccomp_filters)} for every thread of pid."""
    out = {}
    for st in glob.glob("/proc/%d/task/*/status" % pid):
        try:
            with open(st) as f:
                text = f.read()
        except OSError:
            continue
        mode = re.search(r"^Seccomp:\s+(\d+)", text, re.M)
        nf = re.search(r"^Seccomp_filters:\s+(\d+)", text, re.M)
        name = re.search(r"^Name:\s+(\S+)", text, re.M).group(1)
        out[name] = (int(mode.group(1)), int(nf.group(1)) if nf else -1)
    return out


@test("fast")
def test_seccomp_api_lifecycle(ctx):
    """Through the API: start, every thread filtered (main 1 filter, vCPUs 2),
    pause, resume, FlushMetrics, Ctrl-Alt-Del -> 0 and no fault."""
    e = Ember(ctx)
    try:
        metrics_path = os.path.join(ctx.workdir, "metrics.json")
        check(e.curl("PUT", "/metrics", {"metrics_path": metrics_path})[0] == 204, "PUT /metrics")
        configure(e, ctx, vcpus=2)
        check(e.curl("PUT", "/actions", {"action_type": "InstanceStart"})[0] == 204, "start")
        wait_until(lambda: len(counters(e.console())) >= 3, 10, "the guest to start counting")
        st = seccomp_status(e.proc.pid)
        check(st.get("ember") == (2, 1), "main thread: one filter in mode 2: %r" % st)
        check(st.get("ember_vcpu0") == (2, 2) and st.get("ember_vcpu1") == (2, 2),
              "vCPU threads: the inherited filter and their own: %r" % st)
        check(e.curl("PATCH", "/vm", {"state": "Paused"})[0] == 204, "pause")
        a = len(counters(e.console()))
        check(vcpus_parked(e.proc.pid), "a vCPU thread is not parked after the pause answered")
        b = len(counters(e.console()))
        check(a == b, "the counter advanced while paused (%d -> %d)" % (a, b))
        check(e.curl("PATCH", "/vm", {"state": "Resumed"})[0] == 204, "resume")
        wait_until(lambda: len(counters(e.console())) > b + 5, 10, "progress after resume")
        check(e.curl("GET", "/vm/config")[0] == 200, "GET /vm/config")
        check(e.curl("PUT", "/actions", {"action_type": "FlushMetrics"})[0] == 204, "flush")
        check(e.curl("PUT", "/actions", {"action_type": "SendCtrlAltDel"})[0] == 204, "CAD")
        rc = e.wait()
        check(rc == 0, "exit status %d under the filters:\n%s" % (rc, e.log()))
        check("forbidden syscall" not in e.log(), "no seccomp fault:\n" + e.log())
        check(sum(l["seccomp"]["num_faults"] for l in metrics_lines(metrics_path)) == 0,
              "no faults counted")
    finally:
        e.kill()


@test("fast")
def test_seccomp_disabled(ctx):
    """--no-seccomp: a warning, no filter, so the trigger's socket() just works."""
    rc, out, err = run_hooked(ctx, "vcpu", ["--no-seccomp"])
    check(rc == 0 and "guest: done" in out, "--no-seccomp run: %d\n%s" % (rc, err))
    check("--no-seccomp: seccomp filters are off" in err, "warning logged:\n" + err)
    check("test hook: the vcpu thread calls socket" in err, "the trigger ran:\n" + err)
    e = Ember(ctx, ["--no-seccomp"])
    try:
        st = seccomp_status(e.proc.pid)
        check(st.get("ember", (None,))[0] == 0, "no filter on the main thread: %r" % st)
    finally:
        e.kill()


@test("fast")
def test_seccomp_filter_file(ctx):
    """--export-seccomp writes this build's filters; --seccomp-filter loads and enforces them."""
    path = os.path.join(ctx.workdir, "filters.bpf")
    p = subprocess.run([ctx.ember, "--export-seccomp", path], capture_output=True, timeout=10)
    check(p.returncode == 0 and os.path.getsize(path) > 100,
          "--export-seccomp: %d %r" % (p.returncode, p.stderr))
    m = re.search(rb"vmm: (\d+) syscalls, vcpu: (\d+)", p.stdout)
    check(m and 0 < int(m.group(2)) < int(m.group(1)), "counts: %r" % p.stdout)
    with open(path, "rb") as f:
        data = f.read()
    check(data[:8] == b"EMBERSEC", "magic")
    res = run_ember(ctx, guest_config(ctx.guest("guest-pvh.elf"), boot_args="counter=5", vcpus=2),
                    args=["--seccomp-filter", path])
    check(res.rc == 0 and "guest: done" in res.out, "boot with --seccomp-filter", res)
    # The loaded filters are the ones in force: the vCPU trigger still dies.
    rc, _, err = run_hooked(ctx, "vcpu", ["--seccomp-filter", path])
    check(rc == 148 and "forbidden syscall socket" in err, "loaded vcpu filter enforced: %d\n%s"
          % (rc, err))
    rc, _, err = run_hooked(ctx, "vmm", ["--seccomp-filter", path])
    check(rc == 148 and "on the vmm thread" in err, "loaded vmm filter enforced: %d\n%s" % (rc, err))


@test("fast")
def test_seccomp_filter_file_bad(ctx):
    cfg = guest_config(ctx.guest("guest-pvh.elf"), boot_args="counter=1")
    good = os.path.join(ctx.workdir, "good.bpf")
    subprocess.run([ctx.ember, "--export-seccomp", good], check=True, capture_output=True)
    with open(good, "rb") as f:
        data = f.read()
    cases = {
        "garbage.bpf": (os.urandom(300), "not an Ember seccomp filter file"),
        "empty.bpf": (b"", "too short"),
        "truncated.bpf": (data[:-5], "truncated"),
        "trailing.bpf": (data + b"\0" * 8, "unexpected bytes"),
        "otherbuild.bpf": (data[:16] + b"x86_64-0000000000000000".ljust(48, b"\0") + data[64:],
                           "compiled for build x86_64-0000000000000000"),
    }
    for name, (blob, why) in cases.items():
        path = os.path.join(ctx.workdir, name)
        with open(path, "wb") as f:
            f.write(blob)
        res = run_ember(ctx, cfg, args=["--seccomp-filter", path])
        check(res.rc == 1, "%s must be refused with 1" % name, res)
        check("--seccomp-filter %s: " % path in res.err and why in res.err,
              "%s: message naming the file and '%s'" % (name, why), res)
        check("guest: done" not in res.out, "%s: the guest must not run" % name, res)
    res = run_ember(ctx, cfg, args=["--seccomp-filter", os.path.join(ctx.workdir, "nope.bpf")])
    check(res.rc == 1 and "nope.bpf: No such file" in res.err, "missing file", res)
    res = run_ember(ctx, cfg, args=["--seccomp-filter", good, "--no-seccomp"])
    check(res.rc == 1 and "cannot be used together" in res.err, "conflicting flags", res)
