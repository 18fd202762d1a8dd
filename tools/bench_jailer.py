#!/usr/bin/env python3
"""bench_jailer.py - what ember-jailer costs (issue 5), in one run, as root.

  bench_jailer.py --ember build/ember [--jailer build/ember-jailer] --guest-dir build/guest
                  [-n 20] [--parallel 50] [--uid 12345] [--cgroup-version 1|2]

1. Boot time with and without the jailer, interleaved, n runs each: from just before
   spawning (`ember --no-api --config-file` directly, or `ember-jailer ... -- --no-api
   --config-file /vm.json`) to reading Ember's `Guest-boot-time` log line (the guest
   init's boot-timer write) on its stderr; Ember's own figure (its clock, from its main())
   is printed too. Test guest guest-pvh.elf, `exit=debug quiet`, 1 vCPU, 64 MiB. Each
   jailed run gets a fresh jail (kernel and config copied in beforehand, not timed).
2. 50 jailed VMs started at once: every jailer spawned back to back, then the time until
   each one's Guest-boot-time line, and until all of them (wall clock for the batch).
Prints medians and spreads (min..max). The jails, cgroups and processes are removed.
"""
import argparse
import json
import os
import re
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

MARK = b"Guest-boot-time"


def elf_interp(path):
    import struct
    with open(path, "rb") as f:
        eh = f.read(64)
        if eh[:4] != b"\x7fELF":
            return None
        phoff, = struct.unpack_from("<Q", eh, 32)
        phentsize, phnum = struct.unpack_from("<HH", eh, 54)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            ptype, _, off, _, _, filesz = struct.unpack("<IIQQQQ", f.read(40))
            if ptype == 3:
                f.seek(off)
                return f.read(filesz).rstrip(b"\0").decode()
    return None


def write_config(path, kernel, args):
    with open(path, "w") as f:
        json.dump({"boot-source": {"kernel_image_path": kernel, "boot_args": args},
                   "machine-config": {"vcpu_count": 1, "mem_size_mib": 64, "smt": False}}, f)


class Bench:
    def __init__(self, a, tmp):
        self.a = a
        self.tmp = tmp
        self.base = os.path.join(tmp, "jails")
        os.makedirs(self.base)
        self.parent = "ember-bench-" + uuid.uuid4().hex[:8]
        self.exec_name = os.path.basename(a.ember)
        self.kernel = os.path.join(a.guest_dir, "guest-pvh.elf")
        self.libs = []
        if elf_interp(a.ember):  # a dynamic Ember needs its loader and libraries in the jail
            out = subprocess.run(["ldd", a.ember], capture_output=True, text=True).stdout
            self.libs = re.findall(r"(/\S+)", out)

    def prepare_jail(self):
        jid = "b-" + uuid.uuid4().hex[:16]
        root = os.path.join(self.base, self.exec_name, jid, "root")
        os.makedirs(root)
        shutil.copy(self.kernel, os.path.join(root, "k.elf"))
        write_config(os.path.join(root, "vm.json"), "/k.elf", self.a.guest_args)
        for lib in self.libs:
            os.makedirs(os.path.dirname(root + lib), exist_ok=True)
            shutil.copy(lib, root + lib)
        return jid

    def jailed_argv(self, jid):
        return [self.a.jailer, "--id", jid, "--exec-file", self.a.ember, "--uid", str(self.a.uid),
                "--gid", str(self.a.uid), "--chroot-base-dir", self.base,
                "--cgroup-version", str(self.a.cgroup_version), "--parent-cgroup", self.parent,
                "--", "--no-api", "--config-file", "/vm.json"]

    def remove_jail(self, jid):
        shutil.rmtree(os.path.join(self.base, self.exec_name, jid), ignore_errors=True)
        for d in self.cgroup_dirs():
            leaf = os.path.join(d, jid)
            for _ in range(100):
                try:
                    os.rmdir(leaf)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)

    def cgroup_dirs(self):
        out = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split()[0] in ("cgroup", "cgroup2"):
                    out.append(os.path.join(left.split()[4], self.parent))
        return out

    def cleanup(self):
        for d in self.cgroup_dirs():
            try:
                os.rmdir(d)
            except OSError:
                pass


def spawn(argv):
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def watch(procs, t0s, timeout):
    """Wait for MARK on each process's stderr; returns per-process ns (None if missing),
    own figures (us) and the stderr texts."""
    sel = selectors.DefaultSelector()
    bufs = {}
    seen = {}
    for i, p in enumerate(procs):
        os.set_blocking(p.stderr.fileno(), False)
        sel.register(p.stderr, selectors.EVENT_READ, i)
        bufs[i] = b""
    deadline = time.monotonic() + timeout
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            i = key.data
            data = key.fileobj.read()
            now = time.perf_counter_ns()
            if not data:
                sel.unregister(key.fileobj)
                continue
            bufs[i] += data
            if i not in seen and MARK in bufs[i]:
                seen[i] = now - t0s[i]
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stderr.close()
    own = {}
    for i, b in bufs.items():
        m = re.search(rb"Guest-boot-time = (\d+) us", b)
        if m:
            own[i] = int(m.group(1))
    return [seen.get(i) for i in range(len(procs))], own, bufs


def stats(xs):
    if not xs:
        return "n/a"
    return "%.2f ms (%.2f..%.2f, n=%d)" % (statistics.median(xs), min(xs), max(xs), len(xs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ember", required=True)
    ap.add_argument("--jailer")
    ap.add_argument("--guest-dir", required=True)
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--parallel", type=int, default=50)
    ap.add_argument("--uid", type=int, default=12345)
    ap.add_argument("--cgroup-version", type=int, default=2, choices=(1, 2))
    ap.add_argument("--guest-args", default="exit=debug quiet")
    a = ap.parse_args()
    a.ember = os.path.abspath(a.ember)
    a.jailer = os.path.abspath(a.jailer or os.path.join(os.path.dirname(a.ember), "ember-jailer"))
    a.guest_dir = os.path.abspath(a.guest_dir)
    if os.geteuid() != 0:
        sys.exit("bench_jailer.py: must run as root (the jailer needs it)")
    tmp = tempfile.mkdtemp(prefix="ember-bench-jailer-", dir="/tmp")
    b = Bench(a, tmp)
    try:
        return run(a, b, tmp)
    finally:
        b.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def run(a, b, tmp):
    plain_cfg = os.path.join(tmp, "vm.json")
    write_config(plain_cfg, b.kernel, a.guest_args)
    print("ember %s, jailer %s; test guest `%s`, 1 vCPU, 64 MiB; uid %d, cgroup v%d%s" %
          (a.ember, a.jailer, a.guest_args, a.uid, a.cgroup_version,
           "; dynamic Ember: %d libraries copied into each jail" % len(b.libs) if b.libs else ""))
    res = {"plain": [], "jailed": [], "plain_own": [], "jailed_own": []}
    fails = {"plain": 0, "jailed": 0}
    for i in range(a.n + 1):  # run 0 is a warm-up
        for kind in ("plain", "jailed"):
            jid = b.prepare_jail() if kind == "jailed" else None
            argv = b.jailed_argv(jid) if jid else [a.ember, "--no-api", "--config-file", plain_cfg]
            t0 = time.perf_counter_ns()
            p = spawn(argv)
            seen, own, bufs = watch([p], [t0], 30)
            if jid:
                b.remove_jail(jid)
            if i == 0:
                continue
            if seen[0] is None:
                fails[kind] += 1
                print("  %s run %d failed: %s" % (kind, i, bufs[0][-300:].decode("utf-8", "replace")))
                continue
            res[kind].append(seen[0] / 1e6)
            res[kind + "_own"].append(own[0] / 1e3)
    print("\nBoot time, exec -> Guest-boot-time line, median (min..max) of %d:" % a.n)
    print("  without jailer          %s" % stats(res["plain"]))
    print("  with jailer             %s" % stats(res["jailed"]))
    print("  Ember's own figure: without %s, with %s" % (stats(res["plain_own"]),
                                                        stats(res["jailed_own"])))
    if res["plain"] and res["jailed"]:
        print("  jailer adds (medians)   %.2f ms; ratio %.2f" % (
            statistics.median(res["jailed"]) - statistics.median(res["plain"]),
            statistics.median(res["jailed"]) / statistics.median(res["plain"])))
    print("  failures: %r" % fails)

    n = a.parallel
    jids = [b.prepare_jail() for _ in range(n)]
    procs, t0s = [], []
    t_start = time.perf_counter_ns()
    for jid in jids:
        t0s.append(time.perf_counter_ns())
        procs.append(spawn(b.jailed_argv(jid)))
    t_spawned = time.perf_counter_ns()
    seen, own, bufs = watch(procs, t0s, 120)
    ok = [s for s in seen if s is not None]
    ends = [t0s[i] + s for i, s in enumerate(seen) if s is not None]
    for jid in jids:
        b.remove_jail(jid)
    print("\n%d jailed VMs started at once (spawned in %.1f ms):" % (n, (t_spawned - t_start) / 1e6))
    print("  booted: %d of %d" % (len(ok), n))
    print("  per VM, exec -> Guest-boot-time   %s" % stats([s / 1e6 for s in ok]))
    print("  Ember's own figure                %s" % stats([v / 1e3 for v in own.values()]))
    if ends:
        print("  first spawn -> last boot          %.1f ms (%.1f VMs/s)" % (
            (max(ends) - t_start) / 1e6, len(ok) / ((max(ends) - t_start) / 1e9)))
    for i, s in enumerate(seen):
        if s is None:
            print("  VM %d failed: %s" % (i, bufs[i][-300:].decode("utf-8", "replace")))
            break
    return 0 if not any(fails.values()) and len(ok) == n else 1


if __name__ == "__main__":
    sys.exit(main())
