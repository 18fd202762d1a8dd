#!/usr/bin/env python3
"""bench_density.py - many microVMs on one host: start N, P at a time, measure, tear down,
check that nothing leaked (issue 12). Ember side by side with QEMU's microvm in one run.

  bench_density.py density --ember build/ember --guest-dir build/guest [-N 10,100] [-P 8]
        [--vmm ember-api,ember-config,ember-jailer,qemu,trivial] [--source guest|linux|clones]
        [--mem 128] [--idle-s 5] [--fixed-addresses] [--json FILE]
  bench_density.py floor --ember build/ember --floor build/kvm-floor [-n 15] [--json FILE]
  bench_density.py churn --ember build/ember --guest-dir build/guest [--cycles 1000]
        [--vmm ember-api,ember-jailer] [-P 4] [--fixed-addresses] [--json FILE]
  bench_density.py plot JSON... --png FILE

density: for each N and each VMM (interleaved per N: ember-api, ember-jailer, qemu, trivial),
start N VMs keeping P starts in flight, then with all of them up and idle record
  - per-VM start latency: just before spawn -> `boot-timer: written` on the VM's console
    (Linux: `ember-init: user space up`, which init prints right after its boot-timer write)
    (ember-api: spawn, wait for the API socket, PUT /boot-source, /machine-config,
    InstanceStart; ember-config: `ember --no-api --config-file`, no API call, as QEMU is
    started; ember-jailer: the same as ember-api through `ember-jailer`, the kernel hard-linked
    into each jail; qemu: `qemu-system-x86_64 -M microvm` on the same guest, command line and
    memory; trivial: a 60-byte static program that prints the same line and pause()s: what
    the harness, fork/exec and the 2 host cores cost with no VM at all), and the creation
    rate (VMs up / first spawn -> last up);
  - host memory: the MemAvailable drop, Slab, SecPageTables (KVM's page tables) and
    PageTables growth, each per VM, and the sum of the VMs' PSS (smaps_rollup); per-VM RSS
    and PSS; threads per VM (its own, and the kernel's workers in its thread group apart) and
    fds per VM; host CPU per idle VM (utime+stime over --idle-s) and
    context switches per idle VM per second (all its threads): the wakeups it costs idle;
then SIGTERM every VM, wait for all (deadline), remove jails and cgroups, and check leaks:
no process left (pids and any process whose argv carries this run's tag), the harness's fds,
network interfaces, cgroups (every directory of every cgroup hierarchy, v2 and v1), jail
directories, mounts, files in the run directory, and memory held (anonymous, shmem,
unreclaimable slab, stacks, page tables, vmalloc, per-cpu: in_use_kib) back within
--mem-tolerance-mib of the start. The MemAvailable drop is reported beside it; it is too noisy to judge a leak by.

Sources (pluggable: class Source): `guest` (build/guest/guest-pvh.elf, `quiet smp=0 idle`:
it writes the boot timer, prints `guest: idle` and halts with interrupts off), `linux`
(--images DIR: vmlinux + initramfs.cpio, the init runs `sleep` for good: Linux idle in user
space), `clones` (the idle test guest booted once, snapshotted, and restored by every VM:
Ember's PUT /snapshot/load with the File backend, one memory file mapped MAP_PRIVATE by
all; QEMU's -incoming from one migration file; up = Ember's load answered, QEMU's QMP
status "running", since a restored halted guest prints nothing; not ember-config).

floor: the raw-KVM floor (tools/kvm_floor.c: open /dev/kvm, one VM, lazily mapped RAM, one
vCPU, a guest that writes the boot-timer port, exit on that write; and the same floor with
the in-kernel irqchip and PIT that Ember makes, whose tear-down at exit is most of the
difference) against Ember booting a
guest that does the same (an 18-byte PVH ELF: boot-timer write, isa-debug-exit write, i8042
reset) and against QEMU's microvm on that ELF, interleaved, n runs each, all through
bench_boot.py's launcher (wall exec -> exit, CPU from wait4's rusage). Then where Ember's
time goes: `ember --version` (exec of the static PIE, flags), the same boot with
--no-seccomp, and Ember's own Guest-boot-time (from main()) against exec -> boot-timer.
Last, the floor (with and without the irqchip and PIT) and Ember at fixed addresses
(ADDR_NO_RANDOMIZE): the nested machine's emulator translates code per virtual address, so a
static PIE at a new random address is translated again at every exec; these rows show what
that costs each (nothing on hardware). density and churn take --fixed-addresses to run every
process they start so.

churn: --cycles start/stop cycles, P at a time, alternating the stop: SIGTERM of an idle
guest, and a guest that resets itself (i8042) after booting; a GET / and a GET
/machine-config before InstanceStart. MemAvailable,
the harness's fds and host processes are sampled every --sample cycles (flat = no leak);
the leak check above runs at the end.

The last line is `BENCH_JSON {...}`; --json FILE writes the same object. Everything is
emulated in the nested machine (HOST-NOTES.md): only same-run ratios, memory and counts
mean anything there.
"""
import argparse
import concurrent.futures
import contextlib
import json
import os
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_boot  # noqa: E402  (launcher, QEMU's command line, statistics)

UP = b"boot-timer: written"
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- host figures


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])  # kB
    return out


IN_USE_KEYS = ("AnonPages", "Shmem", "SUnreclaim", "KernelStack", "PageTables", "SecPageTables",
               "VmallocUsed", "Percpu")


def in_use_kib(mi):
    """Memory that /proc/meminfo says something holds, in KiB: what a leaked process, VM,
    mapping or kernel object shows up in. Free pages and page cache are not in it."""
    huge = (mi.get("HugePages_Total", 0) - mi.get("HugePages_Free", 0)) * mi.get("Hugepagesize", 0)
    return sum(mi.get(k, 0) for k in IN_USE_KEYS) + huge


def own_memory_kib():
    """The harness's own anonymous memory (its heap, thread stacks, malloc arenas), in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def fd_count(pid="self"):
    try:
        return len(os.listdir("/proc/%s/fd" % pid))
    except OSError:
        return None


PF_IO_WORKER, PF_USER_WORKER = 0x10, 0x4000  # include/linux/sched.h


def thread_counts(pid):
    """(the process's own threads, kernel workers among its threads), or (None, None).

    A kernel worker is a thread the kernel runs in the process's thread group, flagged
    PF_USER_WORKER or PF_IO_WORKER in /proc/PID/task/TID/stat: since Linux 6.13 (and in
    kernels that took the change back) KVM runs each VM's NX-huge-page recovery there
    (`kvm-nx-lpage-re`, started at the first KVM_RUN), and io_uring its `iou-wrk-` workers.
    They cost the host like any thread, so the benchmark reports them, but they are the
    kernel's, not Ember's."""
    own = workers = 0
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                flags = int(f.read().rsplit(")", 1)[1].split()[6])
            if flags & (PF_IO_WORKER | PF_USER_WORKER):
                workers += 1
            else:
                own += 1
    except (OSError, IndexError, ValueError):
        return None, None
    return own, workers


def rollup(pid):
    """Rss and Pss (kB) of a process from smaps_rollup."""
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Rss", "Pss", "Anonymous", "AnonHugePages"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def guest_ram_rss(pid, mem_mib):
    """Rss (kB) of the guest-RAM mapping (the one of mem_mib MiB, or the largest)."""
    best = None
    try:
        with open("/proc/%d/smaps" % pid) as f:
            size = rss = None
            for line in f:
                if line.startswith("Size:"):
                    size = int(line.split()[1])
                elif line.startswith("Rss:") and size is not None:
                    rss = int(line.split()[1])
                    if size >= mem_mib * 1024 and (best is None or size > best[0]):
                        best = (size, rss)
                    size = None
    except OSError:
        return None
    return best[1] if best else None


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime of all threads
    except (OSError, IndexError, ValueError):
        return None


def ctx_switches(pid):
    n = 0
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        n += int(line.split()[1])
    except OSError:
        return None
    return n


def host_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]  # total, idle + iowait


def cgroup_mounts():
    """(the cgroup2 mount or None, {v1 controller: its hierarchy's mount})."""
    v2, v1 = None, {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, supers = right.split()[:3]
            mnt = left.split()[4].replace("\\040", " ")
            if fstype == "cgroup2" and v2 is None:
                v2 = mnt
            elif fstype == "cgroup":
                for c in supers.split(","):
                    v1.setdefault(c, mnt)
    return v2, v1


def cgroup_roots():
    """Every mounted cgroup hierarchy (v2 and each v1 one), once each."""
    v2, v1 = cgroup_mounts()
    return sorted({m for m in [v2] + list(v1.values()) if m})


def memory_limit_cgroups(limit_bytes):
    """(--cgroup-version, [--cgroup FILE=VALUE, ...]) that limit a jail's memory: cgroup v2's
    memory.max where the host's v2 hierarchy has the memory controller, else v1's
    memory.limit_in_bytes where a v1 hierarchy has it (this workplace's hosts bind memory to
    v1 and leave v2 with hugetlb alone), else no limit at all (version 2, no file)."""
    v2, v1 = cgroup_mounts()
    if v2:
        try:
            with open(os.path.join(v2, "cgroup.controllers")) as f:
                if "memory" in f.read().split():
                    return 2, ["memory.max=%d" % limit_bytes]
        except OSError:
            pass
    if "memory" in v1:
        return 1, ["memory.limit_in_bytes=%d" % limit_bytes]
    return 2, []


def cgroup_dirs():
    return {d for m in cgroup_roots() for d, _, _ in os.walk(m)}


def mounts():
    with open("/proc/self/mountinfo") as f:
        return sum(1 for _ in f)


def tagged_processes(tag):
    """Pids of processes whose argv mentions this run's tag (a harness-side /proc scan)."""
    out = []
    me = os.getpid()
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == me:
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                if tag.encode() in f.read():
                    out.append(int(p))
        except OSError:
            pass
    return out


def pct(xs, q):
    if not xs:
        return None
    s = sorted(xs)
    k = min(len(s) - 1, max(0, int(round(q / 100.0 * (len(s) - 1)))))
    return s[k]


def summary(xs):
    st = bench_boot.stats(xs)
    if st:
        st["p50"] = st["median"]
        st["p99"] = pct(xs, 99)
    return st


# ---------------------------------------------------------------- sources


class SourceUnavailable(Exception):
    pass


class Source:
    """What the VMs boot: a kernel (+ initrd) and a command line, the console line that says
    the guest is up and idle, and the files a jail needs."""
    name = "?"
    kernel = initrd = None
    args = ""
    up_marker = UP  # the console line that says the guest is up (start latency ends there)
    idle_marker = b"guest: idle"
    reset_args = None  # a command line after which the guest resets itself (churn)

    def markers(self, reset):
        """The console lines a start waits for, in order: up, then idle (not for a guest
        started with reset_args, which resets once up)."""
        return (self.up_marker,) if reset else (self.up_marker, self.idle_marker)

    def files(self):
        return [p for p in (self.kernel, self.initrd) if p]


class GuestSource(Source):
    name = "guest"

    def __init__(self, a):
        self.kernel = os.path.join(a.guest_dir, "guest-pvh.elf")
        if not os.path.exists(self.kernel):
            raise SourceUnavailable("%s: missing (make guest)" % self.kernel)
        self.args = "quiet smp=0 idle exit=debug"
        self.reset_args = "quiet smp=0 exit=debug"


class LinuxSource(Source):
    name = "linux"
    up_marker = b"ember-init: user space up"  # printed right after init's boot-timer write
    idle_marker = b"linux-idle"

    def __init__(self, a):
        if not a.images:
            raise SourceUnavailable("--source linux needs --images DIR (make images)")
        self.kernel = os.path.join(a.images, "vmlinux")
        self.initrd = os.path.join(a.images, "initramfs.cpio")
        for p in (self.kernel, self.initrd):
            if not os.path.exists(p):
                raise SourceUnavailable("%s: missing (make images)" % p)
        base = "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux quiet"
        host = os.path.join(a.images, "cmdline-host.txt")  # a PVM host needs its fragment
        if os.path.exists("/sys/module/kvm_pvm") and os.path.exists(host):
            with open(host) as f:
                base += " " + f.read().strip()
        self.args = base + ' ember.cmd="echo linux-idle; exec sleep 1000000"'
        self.reset_args = base + " ember.cmd=true"


class ClonesSource(GuestSource):
    """The idle test guest, booted once, snapshotted halted, and restored N times from that
    one snapshot (Ember: PUT /snapshot/load, File backend: every clone maps the one memory
    file MAP_PRIVATE; QEMU: -incoming from one migration file). A restored guest is halted
    with interrupts off and prints nothing, so a clone is up when its VMM says it runs:
    Ember's load answered 204 (vCPUs running), QEMU's QMP query-status "running"."""
    name = "clones"
    restores = True


def make_ember_snapshot(r):
    """Boot the idle guest once with Ember, pause it, snapshot it: (snapshot, memory file),
    both readable by the jailed uid."""
    snap, mem = os.path.join(r.dir, "clone.snap"), os.path.join(r.dir, "clone.mem")
    sock = os.path.join(r.dir, "snap-src.sock")
    out = os.path.join(r.dir, "snap-src.out")
    with open(out, "wb") as f, open(os.path.join(r.dir, "snap-src.err"), "wb") as err:
        p = subprocess.Popen([r.a.ember, "--api-sock", sock], stdin=subprocess.DEVNULL,
                             stdout=f, stderr=err)
    try:
        deadline = time.monotonic() + 120
        wait_socket(sock, deadline)
        http(sock, [("PUT", "/boot-source", {"kernel_image_path": r.kernel,
                                             "boot_args": r.src.args}),
                    ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": r.a.mem,
                                                "smt": False}),
                    ("PUT", "/actions", {"action_type": "InstanceStart"})], 60)
        wait_file(out, r.src.idle_marker, deadline)
        http(sock, [("PATCH", "/vm", {"state": "Paused"}),
                    ("PUT", "/snapshot/create", {"snapshot_path": snap, "mem_file_path": mem})],
             120)
    finally:
        p.kill()
        p.wait()
    for f in (snap, mem):
        os.chmod(f, 0o644)
    os.unlink(sock)
    return snap, mem


def make_qemu_state(r):
    """Boot the idle guest once with QEMU and migrate it to a file (what -incoming reads)."""
    path = os.path.join(r.dir, "clone.qemu")
    mon = os.path.join(r.dir, "qsrc.qmp")
    out = os.path.join(r.dir, "qsrc.out")
    argv = bench_boot.qemu_argv(r.a.qemu, r.kernel, r.src.args, r.a.mem, no_reboot=True)
    with open(out, "wb") as f:
        p = subprocess.Popen(argv + ["-qmp", "unix:%s,server=on,wait=off" % mon],
                             stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        wait_file(out, r.src.idle_marker, deadline)
        q = Qmp(mon, deadline)
        q.cmd("migrate", {"uri": "exec:cat > %s" % path})
        while q.cmd("query-migrate").get("status") != "completed":
            if time.monotonic() > deadline:
                raise OSError("QEMU: the migration to %s did not complete" % path)
            time.sleep(0.05)
        q.close()
    finally:
        p.kill()
        p.wait()
    return path


def wait_file(path, marker, deadline):
    while True:
        with open(path, "rb") as f:
            if marker in f.read():
                return
        if time.monotonic() > deadline:
            raise OSError("no %r in %s in time" % (marker, path))
        time.sleep(0.01)


class Qmp:
    """A QMP connection: capabilities negotiated; cmd() returns "return" (raises on "error")."""

    def __init__(self, path, deadline):
        while True:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.monotonic() > deadline:
                    raise OSError("QMP socket %s: not accepting" % path)
                time.sleep(0.002)
        self.s.settimeout(max(1.0, deadline - time.monotonic()))
        self.buf = b""
        self.read()  # the greeting
        self.cmd("qmp_capabilities")

    def read(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise OSError("QMP connection closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def cmd(self, name, args=None):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.s.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            m = self.read()
            if "return" in m:
                return m["return"]
            if "error" in m:
                raise OSError("QMP %s: %s" % (name, m["error"]))

    def close(self):
        self.s.close()


SOURCES = {"guest": GuestSource, "linux": LinuxSource, "clones": ClonesSource}

# A trivial process in place of a VMM: write(1, "boot-timer: written\nguest: idle\n"), then
# pause() for good (SIGTERM ends it). x86-64, no libc:
#   mov edi,1; lea rsi,[rip+msg]; mov edx,32; mov eax,1; syscall
#   1: mov eax,34; syscall; jmp 1b
TRIVIAL_MSG = b"boot-timer: written\nguest: idle\n"
TRIVIAL_CODE = (bytes.fromhex("bf01000000488d3515000000ba%02x000000b8010000000f05"
                              "b8220000000f05ebf7" % len(TRIVIAL_MSG)) + TRIVIAL_MSG)

# A guest that does what the floor does, and then ends: a PVH ELF (32-bit protected-mode
# entry at 0x100000) writing 123 to the boot-timer port 0x3f0, 0 to QEMU's isa-debug-exit
# (0xf4), 0xfe to the i8042 (Ember's reset), then halting:
#   mov dx,0x3f0; mov al,123; out dx,al; mov al,0; out 0xf4,al; mov al,0xfe; out 0x64,al;
#   1: hlt; jmp 1b
TINY_CODE = bytes.fromhex("66baf003b07beeb000e6f4b0fee664f4ebfd")


def static_elf(code, base=0x400000):
    hdr = 64 + 56
    size = hdr + len(code)
    ehdr = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, b"\0" * 7,
                       2, 0x3E, 1, base + hdr, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return ehdr + phdr + code


def tiny_pvh_elf():
    """ELF64 with one PT_LOAD (the code at 0x100000) and a PT_NOTE: Xen, type 18
    (XEN_ELFNOTE_PHYS32_ENTRY), 4-byte entry 0x100000."""
    note = struct.pack("<III4sI", 4, 4, 18, b"Xen\0", 0x100000)
    code_off = 64 + 2 * 56 + len(note)
    code_off = (code_off + 15) & ~15
    ehdr = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, b"\0" * 7,
                       2, 0x3E, 1, 0x100000, 64, 0, 0, 64, 56, 2, 0, 0, 0)
    load = struct.pack("<IIQQQQQQ", 1, 5, code_off, 0x100000, 0x100000, len(TINY_CODE),
                       len(TINY_CODE), 16)
    pnote = struct.pack("<IIQQQQQQ", 4, 4, 64 + 2 * 56, 0, 0, len(note), len(note), 4)
    out = ehdr + load + pnote + note
    return out + b"\0" * (code_off - len(out)) + TINY_CODE


# ---------------------------------------------------------------- the API over a Unix socket


def http(sock_path, reqs, timeout):
    """Send (method, path, body) requests on one connection; the status codes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    out = []
    try:
        s.connect(sock_path)
        buf = b""
        for method, path, body in reqs:
            data = json.dumps(body).encode() if body is not None else b""
            s.sendall(("%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                       "Content-Length: %d\r\n\r\n" % (method, path, len(data))).encode() + data)
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("API connection closed")
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            clen = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    clen = int(v)
            while len(buf) < clen:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("API connection closed")
                buf += chunk
            body_in, buf = buf[:clen], buf[clen:]
            code = int(head.split()[1])
            if code >= 300:
                raise OSError("%s %s: %d %s" % (method, path, code, body_in[:200]))
            out.append(code)
    finally:
        s.close()
    return out


def wait_socket(path, deadline):
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise OSError("API socket %s: not accepting" % path)
            time.sleep(0.001)
        finally:
            s.close()


# ---------------------------------------------------------------- VMMs


class VM:
    def __init__(self, idx):
        self.idx = idx
        self.pid = None
        self.out_fd = None
        self.t0 = None
        self.up_ns = None
        self.err = None
        self.status = None
        self.jail = None
        self.log = None


class Kind:
    """How one kind of VMM is started and stopped. start() runs in a worker thread."""
    name = "?"
    is_vm = True

    def __init__(self, run):
        self.r = run

    def spawn(self, vm, argv, stderr_path):
        out_r, out_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        fa = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
              (os.POSIX_SPAWN_DUP2, err, 2)]
        fa += [(os.POSIX_SPAWN_CLOSE, fd) for fd in (null, out_w, err) if fd > 2]
        vm.t0 = time.perf_counter_ns()
        try:
            vm.pid = os.posix_spawn(argv[0], argv, self.r.env, file_actions=fa,
                                    setsigdef=[signal.SIGPIPE, signal.SIGTERM])
        finally:
            for fd in (out_w, null, err):
                os.close(fd)
        os.set_blocking(out_r, False)
        vm.out_fd = out_r
        vm.log = stderr_path

    def wait_up(self, vm, deadline, markers=(UP,)):
        """Read the console until every marker was seen; the time of the first."""
        buf = b""
        want = list(markers)
        while want:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OSError("no %r on the console in time; console tail %r" % (want[0], buf[-200:]))
            rd, _, _ = select.select([vm.out_fd], [], [], min(left, 1.0))
            if not rd:
                continue
            try:
                chunk = os.read(vm.out_fd, 65536)
            except BlockingIOError:
                continue
            now = time.perf_counter_ns()
            if not chunk:
                raise OSError("console closed (VMM exited); console tail %r" % buf[-200:])
            buf += chunk
            while want and want[0] in buf:
                if want[0] == markers[0]:
                    vm.up_ns = now - vm.t0
                want.pop(0)

    def stop(self, vm):
        if vm.pid:
            try:
                os.kill(vm.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def cleanup(self, vm):
        pass


class EmberApi(Kind):
    name = "ember-api"

    def argv(self, vm, sock):
        return [self.r.a.ember, "--api-sock", sock, "--id", "%s-%d" % (self.r.tag, vm.idx)]

    def sock_path(self, vm):
        return os.path.join(self.r.rundir, "%d.sock" % vm.idx)

    def host_paths(self, vm):
        return self.r.kernel, self.r.initrd

    def snapshot_paths(self, vm):
        return self.r.snap, self.r.mem

    def start(self, vm, args=None, deadline_s=60):
        deadline = time.monotonic() + deadline_s
        sock = self.sock_path(vm)
        self.spawn(vm, self.argv(vm, sock), os.path.join(self.r.logdir, "%d.log" % vm.idx))
        wait_socket(sock, deadline)
        if self.r.restores:
            snap, mem = self.snapshot_paths(vm)
            http(sock, [("PUT", "/snapshot/load", {
                "snapshot_path": snap, "mem_backend": {"backend_type": "File", "backend_path": mem},
                "resume_vm": True})], max(1.0, deadline - time.monotonic()))
            vm.up_ns = time.perf_counter_ns() - vm.t0  # answered: its vCPUs run
            return
        kernel, initrd = self.host_paths(vm)
        bs = {"kernel_image_path": kernel, "boot_args": args or self.r.src.args}
        if initrd:
            bs["initrd_path"] = initrd
        reqs = [("PUT", "/boot-source", bs),
                ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": self.r.a.mem,
                                            "smt": False})]
        if self.r.churn:
            reqs = [("GET", "/", None)] + reqs + [("GET", "/machine-config", None)]
        http(sock, reqs + [("PUT", "/actions", {"action_type": "InstanceStart"})],
             max(1.0, deadline - time.monotonic()))
        self.wait_up(vm, deadline, self.r.src.markers(bool(args)))


class EmberJailer(EmberApi):
    """ember-jailer ... -- --api-sock /run/api.sock: the kernel (and initrd) hard-linked into
    each jail from one copy on the jails' file system (no copy per VM)."""
    name = "ember-jailer"

    def start(self, vm, args=None, deadline_s=60):
        r = self.r
        vm.jail = "%s-%d" % (r.tag, vm.idx)
        root = os.path.join(r.jailbase, os.path.basename(r.a.ember), vm.jail, "root")
        os.makedirs(root)
        for src, dst in ((r.kernel, "kernel"), (r.initrd, "initrd"), (r.snap, "snap"),
                         (r.mem, "mem")):
            if src:
                os.link(src, os.path.join(root, dst))
        super().start(vm, args, deadline_s)

    def argv(self, vm, sock):
        a = self.r.a
        cmd = [a.jailer, "--id", vm.jail, "--exec-file", self.r.jail_exec, "--uid", str(a.uid),
               "--gid", str(a.uid), "--chroot-base-dir", self.r.jailbase,
               "--cgroup-version", str(a.jailer_cgroup_version), "--parent-cgroup", self.r.tag]
        for c in a.jailer_cgroup:
            cmd += ["--cgroup", c]
        return cmd + ["--", "--api-sock", "/run/api.sock"]

    def sock_path(self, vm):
        return os.path.join(self.r.jailbase, os.path.basename(self.r.a.ember), vm.jail, "root",
                            "run", "api.sock")

    def host_paths(self, vm):
        return "/kernel", "/initrd" if self.r.initrd else None

    def snapshot_paths(self, vm):
        return "/snap", "/mem"

    def cleanup(self, vm):
        if vm.jail:
            shutil.rmtree(os.path.join(self.r.jailbase, os.path.basename(self.r.a.ember),
                                       vm.jail), ignore_errors=True)
            for m in cgroup_roots():
                leaf = os.path.join(m, self.r.tag, vm.jail)
                for _ in range(200):
                    try:
                        os.rmdir(leaf)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.01)


class EmberConfig(Kind):
    """`ember --no-api --config-file` (one file for all): the start without any API call, as
    QEMU is started (its whole configuration on the command line)."""
    name = "ember-config"

    def start(self, vm, args=None, deadline_s=60):
        r = self.r
        cfg = os.path.join(r.dir, "vm-%s.json" % ("reset" if args else "idle"))
        if not os.path.exists(cfg):
            tmpcfg = cfg + ".%d" % vm.idx
            bench_boot.ember_config(tmpcfg, r.kernel, args or r.src.args, r.a.mem, r.initrd)
            os.rename(tmpcfg, cfg)
        argv = [r.a.ember, "--no-api", "--config-file", cfg, "--id", "%s-%d" % (r.tag, vm.idx)]
        self.spawn(vm, argv, os.path.join(r.logdir, "%d.log" % vm.idx))
        self.wait_up(vm, time.monotonic() + deadline_s,
                     r.src.markers(bool(args)))


class Qemu(Kind):
    name = "qemu"

    def start(self, vm, args=None, deadline_s=120):
        r = self.r
        argv = bench_boot.qemu_argv(r.a.qemu, r.kernel, args or r.src.args, r.a.mem,
                                    initrd=r.initrd, no_reboot=True)
        if r.restores:  # up once QMP says it runs (the restored guest prints nothing)
            deadline = time.monotonic() + deadline_s
            qmp = os.path.join(r.rundir, "%d.qmp" % vm.idx)
            self.spawn(vm, argv + ["-qmp", "unix:%s,server=on,wait=off" % qmp,
                                   "-incoming", "exec:cat %s" % r.qstate],
                       os.path.join(r.logdir, "%d.log" % vm.idx))
            q = Qmp(qmp, deadline)
            try:
                while q.cmd("query-status").get("status") != "running":
                    if time.monotonic() > deadline:
                        raise OSError("QEMU: not running after -incoming")
                    time.sleep(0.001)
                vm.up_ns = time.perf_counter_ns() - vm.t0
            finally:
                q.close()
                os.unlink(qmp)
            return
        self.spawn(vm, argv, os.path.join(r.logdir, "%d.log" % vm.idx))
        self.wait_up(vm, time.monotonic() + deadline_s,
                     r.src.markers(bool(args)))


class Trivial(Kind):
    """No VM: a static program that prints the two console lines and pause()s."""
    name = "trivial"
    is_vm = False

    def start(self, vm, args=None, deadline_s=60):
        self.spawn(vm, [self.r.trivial, self.r.tag], os.path.join(self.r.logdir, "%d.log" % vm.idx))
        self.wait_up(vm, time.monotonic() + deadline_s, (UP, b"guest: idle"))


KINDS = {"ember-api": EmberApi, "ember-config": EmberConfig, "ember-jailer": EmberJailer,
         "qemu": Qemu, "trivial": Trivial}


# ---------------------------------------------------------------- one run of N VMs


class Run:
    def __init__(self, a, src, tmp, churn=False):
        self.a = a
        self.src = src
        self.churn = churn
        self.tag = "dens" + uuid.uuid4().hex[:8]
        self.dir = os.path.join(tmp, self.tag)
        self.rundir = os.path.join(self.dir, "run")
        self.logdir = os.path.join(self.dir, "log")
        self.jailbase = os.path.join(self.dir, "jails")
        for d in (self.rundir, self.logdir, self.jailbase):
            os.makedirs(d)
        # One copy of the guest files in this run's directory (argv then carries the tag,
        # and the jails hard-link it: same file system).
        self.kernel = self.initrd = None
        if src:
            self.kernel = os.path.join(self.dir, "kernel")
            shutil.copy(src.kernel, self.kernel)
            os.chmod(self.kernel, 0o644)
            if src.initrd:
                self.initrd = os.path.join(self.dir, "initrd")
                shutil.copy(src.initrd, self.initrd)
                os.chmod(self.initrd, 0o644)
            os.chmod(self.dir, 0o755)
        # ember-jailer hard-links --exec-file into each jail when both are on one file system
        # (else it copies it, per VM): one copy of Ember here, beside the jails.
        self.jail_exec = os.path.join(self.dir, os.path.basename(a.ember))
        shutil.copy(a.ember, self.jail_exec)
        os.chmod(self.jail_exec, 0o755)
        self.trivial = os.path.join(self.dir, "trivial")
        with open(self.trivial, "wb") as f:
            f.write(static_elf(TRIVIAL_CODE))
        os.chmod(self.trivial, 0o755)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self.restores = bool(src and getattr(src, "restores", False))
        self.snap = self.mem = self.qstate = None

    def prepare(self, kind_name):
        """Clones: the one snapshot (or QEMU migration file) this run's VMs restore from."""
        if not self.restores:
            return
        if kind_name in ("ember-api", "ember-jailer"):
            self.snap, self.mem = make_ember_snapshot(self)
        elif kind_name == "qemu":
            self.qstate = make_qemu_state(self)

    def baseline(self):
        return {"mem": meminfo(), "fds": fd_count(), "net": sorted(os.listdir("/sys/class/net")),
                "cgroups": cgroup_dirs(), "mounts": mounts(), "self_kib": own_memory_kib()}

    def leaks(self, base, vms, t_end_deadline):
        """What is left after the tear-down, against the baseline."""
        out = {}
        alive = []
        for vm in vms:
            if vm.pid:
                try:
                    os.kill(vm.pid, 0)
                    alive.append(vm.pid)
                except ProcessLookupError:
                    pass
        out["processes"] = sorted(set(alive + tagged_processes(self.tag)))
        out["harness_fds"] = fd_count() - base["fds"]
        now_net = sorted(os.listdir("/sys/class/net"))
        out["net_interfaces"] = sorted(set(now_net) - set(base["net"]))
        out["cgroups"] = sorted(cgroup_dirs() - base["cgroups"])
        try:  # the <exec name> level of <base>/<exec name>/<id>/root is the harness's own
            os.rmdir(os.path.join(self.jailbase, os.path.basename(self.a.ember)))
        except OSError:
            pass
        jails = []
        for d, dirs, files in os.walk(self.jailbase):
            jails += [os.path.join(d, x) for x in dirs + files]
        out["jail_entries"] = len(jails)
        out["mounts"] = mounts() - base["mounts"]
        out["run_files"] = sorted(os.listdir(self.rundir))
        # The VMs' stderr logs are the harness's own files (read already): on a tmpfs (the nested
        # machine's /tmp) each holds a page charged to its VM's memory cgroup, which keeps that
        # removed cgroup's controller alive (about 40 KiB of slab and per-cpu memory each): 1000
        # jailed VMs showed 43-64 MiB held until the files went. Remove them first.
        shutil.rmtree(self.logdir, ignore_errors=True)
        # Memory comes back as KVM and the kernel finish tearing down: poll a while. The
        # verdict is on memory held by something (in_use_kib: anonymous and shmem pages, kernel
        # slab, stacks, page tables, vmalloc, per-cpu), less the harness's own heap growth.
        # MemAvailable alone is not a leak measure: it moved by -24..+45 MiB between identical
        # 50-VM runs in the nested machine with nothing held, as free pages sit on per-CPU lists
        # and page cache comes and goes; it is still reported. A removed cgroup's memory
        # controller stays (slab and per-cpu) until the page cache charged to it is reclaimed:
        # if memory is still held after 10 s, drop clean caches once (root) so those go (only
        # the page cache: dropping dentries and inodes too frees slab that the baseline had, and
        # hid 18 of a 64 MiB holder in test_density_leak_check_sees_held_memory). A leaked
        # process, fd or mapping is not freed by this.
        tol = self.a.mem_tolerance_mib * 1024
        drop_at = min(time.monotonic() + 10, t_end_deadline - 5)
        out["dropped_caches"] = False
        while True:
            now = meminfo()
            harness = max(0, own_memory_kib() - base["self_kib"])
            held = in_use_kib(now) - in_use_kib(base["mem"]) - harness
            if held <= tol or time.monotonic() > t_end_deadline:
                break
            if not out["dropped_caches"] and time.monotonic() >= drop_at:
                out["dropped_caches"] = True
                try:
                    with open("/proc/sys/vm/drop_caches", "w") as f:
                        f.write("1\n")
                except OSError:
                    pass
            time.sleep(0.25)
        out["mem_held_kib"] = held
        # Which of meminfo's in-use counters grew (where a leak or a cache would show).
        out["mem_held_by_kib"] = {k: now.get(k, 0) - base["mem"].get(k, 0) for k in IN_USE_KEYS
                                  if now.get(k, 0) != base["mem"].get(k, 0)}
        out["harness_growth_kib"] = harness
        out["mem_available_drop_kib"] = base["mem"]["MemAvailable"] - now["MemAvailable"]
        out["ok"] = (not out["processes"] and out["harness_fds"] <= 0 and
                     not out["net_interfaces"] and not out["cgroups"] and
                     out["jail_entries"] == 0 and out["mounts"] <= 0 and
                     not out["run_files"] and held <= tol)
        return out

    def remove_parent_cgroup(self):
        for m in cgroup_roots():
            try:
                os.rmdir(os.path.join(m, self.tag))
            except OSError:
                pass


def start_all(kind, n, p, reserve_kib):
    """Start n VMs of `kind`, p in flight; the VMs and the wall time first spawn -> last up."""
    vms = [VM(i) for i in range(n)]
    stop = threading.Event()
    stopped_at = []

    def one(vm):
        if stop.is_set():
            return
        if meminfo()["MemAvailable"] < reserve_kib:
            stop.set()
            stopped_at.append(vm.idx)
            return
        try:
            kind.start(vm)
        except (OSError, ValueError) as e:
            vm.err = str(e)

    t0 = time.perf_counter_ns()
    with concurrent.futures.ThreadPoolExecutor(max_workers=p) as ex:
        list(ex.map(one, vms))
    ups = [vm.t0 + vm.up_ns for vm in vms if vm.up_ns is not None]
    wall = (max(ups) - t0) / 1e9 if ups else None
    return vms, wall, (min(stopped_at) if stopped_at else None)


def stop_all(kind, vms, timeout):
    """SIGTERM every VM, reap them all (SIGKILL after the deadline: counted)."""
    t0 = time.monotonic()
    for vm in vms:
        kind.stop(vm)
    killed = 0
    deadline = t0 + timeout
    for vm in vms:
        if not vm.pid:
            continue
        while True:
            pid, st = os.waitpid(vm.pid, os.WNOHANG)
            if pid:
                vm.status = st
                break
            if time.monotonic() > deadline:
                os.kill(vm.pid, signal.SIGKILL)
                _, vm.status = os.waitpid(vm.pid, 0)
                killed += 1
                break
            time.sleep(0.005)
    t_reaped = time.monotonic() - t0
    for vm in vms:
        if vm.out_fd is not None:
            os.close(vm.out_fd)
            vm.out_fd = None
        kind.cleanup(vm)
    return t_reaped, killed


def exit_code(st):
    if st is None:
        return None
    if os.WIFEXITED(st):
        return os.WEXITSTATUS(st)
    return -os.WTERMSIG(st)


def density_one(a, src, tmp, kind_name, n):
    r = Run(a, src, tmp)
    r.prepare(kind_name)
    kind = KINDS[kind_name](r)
    base = r.baseline()
    hs0 = host_cpu()
    vms, wall, stopped_at = start_all(kind, n, a.P, a.reserve_mib * 1024)
    hs1 = host_cpu()
    up = [vm for vm in vms if vm.up_ns is not None]
    fails = [vm for vm in vms if vm.err]
    time.sleep(1.0)  # let the last ones settle into idle
    m_up = meminfo()
    pids = [vm.pid for vm in up]
    c0 = {p: cpu_ticks(p) for p in pids}
    s0 = {p: ctx_switches(p) for p in pids}
    h0 = host_cpu()
    t_idle = time.monotonic()
    time.sleep(a.idle_s)
    dt = time.monotonic() - t_idle
    h1 = host_cpu()
    c1 = {p: cpu_ticks(p) for p in pids}
    s1 = {p: ctx_switches(p) for p in pids}
    rolls = {p: rollup(p) for p in pids}
    tcounts = [thread_counts(p) for p in pids]
    threads = [c[0] for c in tcounts]
    kworkers = [c[1] for c in tcounts]
    fds = [fd_count(p) for p in pids]
    sample = pids[:: max(1, len(pids) // 10)][:10]
    guest_rss = [x for x in (guest_ram_rss(p, a.mem) for p in sample) if x is not None]
    m_end = meminfo()
    k = max(1, len(up))

    def per_vm(key, m=m_end):
        return (m.get(key, 0) - base["mem"].get(key, 0)) / k / 1024.0  # MiB per VM

    res = {
        "vmm": kind_name, "source": src.name if src else None, "N": n, "P": a.P,
        "up": len(up), "failed": len(fails), "stopped_for_memory_at": stopped_at,
        "failures": [{"vm": vm.idx, "error": vm.err[:300], "log": tail(vm.log)}
                     for vm in fails[:3]],
        "start_ms": summary([vm.up_ns / 1e6 for vm in up]),
        "wall_s": wall, "rate_vms_per_s": len(up) / wall if wall else None,
        # CPU per start: each VM's own (utime + stime of all its threads, its guest's time
        # included, read once all are up; an idle VM adds none), and the whole machine's busy
        # time while they started (the harness, the kernel and everything else too) / VMs up.
        "start_cpu_ms_per_vm": (sum(c0[p] or 0 for p in pids) * 1000.0 / TICK / k),
        "start_cpu_ms": summary([c0[p] * 1000.0 / TICK for p in pids if c0[p] is not None]),
        "machine_cpu_ms_per_vm": ((hs1[0] - hs0[0]) - (hs1[1] - hs0[1])) * 1000.0 / TICK / k,
        "machine_cpus": os.cpu_count(),
        "mem_available_drop_mib_per_vm": (base["mem"]["MemAvailable"] -
                                          m_end["MemAvailable"]) / k / 1024.0,
        "mem_available_drop_mib_per_vm_at_up": (base["mem"]["MemAvailable"] -
                                                m_up["MemAvailable"]) / k / 1024.0,
        "slab_mib_per_vm": per_vm("Slab"),
        "sec_page_tables_mib_per_vm": per_vm("SecPageTables"),
        "page_tables_mib_per_vm": per_vm("PageTables"),
        "kernel_stack_mib_per_vm": per_vm("KernelStack"),
        "pss_sum_mib": sum(x.get("Pss", 0) for x in rolls.values()) / 1024.0,
        "rss_mib": summary([x["Rss"] / 1024.0 for x in rolls.values() if "Rss" in x]),
        "pss_mib": summary([x["Pss"] / 1024.0 for x in rolls.values() if "Pss" in x]),
        "anon_huge_mib_sum": sum(x.get("AnonHugePages", 0) for x in rolls.values()) / 1024.0,
        "guest_ram_rss_mib": summary([x / 1024.0 for x in guest_rss]),
        "threads": summary([t for t in threads if t is not None]),
        "kernel_worker_threads": summary([t for t in kworkers if t is not None]),
        "fds": summary([f for f in fds if f is not None]),
        "idle_window_s": dt,
        "idle_cpu_ms_per_vm_per_s": (sum((c1[p] or 0) - (c0[p] or 0) for p in pids) * 1000.0 /
                                     TICK / k / dt),
        "idle_ctx_switches_per_vm_per_s": (sum((s1[p] or 0) - (s0[p] or 0) for p in pids) /
                                           k / dt),
        "host_busy_pct_idle_window": 100.0 * (1 - (h1[1] - h0[1]) / max(1, h1[0] - h0[0])),
    }
    t_down, killed = stop_all(kind, vms, a.stop_timeout)
    r.remove_parent_cgroup()
    res["teardown_s"] = t_down
    res["teardown_killed"] = killed
    res["exit_codes"] = sorted({exit_code(vm.status) for vm in vms if vm.pid})
    res["leaks"] = r.leaks(base, vms, time.monotonic() + 30)
    shutil.rmtree(r.dir, ignore_errors=True)
    return res


def tail(path, n=300):
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode("utf-8", "replace")
    except (OSError, TypeError):
        return ""


def fmt_stat(s, key="median", prec=2):
    return "-" if not s or s.get(key) is None else "%.*f" % (prec, s[key])


def print_density(res):
    lk = res["leaks"]
    print("  %-12s N=%-5d up %d/%d%s  start p50 %s ms p99 %s ms  %s VMs/s  "
          "host %.2f MiB/VM (slab %.3f, KVM page tables %.3f)  PSS %s MiB  RSS %s MiB  "
          "(THP %.1f MiB in all, guest RAM resident %s MiB)  "
          "CPU per start %.1f ms, median %s (machine %.1f ms)  "
          "threads %s (+%s kernel workers)  fds %s  idle CPU %.3f ms/s, %.2f wakeups/s per VM  "
          "teardown %.2f s  leaks: %s" % (
              res["vmm"], res["N"], res["up"], res["N"],
              (" (stopped for memory at %d)" % res["stopped_for_memory_at"])
              if res["stopped_for_memory_at"] is not None else "",
              fmt_stat(res["start_ms"], "p50"), fmt_stat(res["start_ms"], "p99"),
              "%.1f" % res["rate_vms_per_s"] if res["rate_vms_per_s"] else "-",
              res["mem_available_drop_mib_per_vm"], res["slab_mib_per_vm"],
              res["sec_page_tables_mib_per_vm"], fmt_stat(res["pss_mib"], "median", 3),
              fmt_stat(res["rss_mib"], "median", 3), res["anon_huge_mib_sum"],
              fmt_stat(res["guest_ram_rss_mib"], "median", 3),
              res["start_cpu_ms_per_vm"], fmt_stat(res["start_cpu_ms"], "median", 0),
              res["machine_cpu_ms_per_vm"],
              fmt_stat(res["threads"], "median", 0),
              fmt_stat(res["kernel_worker_threads"], "median", 0),
              fmt_stat(res["fds"], "median", 0), res["idle_cpu_ms_per_vm_per_s"],
              res["idle_ctx_switches_per_vm_per_s"], res["teardown_s"],
              "none" if lk["ok"] else json.dumps({k: v for k, v in lk.items() if k != "ok"})),
          flush=True)
    for f in res["failures"]:
        print("    failure: vm %d: %s | log: %s" % (f["vm"], f["error"], f["log"].strip()[-200:]))


def cmd_density(a, tmp):
    src = SOURCES[a.source](a)
    out = {"command": "density", "source": src.name, "boot_args": src.args, "mem_mib": a.mem,
           "P": a.P, "host": bench_boot.load_snapshot(), "meminfo_start": meminfo(),
           "results": []}
    print("density: source %s (`%s`), %d MiB, 1 vCPU, %d starts in flight; %s" % (
        src.name, src.args, a.mem, a.P, bench_boot.load_str(out["host"])), flush=True)
    for n in a.N:
        print("N = %d" % n, flush=True)
        for kind in a.vmm:
            if kind == "qemu" and a.qemu_max and n > a.qemu_max:
                print("  %-12s N=%d skipped (--qemu-max %d)" % (kind, n, a.qemu_max))
                continue
            if kind == "ember-config" and getattr(src, "restores", False):
                print("  %-12s skipped: a config file cannot load a snapshot (nor can "
                      "Firecracker's)" % kind)
                continue
            res = density_one(a, src, tmp, kind, n)
            out["results"].append(res)
            print_density(res)
            if a.json:  # so far, in case a long run is cut short
                with open(a.json, "w") as f:
                    json.dump(out, f, default=str)
    out["ratios"] = ratios(out["results"])
    for row in out["ratios"]:
        print("  ratio N=%d %s/qemu: host memory per VM %s, creation rate %s, start p50 %s; "
              "QEMU's CPU per start / this one's %s (the machine's %s)" % (
                  row["N"], row["vmm"], fr(row["mem"]), fr(row["rate"]), fr(row["p50"]),
                  fr(row["start_cpu"]), fr(row["machine_cpu"])))
    out["goals"] = goals(out["results"])
    for g in out["goals"]:
        print("  goal %-60s %s" % (g[0], g[1]))
    return out


def fr(x):
    return "-" if x is None else "%.3f" % x


def ratios(results):
    rows = []
    q = {r["N"]: r for r in results if r["vmm"] == "qemu" and r["up"]}
    for r in results:
        if r["vmm"] in ("qemu",) or r["N"] not in q or not r["up"]:
            continue
        qq = q[r["N"]]

        def div(x, y):
            return x / y if x is not None and y else None
        rows.append({"N": r["N"], "vmm": r["vmm"],
                     "mem": div(r["mem_available_drop_mib_per_vm"],
                                qq["mem_available_drop_mib_per_vm"]),
                     "rate": div(r["rate_vms_per_s"], qq["rate_vms_per_s"]),
                     "start_cpu": div(qq["start_cpu_ms_per_vm"], r["start_cpu_ms_per_vm"]),
                     "machine_cpu": div(qq["machine_cpu_ms_per_vm"], r["machine_cpu_ms_per_vm"]),
                     "p50": div(r["start_ms"]["p50"], qq["start_ms"]["p50"])})
    return rows


def goals(results):
    out = []
    for vmm in ("ember-api", "ember-config", "ember-jailer"):
        rs = [r for r in results if r["vmm"] == vmm and r["up"]]
        if not rs:
            continue
        big = max(rs, key=lambda r: r["N"])
        m = big["mem_available_drop_mib_per_vm"]
        out.append(("%s host memory per idle VM <= 1.5 MiB (N=%d: %.2f)" % (vmm, big["N"], m),
                    "PASS" if m <= 1.5 else "MISS"))
        small = min(rs, key=lambda r: r["N"])
        if big["N"] != small["N"]:
            x = big["start_ms"]["p99"] / small["start_ms"]["p99"]
            out.append(("%s p99 start N=%d <= 3x N=%d (%.2fx)" % (vmm, big["N"], small["N"], x),
                        "PASS" if x <= 3 else "MISS"))
        for r in rs:
            q = [x for x in results if x["vmm"] == "qemu" and x["N"] == r["N"] and x["up"]]
            if q and q[0]["rate_vms_per_s"]:
                x = r["rate_vms_per_s"] / q[0]["rate_vms_per_s"]
                out.append(("%s creation rate >= 25x QEMU (N=%d: %.1fx)" % (vmm, r["N"], x),
                            "PASS" if x >= 25 else "MISS"))
        leaks = [r["N"] for r in rs if not r["leaks"]["ok"]]
        out.append(("%s 0 leaks (%d runs)" % (vmm, len(rs)),
                    "PASS" if not leaks else "MISS at N=%s" % leaks))
    return out


# ---------------------------------------------------------------- floor


def cmd_floor(a, tmp):
    launcher = bench_boot.make_launcher(tmp)
    if not launcher:
        sys.exit("bench_density.py floor: the launcher does not run here")
    tiny = os.path.join(tmp, "tiny-pvh.elf")
    with open(tiny, "wb") as f:
        f.write(tiny_pvh_elf())
    cfg = os.path.join(tmp, "tiny.json")
    bench_boot.ember_config(cfg, tiny, "", a.mem)
    cfg_ns = os.path.join(tmp, "tiny-noseccomp.json")
    shutil.copy(cfg, cfg_ns)
    # Both static programs run from copies in the same temporary directory (a tmpfs in the
    # nested machine, where the checkout is a 9p share that makes every exec slower: the
    # "ember from its build path" row shows by how much).
    floor = os.path.join(tmp, "kvm-floor")
    ember = os.path.join(tmp, "ember")
    for src, dst in ((a.floor, floor), (a.ember, ember)):
        shutil.copy(src, dst)
        os.chmod(dst, 0o755)
    variants = [
        ("floor", [floor, str(a.mem)], 0),
        ("floor + irqchip and PIT", [floor, str(a.mem), "irqchip"], 0),
        ("ember", [ember, "--no-api", "--config-file", cfg], 0),
        ("ember --no-seccomp", [ember, "--no-api", "--no-seccomp", "--config-file", cfg_ns], 0),
        ("ember --version", [ember, "--version"], 0),
        ("ember from its build path", [a.ember, "--no-api", "--config-file", cfg], 0),
        ("trivial exec", [os.path.join(tmp, "true")], 0),
    ]
    # The emulator behind the nested machine translates guest code per virtual address, so a
    # static PIE placed at a new random address by every exec is translated anew each time,
    # and a program that runs more code pays more; real hardware has no such cost. These rows
    # run the floor and Ember at fixed addresses (ADDR_NO_RANDOMIZE, for the measurement
    # only) to show what that translation adds.
    variants += [
        ("floor, fixed addresses", [floor, str(a.mem)], 0),
        ("floor + irqchip and PIT, fixed addresses", [floor, str(a.mem), "irqchip"], 0),
        ("ember, fixed addresses", [ember, "--no-api", "--config-file", cfg], 0),
    ]
    with open(os.path.join(tmp, "true"), "wb") as f:  # exit_group(0)
        f.write(static_elf(bytes.fromhex("31ffb8e70000000f05")))
    os.chmod(os.path.join(tmp, "true"), 0o755)
    if not a.no_qemu:
        variants.append(("qemu", bench_boot.qemu_argv(a.qemu, tiny, "", a.mem), 1))
    print("floor: %s vs Ember on an 18-byte PVH guest (boot-timer write, then reset), %d MiB; "
          "n=%d interleaved after 2 warm-ups; %s" % (a.floor, a.mem, a.n,
                                                    bench_boot.load_str(bench_boot.load_snapshot())))
    for name, argv, _ in variants:
        print("  %-42s %s" % (name, bench_boot.shell_quote(argv)))
    samples = {v[0]: {"wall_ms": [], "cpu_ms": [], "rss_mib": [], "own_ms": []} for v in variants}
    bad = {v[0]: 0 for v in variants}
    for i in range(a.n + 2):
        for name, argv, want in variants:
            with fixed_addresses(name.endswith(", fixed addresses")):
                rr = bench_boot.spawn_and_watch(launcher, argv, "\0never", 30)
            if i < 2:
                continue
            if rr.exit_code() != want:
                bad[name] += 1
                if bad[name] == 1:
                    print("  %s: exit %r: %r" % (name, rr.exit_code(), rr.err[-300:]))
                continue
            s = samples[name]
            s["wall_ms"].append(rr.t_exit_ns / 1e6)
            s["cpu_ms"].append(rr.cpu_s * 1e3)
            s["rss_mib"].append(rr.maxrss_kib / 1024.0)
            import re
            m = re.search(rb"Guest-boot-time = (\d+) us", rr.err)
            if m:
                s["own_ms"].append(int(m.group(1)) / 1e3)
    out = {"command": "floor", "n": a.n, "failures": bad, "results": {}}
    print("  %-42s %-28s %-28s %-18s" % ("", "exec -> exit ms", "CPU ms", "peak RSS MiB"))
    for name, *_ in variants:
        st = {k: bench_boot.stats(v) for k, v in samples[name].items()}
        out["results"][name] = st
        print("  %-42s %-28s %-28s %-18s%s" % (
            name, span(st["wall_ms"]), span(st["cpu_ms"]), span(st["rss_mib"]),
            ("  own Guest-boot-time %s" % span(st["own_ms"])) if st["own_ms"] else ""))
    res = out["results"]
    f, e = res["floor"], res["ember"]

    def compare(name, base_name, key):
        """res[name][key] = its median wall and CPU over base_name's, and a line saying so."""
        x, base = res[name], res[base_name]
        if not (x["wall_ms"] and base["wall_ms"]):
            return
        wr = x["wall_ms"]["median"] / base["wall_ms"]["median"]
        cr = x["cpu_ms"]["median"] / base["cpu_ms"]["median"] if base["cpu_ms"]["median"] else None
        x[key] = {"wall": wr, "cpu": cr}
        print("  %-42s / %s: wall %.2fx, CPU %s" % (name, base_name, wr, fr(cr)))

    for name in [v[0] for v in variants if v[0] != "floor"]:
        compare(name, "floor", "ratio_to_floor")
    # Against the floor that also makes (and, at exit, tears down) the in-kernel irqchip and
    # PIT: what is left is Ember's own. And the same pairs with everything at fixed addresses.
    compare("ember", "floor + irqchip and PIT", "ratio_to_floor_irqchip")
    compare("ember, fixed addresses", "floor, fixed addresses", "ratio_to_floor_fixed")
    compare("ember, fixed addresses", "floor + irqchip and PIT, fixed addresses",
            "ratio_to_floor_irqchip_fixed")
    if e["wall_ms"] and f["wall_ms"]:
        out["goals"] = [("exec -> exit <= 1.25x floor (wall)", e["ratio_to_floor"]["wall"] <= 1.25),
                        ("CPU <= 2x floor", (e["ratio_to_floor"]["cpu"] or 99) <= 2)]
        for g, ok in out["goals"]:
            print("  goal %-40s %s" % (g, "PASS" if ok else "MISS"))
    return out


@contextlib.contextmanager
def fixed_addresses(on):
    """Within: children exec'd with ADDR_NO_RANDOMIZE (the personality flag is inherited)."""
    if not on:
        yield
        return
    old = bench_boot.set_addr_no_randomize(True)
    try:
        yield
    finally:
        bench_boot.set_addr_no_randomize(old)


FIXED_HELP = ("start every VMM (Ember, its jailer, QEMU, the trivial process) with "
              "ADDR_NO_RANDOMIZE: the nested machine's emulator translates code per virtual "
              "address, so a program exec'd at a new random address is translated anew; this "
              "shows what that costs each (the measurement only: nothing changes in Ember)")


def span(st):
    if not st:
        return "-"
    return "%.2f (%.2f..%.2f)" % (st["median"], st["min"], st["max"])


# ---------------------------------------------------------------- churn


def cmd_churn(a, tmp):
    src = SOURCES[a.source](a)
    out = {"command": "churn", "cycles": a.cycles, "P": a.P, "results": []}
    for kind_name in a.vmm:
        r = Run(a, src, tmp, churn=True)
        kind = KINDS[kind_name](r)
        base = r.baseline()
        samples = []
        errors = []
        lock = threading.Lock()
        done = [0]
        t0 = time.monotonic()

        def cycle(i):
            vm = VM(i)
            reset = i % 2 == 1  # odd: the guest resets itself; even: SIGTERM of an idle guest
            try:
                kind.start(vm, args=src.reset_args if reset else None)
                if not reset:
                    kind.stop(vm)
                _, st = waitpid_deadline(vm.pid, 30)
                vm.status = st
                if exit_code(st) != 0:
                    raise OSError("exit status %r; log %s" % (exit_code(st), tail(vm.log)))
            except OSError as e:
                if vm.pid and vm.status is None:
                    try:
                        os.kill(vm.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    os.waitpid(vm.pid, 0)
                with lock:
                    errors.append("cycle %d: %s" % (i, str(e)[:300]))
            finally:
                if vm.out_fd is not None:
                    os.close(vm.out_fd)
                kind.cleanup(vm)
                try:
                    os.unlink(vm.log)
                except (OSError, TypeError):
                    pass
            with lock:
                done[0] += 1
                if done[0] % a.sample == 0:
                    samples.append({"cycles": done[0], "t_s": time.monotonic() - t0,
                                    "mem_available_mib": meminfo()["MemAvailable"] / 1024.0,
                                    "harness_fds": fd_count(),
                                    "processes": sum(1 for p in os.listdir("/proc")
                                                     if p.isdigit())})

        with concurrent.futures.ThreadPoolExecutor(max_workers=a.P) as ex:
            list(ex.map(cycle, range(a.cycles)))
        wall = time.monotonic() - t0
        r.remove_parent_cgroup()
        lk = r.leaks(base, [], time.monotonic() + 30)
        shutil.rmtree(r.dir, ignore_errors=True)
        mems = [s["mem_available_mib"] for s in samples]
        res = {"vmm": kind_name, "cycles": a.cycles, "errors": len(errors),
               "first_errors": errors[:5], "wall_s": wall, "cycles_per_s": a.cycles / wall,
               "samples": samples, "leaks": lk,
               "mem_available_spread_mib": (max(mems) - min(mems)) if mems else None,
               "harness_fds_spread": (max(s["harness_fds"] for s in samples) -
                                      min(s["harness_fds"] for s in samples)) if samples else None}
        out["results"].append(res)
        print("churn %-12s %d cycles (%d SIGTERM, %d guest reset), %d errors, %.1f s "
              "(%.1f cycles/s); MemAvailable over the run %s MiB (spread %s), harness fds "
              "spread %s, host processes %s; leaks: %s" % (
                  kind_name, a.cycles, (a.cycles + 1) // 2, a.cycles // 2, len(errors), wall,
                  res["cycles_per_s"],
                  "..".join("%.0f" % m for m in (mems[:1] + mems[-1:])) if mems else "-",
                  fr(res["mem_available_spread_mib"]), res["harness_fds_spread"],
                  "..".join(str(s["processes"]) for s in (samples[:1] + samples[-1:])),
                  "none" if lk["ok"] else json.dumps({k: v for k, v in lk.items() if k != "ok"})),
              flush=True)
        for e in errors[:5]:
            print("    " + e)
    return out


def waitpid_deadline(pid, timeout):
    end = time.monotonic() + timeout
    while True:
        p, st = os.waitpid(pid, os.WNOHANG)
        if p:
            return p, st
        if time.monotonic() > end:
            raise OSError("pid %d did not exit within %g s" % (pid, timeout))
        time.sleep(0.002)


# ---------------------------------------------------------------- plot


def cmd_plot(a):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    results = []
    for path in a.json_in:
        with open(path) as f:
            d = json.load(f)
        results += [r for r in d.get("results", []) if isinstance(r, dict) and "N" in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for vmm in sorted({r["vmm"] for r in results}):
        rs = sorted([r for r in results if r["vmm"] == vmm and r["up"]], key=lambda r: r["N"])
        ns = [r["N"] for r in rs]
        ax1.plot(ns, [r["mem_available_drop_mib_per_vm"] for r in rs], "o-", label=vmm)
        ax2.plot(ns, [r["start_ms"]["p50"] for r in rs], "o-", label=vmm + " p50")
        ax2.plot(ns, [r["start_ms"]["p99"] for r in rs], "x--", label=vmm + " p99")
    allns = sorted({r["N"] for r in results})
    ax2.set_yscale("log")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xticks(allns)
        ax.set_xticklabels([str(n) for n in allns])
        ax.set_xlabel("N (idle VMs at once)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax1.set_ylabel("host memory per VM, MiB (MemAvailable drop / N)")
    ax2.set_ylabel("start latency, ms (exec -> boot-timer write)")
    fig.suptitle("Ember vs QEMU microvm, idle test guests of 128 MiB, nested KVM (emulated: "
                 "compare, do not quote absolute times)", fontsize=9)
    fig.tight_layout()
    fig.savefig(a.png, dpi=110)
    print("wrote %s" % a.png)
    return 0


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--ember", default="build/ember")
    common.add_argument("--jailer")
    common.add_argument("--guest-dir", default="build/guest")
    common.add_argument("--images")
    common.add_argument("--source", default="guest", choices=sorted(SOURCES))
    common.add_argument("--qemu", default="qemu-system-x86_64")
    common.add_argument("--mem", type=int, default=128, help="guest MiB")
    common.add_argument("-P", type=int, default=8, help="starts in flight")
    common.add_argument("--uid", type=int, default=12345)
    common.add_argument("--jailer-cgroup", action="append", default=None,
                        help="--cgroup for each jail (default: a 256 MiB memory limit, through "
                        "cgroup v2's memory.max or else v1's memory.limit_in_bytes)")
    common.add_argument("--jailer-cgroup-version", type=int, choices=(1, 2), default=2,
                        help="--cgroup-version for a --jailer-cgroup given here (default 2)")
    common.add_argument("--mem-tolerance-mib", type=int, default=32,
                        help="memory still held after the tear-down that counts as a leak")
    common.add_argument("--reserve-mib", type=int, default=768,
                        help="stop starting VMs when MemAvailable falls below this")
    common.add_argument("--stop-timeout", type=float, default=120)
    common.add_argument("--json")
    d = sub.add_parser("density", parents=[common])
    d.add_argument("-N", default="10,100")
    d.add_argument("--vmm", default="ember-api,ember-jailer,qemu,trivial")
    d.add_argument("--qemu-max", type=int, default=0, help="skip QEMU above this N")
    d.add_argument("--idle-s", type=float, default=5.0)
    d.add_argument("--fixed-addresses", action="store_true", help=FIXED_HELP)
    f = sub.add_parser("floor", parents=[common])
    f.add_argument("--floor", default="build/kvm-floor")
    f.add_argument("-n", type=int, default=15)
    f.add_argument("--no-qemu", action="store_true")
    c = sub.add_parser("churn", parents=[common])
    c.add_argument("--cycles", type=int, default=1000)
    c.add_argument("--vmm", default="ember-api,ember-jailer")
    c.add_argument("--sample", type=int, default=100)
    c.add_argument("--fixed-addresses", action="store_true", help=FIXED_HELP)
    p = sub.add_parser("plot")
    p.add_argument("json_in", nargs="+")
    p.add_argument("--png", required=True)
    a = ap.parse_args()
    if a.cmd == "plot":
        return cmd_plot(a)
    a.ember = os.path.abspath(a.ember)
    a.jailer = os.path.abspath(a.jailer or os.path.join(os.path.dirname(a.ember), "ember-jailer"))
    a.guest_dir = os.path.abspath(a.guest_dir)
    a.images = os.path.abspath(a.images) if a.images else None
    if a.jailer_cgroup is None:
        a.jailer_cgroup_version, a.jailer_cgroup = memory_limit_cgroups(256 << 20)
    if hasattr(a, "N"):
        a.N = [int(x) for x in a.N.split(",")]
    if hasattr(a, "vmm"):
        a.vmm = a.vmm.split(",")
        for k in a.vmm:
            if k not in KINDS:
                sys.exit("--vmm %s: one of %s" % (k, ", ".join(KINDS)))
    if hasattr(a, "floor"):
        a.floor = os.path.abspath(a.floor)
    q = shutil.which(a.qemu)
    a.qemu = q or a.qemu
    if any(k.startswith("ember-jailer") for k in getattr(a, "vmm", [])) and os.geteuid() != 0:
        sys.exit("bench_density.py: ember-jailer needs root")
    for fd in os.listdir("/proc/self/fd"):  # fds this harness inherited stay out of the VMs
        if int(fd) > 2:
            try:
                os.set_inheritable(int(fd), False)
            except OSError:
                pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        SOURCES[getattr(a, "source", "guest")](a)
    except SourceUnavailable as e:
        print("bench_density.py: %s" % e, file=sys.stderr)
        return 2
    if getattr(a, "fixed_addresses", False):
        # Set on this (the main) thread before any other starts: the worker threads that
        # spawn the VMs are created from it and inherit it, and so does every exec.
        bench_boot.set_addr_no_randomize(True)
        print("every process this run starts runs at fixed addresses (ADDR_NO_RANDOMIZE)",
              flush=True)
    tmp = tempfile.mkdtemp(prefix="ember-density-", dir="/tmp")
    os.chmod(tmp, 0o755)
    try:
        out = {"density": cmd_density, "floor": cmd_floor, "churn": cmd_churn}[a.cmd](a, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    out["fixed_addresses"] = getattr(a, "fixed_addresses", False)
    text = json.dumps(out, default=str)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text)
    print("BENCH_JSON " + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
