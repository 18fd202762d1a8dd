"""test_density.py - 50 VMs at once (issue 12): they boot, each with only its vCPU thread and
its main loop, and exit cleanly, and nothing is left behind (processes, fds, cgroups, jail
directories, mounts, sockets, memory held). Uses tools/bench_density.py's start/stop and leak
check, so the benchmark's accounting is tested too; the large runs are `make bench-density`."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from harness import check, test

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import bench_density as bd  # noqa: E402

N = 50


def opts(ctx):
    cg_version, cgroups = bd.memory_limit_cgroups(256 << 20)
    return argparse.Namespace(
        ember=ctx.ember, jailer=os.path.join(os.path.dirname(ctx.ember), "ember-jailer"),
        guest_dir=ctx.guest_dir, images=None, mem=128, uid=12345,
        jailer_cgroup=cgroups, jailer_cgroup_version=cg_version, mem_tolerance_mib=32, P=N,
        reserve_mib=256, stop_timeout=60)


def describe(vms):
    bad = [vm for vm in vms if vm.up_ns is None][:3]
    return "; ".join("vm %d: %s | log: %s" % (vm.idx, vm.err, bd.tail(vm.log).strip()[-300:])
                     for vm in bad)


def fifty(ctx, kind_name):
    a = opts(ctx)
    if kind_name == "ember-jailer":
        # A sanitizer build is dynamic and cannot run in a jail: jail the static build beside
        # it, as test_jailer does (the jailer itself is still the build under test).
        from test_jailer import jailed_ember
        a.ember = jailed_ember(ctx)
    tmp = tempfile.mkdtemp(prefix="ember-it-density-", dir="/tmp")
    os.chmod(tmp, 0o755)
    try:
        r = bd.Run(a, bd.GuestSource(a), tmp)
        kind = bd.KINDS[kind_name](r)
        base = r.baseline()
        vms, wall, _ = bd.start_all(kind, N, N, 0)
        try:
            up = [vm for vm in vms if vm.up_ns is not None]
            check(len(up) == N, "%s: %d of %d VMs up: %s" % (kind_name, len(up), N, describe(vms)))
            counts = [bd.thread_counts(vm.pid) for vm in vms]
            threads = sorted({c[0] for c in counts})
            check(threads == [2], "threads per VM %r, want 2 (main loop + 1 vCPU)" % threads)
            workers = sorted({c[1] for c in counts})
        finally:
            t_down, killed = bd.stop_all(kind, vms, a.stop_timeout)
            r.remove_parent_cgroup()
        codes = sorted({bd.exit_code(vm.status) for vm in vms})
        check(killed == 0 and codes == [0],
              "%s: after SIGTERM exit statuses %r, %d needed SIGKILL" % (kind_name, codes, killed))
        lk = r.leaks(base, vms, time.monotonic() + 30)
        check(lk["ok"], "%s: left behind: %r" % (kind_name, lk))
        print("  %s: %d up in %.1f s (kernel workers per VM %r), down in %.1f s, memory held "
              "%d KiB (MemAvailable %d KiB short)%s" % (
                  kind_name, N, wall, workers, t_down, lk["mem_held_kib"],
                  lk["mem_available_drop_kib"],
                  " (after dropping clean caches)" if lk["dropped_caches"] else ""))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@test("fast", timeout=900)
def test_density_50_api(ctx):
    """50 idle test guests started at once through the API, stopped by SIGTERM: all exit 0."""
    fifty(ctx, "ember-api")


@test("fast", timeout=900)
def test_density_50_jailer(ctx):
    """The same through ember-jailer (a cgroup leaf each with a memory limit, under one parent;
    v2, or v1 where the host binds memory there): no start races, and no jail, cgroup or mount
    left."""
    if os.geteuid() != 0:
        print("  skipped: needs root")
        return
    fifty(ctx, "ember-jailer")


@test("fast", timeout=120)
def test_density_leak_check_sees_held_memory(ctx):
    """The leak check can fail on memory: 64 MiB held by a process it was not told about (no
    VM, no fd, nothing else left) is reported as held, and the verdict is a leak."""
    a = opts(ctx)
    tmp = tempfile.mkdtemp(prefix="ember-it-density-", dir="/tmp")
    holder = None
    try:
        r = bd.Run(a, bd.GuestSource(a), tmp)
        base = r.baseline()
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sys; b = b'\\x01' * (64 << 20); print('held', "
             "flush=True); sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        check(holder.stdout.readline().strip() == b"held", "the holder did not start")
        lk = r.leaks(base, [], time.monotonic() + 2)
        print("  held %d KiB, MemAvailable %d KiB short" % (lk["mem_held_kib"],
                                                           lk["mem_available_drop_kib"]))
        check(not lk["ok"] and lk["mem_held_kib"] >= 48 * 1024,
              "64 MiB held, the leak check says %r" % lk)
    finally:
        if holder:
            holder.kill()
            holder.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


@test("fast", timeout=900)
def test_density_50_reset(ctx):
    """50 guests at once that reset themselves (--no-api): every Ember exits 0 on its own."""
    a = opts(ctx)
    tmp = tempfile.mkdtemp(prefix="ember-it-density-", dir="/tmp")
    try:
        cfg = os.path.join(tmp, "vm.json")
        bd.bench_boot.ember_config(cfg, os.path.join(a.guest_dir, "guest-pvh.elf"),
                                   "quiet smp=0", a.mem)
        fds0 = bd.fd_count()
        pids = [os.posix_spawn(a.ember, [a.ember, "--no-api", "--config-file", cfg],
                               {"PATH": "/usr/bin:/bin"},
                               file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                                             (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
                for _ in range(N)]
        codes = []
        for pid in pids:
            try:
                _, st = bd.waitpid_deadline(pid, 120)
            except OSError:
                os.kill(pid, 9)
                _, st = os.waitpid(pid, 0)
            codes.append(bd.exit_code(st))
        check(codes == [0] * N, "exit statuses %r" % sorted(set(codes)))
        check(bd.fd_count() == fds0, "harness fds %d -> %d" % (fds0, bd.fd_count()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
