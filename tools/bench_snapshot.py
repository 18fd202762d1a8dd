#!/usr/bin/env python3
"""bench_snapshot.py - snapshot create and restore under Ember, next to a cold boot of the same
guest and to QEMU microvm restoring it from a file (migrate to a file, then -incoming), all in
one run; then host memory for N clones of one snapshot next to N cold boots.

  bench_snapshot.py --ember build/ember --guest-dir build/guest [-n 10] [--clones 1,10,100]
                    [--images build/images] [--json FILE] [--png FILE] [--qemu qemu-system-x86_64]
  bench_snapshot.py --replot FILE.json --png FILE.png     (draw an earlier run again)

The guest is the test guest with `counter=0 probe` (1 vCPU, 128 MiB): it prints `counter: i`
about every 10 ms and writes the boot-timer port each time, and every ~0.1 ms between lines
(`probe`), so that a restored guest's first write comes as soon as it runs. Per round,
interleaved:
  Ember cold boot     Ember's `Guest-boot-time` (InstanceStart -> the guest's first write)
  Ember create        Ember's `snapshot created in N us` (a paused VM, Full)
  Ember load         `snapshot loaded in N us (M us of CPU)`: PUT /snapshot/load received ->
                      vCPUs running (resume_vm), and Ember's CPU time for it (the main
                      thread's CLOCK_THREAD_CPUTIME_ID); then where it went, from Ember's
                      debug lines (`--level Debug`): file read, check, VM built (and of that
                      KVM_CREATE_VM, memory, devices, irqchip, vCPUs), state restored, started
  Ember load->write   `Guest-boot-time` after a load: load received -> the guest's first write
  exec -> running     for both VMMs, from spawning the process to the restored VM running
                      (Ember: a waiting process's PUT /snapshot/load answered; QEMU: -incoming
                      from a file, QMP query-status "running")
  exec -> counter     the same to the first counter line the restored guest prints
With --images (the Linux guest images, `make images`), per round also:
  Linux cold boot     Ember's `Guest-boot-time` for Linux (InstanceStart -> init's boot-timer
                      write in user space)
  Linux load          `snapshot loaded in N us (M us of CPU)` for that Linux, snapshotted
                      idle in user space: what a platform saves by restoring instead
--fixed-addresses runs every process the harness starts (Ember and QEMU) with
ADDR_NO_RANDOMIZE: in the nested machine QEMU's TCG translates code per virtual address, so a
program placed at a new random address by each exec is translated again at every start; this
shows how much of a nested load's time and CPU that is (on hardware it changes nothing).
Clones: N processes restored from one snapshot (File backend, MAP_PRIVATE), each resumed until
its guest printed a line, then paused; the same for N cold boots. Host memory is the drop in
MemAvailable and the sum of PSS (smaps_rollup) over the N processes.
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import bench_boot  # set_addr_no_randomize
import bench_density  # its QMP client and Linux source

MEM_MIB = 128


def http(sock, method, path, body=None, timeout=60):
    end = time.monotonic() + 30
    while True:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        try:
            s.connect(sock)
            break
        except (ConnectionRefusedError, FileNotFoundError):  # not bound or not listening yet
            s.close()
            if time.monotonic() > end:
                raise
            time.sleep(0.001)
    data = json.dumps(body) if body is not None else ""
    s.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n%s" % (method, path, len(data), data)).encode())
    out = b""
    while b"\r\n\r\n" not in out:
        c = s.recv(65536)
        if not c:
            break
        out += c
    head, _, rest = out.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head)
    while m and len(rest) < int(m.group(1)):
        c = s.recv(65536)
        if not c:
            break
        rest += c
    s.close()
    code = int(head.split()[1])
    if code >= 300:
        raise RuntimeError("%s %s: %d %s" % (method, path, code, rest[:300]))
    return code


class Proc:
    def __init__(self, argv, tmp, name):
        self.out = os.path.join(tmp, name + ".out")
        self.err = os.path.join(tmp, name + ".err")
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=open(self.out, "wb"),
                                  stderr=open(self.err, "wb"))

    def text(self, which="out"):
        with open(self.out if which == "out" else self.err, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(self, pattern, timeout=120, which="out", after=0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = re.search(pattern, self.text(which)[after:], re.M)
            if m:
                return m, time.monotonic()
            if self.p.poll() is not None:
                break
            time.sleep(0.002)
        raise RuntimeError("no %r (rc %s): %s" % (pattern, self.p.poll(), self.text("err")[-800:]))

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def ember(a, tmp, name):
    sock = os.path.join(tmp, name + ".sock")
    pr = Proc([a.ember, "--api-sock", sock, "--level", "Debug"], tmp, name)
    end = time.monotonic() + 30
    while not os.path.exists(sock) and time.monotonic() < end:
        time.sleep(0.001)
    pr.sock = sock
    return pr


GUEST_ARGS = "quiet smp=0 counter=0 probe"
LINUX_UP = r"^linux-idle"  # bench_density.LinuxSource.idle_marker


def cold_boot(a, tmp, name, linux=False):
    pr = ember(a, tmp, name)
    if linux:  # idle in user space: bench_density's linux source (PVM fragment and all)
        src = bench_density.LinuxSource(a)
        http(pr.sock, "PUT", "/boot-source", {
            "kernel_image_path": src.kernel, "initrd_path": src.initrd, "boot_args": src.args})
    else:
        http(pr.sock, "PUT", "/boot-source", {
            "kernel_image_path": os.path.join(a.guest_dir, "guest-pvh.elf"),
            "boot_args": GUEST_ARGS})
    http(pr.sock, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": MEM_MIB})
    http(pr.sock, "PUT", "/actions", {"action_type": "InstanceStart"})
    m, _ = pr.wait_for(r"Guest-boot-time = (\d+) us", which="err", timeout=300)
    pr.boot_us = int(m.group(1))
    pr.wait_for(LINUX_UP if linux else r"^counter: \d+", timeout=300)
    return pr


def load_waiting(a, tmp, name, snap, mem):
    """A waiting process (answered once Ember waits for requests, its spare VM made: a
    pre-started process, as a platform keeps a pool of them) restores the snapshot and resumes
    it: exec -> running (load_time: Ember's time and CPU for the load)."""
    pr = ember(a, tmp, name)
    http(pr.sock, "GET", "/")
    http(pr.sock, "PUT", "/snapshot/load", {"snapshot_path": snap, "mem_backend": {
        "backend_type": "File", "backend_path": mem}, "resume_vm": True})
    pr.exec_to_running_ms = (time.monotonic() - pr.t0) * 1000  # answered: vCPUs running
    return pr


def load_time(pr):
    m, _ = pr.wait_for(r"snapshot loaded in (\d+) us \((\d+) us of CPU\)", which="err")
    pr.load_us, pr.load_cpu_us = int(m.group(1)), int(m.group(2))
    return pr


def restore(a, tmp, name, snap, mem):
    """The test guest restored (load_waiting), then its first counter line and its first
    boot-timer write after the load, and where the load's time went."""
    pr = load_waiting(a, tmp, name, snap, mem)
    m, t = pr.wait_for(r"^counter: \d+")
    pr.exec_to_counter_ms = (t - pr.t0) * 1000
    load_time(pr)
    m, _ = pr.wait_for(r"Guest-boot-time = (\d+) us", which="err")
    pr.write_us = int(m.group(1))
    pr.phases = {}
    for pattern, names in PHASES:
        m = re.search(pattern, pr.text("err"))
        if m:
            pr.phases.update(zip(names, (int(x) / 1000 for x in m.groups())))
    return pr


# Where a load's time goes: Ember's debug lines (snapshot.c, vm.c), in this order.
PHASES = [
    (r"snapshot load: file read in (\d+) us, checked and configuration parsed in (\d+) us, "
     r"VM built in (\d+) us, state restored in (\d+) us, started in (\d+) us",
     ("file read", "checked and configuration parsed", "VM built", "state restored", "started")),
    (r"VM built: /dev/kvm and KVM_CREATE_VM (\d+) us(?: \(spare\))?, memory (\d+) us, virtio devices (\d+) us, "
     r"irqchip, PIT, CPUID and legacy devices (\d+) us, vCPUs (\d+) us",
     ("  of which KVM_CREATE_VM", "  of which memory", "  of which virtio devices",
      "  of which irqchip, PIT, CPUID, legacy", "  of which vCPUs")),
]


def qemu_argv(a, extra):
    return [a.qemu, "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=off,pit=off,pic=off,acpi=off",
            "-enable-kvm", "-cpu", "kvm64,+tsc-deadline", "-m", str(MEM_MIB), "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
            "-device", "i8042",  # the guest polls the i8042 status port between lines
            "-kernel", os.path.join(a.guest_dir, "guest-pvh.elf"), "-append",
            GUEST_ARGS] + extra


def qemu_save(a, tmp, path):
    mon = os.path.join(tmp, "qemu.mon")
    pr = Proc(qemu_argv(a, ["-monitor", "unix:%s,server,nowait" % mon]), tmp, "qsave")
    pr.wait_for(r"^counter: 20")
    s = socket.socket(socket.AF_UNIX)
    s.connect(mon)
    s.settimeout(60)

    def cmd(c):
        s.sendall((c + "\n").encode())
        time.sleep(0.2)
        try:
            return s.recv(65536).decode("utf-8", "replace")
        except socket.timeout:
            return ""
    # No "stop" first: a migration of a stopped VM leaves the destination stopped too.
    cmd('migrate "exec:cat > %s"' % path)
    end = time.monotonic() + 120
    while time.monotonic() < end and "completed" not in cmd("info migrate"):
        time.sleep(0.2)
    cmd("quit")
    pr.p.wait(30)


def qemu_restore(a, tmp, path, name):
    qmp = os.path.join(tmp, name + ".qmp")
    pr = Proc(qemu_argv(a, ["-qmp", "unix:%s,server=on,wait=off" % qmp,
                            "-incoming", "exec:cat %s" % path]), tmp, name)
    deadline = time.monotonic() + 120
    q = bench_density.Qmp(qmp, deadline)
    try:  # running: the state is loaded and the vCPUs go (as Ember's load answer)
        while q.cmd("query-status").get("status") != "running":
            if time.monotonic() > deadline:
                raise RuntimeError("QEMU: not running after -incoming")
            time.sleep(0.0005)
        pr.exec_to_running_ms = (time.monotonic() - pr.t0) * 1000
    finally:
        q.close()
    m, t = pr.wait_for(r"^counter: \d+")
    pr.exec_to_counter_ms = (t - pr.t0) * 1000
    return pr


def stats(xs):
    xs = sorted(xs)
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "n": len(xs)}


def mem_available_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def clone_memory(a, tmp, n, snap, mem, cold):
    subprocess.run(["sync"])
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1")
    before = mem_available_kib()
    procs = []
    try:
        for i in range(n):
            pr = cold_boot(a, tmp, "m%d" % i) if cold else restore(a, tmp, "m%d" % i, snap, mem)
            http(pr.sock, "PATCH", "/vm", {"state": "Paused"})
            procs.append(pr)
        time.sleep(0.5)
        drop = before - mem_available_kib()
        pss = sum(pss_kib(p.p.pid) for p in procs)
    finally:
        for p in procs:
            p.kill()
    return {"n": n, "mem_available_drop_mib": drop / 1024, "pss_sum_mib": pss / 1024,
            "per_vm_mib": pss / 1024 / n}


def plot(res, png):
    """Host memory (sum of PSS and the MemAvailable drop) against N, clones and cold boots."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench_snapshot: matplotlib missing (python3-matplotlib), no plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, mark, color in (("clones", "clones of one snapshot", "o", "C0"),
                                    ("cold_boots", "cold boots", "s", "C3")):
        xs = [x["n"] for x in res[key]]
        ax.plot(xs, [x["pss_sum_mib"] for x in res[key]], mark + "-", color=color,
                label=label + " (sum of PSS)")
        # A drop under 0.1 MiB (noise at small N) is drawn at 0.1.
        ax.plot(xs, [max(x["mem_available_drop_mib"], 0.1) for x in res[key]], mark + "--",
                color=color, label=label + " (MemAvailable drop)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("VMs (128 MiB test guest each)")
    ax.set_ylabel("host memory, MiB")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ember", default="build/ember")
    ap.add_argument("--guest-dir", default="build/guest")
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--clones", default="1,10,100")
    ap.add_argument("--images", help="the Linux guest images (make images): Linux rows too")
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--json")
    ap.add_argument("--png")
    ap.add_argument("--replot", metavar="JSON", help="only draw --png from an earlier --json")
    ap.add_argument("--fixed-addresses", action="store_true",
                    help="start Ember and QEMU with ADDR_NO_RANDOMIZE (see above)")
    a = ap.parse_args()
    if a.fixed_addresses:  # inherited by every child, kept across exec
        bench_boot.set_addr_no_randomize(True)
    if a.replot:
        with open(a.replot) as f:
            plot(json.load(f), a.png)
        return
    tmp = tempfile.mkdtemp(prefix="bench-snap.")
    res = {"rounds": a.n, "fixed_addresses": a.fixed_addresses}
    try:
        src = cold_boot(a, tmp, "src")
        http(src.sock, "PATCH", "/vm", {"state": "Paused"})
        snap, mem = os.path.join(tmp, "s.snap"), os.path.join(tmp, "s.mem")
        http(src.sock, "PUT", "/snapshot/create", {"snapshot_path": snap, "mem_file_path": mem})
        qfile = os.path.join(tmp, "qemu.state")
        qemu_save(a, tmp, qfile)
        if a.images:
            lsrc = cold_boot(a, tmp, "lsrc", linux=True)
            http(lsrc.sock, "PATCH", "/vm", {"state": "Paused"})
            lsnap, lmem = os.path.join(tmp, "l.snap"), os.path.join(tmp, "l.mem")
            http(lsrc.sock, "PUT", "/snapshot/create", {"snapshot_path": lsnap,
                                                         "mem_file_path": lmem})
            lsrc.kill()
        lx_cold, lx_load, lx_cpu = [], [], []
        cold, create, load, load_cpu, write, e_exec, q_exec = [], [], [], [], [], [], []
        e_run, q_run = [], []
        phases = {}
        for r in range(a.n):
            c = cold_boot(a, tmp, "cold%d" % r)
            cold.append(c.boot_us / 1000)
            http(c.sock, "PATCH", "/vm", {"state": "Paused"})
            t = os.path.join(tmp, "t.snap")
            http(c.sock, "PUT", "/snapshot/create", {"snapshot_path": t,
                                                      "mem_file_path": os.path.join(tmp, "t.mem")})
            m, _ = c.wait_for(r"snapshot created in (\d+) us", which="err")
            create.append(int(m.group(1)) / 1000)
            c.kill()
            e = restore(a, tmp, "r%d" % r, snap, mem)
            load.append(e.load_us / 1000)
            load_cpu.append(e.load_cpu_us / 1000)
            write.append(e.write_us / 1000)
            e_exec.append(e.exec_to_counter_ms)
            e_run.append(e.exec_to_running_ms)
            for k, v in e.phases.items():
                phases.setdefault(k, []).append(v)
            e.kill()
            q = qemu_restore(a, tmp, qfile, "q%d" % r)
            q_exec.append(q.exec_to_counter_ms)
            q_run.append(q.exec_to_running_ms)
            q.kill()
            if a.images:
                lc = cold_boot(a, tmp, "lcold%d" % r, linux=True)
                lx_cold.append(lc.boot_us / 1000)
                lc.kill()
                lr = load_time(load_waiting(a, tmp, "lload%d" % r, lsnap, lmem))
                lx_load.append(lr.load_us / 1000)
                lx_cpu.append(lr.load_cpu_us / 1000)
                lr.kill()
                print("round %d: Linux cold boot %.1f ms, Linux load %.2f ms (%.2f CPU)" % (
                    r, lx_cold[-1], lx_load[-1], lx_cpu[-1]), flush=True)
            print("round %d: cold %.1f ms, create %.1f ms, load %.2f ms (%.2f CPU), load->write "
                  "%.2f ms, exec->running ember %.1f qemu %.1f ms, exec->counter ember %.1f "
                  "qemu %.1f ms" % (r, cold[-1], create[-1], load[-1], load_cpu[-1], write[-1],
                                    e_run[-1], q_run[-1], e_exec[-1], q_exec[-1]), flush=True)
        src.kill()
        res.update({"ember_cold_boot_ms": stats(cold), "ember_create_ms": stats(create),
                    "ember_load_to_running_ms": stats(load), "ember_load_cpu_ms": stats(load_cpu),
                    "ember_load_to_first_write_ms": stats(write),
                    "ember_exec_to_counter_ms": stats(e_exec),
                    "ember_exec_to_running_ms": stats(e_run),
                    "qemu_exec_to_running_ms": stats(q_run),
                    "qemu_exec_to_counter_ms": stats(q_exec),
                    "ember_load_phases_ms": {k: stats(v) for k, v in phases.items()}})
        for k, v in res["ember_load_phases_ms"].items():
            print("load phase %-40s median %8.3f ms [%.3f..%.3f]" % (k, v["median"], v["min"],
                                                                      v["max"]), flush=True)
        res["ratio_cold_over_load"] = res["ember_cold_boot_ms"]["median"] / res["ember_load_to_running_ms"]["median"]
        if a.images:
            res.update({"linux_cold_boot_ms": stats(lx_cold), "linux_load_to_running_ms":
                        stats(lx_load), "linux_load_cpu_ms": stats(lx_cpu)})
            res["linux_ratio_cold_over_load"] = (res["linux_cold_boot_ms"]["median"] /
                                                 res["linux_load_to_running_ms"]["median"])
        res["ratio_qemu_over_ember_exec_to_counter"] = (res["qemu_exec_to_counter_ms"]["median"] /
                                                        res["ember_exec_to_counter_ms"]["median"])
        res["ratio_ember_over_qemu_exec_to_running"] = (res["ember_exec_to_running_ms"]["median"] /
                                                        res["qemu_exec_to_running_ms"]["median"])
        res["clones"], res["cold_boots"] = [], []
        for n in [int(x) for x in a.clones.split(",") if x]:
            res["clones"].append(clone_memory(a, tmp, n, snap, mem, cold=False))
            res["cold_boots"].append(clone_memory(a, tmp, n, snap, mem, cold=True))
            print("N=%d: clones %s | cold boots %s" % (n, res["clones"][-1], res["cold_boots"][-1]),
                  flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    if a.png:
        plot(res, a.png)

if __name__ == "__main__":
    main()
