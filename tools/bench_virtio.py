#!/usr/bin/env python3
"""bench_virtio.py - virtio-blk and virtio-net throughput of the test guest under Ember and
under QEMU's microvm, interleaved in one run, next to fio on the host (DESIGN.md, "Measuring").

  bench_virtio.py --ember build/ember --guest-dir build/guest [-n 5] [--quick]
                  [--qemu qemu-system-x86_64] [--mem 256] [--file-mib 1024] [--target-s 2]
                  [--fio-runtime 3] [--no-blk] [--no-net] [--json FILE]

Same guest image (guest-pvh.elf, 1 vCPU, --mem MiB), same host file, same tap set-up for both
VMMs; every round runs Ember, then QEMU (then Ember with the Sync engine, then fio), n rounds.

blk: a --file-mib host file of random bytes (read once first: page cache warm for everybody).
  One boot per VMM and round runs six `blk-bench=` passes in order: 4 KiB randread QD1, QD32,
  randwrite QD1, QD32, 1 MiB seqread, seqwrite (QD1). Ember: io_engine Async, cache Writeback;
  QEMU: -drive ...,aio=io_uring (aio=threads if refused), cache=writeback (its default),
  -device virtio-blk-device. A third boot (Ember, io_engine Sync) runs randread QD32 only.
  Time = host timestamps of the console lines `bench-start` -> `bench-end` (stdout read
  unbuffered, each complete line stamped on arrival); ops/bytes = the guest's own counts.
  fio on the host, same file, buffered (--direct=0), io_uring, --invalidate=0, --runtime s each.
  N is calibrated at the start (one short boot per VMM) so that a pass lasts about --target-s.

net: a network namespace with tap0 (172.16.0.1/24) that the tool creates and deletes; the
  guest is 172.16.0.2, MAC 06:00:ac:10:00:02 (neighbour entry pre-set on the host).
  guest->host: `net-peer=172.16.0.1 net-tx=N,7002,SIZE`; a UDP socket in the namespace counts
    datagrams/bytes. Rate = datagrams received by the host / (host time of the guest's
    `bench-start` line -> last datagram received); the guest's own send rate (N / bench-start ->
    bench-end) and the loss are shown too.
  host->guest: `net-count=7001`; a sender in the namespace sends a burst of N datagrams (u32
    seq first), then `quit` every 5 ms until the guest prints `bench-end: net rx frames=K`.
    Rate = K / (host's first sendto -> `bench-end` line read). Loss = 1 - K/N (tap queue drops
    when the guest cannot keep up; both VMMs get the same tap and the same sender).
  SIZE = 64 B (datagrams/s) and 1472 B (bytes/s, MB = 10^6 B).
"""
import argparse
import json
import os
import re
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

QEMU_MACHINE = "microvm,x-option-roms=off,isa-serial=on,rtc=off,pit=off,pic=off,acpi=off"
QEMU_BLK_DEV = "virtio_mmio.device=512@0xfeb00e00:12"
GUEST_IP, HOST_IP = "172.16.0.2", "172.16.0.1"
GUEST_MAC = "06:00:ac:10:00:02"
COUNT_PORT, TX_PORT = 7001, 7002

BLK_KINDS = [  # key, label, guest kind, qd, block size, unit
    ("rr1", "4K randread QD1", 0, 1, 4096, "IOPS"),
    ("rr32", "4K randread QD32", 0, 32, 4096, "IOPS"),
    ("rw1", "4K randwrite QD1", 1, 1, 4096, "IOPS"),
    ("rw32", "4K randwrite QD32", 1, 32, 4096, "IOPS"),
    ("sr", "1M seqread", 2, 1, 1 << 20, "MB/s"),
    ("sw", "1M seqwrite", 3, 1, 1 << 20, "MB/s"),
]
FIO = {"rr1": ("randread", "4k", 1), "rr32": ("randread", "4k", 32),
       "rw1": ("randwrite", "4k", 1), "rw32": ("randwrite", "4k", 32),
       "sr": ("read", "1m", 1), "sw": ("write", "1m", 1)}
NET_CASES = [  # key, direction, payload size
    ("tx64", "tx", 64), ("tx1472", "tx", 1472), ("rx64", "rx", 64), ("rx1472", "rx", 1472)]

RECEIVER = r"""
import socket, sys, time
port, idle = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
except OSError:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
s.bind(("0.0.0.0", port))
print("ready", flush=True)
n = nbytes = 0
first = last = None
s.settimeout(60)
buf = bytearray(65536)
while True:
    try:
        k = s.recv_into(buf)
    except socket.timeout:
        break
    t = time.monotonic_ns()
    if first is None:
        first = t
        s.settimeout(idle)
    last = t
    n += 1
    nbytes += k
print("result %d %d %d %d" % (n, nbytes, first or 0, last or 0), flush=True)
"""

SENDER = r"""
import socket, struct, sys, time
ip, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
pad = b"x" * (size - 4)
pk = struct.Struct("<I").pack
addr = (ip, port)
err = 0
t0 = time.monotonic_ns()
for i in range(n):
    try:
        s.sendto(pk(i) + pad, addr)
    except OSError:
        err += 1
t1 = time.monotonic_ns()
print("sent %d %d %d %d" % (n, err, t0, t1), flush=True)
end = time.monotonic() + 30
while time.monotonic() < end:
    try:
        s.sendto(b"quit", addr)
    except OSError:
        pass
    time.sleep(0.005)
"""


# ---------------------------------------------------------------- processes


class Run:
    def __init__(self):
        self.lines = []      # (t_ns monotonic, text)
        self.err = b""
        self.rc = None
        self.timed_out = False
        self.note = None

    def first(self, prefix, after=0):
        for i in range(after, len(self.lines)):
            if self.lines[i][1].startswith(prefix):
                return i
        return None

    def tail(self, n=8):
        out = ["      | " + l for _, l in self.lines[-n:]]
        out += ["      ! " + l for l in self.err.decode(errors="replace").rstrip().splitlines()[-4:]]
        return "\n".join(out)


def run_vmm(argv, timeout_s, on_line=None, cwd=None):
    """Run argv; stamp every complete stdout line on arrival (monotonic ns). on_line(run, t,
    line) may return True to stop waiting (the process is then killed)."""
    r = Run()
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, bufsize=0, cwd=cwd, start_new_session=True)
    except OSError as e:
        r.note = "spawn failed: %s" % e
        return r
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    sel.register(p.stderr, selectors.EVENT_READ)
    partial = b""
    deadline = time.monotonic() + timeout_s
    stop = False
    try:
        while sel.get_map() and not stop:
            left = deadline - time.monotonic()
            if left <= 0:
                r.timed_out = True
                break
            for key, _ in sel.select(timeout=min(left, 1.0)):
                data = os.read(key.fd, 65536)
                t = time.monotonic_ns()
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                if key.fileobj is p.stderr:
                    r.err += data
                    if len(r.err) > 1 << 20:
                        r.err = r.err[-(1 << 19):]
                    continue
                partial += data
                while b"\n" in partial:
                    line, partial = partial.split(b"\n", 1)
                    text = line.decode(errors="replace").rstrip("\r")
                    r.lines.append((t, text))
                    if on_line and on_line(r, t, text):
                        stop = True
    finally:
        if p.poll() is None and (stop or r.timed_out):
            _killpg(p.pid)
        try:
            r.rc = p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _killpg(p.pid)
            r.rc = p.wait()
        # Drain what is left (the last lines after bench-end, for the checks).
        for f in (p.stdout, p.stderr):
            try:
                rest = f.read() or b""
            except (OSError, ValueError):
                rest = b""
            if f is p.stdout:
                partial += rest
            else:
                r.err += rest
        t = time.monotonic_ns()
        for line in partial.split(b"\n"):
            if line.strip():
                r.lines.append((t, line.decode(errors="replace").rstrip("\r")))
        sel.close()
        p.stdout.close()
        p.stderr.close()
    return r


def _killpg(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def which(name):
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


# ---------------------------------------------------------------- VMM command lines


class VMMs:
    def __init__(self, a, tmp):
        self.a = a
        self.tmp = tmp
        self.guest = os.path.abspath(os.path.join(a.guest_dir, "guest-pvh.elf"))
        self.qemu_aio = "io_uring"

    def ember(self, name, args, drive=None, engine="Async", tap=None):
        cfg = {"boot-source": {"kernel_image_path": self.guest, "boot_args": "quiet smp=0 " + args},
               "machine-config": {"vcpu_count": 1, "mem_size_mib": self.a.mem, "smt": False}}
        if drive:
            cfg["drives"] = [{"drive_id": "d0", "path_on_host": drive, "is_root_device": False,
                              "is_read_only": False, "cache_type": "Writeback",
                              "io_engine": engine}]
        if tap:
            cfg["network-interfaces"] = [{"iface_id": "n0", "host_dev_name": tap,
                                          "guest_mac": GUEST_MAC}]
        path = os.path.join(self.tmp, name + ".json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        return ([os.path.abspath(self.a.ember), "--no-api", "--config-file", path] +
                self.a.ember_args.split(), cfg)

    def qemu(self, args, drive=None, tap=None):
        a = [self.a.qemu, "-M", QEMU_MACHINE, "-enable-kvm", "-cpu", "kvm64,+tsc-deadline",
             "-m", str(self.a.mem), "-smp", "1", "-nodefaults", "-no-user-config",
             "-display", "none", "-serial", "stdio",
             "-device", "isa-debug-exit,iobase=0xf4,iosize=1",
             "-global", "virtio-mmio.force-legacy=false"]
        if drive:
            a += ["-drive", "id=d0,file=%s,format=raw,if=none,aio=%s" % (drive, self.qemu_aio),
                  "-device", "virtio-blk-device,drive=d0"]
        if tap:
            a += ["-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no" % tap,
                  "-device", "virtio-net-device,netdev=n0,mac=%s" % GUEST_MAC]
        return a + ["-kernel", self.guest,
                    "-append", "exit=debug quiet smp=0 %s %s" % (QEMU_BLK_DEV, args)]


def exit_ok(vmm, r):
    if r.note:
        return r.note
    if r.timed_out:
        return "timeout"
    want = 1 if vmm == "qemu" else 0
    if r.rc != want:
        return "exit status %s (want %d)" % (r.rc, want)
    if r.first("guest: done") is None:
        return "no `guest: done`"
    return None


# ---------------------------------------------------------------- statistics / table


def stats(xs):
    if not xs:
        return None
    s = sorted(xs)
    return {"n": len(s), "median": statistics.median(s), "min": s[0], "max": s[-1]}


def fnum(v):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return "%.0f" % v
    if abs(v) >= 100:
        return "%.1f" % v
    return "%.2f" % v


def cell(st):
    if not st:
        return "-"
    return "%s [%s..%s]" % (fnum(st["median"]), fnum(st["min"]), fnum(st["max"]))


# ---------------------------------------------------------------- blk


def warm(path):
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass


def make_file(path, mib):
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(mib):
            f.write(chunk[i % 7:] + chunk[:i % 7])  # not all MiBs identical
    warm(path)  # page cache warm (again before every round)


def blk_args(plan, only=None):
    return " ".join("blk-bench=0,%d,%d,%d" % (k[2], k[3], plan[k[0]]) for k in BLK_KINDS
                    if only is None or k[0] in only)


def parse_blk(r, keys):
    """{key: (value, ops, seconds)} for each bench pass in the run, or a failure reason."""
    out, pos = {}, 0
    for key in keys:
        kd = [k for k in BLK_KINDS if k[0] == key][0]
        i = r.first("bench-start: blk", pos)
        if i is None:
            return out, "%s: no bench-start line" % kd[1]
        j = r.first("bench-end: blk", i + 1)
        if j is None:
            return out, "%s: no bench-end line" % kd[1]
        pos = j + 1
        m = re.search(r"ops=(\d+) bytes=(\d+) errors=(\d+)", r.lines[j][1])
        if not m:
            return out, "%s: bad bench-end %r" % (kd[1], r.lines[j][1])
        ops, nbytes, errs = (int(x) for x in m.groups())
        if errs:
            return out, "%s: %d I/O errors" % (kd[1], errs)
        dt = (r.lines[j][0] - r.lines[i][0]) / 1e9
        if dt <= 0:
            return out, "%s: zero duration" % kd[1]
        val = ops / dt if kd[5] == "IOPS" else nbytes / dt / 1e6
        out[key] = (val, ops, dt)
    return out, None


def fio_run(path, key, runtime):
    rw, bs, qd = FIO[key]
    cmd = ["fio", "--name=x", "--filename=" + path, "--rw=" + rw, "--bs=" + bs,
           "--iodepth=%d" % qd, "--ioengine=io_uring", "--direct=0", "--time_based",
           "--runtime=%d" % runtime, "--invalidate=0", "--output-format=json"]
    # --invalidate=0: fio's default drops the file's page cache before the job, which would
    # make fio read from disk and leave the next VMM run a cold cache.
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=runtime + 60)
        j = json.loads(p.stdout.decode(errors="replace")[p.stdout.find(b"{"):])
        job = j["jobs"][0]
        d = job["read"] if rw in ("randread", "read") else job["write"]
        if job.get("error"):
            return None, "fio error %s" % job["error"]
        return (d["iops"] if bs == "4k" else d["bw_bytes"] / 1e6), None
    except Exception as e:  # noqa: BLE001 - a failed fio run is reported, not fatal
        return None, "fio failed: %s" % e


def bench_blk(a, v, tmp, samples, failures, log):
    img = os.path.join(tmp, "disk.img")
    log("blk: writing and reading a %d MiB host file (%s)..." % (a.file_mib, img))
    make_file(img, a.file_mib)
    keys = [k[0] for k in BLK_KINDS]

    # aio=io_uring accepted?
    r = run_vmm(v.qemu("", drive=img), 60)
    if exit_ok("qemu", r):
        v.qemu_aio = "threads"
        r2 = run_vmm(v.qemu("", drive=img), 60)
        log("  QEMU refused aio=io_uring (%s); using aio=threads%s" % (
            r.err.decode(errors="replace").strip()[-200:],
            "" if not exit_ok("qemu", r2) else " (which ALSO failed: %s)" % exit_ok("qemu", r2)))
    log("  QEMU drive: aio=%s" % v.qemu_aio)

    # Calibrate N: one short boot per VMM, rate from the host timestamps.
    cal = {k[0]: (4000 if k[4] == 4096 else 100) for k in BLK_KINDS}
    rates = {}
    for vmm in ("ember", "qemu"):
        argv = (v.ember("cal", blk_args(cal), drive=img)[0] if vmm == "ember"
                else v.qemu(blk_args(cal), drive=img))
        r = run_vmm(argv, 300)
        res, why = parse_blk(r, keys)
        why = why or exit_ok(vmm, r)
        if why:
            log("  calibration %s FAILED: %s\n%s" % (vmm, why, r.tail()))
        for k, (_, ops, dt) in res.items():
            rates[k] = max(rates.get(k, 0), ops / dt)
    plan = {}
    for k in BLK_KINDS:
        rate = rates.get(k[0]) or (2000 if k[4] == 4096 else 200)
        n = int(rate * a.target_s)
        plan[k[0]] = max(n, 64 if k[4] == 4096 else 8)
        plan[k[0]] = min(plan[k[0]], 5_000_000)
    log("  N per pass (about %.1f s at the faster VMM's calibrated rate): %s" % (
        a.target_s, ", ".join("%s %d" % (k[1], plan[k[0]]) for k in BLK_KINDS)))

    e_argv, e_cfg = v.ember("blk-async", blk_args(plan), drive=img, engine="Async")
    s_argv, s_cfg = v.ember("blk-sync", blk_args(plan, only=("rr32",)), drive=img, engine="Sync")
    q_argv = v.qemu(blk_args(plan), drive=img)
    log("  ember (Async): %s\n    config: %s" % (" ".join(e_argv), json.dumps(e_cfg)))
    log("  ember (Sync):  same with io_engine Sync, only `%s`" % blk_args(plan, only=("rr32",)))
    log("  qemu:          %s" % " ".join(q_argv))
    timeout = 120 + 4 * a.target_s * len(BLK_KINDS) * 5
    for rnd in range(a.n):
        warm(img)
        for vmm, argv, ks in (("ember", e_argv, keys), ("qemu", q_argv, keys),
                              ("ember_sync", s_argv, ["rr32"])):
            r = run_vmm(argv, timeout)
            res, why = parse_blk(r, ks)
            why = why or exit_ok("qemu" if vmm == "qemu" else "ember", r)
            for k, (val, _, _) in res.items():
                samples[vmm]["blk_" + k].append(val)
            if why:
                failures.append("round %d %s blk: %s" % (rnd + 1, vmm, why))
                log("  round %d %s FAILED: %s\n%s" % (rnd + 1, vmm, why, r.tail()))
        if not a.no_fio:
            for k in keys:
                val, why = fio_run(img, k, a.fio_runtime)
                if why:
                    failures.append("round %d fio %s: %s" % (rnd + 1, k, why))
                    log("  round %d fio %s FAILED: %s" % (rnd + 1, k, why))
                else:
                    samples["fio"]["blk_" + k].append(val)
        log("  blk round %d/%d done" % (rnd + 1, a.n))
    os.unlink(img)
    return {"plan": plan, "qemu_aio": v.qemu_aio, "ember_async": " ".join(e_argv),
            "ember_config": e_cfg, "qemu": " ".join(q_argv)}


# ---------------------------------------------------------------- net


class NetNS:
    def __init__(self):
        self.name = "ember-bench-" + uuid.uuid4().hex[:8]
        self.tap = "tap0"
        self.made = False

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        self.made = True
        try:
            for cmd in (["tuntap", "add", "dev", self.tap, "mode", "tap"],
                        ["addr", "add", HOST_IP + "/24", "dev", self.tap],
                        ["link", "set", "lo", "up"],
                        ["link", "set", self.tap, "up"],
                        ["neigh", "replace", GUEST_IP, "lladdr", GUEST_MAC, "dev", self.tap,
                         "nud", "permanent"]):
                subprocess.run(["ip", "-n", self.name] + cmd, check=True, capture_output=True)
            subprocess.run(self.prefix() + ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
                           capture_output=True)
        except Exception:
            self.__exit__()
            raise
        return self

    def prefix(self):
        return ["ip", "netns", "exec", self.name]

    def __exit__(self, *exc):
        if self.made:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
            self.made = False


def net_tx_run(ns, argv, n, size):
    """guest -> host. Returns ({...}, failure reason or None)."""
    recv = subprocess.Popen(ns.prefix() + [sys.executable, "-c", RECEIVER, str(TX_PORT), "1.0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        ready = recv.stdout.readline().decode().strip()
        if ready != "ready":
            return None, "UDP receiver did not start: %s" % recv.stderr.read().decode()[-300:]
        r = run_vmm(ns.prefix() + argv, 120)
        try:  # the receiver ends 1 s after the last datagram; nothing sent: stop it soon
            out, err = recv.communicate(timeout=15 if r.first("bench-end: net tx") is not None
                                        else 2)
        except subprocess.TimeoutExpired:
            _killpg(recv.pid)
            out, err = recv.communicate()
    finally:
        if recv.poll() is None:
            _killpg(recv.pid)
            recv.wait()
    vmm = "qemu" if "qemu" in os.path.basename(argv[0]) else "ember"
    why = exit_ok(vmm, r)
    m = re.search(rb"result (\d+) (\d+) (\d+) (\d+)", out)
    i, j = r.first("bench-start: net tx"), r.first("bench-end: net tx")
    if i is None or j is None:
        return None, why or "no bench-start/bench-end net tx line\n" + r.tail()
    if not m:
        return None, "receiver gave no result: %s" % err.decode()[-300:]
    got, nbytes, t_first, t_last = (int(x) for x in m.groups())
    mm = re.search(r"frames=(\d+) bytes=(\d+)", r.lines[j][1])
    sent = int(mm.group(1)) if mm else n
    t_start = r.lines[i][0]
    dt_rx = (t_last - t_start) / 1e9 if got else None
    dt_tx = (r.lines[j][0] - t_start) / 1e9
    res = {"sent": sent, "received": got,
           "rx_pps": got / dt_rx if got and dt_rx > 0 else 0.0,
           "rx_MBps": (got * size) / dt_rx / 1e6 if got and dt_rx > 0 else 0.0,
           "tx_pps": sent / dt_tx if dt_tx > 0 else None,
           "loss_pct": 100.0 * (1 - got / sent) if sent else None}
    if why:
        return res, why + "\n" + r.tail()
    if not got:
        return res, "host received nothing"
    return res, None


def net_rx_run(ns, argv, n, size):
    """host -> guest."""
    state = {"sender": None}

    def on_line(run, t, line):
        if line.startswith("net0: ready") and state["sender"] is None:
            state["sender"] = subprocess.Popen(
                ns.prefix() + [sys.executable, "-c", SENDER, GUEST_IP, str(COUNT_PORT), str(n),
                               str(size)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True)
        if line.startswith("bench-end: net rx") and state["sender"]:
            _killpg(state["sender"].pid)
        return False

    try:
        r = run_vmm(ns.prefix() + argv, 120, on_line=on_line)
    finally:
        s = state["sender"]
        if s and s.poll() is None:
            _killpg(s.pid)
    s = state["sender"]
    out = err = b""
    if s:
        out, err = s.communicate()
    vmm = "qemu" if "qemu" in os.path.basename(argv[0]) else "ember"
    why = exit_ok(vmm, r)
    if not s:
        return None, why or "guest never said `net0: ready`\n" + r.tail()
    m = re.search(rb"sent (\d+) (\d+) (\d+) (\d+)", out)
    j = r.first("bench-end: net rx")
    if not m:
        return None, "sender gave no result: %s" % err.decode()[-300:]
    if j is None:
        return None, why or "no bench-end: net rx line\n" + r.tail()
    nsent, errs, t0, t1 = (int(x) for x in m.groups())
    got = int(re.search(r"frames=(\d+)", r.lines[j][1]).group(1))
    dt = (r.lines[j][0] - t0) / 1e9
    res = {"sent": nsent - errs, "send_errors": errs, "received": got,
           "rx_pps": got / dt if dt > 0 else None,
           "rx_MBps": got * size / dt / 1e6 if dt > 0 else None,
           "host_send_pps": nsent / ((t1 - t0) / 1e9) if t1 > t0 else None,
           "loss_pct": 100.0 * (1 - got / nsent) if nsent else None}
    if why:
        return res, why + "\n" + r.tail()
    if got == 0:
        return res, "guest counted nothing"
    return res, None


def bench_net(a, v, samples, failures, log):
    with NetNS() as ns:
        log("net: netns %s, %s %s/24, guest %s %s" % (ns.name, ns.tap, HOST_IP, GUEST_IP,
                                                      GUEST_MAC))
        base = "net-ip=%s net-timeout=30" % GUEST_IP

        def args(key, n):
            _, d, size = [c for c in NET_CASES if c[0] == key][0]
            if d == "tx":
                return "%s net-peer=%s net-tx=%d,%d,%d" % (base, HOST_IP, n, TX_PORT, size)
            return "%s net-count=%d" % (base, COUNT_PORT)

        def one(vmm, key, n):
            _, d, size = [c for c in NET_CASES if c[0] == key][0]
            argv = (v.ember("net-" + key, args(key, n), tap=ns.tap)[0] if vmm == "ember"
                    else v.qemu(args(key, n), tap=ns.tap))
            return (net_tx_run if d == "tx" else net_rx_run)(ns, argv, n, size)

        # Calibrate N per case from one short run per VMM.
        plan = {}
        for key, d, size in NET_CASES:
            cal = 5000
            rate = 0
            for vmm in ("ember", "qemu"):
                res, why = one(vmm, key, cal)
                if why:
                    log("  calibration %s %s FAILED: %s" % (vmm, key, why))
                if res:
                    rate = max(rate, res.get("tx_pps") or 0, res.get("rx_pps") or 0,
                               res.get("host_send_pps") or 0 if d == "rx" else 0)
            n = int((rate or 20000) * a.target_s)
            plan[key] = max(1000, min(n, 2_000_000))
        log("  N per run: %s" % ", ".join("%s %d" % (k, plan[k]) for k in plan))
        log("  ember: %s (config adds network-interfaces tap0, %s)" % (
            " ".join(ns.prefix() + v.ember("net-show", args("tx64", plan["tx64"]), tap=ns.tap)[0]),
            GUEST_MAC))
        log("  qemu:  %s" % " ".join(ns.prefix() + v.qemu(args("tx64", plan["tx64"]), tap=ns.tap)))
        for rnd in range(a.n):
            for key, d, size in NET_CASES:
                for vmm in ("ember", "qemu"):
                    res, why = one(vmm, key, plan[key])
                    if why:
                        failures.append("round %d %s net %s: %s" % (rnd + 1, vmm, key,
                                                                     why.splitlines()[0]))
                        log("  round %d %s net %s FAILED: %s" % (rnd + 1, vmm, key, why))
                        continue
                    s = samples[vmm]
                    s["net_%s_pps" % key].append(res["rx_pps"])
                    s["net_%s_MBps" % key].append(res["rx_MBps"])
                    s["net_%s_loss" % key].append(res["loss_pct"])
                    if d == "tx":
                        s["net_%s_txpps" % key].append(res["tx_pps"])
                    else:
                        s["net_%s_hostpps" % key].append(res["host_send_pps"])
            log("  net round %d/%d done" % (rnd + 1, a.n))
        return {"plan": plan, "netns": ns.name}


# ---------------------------------------------------------------- main


ROWS = [  # sample key, label, higher-is-better
    ("blk_rr1", "blk 4K randread QD1 (IOPS)", True),
    ("blk_rr32", "blk 4K randread QD32 (IOPS)", True),
    ("blk_rr32_sync", "blk 4K randread QD32, Ember Sync (IOPS)", True),
    ("blk_rw1", "blk 4K randwrite QD1 (IOPS)", True),
    ("blk_rw32", "blk 4K randwrite QD32 (IOPS)", True),
    ("blk_sr", "blk 1M seqread (MB/s)", True),
    ("blk_sw", "blk 1M seqwrite (MB/s)", True),
    ("net_tx64_pps", "net guest->host 64B, host rcvd (dgram/s)", True),
    ("net_tx64_txpps", "net guest->host 64B, guest sent (dgram/s)", True),
    ("net_tx64_loss", "net guest->host 64B, loss (%)", False),
    ("net_tx1472_pps", "net guest->host 1472B, host rcvd (dgram/s)", True),
    ("net_tx1472_MBps", "net guest->host 1472B, host rcvd (MB/s)", True),
    ("net_tx1472_loss", "net guest->host 1472B, loss (%)", False),
    ("net_rx64_pps", "net host->guest 64B, guest counted (dgram/s)", True),
    ("net_rx64_hostpps", "net host->guest 64B, host send rate (dgram/s)", True),
    ("net_rx64_loss", "net host->guest 64B, loss (%)", False),
    ("net_rx1472_pps", "net host->guest 1472B, guest counted (dgram/s)", True),
    ("net_rx1472_MBps", "net host->guest 1472B, guest counted (MB/s)", True),
    ("net_rx1472_hostpps", "net host->guest 1472B, host send rate (dgram/s)", True),
    ("net_rx1472_loss", "net host->guest 1472B, loss (%)", False),
]


def print_table(samples, log):
    res = {}
    hdr = "%-47s %-28s %-28s %7s %-24s %6s %6s" % (
        "metric", "Ember median [min..max]", "QEMU median [min..max]", "E/Q",
        "host fio median [min..max]", "E/fio", "Q/fio")
    log(hdr)
    log("-" * len(hdr))
    for key, label, _hib in ROWS:
        if key == "blk_rr32_sync":
            e = stats(samples["ember_sync"]["blk_rr32"])
            fk = "blk_rr32"
        else:
            e = stats(samples["ember"].get(key, []))
            fk = key
        q = stats(samples["qemu"].get(key, []))
        f = stats(samples["fio"].get(fk, [])) if key.startswith("blk_") else None
        ratio = e["median"] / q["median"] if e and q and q["median"] else None
        ef = e["median"] / f["median"] if e and f and f["median"] else None
        qf = q["median"] / f["median"] if q and f and f["median"] else None
        res[key] = {"ember": e, "qemu": q, "fio": f, "ember_over_qemu": ratio,
                    "ember_over_fio": ef, "qemu_over_fio": qf}
        if not (e or q or f):
            continue
        log("%-47s %-28s %-28s %7s %-24s %6s %6s" % (
            label, cell(e), cell(q), "%.3f" % ratio if ratio is not None else "-",
            cell(f) if key.startswith("blk_") else "", "%.3f" % ef if ef is not None else "",
            "%.3f" % qf if qf is not None else ""))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ember", required=True, help="Ember binary")
    ap.add_argument("--guest-dir", required=True, help="test guest directory (guest-pvh.elf)")
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--ember-args", default="",
                    help="extra Ember flags, e.g. \"--blk-poll-us 50\" (default: none)")
    ap.add_argument("-n", type=int, default=5, help="rounds (runs per VMM), default 5")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: -n 2, 0.3 s passes, 64 MiB file, fio 1 s")
    ap.add_argument("--mem", type=int, default=256, help="guest memory MiB (both VMMs)")
    ap.add_argument("--file-mib", type=int, default=1024, help="host file size")
    ap.add_argument("--target-s", type=float, default=2.0, help="seconds per bench pass")
    ap.add_argument("--fio-runtime", type=int, default=3)
    ap.add_argument("--no-fio", action="store_true")
    ap.add_argument("--no-blk", action="store_true")
    ap.add_argument("--no-net", action="store_true")
    ap.add_argument("--tmpdir", help="where the host file goes (default: $TMPDIR or /tmp)")
    ap.add_argument("--json", help="also write the JSON summary here")
    a = ap.parse_args()
    if a.quick:
        a.n, a.target_s, a.file_mib, a.fio_runtime = min(a.n, 2), 0.3, 64, 1
    if a.n < 1:
        sys.exit("-n must be >= 1")
    if not os.access(a.ember, os.X_OK):
        sys.exit("no Ember binary at %s" % a.ember)
    q = which(a.qemu)
    if not q:
        sys.exit("%s not found" % a.qemu)
    a.qemu = q
    if not os.path.exists(os.path.join(a.guest_dir, "guest-pvh.elf")):
        sys.exit("no guest-pvh.elf in %s (make guest)" % a.guest_dir)
    if not a.no_fio and not which("fio"):
        print("fio not found: host fio column skipped (apt-get install fio)")
        a.no_fio = True

    def log(s=""):
        print(s, flush=True)

    tmp = tempfile.mkdtemp(prefix="ember-bench-virtio.", dir=a.tmpdir)
    samples = {v: {} for v in ("ember", "qemu", "ember_sync", "fio")}
    for v in samples:
        samples[v] = _AutoList()
    failures = []
    info = {}
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}

    def die(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)
    for s in old:
        signal.signal(s, die)
    log("Ember vs QEMU microvm, virtio throughput, %s" % time.strftime("%Y-%m-%d %H:%M:%S"))
    log("host: %s, %d cpus, KVM: %s, load %s" % (
        os.uname().release, os.cpu_count(),
        "PVM" if os.path.exists("/sys/module/kvm_pvm") else "kvm",
        " ".join("%.2f" % x for x in os.getloadavg())))
    log("guest: %s, 1 vCPU, %d MiB; %d rounds (ember, qemu, ...)" % (
        os.path.abspath(os.path.join(a.guest_dir, "guest-pvh.elf")), a.mem, a.n))
    v = VMMs(a, tmp)
    try:
        if not a.no_blk:
            try:
                info["blk"] = bench_blk(a, v, tmp, samples, failures, log)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001
                failures.append("blk benchmark aborted: %r" % e)
                log("blk benchmark aborted: %r" % e)
        if not a.no_net:
            try:
                info["net"] = bench_net(a, v, samples, failures, log)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001
                failures.append("net benchmark aborted: %r" % e)
                log("net benchmark aborted: %r" % e)
    except KeyboardInterrupt as e:
        failures.append("interrupted: %s" % e)
        log("interrupted (%s): printing what was measured" % e)
    finally:
        for f in os.listdir(tmp):
            try:
                os.unlink(os.path.join(tmp, f))
            except OSError:
                pass
        try:
            os.rmdir(tmp)
        except OSError:
            pass
        for s, h in old.items():
            signal.signal(s, h)

    log()
    log("Results: median [min..max] over the successful runs; E/Q = Ember/QEMU medians "
        "(higher is better, except loss); fio = host, same file, buffered io_uring")
    res = print_table(samples, log)
    log("load after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    rr = res.get("blk_rr32", {})
    if rr.get("ember_over_fio") is not None:
        log("goal: QD32 randread in the guest >= 60%% of host fio: Ember %.0f%%  %s" % (
            100 * rr["ember_over_fio"], "PASS" if rr["ember_over_fio"] >= 0.6 else "MISS"))
    worse = [lbl for k, lbl, hib in ROWS if res.get(k, {}).get("ember_over_qemu") is not None
             and k != "blk_rr32_sync" and not k.endswith("_hostpps") and ((res[k]["ember_over_qemu"] < 1) if hib
                                           else (res[k]["ember_over_qemu"] > 1))]
    log("goal: no figure worse than QEMU's: %s" % ("PASS" if not worse else
                                                   "MISS (" + "; ".join(worse) + ")"))
    log("failed runs: %d" % len(failures))
    for f in failures:
        log("  " + f)
    summary = {"metrics": res, "failures": failures, "info": info, "n": a.n,
               "samples": {k: dict(s) for k, s in samples.items()}}
    line = json.dumps(summary, sort_keys=True, default=str)
    log("BENCH_JSON " + line)
    if a.json:
        with open(a.json, "w") as f:
            f.write(line + "\n")
    return 1 if failures else 0


class _AutoList(dict):
    def __missing__(self, k):
        self[k] = []
        return self[k]


if __name__ == "__main__":
    sys.exit(main())
