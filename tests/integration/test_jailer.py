"""test_jailer.py - ember-jailer (issue 5): the test guest boots inside a jail as
an unprivileged uid, in a cgroup with memory and CPU limits and a network
namespace made here, and the host checks what the jailed process looks like
(ids, capabilities, root, /dev, cgroup, fds, netns); the API socket variant is
driven from the host through the jail; every bad input ends with status 1, one
message, and nothing left behind. Must run as root."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from harness import check, test

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from bench_density import cgroup_mounts  # noqa: E402  (v2 mount, {v1 controller: mount})

UID = GID = 12345


def jailer(ctx):
    return os.path.join(os.path.dirname(ctx.ember), "ember-jailer")


def jailed_ember(ctx):
    """The Ember binary to put in the jail: ctx.ember, except that for a
    sanitizer build (dynamic; LeakSanitizer needs /proc, which a jail does not
    have) the static build/ember next to it is used when it exists. The
    jailer itself is still the build under test."""
    static = os.path.join(os.path.dirname(os.path.dirname(ctx.ember)), "ember")
    if elf_interp(ctx.ember) and os.path.exists(static) and not elf_interp(static):
        return static
    return ctx.ember


def mountinfo():
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, supers = right.split()[:3]
            mnt = left.split()[4].replace("\\040", " ")
            out.append((mnt, fstype, supers.split(",")))
    return out


def v2_controllers():
    v2, _ = cgroup_mounts()
    if not v2:
        return v2, []
    with open(os.path.join(v2, "cgroup.controllers")) as f:
        return v2, f.read().split()


def limit_args():
    """--cgroup flags for a memory and a CPU limit, and {path-in-hierarchy: value} to check.
    cgroup v2 (memory.max, cpu.max) where the host's v2 hierarchy has those
    controllers; this workplace's hosts bind memory and cpu to v1, so there the
    same limits go through --cgroup-version 1."""
    v2, ctls = v2_controllers()
    if "memory" in ctls and "cpu" in ctls:
        print("  (cgroup limits through v2: memory.max, cpu.max)", flush=True)
        return (["--cgroup-version", "2", "--cgroup", "memory.max=268435456",
                 "--cgroup", "cpu.max=50000 100000"],
                {("", "memory.max"): "268435456", ("", "cpu.max"): "50000 100000"})
    _, v1 = cgroup_mounts()
    check("memory" in v1 and "cpu" in v1, "neither cgroup v2 nor v1 offers memory and cpu")
    print("  (cgroup limits through v1: memory.limit_in_bytes, cpu.cfs_quota_us; v2 offers %s)" %
          (" ".join(ctls) or "nothing"), flush=True)
    return (["--cgroup-version", "1", "--cgroup", "memory.limit_in_bytes=268435456",
             "--cgroup", "cpu.cfs_quota_us=50000"],
            {("memory", "memory.limit_in_bytes"): "268435456",
             ("cpu", "cpu.cfs_quota_us"): "50000"})


def proc_cgroup_dir(pid, controller):
    """Host path of `pid`'s cgroup in the v2 hierarchy (controller "") or a v1 one."""
    v2, v1 = cgroup_mounts()
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            hid, ctls, path = line.rstrip("\n").split(":", 2)
            if (controller == "" and hid == "0") or (controller and controller in ctls.split(",")):
                return (v2 if controller == "" else v1[controller]) + path
    raise AssertionError("pid %d has no %r cgroup" % (pid, controller or "v2"))


def elf_interp(path):
    """PT_INTERP of an ELF64 file, or None."""
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


def place_libs(binary, root):
    """A dynamically linked Ember needs its loader and libraries in the jail (the
    caller's job, like the kernel): copy what ldd lists."""
    if not elf_interp(binary):
        return
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    for lib in re.findall(r"(/\S+)", out):
        dst = root + lib
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(lib, dst)


class Jail:
    """A unique base dir, id, parent cgroup and netns for one test; remove() undoes all."""

    def __init__(self, ctx, netns=False):
        self.ctx = ctx
        self.base = tempfile.mkdtemp(prefix="ember-jail-", dir="/tmp")
        check(not (os.statvfs(self.base).f_flag & os.ST_NODEV), "/tmp is mounted nodev")
        self.id = "it-" + uuid.uuid4().hex[:12]
        self.parent = "ember-test-" + uuid.uuid4().hex[:8]
        self.ember = jailed_ember(ctx)
        self.exec_name = os.path.basename(self.ember)
        self.root = os.path.join(self.base, self.exec_name, self.id, "root")
        self.netns = None
        self.procs = []
        if netns:
            name = "ember-" + uuid.uuid4().hex[:8]
            subprocess.run(["ip", "netns", "add", name], check=True)
            self.netns = name

    def netns_path(self):
        return "/var/run/netns/" + self.netns

    def prepare(self, boot_args):
        """The caller's part: kernel, config and (if dynamic) libraries inside the jail."""
        os.makedirs(self.root)
        shutil.copy(self.ctx.guest("guest-pvh.elf"), os.path.join(self.root, "k.elf"))
        cfg = {"boot-source": {"kernel_image_path": "/k.elf", "boot_args": boot_args},
               "machine-config": {"vcpu_count": 1, "mem_size_mib": 64, "smt": False}}
        with open(os.path.join(self.root, "vm.json"), "w") as f:
            json.dump(cfg, f)
        place_libs(self.ember, self.root)

    def argv(self, extra=(), ember_args=(), uid=UID, gid=GID, id=None, exec_file=None, base=None):
        return ([jailer(self.ctx), "--id", id or self.id, "--exec-file", exec_file or self.ember,
                 "--uid", str(uid), "--gid", str(gid), "--chroot-base-dir", base or self.base,
                 "--parent-cgroup", self.parent] + list(extra) + ["--"] + list(ember_args))

    def cgroup_parents(self):
        v2, v1 = cgroup_mounts()
        return [os.path.join(m, self.parent) for m in set([v2] + list(v1.values())) if m]

    def remove(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for d in self.cgroup_parents():
            if os.path.isdir(d):
                for sub in os.listdir(d):
                    if os.path.isdir(os.path.join(d, sub)):
                        for _ in range(50):  # the killed VMM may take a moment to leave
                            try:
                                os.rmdir(os.path.join(d, sub))
                                break
                            except OSError:
                                time.sleep(0.05)
                os.rmdir(d)
        shutil.rmtree(self.base, ignore_errors=True)
        if self.netns:
            subprocess.run(["ip", "netns", "delete", self.netns])


def status_fields(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


def wait_for(cond, what, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def check_jailed(j, pid, limits, netns_ino, extra_file, api=False):
    st = status_fields(pid)
    check(st["Uid"] == [str(UID)] * 4 and st["Gid"] == [str(GID)] * 4,
          "uid/gid: %r %r" % (st["Uid"], st["Gid"]))
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"):
        check(int(st[cap][0], 16) == 0, "%s not empty: %s" % (cap, st[cap][0]))
    check(st["Groups"] == [], "supplementary groups left: %r" % st["Groups"])
    # /proc/PID/root is the jail: same inode as the jail root (readlink cannot show a
    # path from another mount namespace).
    a, b = os.stat("/proc/%d/root" % pid), os.stat(j.root)
    check((a.st_dev, a.st_ino) == (b.st_dev, b.st_ino), "the process's root is not the jail root")
    check(os.readlink("/proc/%d/exe" % pid) == "/" + j.exec_name, "exe is not /%s" % j.exec_name)
    dev = os.path.join(j.root, "dev")
    found = sorted(os.path.relpath(os.path.join(d, f), dev)
                   for d, _, fs in os.walk(dev) for f in fs)
    check(found == ["kvm", "net/tun", "urandom"], "jail /dev holds %r" % found)
    for name, rdev in (("kvm", (10, 232)), ("net/tun", (10, 200)), ("urandom", (1, 9))):
        s = os.stat(os.path.join(dev, name))
        check((os.major(s.st_rdev), os.minor(s.st_rdev)) == rdev and s.st_uid == UID and
              s.st_gid == GID, "/dev/%s: wrong node or owner" % name)
    for (ctl, fname), want in limits.items():
        d = proc_cgroup_dir(pid, ctl)
        check(d.endswith("/%s/%s" % (j.parent, j.id)), "pid not in the jail's cgroup: %s" % d)
        with open(os.path.join(d, fname)) as f:
            got = f.read().strip()
        check(got == want, "%s = %r, want %r" % (fname, got, want))
        with open(os.path.join(d, "cgroup.procs")) as f:
            check(str(pid) in f.read().split(), "pid not listed in %s/cgroup.procs" % d)
    fds = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            fds[int(fd)] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except FileNotFoundError:
            pass
    check(extra_file not in fds.values(), "the inherited fd survived: %r" % fds)
    for fd, target in fds.items():
        if fd <= 2:
            continue
        ok = target.startswith("anon_inode:") or target in ("/dev/kvm", "/dev/net/tun") or \
            (api and target.startswith("socket:"))
        check(ok, "fd %d -> %s is not something Ember opened" % (fd, target))
    check(os.stat("/proc/%d/ns/net" % pid).st_ino == netns_ino, "not in the given netns")
    with open("/proc/%d/environ" % pid, "rb") as f:
        check(f.read() == b"", "environment not cleared")


@test("fast")
def test_jailer_boot_no_api(ctx):
    j = Jail(ctx, netns=True)
    extra_path = os.path.join(ctx.workdir, "inherited.txt")
    try:
        j.prepare("counter=1000000")
        largs, limits = limit_args()
        extra = os.open(extra_path, os.O_CREAT | os.O_RDWR, 0o600)
        out_path, err_path = os.path.join(ctx.workdir, "out"), os.path.join(ctx.workdir, "err")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            p = subprocess.Popen(
                j.argv(largs + ["--netns", j.netns_path(), "--resource-limit", "no-file=512",
                                "--resource-limit", "fsize=1048576"],
                       ["--no-api", "--config-file", "/vm.json"]),
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, pass_fds=(extra,),
                env={"SECRET": "x", "PATH": "/usr/bin"})
        os.close(extra)
        j.procs.append(p)

        def console():
            with open(out_path, "rb") as f:
                return f.read().decode("utf-8", "replace")

        def log():
            with open(err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        try:
            wait_for(lambda: len(re.findall(r"^counter: \d+", console(), re.M)) >= 3 or
                     p.poll() is not None, "the guest to count")
        except AssertionError:
            raise AssertionError("no counter lines\n--- console\n%s\n--- log\n%s" %
                                 (console()[-2000:], log()[-2000:]))
        check(p.poll() is None, "ember exited (%s)\n%s" % (p.returncode, log()))
        check("Guest-boot-time" in log(), "no Guest-boot-time line: %s" % log())
        check("[%s:" % j.id in log(), "log lines do not carry --id %s: %s" % (j.id, log()))
        check_jailed(j, p.pid, limits, os.stat(j.netns_path()).st_ino, extra_path)
        with open("/proc/%d/limits" % p.pid) as f:
            lim = f.read()
        check(re.search(r"Max open files\s+512\s+512", lim), "no-file limit: %s" % lim)
        check(re.search(r"Max file size\s+1048576\s+1048576", lim), "fsize limit: %s" % lim)
        p.kill()
        p.wait()
    finally:
        j.remove()


@test("fast")
def test_jailer_cgroup_v2(ctx):
    """--cgroup-version 2 end to end with whatever controllers the host's v2
    hierarchy offers: memory.max and cpu.max where v2 has them (then the boot
    test above already used them), else hugetlb.2MB.max (this workplace's
    hosts bind memory and cpu to v1 and leave v2 only hugetlb): the jailer
    enables the controller down the parent chain, writes the limit and moves
    Ember into the cgroup."""
    v2, ctls = v2_controllers()
    check(v2, "no cgroup v2 hierarchy mounted")
    if "memory" in ctls and "cpu" in ctls:
        flags = ["--cgroup", "memory.max=268435456", "--cgroup", "cpu.max=50000 100000"]
        want = {"memory.max": "268435456", "cpu.max": "50000 100000"}
    else:
        check("hugetlb" in ctls and os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"),
              "cgroup v2 offers neither memory+cpu nor hugetlb (2 MiB): %r" % ctls)
        flags = ["--cgroup", "hugetlb.2MB.max=4194304"]
        want = {"hugetlb.2MB.max": "4194304"}
    print("  (cgroup v2 files written: %s)" % ", ".join(sorted(want)), flush=True)
    j = Jail(ctx)
    try:
        j.prepare("counter=1000000")
        out_path = os.path.join(ctx.workdir, "out")
        with open(out_path, "wb") as out:
            p = subprocess.Popen(j.argv(["--cgroup-version", "2"] + flags,
                                        ["--no-api", "--config-file", "/vm.json"]),
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.DEVNULL)
        j.procs.append(p)
        wait_for(lambda: b"counter: 2" in open(out_path, "rb").read() or p.poll() is not None,
                 "the jailed guest to count")
        check(p.poll() is None, "ember exited (%s)" % p.returncode)
        d = proc_cgroup_dir(p.pid, "")
        check(d == os.path.join(v2, j.parent, j.id), "pid in cgroup %s, want %s/%s/%s" %
              (d, v2, j.parent, j.id))
        for fname, value in want.items():
            with open(os.path.join(d, fname)) as f:
                got = f.read().strip()
            check(got == value, "%s = %r, want %r" % (fname, got, value))
        with open(os.path.join(d, "cgroup.procs")) as f:
            check(str(p.pid) in f.read().split(), "pid not in %s/cgroup.procs" % d)
        p.kill()
        p.wait()
    finally:
        j.remove()


@test("fast")
def test_jailer_api_socket_pid_ns_daemonize(ctx):
    j = Jail(ctx, netns=True)
    try:
        j.prepare("")
        largs, limits = limit_args()
        extra = os.open("/etc/hostname", os.O_RDONLY)
        p = subprocess.run(
            j.argv(largs + ["--netns", j.netns_path(), "--new-pid-ns", "--daemonize"],
                   ["--api-sock", "/run/api.sock"]),
            stdin=subprocess.DEVNULL, capture_output=True, pass_fds=(extra,), timeout=10)
        os.close(extra)
        check(p.returncode == 0, "jailer with --daemonize --new-pid-ns: %d %s" %
              (p.returncode, p.stderr.decode()))
        pidfile = os.path.join(j.root, j.exec_name + ".pid")
        wait_for(lambda: os.path.exists(pidfile), "the pid file")
        with open(pidfile) as f:
            pid = int(f.read())

        class Killer:  # so remove() kills the daemon
            def poll(self):
                # Gone, or a zombie: when the tests run as a PID namespace's
                # init (CI may), the orphaned daemon is reparented to this
                # process, which does not reap it.
                try:
                    with open("/proc/%d/stat" % pid) as f:
                        return 0 if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X") else None
                except (FileNotFoundError, ProcessLookupError):
                    return 0

            def kill(self):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass

            def wait(self):
                wait_for(lambda: self.poll() is not None, "the daemon to exit")
        j.procs.append(Killer())
        st = status_fields(pid)
        check(st["NSpid"][-1] == "1", "not pid 1 in a new PID namespace: %r" % st["NSpid"])
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()  # state ppid pgrp session ...
        sid = int(fields[3])
        # The jailer's setsid() made it the session leader; the daemon (its
        # child in the new PID namespace) stays in that session, whose id is
        # the jailer's pid here: neither 0 (a leader outside this namespace)
        # nor the session of this test.
        check(sid > 0 and sid != os.getsid(0),
              "--daemonize did not start a new session: session %d, ours %d" % (sid, os.getsid(0)))
        check(all(os.readlink("/proc/%d/fd/%d" % (pid, fd)) == "/dev/null" for fd in (0, 1, 2)),
              "--daemonize did not point stdio to /dev/null")
        sock = os.path.join(j.root, "run", "api.sock")
        wait_for(lambda: os.path.exists(sock), "the API socket inside the jail")

        def curl(method, path, body=None):
            cmd = ["curl", "-s", "--unix-socket", sock, "-X", method, "-w", "\n%{http_code}",
                   "http://localhost" + path]
            if body is not None:
                cmd += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
            r = subprocess.run(cmd, capture_output=True, timeout=10)
            text, _, code = r.stdout.decode().rpartition("\n")
            return int(code), (json.loads(text) if text.strip() else None)
        check(curl("PUT", "/boot-source", {"kernel_image_path": "/k.elf",
                                           "boot_args": "counter=1000000"})[0] == 204,
              "PUT /boot-source with a path inside the jail")
        check(curl("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64})[0] == 204,
              "PUT /machine-config")
        code, body = curl("PUT", "/actions", {"action_type": "InstanceStart"})
        check(code == 204, "InstanceStart in the jail: %d %r" % (code, body))
        code, body = curl("GET", "/")
        check(code == 200 and body["state"] == "Running" and body["id"] == j.id,
              "GET / after start: %d %r" % (code, body))
        check_jailed(j, pid, limits, os.stat(j.netns_path()).st_ino, "/etc/hostname", api=True)
    finally:
        j.remove()


def tree(d):
    out = set()
    for dirpath, dirs, files in os.walk(d):
        out.update(os.path.join(dirpath, x) for x in dirs + files)
    return out


def expect_failure(j, argv, message, what):
    before = tree(j.base)
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    err = p.stderr.decode()
    check(p.returncode == 1, "%s: exit status %d, want 1\n%s" % (what, p.returncode, err))
    lines = err.strip().splitlines()
    check(len(lines) == 1 and lines[0].startswith("ember-jailer: "),
          "%s: want one error line, got %r" % (what, err))
    check(message in lines[0], "%s: message %r lacks %r" % (what, lines[0], message))
    check(tree(j.base) == before, "%s: left behind in the base dir: %r" %
          (what, sorted(tree(j.base) - before)))
    for c in j.cgroup_parents():
        check(not os.path.exists(c), "%s: cgroup %s left behind" % (what, c))
    return lines[0]


@test("fast")
def test_jailer_bad_inputs(ctx):
    j = Jail(ctx)
    nodev = tempfile.mkdtemp(prefix="ember-nodev-", dir="/tmp")
    mounted = False
    try:
        if elf_interp(j.ember):
            # The caller's part for a dynamically linked Ember, so that every case below
            # fails on its own bad input.
            os.makedirs(j.root)
            place_libs(j.ember, j.root)
        # Each case: (argv, text the message must contain, what).
        args = ["--no-api", "--config-file", "/vm.json"]
        cases = [
            (j.argv(id="bad_id!", ember_args=args), "--id bad_id!", "invalid id"),
            (j.argv(id="a" * 65, ember_args=args), "--id", "id of 65 characters"),
            (j.argv(exec_file="/nonexistent/ember", ember_args=args),
             "--exec-file /nonexistent/ember", "missing exec file"),
            (j.argv(["--netns", "/etc/hostname"], args), "not a namespace file", "netns: a file"),
            (j.argv(["--netns", "/proc/self/ns/mnt"], args), "not a network namespace",
             "netns: a mount namespace"),
            (j.argv(["--netns", "/nonexistent/netns"], args), "--netns /nonexistent/netns",
             "netns: missing"),
            (j.argv(["--cgroup", "cpu.no_such_knob=1"], args), "cpu.no_such_knob",
             "cgroup v2 file that does not exist"),
            (j.argv(["--cgroup-version", "1", "--cgroup", "memory.no_such_knob=1"], args),
             "memory.no_such_knob", "cgroup v1 file that does not exist"),
            (j.argv(["--cgroup", "memory.max"], args), "FILE=VALUE", "cgroup without value"),
            (j.argv(["--resource-limit", "cores=1"], args), "unknown resource", "bad rlimit"),
            (j.argv(exec_file="/bin/true", ember_args=args), "dynamically linked",
             "dynamic binary without its loader in the jail"),
            (j.argv(base="relative/base", ember_args=args), "absolute", "relative base dir"),
        ]
        # A controller the v2 hierarchy does offer, with a file it does not have: the
        # cgroup is created before the file can be checked, so this exercises the undo.
        _, ctls = v2_controllers()
        if ctls:
            cases.append((j.argv(["--cgroup", ctls[0] + ".no_such_file=1"], args),
                          ctls[0] + ".no_such_file", "v2 file missing after the cgroup is made"))
        subprocess.run(["mount", "-t", "tmpfs", "-o", "nodev,size=1m", "tmpfs", nodev], check=True)
        mounted = True
        cases.append((j.argv(base=nodev + "/jails", ember_args=args), "nodev", "nodev base dir"))
        for argv, msg, what in cases:
            expect_failure(j, argv, msg, what)
        check(os.listdir(nodev) == [], "left behind on the nodev mount: %r" % os.listdir(nodev))
        # The same flags without the bad one do build a jail and run Ember in it (the
        # failures above were the bad input, not the setup).
        p = subprocess.run(j.argv(ember_args=["--version"]), capture_output=True, timeout=10)
        check(p.returncode == 0 and p.stdout.strip(), "jailed ember --version: %d %r" %
              (p.returncode, p.stderr))
    finally:
        if mounted:
            subprocess.run(["umount", nodev])
        os.rmdir(nodev)
        j.remove()
