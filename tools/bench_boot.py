#!/usr/bin/env python3
"""bench_boot.py - boot the same guest under Ember and under QEMU's microvm,
interleaved in one run, and compare (DESIGN.md, "Measuring").

  bench_boot.py --ember build/ember --guest-dir build/guest [--images build/images]
                [-n 30] [--warmup 2] [--linux] [--json FILE] [--qemu qemu-system-x86_64]

Test-guest runs (guest-pvh.elf, command line `exit=debug`, 1 vCPU, 128 MiB), per run and
measured the same way for both VMMs:
  exec -> boot-timer  from just before spawn to reading `boot-timer: written` on the
                      child's stdout (the guest prints it right after its write to port 0x3f0)
  Ember's own figure  Ember's `Guest-boot-time = N us` log line (its own clock, from its main())
  exec -> guest: done to reading `guest: done` (the guest's last line before it exits)
  exec -> exit        from just before spawn until waitpid returns
  guest: done -> exit the VMM's shutdown: the guest's exit write/reset, teardown, process exit
  peak RSS, CPU time  ru_maxrss and ru_utime + ru_stime from wait4 on the VMM process
A run fails if the exit status is wrong (Ember 0, QEMU 1 from isa-debug-exit), if
`guest: done` is missing, or on timeout; failures are counted and printed, and their
figures are left out of the statistics.

Why a launcher: a process spawned straight from Python inherits Python's high-water RSS
(Linux folds the pre-exec address space's peak into ru_maxrss at execve: about 13 MiB
here, for /bin/true too), which would hide a VMM of a few MiB. So every VMM is started
through a 150-byte static launcher written to a temporary directory (source below): it
vforks + execs the VMM, wait4()s for it and hands the status and rusage back on fd 3.
Its own cost (exec of a tiny static ELF + vfork) is included in both VMMs' times and is
printed as the "harness floor" (the same launcher running /bin/true).

--linux boots build/images/vmlinux + initramfs.cpio once under each VMM (256 MiB, 1 vCPU,
identical command line) and reports exec -> `Run /init as init process`.
"""
import argparse
import ctypes
import json
import os
import re
import selectors
import signal
import statistics
import struct
import sys
import tempfile
import time

QEMU_MACHINE = ("microvm,x-option-roms=off,isa-serial=on,rtc=off,pit=off,pic=off,acpi=off")
LINUX_ARGS = "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux"
GUEST_TIMEOUT_S = 30.0
LINUX_TIMEOUT_S = 300.0
GOAL_EXIT_MS = 5.0
GOAL_RSS_MIB = 3.0

# The launcher (x86-64 Linux, no libc), assembled with GNU as from:
#     mov edi,3; mov esi,2; mov edx,1; mov eax,72; syscall   # fcntl(3, F_SETFD, FD_CLOEXEC)
#     mov rdi,[rsp]; lea rsi,[rsp+16]                       # argc; &argv[1]
#     lea rdx,[rsp+rdi*8+16]                                # envp
#     mov eax,58; syscall                                   # vfork
#     test eax,eax; js 3f; jnz 2f
#     mov rdi,[rsi]; mov eax,59; syscall                    # child: execve(argv[1], &argv[1], envp)
#     mov edi,127; mov eax,60; syscall                      #        _exit(127) if that failed
# 2:  mov edi,eax; sub rsp,160                              # parent: record at [rsp]
#     lea rsi,[rsp+8]; xor edx,edx; lea r10,[rsp+16]
# 1:  mov eax,61; syscall; cmp rax,-4; je 1b                # wait4(pid, &status, 0, &rusage), EINTR
#     mov [rsp],rax                                         # record: i64 wait4 result, i32 status,
#     mov edi,3; mov rsi,rsp; mov edx,160; mov eax,1; syscall  # pad, struct rusage -> write(3, 160)
#     xor edi,edi; mov eax,231; syscall                     # exit_group(0)
# 3:  mov edi,126; mov eax,231; syscall                     # vfork failed: exit_group(126)
LAUNCHER_CODE = bytes.fromhex(
    "bf03000000be02000000ba01000000b8480000000f05488b3c24488d742410488d54fc10b83a0000000f05"
    "85c0785b7516488b3eb83b0000000f05bf7f000000b83c0000000f0589c74881eca0000000488d742408"
    "31d24c8d542410b83d0000000f054883f8fc74f348890424bf030000004889e6baa0000000b8010000000f05"
    "31ffb8e70000000f05bf7e000000b8e70000000f05")
RECORD_LEN = 160


def launcher_elf():
    """A static ELF64 executable: one R+X PT_LOAD at 0x400000 holding the code above."""
    base, hdr = 0x400000, 64 + 56
    size = hdr + len(LAUNCHER_CODE)
    ehdr = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, b"\0" * 7,
                       2, 0x3E, 1, base + hdr, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return ehdr + phdr + LAUNCHER_CODE


class Run:
    """One VMM process: timings, output, status and rusage."""

    def __init__(self):
        self.t_boot_ns = None     # exec -> `boot-timer: written` (or the milestone), ns
        self.t_exit_ns = None     # exec -> waitpid returned, ns
        self.t_marks = {}         # further console strings -> exec -> first seen, ns
        self.out = b""
        self.err = b""
        self.status = None        # raw wait status of the VMM itself
        self.maxrss_kib = None
        self.cpu_s = None
        self.timed_out = False
        self.direct_rusage = False  # True: rusage from wait4 on the VMM spawned directly

    def exit_code(self):
        if self.status is None:
            return None
        if os.WIFEXITED(self.status):
            return os.WEXITSTATUS(self.status)
        if os.WIFSIGNALED(self.status):
            return -os.WTERMSIG(self.status)
        return None


def spawn_and_watch(launcher, argv, marker, timeout_s, kill_at_marker=False, also=()):
    """Start argv (through the launcher if there is one), read stdout/stderr unbuffered,
    note when `marker` (and each string in `also`) first appears on stdout, and wait
    for the exit."""
    r = Run()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    rec_r, rec_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    fa = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
          (os.POSIX_SPAWN_DUP2, err_w, 2)]
    if launcher:
        fa.append((os.POSIX_SPAWN_DUP2, rec_w, 3))
        path, args = launcher, [launcher] + argv
    else:
        path, args = argv[0], argv
    sigdef = [s for s in (signal.SIGPIPE, signal.SIGXFSZ)]
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(path, args, os.environ, file_actions=fa, setpgroup=0,
                         setsigdef=sigdef)
    for fd in (out_w, err_w, rec_w, null):
        os.close(fd)
    sel = selectors.DefaultSelector()
    bufs = {out_r: bytearray(), err_r: bytearray(), rec_r: bytearray()}
    for fd in bufs:
        sel.register(fd, selectors.EVENT_READ)
    mk = marker.encode()
    extra = {m: m.encode() for m in also}
    deadline = time.monotonic() + timeout_s
    killed = False
    while bufs and sel.get_map():
        left = deadline - time.monotonic()
        if left <= 0 and not killed:
            r.timed_out = True
            _killpg(pid)
            killed = True
            deadline = time.monotonic() + 10
            continue
        if left <= 0:
            break
        for key, _ in sel.select(timeout=min(left, 1.0)):
            fd = key.fd
            data = os.read(fd, 65536)
            now = time.perf_counter_ns()
            if not data:
                sel.unregister(fd)
                continue
            b = bufs[fd]
            old = len(b)
            b += data
            if fd == out_r and r.t_boot_ns is None and \
                    b.find(mk, max(0, old - len(mk))) >= 0:
                r.t_boot_ns = now - t0
                if kill_at_marker and not killed:
                    _killpg(pid)
                    killed = True
            if fd == out_r:
                for m, mb in extra.items():
                    if m not in r.t_marks and b.find(mb, max(0, old - len(mb))) >= 0:
                        r.t_marks[m] = now - t0
    # Everything that held the pipes has exited (or we gave up): reap the child.
    _, st, ru = os.wait4(pid, 0)
    r.t_exit_ns = time.perf_counter_ns() - t0
    sel.close()
    r.out, r.err = bytes(bufs[out_r]), bytes(bufs[err_r])
    rec = bytes(bufs[rec_r])
    for fd in bufs:
        os.close(fd)
    if launcher:
        if len(rec) == RECORD_LEN:
            wret, vstatus = struct.unpack_from("<qi", rec, 0)
            ut_s, ut_us, st_s, st_us, maxrss = struct.unpack_from("<qqqqq", rec, 16)
            if wret > 0:
                r.status = vstatus
                r.maxrss_kib = maxrss
                r.cpu_s = ut_s + st_s + (ut_us + st_us) / 1e6
        elif os.WIFEXITED(st) and os.WEXITSTATUS(st) in (126, 127):
            r.status = st  # vfork or execve failed in the launcher
    else:
        r.status = st
        r.maxrss_kib = ru.ru_maxrss
        r.cpu_s = ru.ru_utime + ru.ru_stime
        r.direct_rusage = True
    if r.status is None:
        r.status = st
    return r


def _killpg(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def make_launcher(tmp):
    """Write the launcher and check it works (a noexec /tmp, a non-x86-64 host...).
    Returns its path, or None: then VMMs are spawned directly and RSS is flagged."""
    path = os.path.join(tmp, "launch")
    with open(path, "wb") as f:
        f.write(launcher_elf())
    os.chmod(path, 0o755)
    try:
        r = spawn_and_watch(path, ["/bin/sh", "-c", "echo ok; exit 3"], "ok", 10)
    except OSError as e:
        print("launcher unusable (%s); spawning directly" % e, file=sys.stderr)
        return None
    if r.exit_code() != 3 or r.maxrss_kib is None:
        print("launcher self-test failed; spawning directly", file=sys.stderr)
        return None
    return path


# ---------------------------------------------------------------- statistics


def stats(xs):
    if not xs:
        return None
    s = sorted(xs)
    if len(s) >= 2:
        q1, med, q3 = statistics.quantiles(s, n=4, method="inclusive")
    else:
        q1 = med = q3 = s[0]
    return {"n": len(s), "median": statistics.median(s), "min": s[0], "p25": q1,
            "p75": q3, "max": s[-1]}


def fmt(v, prec):
    return "-" if v is None else ("%.*f" % (prec, v))


def load_snapshot():
    la = os.getloadavg()
    try:
        with open("/proc/loadavg") as f:
            run_total = f.read().split()[3]
    except OSError:
        run_total = "?"
    builds = 0
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/comm" % p) as f:
                    if f.read().strip() in ("cc1", "cc1plus", "ld", "as", "make", "ninja"):
                        builds += 1
            except OSError:
                pass
    return {"loadavg": [round(x, 2) for x in la], "running/total": run_total,
            "build_processes": builds, "cpus": os.cpu_count()}


def load_str(s):
    return ("load average %.2f %.2f %.2f (running/total %s), %d cpus, %d compiler/make processes"
            % (*s["loadavg"], s["running/total"], s["cpus"], s["build_processes"]))


def shell_quote(argv):
    out = []
    for a in argv:
        if a and re.fullmatch(r"[\w@%+=:,./-]+", a):
            out.append(a)
        else:
            out.append("'" + a.replace("'", "'\\''") + "'")
    return " ".join(out)


# ---------------------------------------------------------------- the VMMs


def set_addr_no_randomize(on):
    """Turn ADDR_NO_RANDOMIZE on or off for this thread and what it spawns from now on (kept
    across exec); returns whether it was on. personality(2) is per thread. The nested
    machine's emulator translates code per virtual address, so a program exec'd at a new
    random address is translated anew: benchmarks set this to show what that costs."""
    libc = ctypes.CDLL(None, use_errno=True)
    old = libc.personality(0xffffffff)
    libc.personality((old | 0x0040000) if on else (old & ~0x0040000))
    return bool(old & 0x0040000)


def qemu_argv(qemu, kernel, append, mem_mib, initrd=None, no_reboot=False):
    a = [qemu, "-M", QEMU_MACHINE, "-enable-kvm", "-cpu", "kvm64,+tsc-deadline",
         "-m", str(mem_mib), "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
         "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=1",
         "-kernel", kernel]
    if initrd:
        a += ["-initrd", initrd]
    if no_reboot:
        a += ["-no-reboot"]  # a guest reset ends QEMU, as it ends Ember
    return a + ["-append", append]


def ember_config(path, kernel, append, mem_mib, initrd=None):
    bs = {"kernel_image_path": kernel, "boot_args": append}
    if initrd:
        bs["initrd_path"] = initrd
    cfg = {"boot-source": bs,
           "machine-config": {"vcpu_count": 1, "mem_size_mib": mem_mib, "smt": False}}
    with open(path, "w") as f:
        json.dump(cfg, f)
    return cfg


def which(name):
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


def check_guest_run(vmm, r):
    """Return None if the run is good, else the reason."""
    if r.timed_out:
        return "timeout after %.0f s" % GUEST_TIMEOUT_S
    want = 0 if vmm == "ember" else 1
    if r.exit_code() != want:
        return "exit status %s (want %d)" % (r.exit_code(), want)
    if b"guest: done" not in r.out or "guest: done" not in r.t_marks:
        return "no `guest: done` on the console"
    if r.t_boot_ns is None:
        return "no `boot-timer: written` on the console"
    if vmm == "ember" and parse_ember_boot_us(r.err) is None:
        return "no Guest-boot-time line in Ember's log"
    return None


def parse_ember_boot_us(err):
    m = re.search(rb"Guest-boot-time = (\d+) us", err)
    return int(m.group(1)) if m else None


def tail(b, n=6):
    lines = b.decode(errors="replace").rstrip().splitlines()
    return "\n".join("      | " + l for l in lines[-n:])


# ---------------------------------------------------------------- main parts


METRICS = [  # key, label, unit, precision
    ("boot_ms", "exec -> boot-timer write", "ms", 2),
    ("ember_own_ms", "Ember's own Guest-boot-time", "ms", 2),
    ("done_ms", "exec -> `guest: done` printed", "ms", 2),
    ("exit_ms", "exec -> exit", "ms", 2),
    ("teardown_ms", "`guest: done` -> exit", "ms", 2),
    ("rss_mib", "peak RSS (ru_maxrss)", "MiB", 2),
    ("cpu_ms", "CPU time (user + sys)", "ms", 2),
]


def bench_guest(a, launcher, tmp):
    guest = os.path.abspath(os.path.join(a.guest_dir, "guest-pvh.elf"))
    if not os.path.exists(guest):
        sys.exit("no test guest at %s (run `make guest`)" % guest)
    cfg_path = os.path.join(tmp, "guest.json")
    cfg = ember_config(cfg_path, guest, a.guest_args, 128)
    cmds = {"ember": [os.path.abspath(a.ember), "--no-api", "--config-file", cfg_path],
            "qemu": qemu_argv(a.qemu, guest, a.guest_args, 128)}
    print("Test guest: %s, command line `%s`, 1 vCPU, 128 MiB" % (guest, a.guest_args))
    print("  ember: %s" % shell_quote(cmds["ember"]))
    print("         config: %s" % json.dumps(cfg))
    print("  qemu:  %s" % shell_quote(cmds["qemu"]))
    print("  %d warm-up run(s) each (not counted), then %d interleaved runs each "
          "(ember, qemu, ember, qemu, ...)" % (a.warmup, a.n), flush=True)

    for _ in range(a.warmup):
        for vmm in ("ember", "qemu"):
            spawn_and_watch(launcher, cmds[vmm], "boot-timer: written", GUEST_TIMEOUT_S)

    samples = {vmm: {k: [] for k, *_ in METRICS} for vmm in ("ember", "qemu")}
    failures = {"ember": [], "qemu": []}
    for i in range(a.n):
        for vmm in ("ember", "qemu"):
            r = spawn_and_watch(launcher, cmds[vmm], "boot-timer: written", GUEST_TIMEOUT_S,
                                also=("guest: done",))
            why = check_guest_run(vmm, r)
            if why:
                failures[vmm].append({"run": i + 1, "reason": why})
                print("  run %d %s FAILED: %s\n%s\n%s" % (i + 1, vmm, why, tail(r.out),
                                                        tail(r.err)), flush=True)
                continue
            s = samples[vmm]
            s["boot_ms"].append(r.t_boot_ns / 1e6)
            s["exit_ms"].append(r.t_exit_ns / 1e6)
            s["done_ms"].append(r.t_marks["guest: done"] / 1e6)
            s["teardown_ms"].append((r.t_exit_ns - r.t_marks["guest: done"]) / 1e6)
            if r.maxrss_kib is not None:
                s["rss_mib"].append(r.maxrss_kib / 1024)
            if r.cpu_s is not None:
                s["cpu_ms"].append(r.cpu_s * 1e3)
            if vmm == "ember":
                s["ember_own_ms"].append(parse_ember_boot_us(r.err) / 1e3)
        if (i + 1) % 10 == 0:
            print("  ... %d/%d pairs done" % (i + 1, a.n), flush=True)
    return cmds, cfg, samples, failures


def harness_floor(launcher):
    """The launcher + Python's own cost: exec -> exit of /bin/true, 10 runs."""
    t = which("true") or "/bin/true"
    xs = []
    for _ in range(10):
        r = spawn_and_watch(launcher, [t], "\0", 10)
        xs.append(r.t_exit_ns / 1e6)
    return statistics.median(xs)


def print_table(samples):
    res = {}
    hdr = "%-36s %-5s %4s %8s %8s %8s %8s %8s  %s" % (
        "metric", "vmm", "n", "median", "min", "p25", "p75", "max", "Ember/QEMU")
    print(hdr)
    print("-" * len(hdr))
    for key, label, unit, prec in METRICS:
        res[key] = {"unit": unit}
        for vmm in ("ember", "qemu"):
            st = stats(samples[vmm][key])
            res[key][vmm] = st
        e, q = res[key]["ember"], res[key]["qemu"]
        ratio = (e["median"] / q["median"]) if e and q and q["median"] else None
        res[key]["ratio"] = ratio
        for vmm in ("ember", "qemu"):
            st = res[key][vmm]
            if st is None:
                if key == "ember_own_ms" and vmm == "qemu":
                    continue
                print("%-36s %-5s %4d %8s" % ("%s (%s)" % (label, unit) if vmm == "ember"
                                              else "", vmm, 0, "-"))
                continue
            print("%-36s %-5s %4d %8s %8s %8s %8s %8s  %s" % (
                "%s (%s)" % (label, unit) if vmm == "ember" else "", vmm, st["n"],
                fmt(st["median"], prec), fmt(st["min"], prec), fmt(st["p25"], prec),
                fmt(st["p75"], prec), fmt(st["max"], prec),
                ("%.3f" % ratio) if (vmm == "ember" and ratio is not None) else ""))
    return res


def bench_linux(a, launcher, tmp):
    img = a.images
    vmlinux = os.path.abspath(os.path.join(img, "vmlinux"))
    initrd = os.path.abspath(os.path.join(img, "initramfs.cpio"))
    for p in (vmlinux, initrd):
        if not os.path.exists(p):
            print("--linux: %s missing (run `make images`); skipped" % p)
            return {"skipped": "%s missing" % p}
    args = LINUX_ARGS
    pvm = os.path.exists("/sys/module/kvm_pvm")
    if pvm:
        with open(os.path.join(img, "cmdline-host.txt")) as f:
            args += " " + f.read().strip()
    cfg_path = os.path.join(tmp, "linux.json")
    cfg = ember_config(cfg_path, vmlinux, args, 256, initrd)
    cmds = {"ember": [os.path.abspath(a.ember), "--no-api", "--config-file", cfg_path],
            "qemu": qemu_argv(a.qemu, vmlinux, args, 256, initrd, no_reboot=True)}
    marker = "Run /init as init process"
    print()
    print("Linux: %s + %s, 256 MiB, 1 vCPU, one boot each, exec -> `%s`" %
          (vmlinux, initrd, marker))
    print("  command line: %s" % args)
    print("  ember: %s" % shell_quote(cmds["ember"]))
    print("  qemu:  %s" % shell_quote(cmds["qemu"]))
    if pvm:
        print("  NOTE: this host's KVM is PVM: guest kernel code (CPL0) is interpreted at about 2\n"
              "  million instructions/s, so these figures are dominated by the guest kernel's\n"
              "  speed, not by the VMM; they are no measure of either VMM's boot overhead.")
    print("  load before: %s" % load_str(load_snapshot()), flush=True)
    out = {"cmdline": args, "pvm_host": pvm, "commands": {}, "results": {}}
    for vmm in ("ember", "qemu"):
        r = spawn_and_watch(launcher, cmds[vmm], marker, LINUX_TIMEOUT_S, kill_at_marker=True)
        kcmd = re.search(rb"Command line: ([^\r\n]*)", r.out)
        res = {"milestone_s": (r.t_boot_ns / 1e9) if r.t_boot_ns is not None else None,
               "exit_status": r.exit_code(), "timed_out": r.timed_out,
               "kernel_command_line": kcmd.group(1).decode(errors="replace") if kcmd else None}
        out["results"][vmm] = res
        out["commands"][vmm] = shell_quote(cmds[vmm])
        if res["milestone_s"] is not None:
            print("  %-5s exec -> Run /init: %8.2f s" % (vmm, res["milestone_s"]))
        else:
            print("  %-5s did not reach `Run /init` (%s, status %s)\n%s\n%s" % (
                vmm, "timeout" if r.timed_out else "exited", r.exit_code(), tail(r.out, 10),
                tail(r.err, 6)))
        print("        guest kernel saw: %s" % res["kernel_command_line"])
        res["load_after"] = load_snapshot()
        print("        load after this boot: %s" % load_str(res["load_after"]), flush=True)
    e, q = out["results"]["ember"]["milestone_s"], out["results"]["qemu"]["milestone_s"]
    out["ratio"] = (e / q) if e and q else None
    if out["ratio"]:
        print("  Ember/QEMU: %.3f (one boot each)" % out["ratio"])
    ke = out["results"]["ember"]["kernel_command_line"]
    kq = out["results"]["qemu"]["kernel_command_line"]
    if ke and kq and ke != kq:
        print("  note: the kernel command lines differ (QEMU's microvm appends its own entries)")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ember", required=True, help="Ember binary (build/ember)")
    ap.add_argument("--guest-dir", required=True, help="test guest directory (build/guest)")
    ap.add_argument("--images", help="Linux images directory (build/images), for --linux")
    ap.add_argument("-n", type=int, default=30, help="runs per VMM (default 30)")
    ap.add_argument("--warmup", type=int, default=2, help="uncounted runs per VMM first")
    ap.add_argument("--guest-args", default="exit=debug",
                    help="test guest command line (must keep exit=debug; add `quiet` to skip the "
                         "report, whose ~400 polled serial bytes dominate exec->exit here)")
    ap.add_argument("--linux", action="store_true", help="also boot Linux once under each")
    ap.add_argument("--json", help="also write the JSON summary to this file")
    ap.add_argument("--qemu", default="qemu-system-x86_64", help="QEMU binary")
    a = ap.parse_args()
    if a.n < 1:
        sys.exit("-n must be >= 1")
    if not os.access(a.ember, os.X_OK):
        sys.exit("no Ember binary at %s (run `make ember`)" % a.ember)
    q = which(a.qemu)
    if not q:
        sys.exit("%s not found (tools/install-deps.sh installs qemu-system-x86)" % a.qemu)
    a.qemu = q
    if a.linux and not a.images:
        sys.exit("--linux needs --images DIR (from `make images`)")

    tmp = tempfile.mkdtemp(prefix="ember-bench.")
    try:
        summary = run(a, tmp)
    finally:
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    line = json.dumps(summary, sort_keys=True)
    print("BENCH_JSON " + line)
    if a.json:
        with open(a.json, "w") as f:
            f.write(line + "\n")
    return 0


def run(a, tmp):
    load0 = load_snapshot()
    print("Ember vs QEMU microvm, %s" % time.strftime("%Y-%m-%d %H:%M:%S"))
    print("host: %s; KVM: %s" % (os.uname().release,
                                "PVM (guest CPL0 code interpreted)"
                                if os.path.exists("/sys/module/kvm_pvm") else "kvm"))
    print("load before: %s" % load_str(load0))
    if a.n < 30:
        print("WARNING: -n %d < 30: too few runs for the spreads to mean much" % a.n)
    launcher = make_launcher(tmp)
    if launcher:
        floor = harness_floor(launcher)
        print("harness floor (launcher + Python, exec -> exit of /bin/true): %.2f ms median, "
              "included in every exec -> figure" % floor)
    else:
        floor = None
        print("WARNING: spawning directly: ru_maxrss includes this Python process's own peak "
              "(~10+ MiB), so peak RSS is only an upper bound")
    print(flush=True)

    cmds, cfg, samples, failures = bench_guest(a, launcher, tmp)
    load1 = load_snapshot()
    print()
    res = print_table(samples)
    print("(min..max is the spread; p25/p75 quartiles; failed runs are excluded and "
          "counted below)")
    nf = {v: len(failures[v]) for v in failures}
    print("failures: ember %d/%d, qemu %d/%d" % (nf["ember"], a.n, nf["qemu"], a.n))
    for v in ("ember", "qemu"):
        for f in failures[v]:
            print("  %s run %d: %s" % (v, f["run"], f["reason"]))
    print("load after:  %s" % load_str(load1))

    goals = {}
    ex = res["exit_ms"]["ember"]
    rs = res["rss_mib"]["ember"]
    print()
    print("Goals (Ember, the issue's targets):")
    if ex:
        ok = ex["median"] <= GOAL_EXIT_MS
        goals["exit_ms_median"] = {"goal": GOAL_EXIT_MS, "value": ex["median"],
                                   "pass": ok}
        print("  exec -> exit median <= %.0f ms: %.2f ms  %s" %
              (GOAL_EXIT_MS, ex["median"], "PASS" if ok else "MISS"))
    else:
        print("  exec -> exit median <= %.0f ms: no successful run  MISS" % GOAL_EXIT_MS)
        goals["exit_ms_median"] = {"goal": GOAL_EXIT_MS, "value": None, "pass": False}
    if rs and launcher:
        ok = rs["median"] <= GOAL_RSS_MIB
        goals["rss_mib_median"] = {"goal": GOAL_RSS_MIB, "value": rs["median"],
                                   "max": rs["max"], "pass": ok}
        print("  peak RSS median <= %.0f MiB:     %.2f MiB (max %.2f)  %s" %
              (GOAL_RSS_MIB, rs["median"], rs["max"], "PASS" if ok else "MISS"))
    else:
        print("  peak RSS <= %.0f MiB: not measured reliably  MISS" % GOAL_RSS_MIB)
        goals["rss_mib_median"] = {"goal": GOAL_RSS_MIB, "value": None, "pass": False}
    if os.path.exists("/sys/module/kvm_pvm"):
        print("  (on this PVM host guest CPL0 code is interpreted and each first touch of a guest\n"
              "   page costs ~5 us, so these guest-dependent times run slower than on hardware KVM;\n"
              "   the ratio to QEMU, same guest and same host, is the comparable figure)")

    summary = {
        "host": {"kernel": os.uname().release, "pvm": os.path.exists("/sys/module/kvm_pvm"),
                 "load_before": load0, "load_after": load1},
        "n": a.n, "warmup": a.warmup,
        "commands": {v: shell_quote(cmds[v]) for v in cmds}, "ember_config": cfg,
        "harness_floor_ms": floor, "rss_via_launcher": bool(launcher),
        "metrics": res, "failures": failures, "goals": goals,
        "samples": {v: {k: [round(x, 4) for x in xs] for k, xs in samples[v].items() if xs}
                    for v in samples},
    }
    if a.linux:
        summary["linux"] = bench_linux(a, launcher, tmp)
    print()
    return summary


if __name__ == "__main__":
    sys.exit(main())
