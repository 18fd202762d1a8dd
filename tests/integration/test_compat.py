"""test_compat.py - Ember as a drop-in for Firecracker (issue 10): versions clients gate on,
Firecracker's defaults under its names, validation at the request, state that a rejected
request leaves alone, the fields Ember used to refuse (smt, huge_pages, cpu-config), the
relaxed rules, Firecracker's flags, the shapes of answers, a replay of Firecracker's
getting-started guide with curl, and `make install` + `jailer --uid 0 --gid 0` as Kata runs
it, driven through <jail>/run/firecracker.socket."""
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import time

from harness import check, guest_config, run_ember, test, wait_until
from test_api import Ember, counters
from test_jailer import cgroup_mounts, mountinfo


def kernel(ctx):
    return ctx.guest("guest-pvh.elf")


def vm_config(e):
    code, body = e.curl("GET", "/vm/config")
    check(code == 200, "GET /vm/config: %d" % code)
    return body


def expect_400(e, method, path, body, needle, what):
    code, reply = e.curl(method, path, body)
    msg = (reply or {}).get("fault_message", "")
    check(code == 400 and needle in msg,
          "%s: want 400 naming %r, got %d %r" % (what, needle, code, reply))


@test("fast")
def test_compat_versions(ctx):
    p = subprocess.run([ctx.ember, "--version"], capture_output=True, timeout=10)
    first = p.stdout.decode().splitlines()[0]
    # Kata: second word of the first line, "v" stripped, must be >= 0.21.1.
    ver = first.split(" ")[1].lstrip("v")
    check(tuple(int(x) for x in ver.split(".")) >= (0, 21, 1), "--version: %r" % first)
    check(ver == "1.17.0" and "Ember 0.1.0" in first, "--version: %r" % first)
    e = Ember(ctx)
    try:
        code, info = e.curl("GET", "/")
        check(code == 200 and info["vmm_version"] == "1.17.0" and info["ember_version"] == "0.1.0",
              "GET /: %r" % info)
        code, v = e.curl("GET", "/version")
        check(code == 200 and v["firecracker_version"] == "1.17.0", "GET /version: %r" % v)
    finally:
        e.kill()


@test("fast")
def test_compat_invoked_as_firecracker(ctx):
    """Under the name firecracker, with no --api-sock: /run/firecracker.socket."""
    link = os.path.join(ctx.workdir, "firecracker")
    os.symlink(os.path.abspath(ctx.ember), link)
    sock = "/run/firecracker.socket"
    check(not os.path.exists(sock), "%s exists before the test" % sock)
    p = subprocess.Popen([link], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        wait_until(lambda: os.path.exists(sock), 10, "the default socket %s" % sock)
        r = subprocess.run(["curl", "-s", "--unix-socket", sock, "http://localhost/"],
                           capture_output=True, timeout=10)
        check(json.loads(r.stdout)["state"] == "Not started", "GET / on %s" % sock)
    finally:
        p.terminate()
        p.wait(10)
    check(not os.path.exists(sock), "socket left behind")


@test("fast")
def test_compat_validation_at_request(ctx):
    e = Ember(ctx)
    try:
        before = vm_config(e)
        missing = os.path.join(ctx.workdir, "missing")
        expect_400(e, "PUT", "/boot-source", {"kernel_image_path": missing},
                   "boot-source.kernel_image_path: cannot open", "missing kernel")
        expect_400(e, "PUT", "/boot-source", {"kernel_image_path": kernel(ctx),
                                              "initrd_path": missing},
                   "boot-source.initrd_path: cannot open", "missing initrd")
        expect_400(e, "PUT", "/boot-source", {"kernel_image_path": kernel(ctx),
                                              "boot_args": "x" * 3000},
                   "boot-source.boot_args: too long", "3000-byte command line")
        expect_400(e, "PUT", "/drives/d0", {"drive_id": "d0", "path_on_host": missing,
                                            "is_root_device": False},
                   "drives[d0].path_on_host", "missing drive file")
        expect_400(e, "PUT", "/drives/d0", {"drive_id": "d0", "path_on_host": ctx.workdir,
                                            "is_root_device": False, "is_read_only": False},
                   "drives[d0].path_on_host", "a directory opened read-write")
        expect_400(e, "PUT", "/network-interfaces/eth0", {"iface_id": "eth0",
                                                          "host_dev_name": "nosuchtap9"},
                   "host_dev_name: tap nosuchtap9 does not exist", "nonexistent tap")
        check(vm_config(e) == before, "a rejected request changed the configuration")
        # InstanceStart re-checks: the file goes away between PUT and start.
        disk = os.path.join(ctx.workdir, "d.img")
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        check(e.curl("PUT", "/boot-source", {"kernel_image_path": kernel(ctx)})[0] == 204, "boot")
        check(e.curl("PUT", "/drives/d0", {"drive_id": "d0", "path_on_host": disk,
                                           "is_root_device": False})[0] == 204, "PUT drive")
        os.unlink(disk)
        expect_400(e, "PUT", "/actions", {"action_type": "InstanceStart"}, "d.img",
                   "InstanceStart after the drive file vanished")
    finally:
        e.kill()


@test("fast")
def test_compat_state_bugs(ctx):
    e = Ember(ctx)
    try:
        expect_400(e, "PUT", "/actions", {"action_type": "FlushMetrics"},
                   "not supported before starting", "FlushMetrics before boot")
        m = os.path.join(ctx.workdir, "m.json")
        check(e.curl("PUT", "/metrics", {"metrics_path": m})[0] == 204, "PUT /metrics")
        expect_400(e, "PUT", "/metrics", {"metrics_path": "/nonexistent/dir/m"},
                   "Reinitialization of metrics not allowed", "second PUT /metrics")
        check(vm_config(e)["metrics"]["metrics_path"] == m, "metrics config kept")
        disk = os.path.join(ctx.workdir, "d.img")
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        code, body = e.curl("PUT", "/drives/d0", {"drive_id": "d0", "path_on_host": disk,
                                                  "is_root_device": False})
        check(code == 204, "PUT /drives after a failed PUT /metrics: %d %r" % (code, body))
        # Logger: merge, and a failed one applies nothing.
        log = os.path.join(ctx.workdir, "fc.log")
        check(e.curl("PUT", "/logger", {"log_path": log, "level": "Debug", "show_level": True,
                                        "module": "api"})[0] == 204, "PUT /logger")
        check(e.curl("PUT", "/logger", {"show_log_origin": True})[0] == 204, "PUT /logger merge")
        lg = vm_config(e)["logger"]
        check(lg["log_path"] == log and lg["show_level"] and lg["show_log_origin"] and
              lg["module"] == "api" and lg["level"] == "Info",
              "merged logger (level back to Info when not given): %r" % lg)
        expect_400(e, "PUT", "/logger", {"log_path": "/nonexistent/dir/l", "level": "Error"},
                   "/nonexistent/dir/l", "logger with a bad path")
        check(vm_config(e)["logger"] == lg, "failed PUT /logger changed the config")
        check(os.path.exists(log) and not os.path.exists("/nonexistent/dir/l"),
              "the log file stays %s" % log)
    finally:
        e.kill()


@test("fast")
def test_compat_rejected_changes_nothing(ctx):
    e = Ember(ctx)
    try:
        check(e.curl("PUT", "/boot-source", {"kernel_image_path": kernel(ctx)})[0] == 204, "boot")
        before = vm_config(e)
        bad = [("PUT", "/boot-source", {"kernel_image_path": kernel(ctx), "x": 1}),
               ("PUT", "/machine-config", {"vcpu_count": 0, "mem_size_mib": 64}),
               ("PATCH", "/machine-config", {"vcpu_count": 3, "smt": True}),
               ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 65,
                                           "huge_pages": "2M"}),
               ("PUT", "/drives/a", {"drive_id": "b", "path_on_host": kernel(ctx),
                                     "is_root_device": False}),
               ("PUT", "/network-interfaces/n", {"iface_id": "n", "host_dev_name": "a/b"}),
               ("PUT", "/logger", {"level": "Loud"}),
               ("PUT", "/metrics", {}),
               ("PUT", "/serial", {"serial_out_path": 3}),
               ("PUT", "/cpu-config", {"cpuid_modifiers": 7}),
               ("PATCH", "/vm", {"state": "Paused"}),
               ("PUT", "/actions", {"action_type": "Explode"})]
        for method, path, body in bad:
            code, _ = e.curl(method, path, body)
            check(code == 400, "%s %s %r: %d" % (method, path, body, code))
            check(vm_config(e) == before, "%s %s changed the configuration" % (method, path))
        # After InstanceStart: what only goes before it, and bad updates of what may change.
        disk = os.path.join(ctx.workdir, "d.img")
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        missing = os.path.join(ctx.workdir, "missing.img")
        for method, path, body in (
                ("PUT", "/boot-source", {"kernel_image_path": kernel(ctx),
                                         "boot_args": "counter=0"}),
                ("PUT", "/drives/d0", {"drive_id": "d0", "path_on_host": disk,
                                       "is_root_device": False}),
                ("PUT", "/actions", {"action_type": "InstanceStart"})):
            code, reply = e.curl(method, path, body)
            check(code == 204, "%s %s: %d %r" % (method, path, code, reply))
        wait_until(lambda: "counter: 1" in e.console(), 20, "the guest counting")
        before = vm_config(e)
        snap = os.path.join(ctx.workdir, "s.snap")
        post = [("PUT", "/boot-source", {"kernel_image_path": kernel(ctx)}),
                ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}),
                ("PATCH", "/machine-config", {"mem_size_mib": 128}),
                ("PUT", "/drives/d1", {"drive_id": "d1", "path_on_host": disk,
                                       "is_root_device": False}),
                ("PATCH", "/drives/d0", {"drive_id": "d0", "path_on_host": missing}),
                ("PATCH", "/drives/d0", {"drive_id": "d0", "bogus": 1}),
                ("PATCH", "/drives/nosuch", {"drive_id": "nosuch", "path_on_host": disk}),
                ("PUT", "/network-interfaces/n1", {"iface_id": "n1", "host_dev_name": "t1"}),
                ("PUT", "/logger", {"level": "Debug"}),
                ("PUT", "/metrics", {"metrics_path": os.path.join(ctx.workdir, "m.json")}),
                ("PUT", "/cpu-config", {"cpuid_modifiers": []}),
                ("PATCH", "/vm", {"state": "Asleep"}),
                ("PUT", "/actions", {"action_type": "InstanceStart"}),
                ("PUT", "/snapshot/create", {"snapshot_path": snap,
                                             "mem_file_path": snap + ".mem"}),  # not paused
                ("PUT", "/snapshot/load", {"snapshot_path": snap,
                                           "mem_backend": {"backend_type": "File",
                                                           "backend_path": snap + ".mem"}})]
        for method, path, body in post:
            code, reply = e.curl(method, path, body)
            check(code == 400 and (reply or {}).get("fault_message"),
                  "after start, %s %s %r: %d %r" % (method, path, body, code, reply))
            check(vm_config(e) == before, "after start, %s %s changed the configuration" %
                  (method, path))
        check(not os.path.exists(snap) and not os.path.exists(snap + ".mem"),
              "a refused snapshot left files")
        code, info = e.curl("GET", "/")
        check(code == 200 and info["state"] == "Running", "still running: %r" % info)
        n = counters(e.console())[-1]
        wait_until(lambda: counters(e.console())[-1] > n, 20, "the guest still counting")
    finally:
        e.kill()


@test("fast")
def test_compat_shapes(ctx):
    e = Ember(ctx)
    try:
        cfg = vm_config(e)
        for k in ("balloon", "drives", "boot-source", "cpu-config", "logger", "machine-config",
                  "metrics", "mmds-config", "network-interfaces", "vsock", "entropy", "pmem",
                  "memory-hotplug"):
            check(k in cfg, "GET /vm/config lacks %s: %r" % (k, cfg))
        check(cfg["pmem"] == [] and cfg["balloon"] is None and cfg["boot-source"] is None,
              "unset keys: %r" % cfg)
        expect_400(e, "GET", "/nowhere", None, "Invalid request method and/or path",
                   "unknown path")
        expect_400(e, "GET", "/actions", None, "Invalid request method and/or path",
                   "wrong method")
        code, _ = e.curl("PUT", "/machine-config/", {"vcpu_count": 1, "mem_size_mib": 64})
        check(code == 204, "trailing slash: %d" % code)
        expect_400(e, "GET", "/", {"a": 1}, "GET request cannot have a body", "GET with a body")
        disk = os.path.join(ctx.workdir, "d.img")
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        code, _ = e.curl("PUT", "/drives/d0", {
            "drive_id": "d0", "path_on_host": disk, "is_root_device": False,
            "rate_limiter": {"bandwidth": {"size": 0, "refill_time": 100},
                             "ops": {"size": 10, "refill_time": 100}}})
        check(code == 204, "PUT drive with limiter: %d" % code)
        rl = vm_config(e)["drives"][0]["rate_limiter"]
        check(rl["bandwidth"] is None and rl["ops"]["one_time_burst"] is None,
              "zero bucket null, one_time_burst null: %r" % rl)
        # The output is a valid configuration file.
        check(e.curl("PUT", "/boot-source", {"kernel_image_path": kernel(ctx),
                                             "boot_args": "exit=debug"})[0] == 204, "boot")
        res = run_ember(ctx, json.dumps(vm_config(e)))
        check(res.rc in (0, 1) and "unknown field" not in res.err and "Ember does not" not in
              res.err, "GET /vm/config as --config-file", res)
    finally:
        e.kill()


def ask_get(s, timeout=10):
    """GET / on the connected socket `s`: (status, parsed JSON body or None). A closed
    connection with no answer is status 0."""
    s.settimeout(timeout)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused and closed before the request went out: read what was said
    out = b""
    while True:
        head, sep, rest = out.partition(b"\r\n\r\n")
        if sep:
            m = re.search(rb"Content-Length: (\d+)", head)
            if len(rest) >= (int(m.group(1)) if m else 0):
                break
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            break
        out += chunk
    m = re.match(rb"HTTP/1\.1 (\d+)", out)
    head, _, rest = out.partition(b"\r\n\r\n")
    return (int(m.group(1)) if m else 0), (json.loads(rest) if rest.strip() else None)


def connect(path, timeout=10):
    """A connection to the API socket; a full listen backlog is retried until `timeout`."""
    end = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            s.close()
            if time.monotonic() > end:
                raise AssertionError("%s: the listen backlog stayed full for %g s" %
                                     (path, timeout))
            time.sleep(0.001)


def expect_busy(e, needle):
    """One more connection is answered 503 with a fault_message containing `needle`."""
    s = connect(e.sock)
    try:
        code, body = ask_get(s)
    finally:
        s.close()
    check(code == 503 and needle in (body or {}).get("fault_message", ""),
          "the connection over the limit: want 503 naming %r, got %d %r" % (needle, code, body))


def answered_again(e):
    """After connections close, a new one is served again (the server saw the closes)."""
    def ok():
        s = connect(e.sock)
        try:
            return ask_get(s)[0] == 200
        finally:
            s.close()
    wait_until(ok, 20, "a new connection served after others closed")


@test("fast")
def test_compat_busy_503(ctx):
    """Connection 1025 gets Firecracker's 503 with a fault_message; the 1024 open ones are
    still served, and once one closes a newcomer is served again. (Both sides get fds
    enough that the cap, not the fd limit, is what the newcomer meets.)"""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    check(hard >= 2100, "the fd hard limit %d is too low for this test" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2100), hard))
    e = Ember(ctx, prefix=["prlimit", "--nofile=2100:2100", "--"])
    conns = []
    try:
        for _ in range(1024):
            conns.append(connect(e.sock))
        # The last one answered: the server accepted all 1024 (it accepts in order).
        code, _ = ask_get(conns[-1])
        check(code == 200, "GET / on connection 1024: %d" % code)
        expect_busy(e, "serves at most 1024 at once")
        check(ask_get(conns[7])[0] == 200, "an open connection is still served")
        conns.pop(0).close()
        answered_again(e)
    finally:
        for s in conns:
            s.close()
        e.kill()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@test("fast")
def test_compat_busy_out_of_fds(ctx):
    """With a 64-fd limit the process runs out of fds before the cap: the newcomer still gets
    a 503 with a fault_message (not a hang, not a spinning loop), and service resumes."""
    e = Ember(ctx, prefix=["prlimit", "--nofile=64:64", "--"])
    conns = []
    try:
        busy = None
        for i in range(100):
            s = connect(e.sock)
            code, body = ask_get(s)
            if code == 503:
                busy = (i, body)
                s.close()
                break
            check(code == 200, "connection %d: %d %r" % (i, code, body))
            conns.append(s)
        check(busy is not None and 30 < busy[0] < 64, "no 503 within 100 connections: %r" %
              (busy,))
        check("out of file descriptors" in busy[1].get("fault_message", ""), "fault: %r" %
              (busy,))
        check(ask_get(conns[0])[0] == 200, "an open connection is still served")
        for s in conns[:5]:
            s.close()
        del conns[:5]
        answered_again(e)
    finally:
        for s in conns:
            s.close()
        e.kill()


@test("fast")
def test_compat_smt(ctx):
    cfg = guest_config(kernel(ctx), "exit=debug", vcpus=2)
    cfg["machine-config"]["smt"] = True
    res = run_ember(ctx, cfg)
    check(res.rc == 0, "smt boot", res)
    check(res.line("cpuid-smt-threads") == "2", "two threads per core in CPUID", res)
    check(res.line("cpus-started") == "2", "both vCPUs started", res)
    cfg["machine-config"]["smt"] = False
    res = run_ember(ctx, cfg)
    check(res.line("cpuid-smt-threads") == "1", "one thread per core without smt", res)
    cfg["machine-config"].update(smt=True, vcpu_count=3)
    res = run_ember(ctx, cfg)
    check(res.rc == 1 and "1 or an even number" in res.err, "smt with 3 vCPUs", res)


def hugepages(n=None):
    path = "/proc/sys/vm/nr_hugepages"
    if n is not None:
        with open(path, "w") as f:
            f.write(str(n))
    with open(path) as f:
        return int(f.read())


@test("fast")
def test_compat_huge_pages(ctx):
    old = hugepages()
    try:
        for hp in ("2M", "Transparent", "None"):
            cfg = guest_config(kernel(ctx), "exit=debug", mem_mib=64)
            cfg["machine-config"]["huge_pages"] = hp
            if hp == "2M":
                hugepages(0)
                res = run_ember(ctx, cfg)
                check(res.rc == 1 and "machine-config.huge_pages" in res.err and
                      "nr_hugepages" in res.err, "2M with no pages reserved", res)
                hugepages(40)
            res = run_ember(ctx, cfg)
            check(res.rc == 0 and "boot-timer: written" in res.out, "boot with %s" % hp, res)
    finally:
        hugepages(old)


@test("fast")
def test_compat_cpu_config(ctx):
    e = Ember(ctx)
    try:
        tpl = {"cpuid_modifiers": [{"leaf": "0x1", "subleaf": "0x0", "flags": 0, "modifiers": [
            {"register": "ecx", "bitmap": "0b0" + "x" * 31}]}]}
        code, body = e.curl("PUT", "/cpu-config", tpl)
        check(code == 204, "PUT /cpu-config: %d %r" % (code, body))
        check(vm_config(e)["cpu-config"] is not None, "cpu-config in GET /vm/config")
        expect_400(e, "PUT", "/cpu-config", {"cpuid_modifiers": [{"leaf": 1}]}, "cpu-config",
                   "bad template")
        check(e.curl("PUT", "/boot-source", {"kernel_image_path": kernel(ctx),
                                             "boot_args": "counter=0"})[0] == 204, "boot")
        check(e.curl("PUT", "/actions", {"action_type": "InstanceStart"})[0] == 204, "start")
        wait_until(lambda: "hypervisor-bit:" in e.console(), 10, "the guest's report")
        check("hypervisor-bit: 0" in e.console(), "the template cleared CPUID.1:ECX[31]")
    finally:
        e.kill()


@test("fast")
def test_compat_relaxations(ctx):
    e = Ember(ctx)
    tap = "emcompat0"
    subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
    try:
        odd = os.path.join(ctx.workdir, "odd.img")
        with open(odd, "wb") as f:
            f.write(b"x" * 1000)
        code, body = e.curl("PUT", "/drives/d0", {"drive_id": "d0", "path_on_host": odd,
                                                  "is_root_device": False, "partuuid": "x-1"})
        check(code == 204, "odd-sized image, partuuid on a non-root drive: %d %r" % (code, body))
        for i in range(1, 17):
            check(e.curl("PUT", "/drives/d%d" % i, {"drive_id": "d%d" % i, "path_on_host": odd,
                                                    "is_read_only": True,
                                                    "is_root_device": False})[0] == 204,
                  "drive %d (past the old limit of 16)" % i)
        code, body = e.curl("PUT", "/network-interfaces/n0", {
            "iface_id": "n0", "host_dev_name": tap, "guest_mac": "01:00:5e:00:00:01"})
        check(code == 204, "multicast MAC: %d %r" % (code, body))
        expect_400(e, "PUT", "/network-interfaces/n1", {"iface_id": "n1", "host_dev_name": "x"},
                   "does not exist", "tap check")
        check(e.curl("PUT", "/drives/d17", {"drive_id": "d17", "path_on_host": odd,
                                            "is_read_only": True,
                                            "is_root_device": False})[0] == 204, "19th device")
        expect_400(e, "PUT", "/drives/d18", {"drive_id": "d18", "path_on_host": odd,
                                             "is_read_only": True, "is_root_device": False},
                   "at most 19 devices", "20th device")
        check(e.curl("PUT", "/boot-source", {"kernel_image_path": kernel(ctx),
                                             "boot_args": "counter=0"})[0] == 204, "boot")
        check(e.curl("PUT", "/actions", {"action_type": "InstanceStart"})[0] == 204, "start")
        code, body = e.curl("PATCH", "/network-interfaces/n0", {"iface_id": "n0"})
        check(code == 204, "PATCH net with no limiter: %d %r" % (code, body))
        check("not a multiple of 512" in e.log(), "odd size warned: %s" % e.log())
    finally:
        e.kill()
        subprocess.run(["ip", "tuntap", "del", "dev", tap, "mode", "tap"])


@test("fast")
def test_compat_flags(ctx):
    for flag, needle in ((["--metadata", "/m.json"], "MMDS"),
                         (["--mmds-size-limit", "100"], "MMDS"),
                         (["--enable-pci"], "PCI")):
        p = subprocess.run([ctx.ember] + flag, capture_output=True, timeout=10)
        check(p.returncode == 1 and needle in p.stderr.decode(), "%r: %r" % (flag, p.stderr))
    m = os.path.join(ctx.workdir, "m.json")
    t0 = int(time.monotonic() * 1e6) - 5000000
    cfg = guest_config(kernel(ctx), "exit=debug")
    res = run_ember(ctx, cfg, ["--metrics-path", m, "--start-time-us", str(t0),
                               "--start-time-cpu-us", "0", "--parent-cpu-time-us", "777000",
                               "--level", "Debug", "--show-log-origin", "--module", "vmm/vm"])
    check(res.rc == 0, "boot with the jailer's flags", res)
    with open(m) as f:
        line = json.loads(f.readline())
    st = line["api_server"]
    check(st["process_startup_time_us"] >= 5000000, "startup from --start-time-us: %r" % st)
    check(st["process_startup_time_cpu_us"] >= 777000, "parent CPU time added: %r" % st)
    origins = re.findall(r"^\S+ \[[^\]]*:(\S+?):\d+\] ", res.err, re.M)
    check(origins and all(o.startswith("vmm/vm") for o in origins),
          "--module vmm/vm: only its lines: %r" % origins[:10], res)


def fc_curl(sock, method, path, body):
    """A curl line as Firecracker's docs write it."""
    cmd = ["curl", "-s", "-w", "\n%{http_code}", "--unix-socket", sock, "-i", "-X", method,
           "http://localhost" + path, "-H", "Accept: application/json", "-H",
           "Content-Type: application/json"]
    if body is not None:
        cmd += ["-d", body]
    r = subprocess.run(cmd, capture_output=True, timeout=30)
    text, _, code = r.stdout.decode().rpartition("\n")
    return int(code), text


@test("fast")
def test_compat_getting_started(ctx):
    """Firecracker's docs/getting-started.md, the API way, verbatim bodies (paths ours)."""
    tap = "tap0"
    subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
    rootfs = os.path.join(ctx.workdir, "rootfs.ext4")
    with open(rootfs, "wb") as f:
        f.truncate(8 << 20)
    sock = os.path.join(ctx.workdir, "firecracker.socket")
    log = os.path.join(ctx.workdir, "firecracker.log")
    out = open(os.path.join(ctx.workdir, "gs.out"), "wb")
    p = subprocess.Popen([ctx.ember, "--api-sock", sock], stdin=subprocess.DEVNULL, stdout=out,
                         stderr=out)
    try:
        wait_until(lambda: os.path.exists(sock), 10, "the API socket")
        steps = [
            ("PUT", "/logger", '{"log_path": "%s", "level": "Debug", "show_level": true, '
             '"show_log_origin": true}' % log, 204),
            ("PUT", "/boot-source", '{"kernel_image_path": "%s", "boot_args": '
             '"console=ttyS0 reboot=k panic=1 counter=0"}' % kernel(ctx), 204),
            ("PUT", "/drives/rootfs", '{"drive_id": "rootfs", "path_on_host": "%s", '
             '"is_root_device": true, "is_read_only": false}' % rootfs, 204),
            ("PUT", "/network-interfaces/net1", '{"iface_id": "net1", "guest_mac": '
             '"06:00:AC:10:00:02", "host_dev_name": "%s"}' % tap, 204),
            # The guide's body, with 1 vCPU and 256 MiB instead of 2 and 1024 (the nested
            # machine is slow and shared).
            ("PUT", "/machine-config", '{"vcpu_count": 1, "mem_size_mib": 256, "smt": false,'
             ' "track_dirty_pages": false, "huge_pages": "None"}', 204),
            ("GET", "/machine-config", None, 200),
            ("PUT", "/actions", '{"action_type": "InstanceStart"}', 204),
            ("GET", "/", None, 200),
            ("PATCH", "/vm", '{"state": "Paused"}', 204),
            ("PATCH", "/vm", '{"state": "Resumed"}', 204),
            ("PATCH", "/drives/rootfs", '{"drive_id": "rootfs", "path_on_host": "%s"}' % rootfs,
             204),
            ("PATCH", "/network-interfaces/net1", '{"iface_id": "net1", "rx_rate_limiter": '
             '{"bandwidth": {"size": 1000000, "refill_time": 100}}}', 204),
            ("GET", "/vm/config", None, 200),
            ("PUT", "/actions", '{"action_type": "SendCtrlAltDel"}', 204),
        ]
        for method, path, body, want in steps:
            code, text = fc_curl(sock, method, path, body)
            check(code == want, "%s %s: want %d, got %d\n%s" % (method, path, want, code, text))
            if path == "/":
                check('"state":"Running"' in text.replace(" ", ""), "GET /: %s" % text)
        check(p.wait(20) == 0, "SendCtrlAltDel ends Ember with 0")
        out.close()
        check(os.path.getsize(log) > 0, "the logger wrote %s" % log)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        subprocess.run(["ip", "tuntap", "del", "dev", tap, "mode", "tap"])


@test("fast")
def test_compat_kata_install_jailer_root(ctx):
    """make install, then jailer --uid 0 --gid 0 running firecracker with no --api-sock, the
    way Kata's fc driver does; a boot through <jail>/run/firecracker.socket."""
    prefix = tempfile.mkdtemp(prefix="ember-install-")
    base = tempfile.mkdtemp(prefix="ember-srv-")
    vm_id = "kata1"
    p = None
    try:
        fc, jl = install(ctx, prefix)
        root = os.path.join(base, "firecracker", vm_id, "root")
        os.makedirs(root)
        shutil.copy(kernel(ctx), os.path.join(root, "vmlinux"))
        exe = fc  # the installed link itself, as Kata's configuration names it
        out_path = os.path.join(ctx.workdir, "kata.out")
        err_path = os.path.join(ctx.workdir, "kata.err")
        out, err = open(out_path, "wb"), open(err_path, "wb")
        p = subprocess.Popen([jl, "--id", vm_id, "--exec-file", exe, "--uid", "0", "--gid",
                              "0", "--chroot-base-dir", base],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=err)

        def read(path):
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        sock = os.path.join(root, "run", "firecracker.socket")
        wait_until(lambda: os.path.exists(sock) or p.poll() is not None, 15, "the jail socket")
        check(os.path.exists(sock), "no %s; jailer: %s" % (sock, read(err_path)))
        start_in_jail(sock, after=[("GET", "/", None, 200)])
        wait_until(lambda: "counter: 3" in read(out_path), 20, "the jailed guest counting")
        code, _ = fc_curl(sock, "PUT", "/actions", '{"action_type": "SendCtrlAltDel"}')
        check(code == 204, "SendCtrlAltDel")
        check(p.wait(20) == 0, "exit status")
        check("WARNING" in read(err_path), "no root warning from the jailer")
    finally:
        stop_and_remove(p, prefix, base)


def stop_and_remove(p, *dirs):
    """Kill the jailer/VMM `p` if it still runs, and remove `dirs`."""
    if p and p.poll() is None:
        p.kill()
        p.wait()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def install(ctx, prefix):
    """`make install PREFIX=prefix`: (bin/firecracker, bin/jailer), both links."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run(["make", "-C", repo, "-s", "install", "PREFIX=" + prefix],
                       capture_output=True, timeout=300)
    check(r.returncode == 0, "make install: %s" % r.stderr.decode())
    fc, jl = os.path.join(prefix, "bin", "firecracker"), os.path.join(prefix, "bin", "jailer")
    check(os.path.islink(fc) and os.path.islink(jl), "firecracker/jailer links installed")
    return fc, jl


def jailed_vmm_argv(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


def flag_value(argv, flag):
    check(flag in argv, "%s not passed to the VMM: %r" % (flag, argv))
    return int(argv[argv.index(flag) + 1])


def start_in_jail(sock, before=(), after=()):
    """Through the jail's API socket: the `before` requests, a counting boot of /vmlinux
    (64 MiB, one vCPU), then the `after` requests; each (method, path, body, status) must
    answer that status."""
    boot = [("PUT", "/boot-source", '{"kernel_image_path": "/vmlinux", "boot_args": '
             '"counter=0"}', 204),
            ("PUT", "/machine-config", '{"vcpu_count": 1, "mem_size_mib": 64}', 204),
            ("PUT", "/actions", '{"action_type": "InstanceStart"}', 204)]
    for method, path, body, want in list(before) + boot + list(after):
        code, text = fc_curl(sock, method, path, body)
        check(code == want, "%s %s in the jail: %d\n%s" % (method, path, code, text))


def boot_in_jail(sock, root, uid=0, gid=0):
    """Drive a counting boot through the jail's API socket, its console to /serial.out and
    its metrics to /metrics.json (both inside the jail, made beforehand for uid:gid, as
    Firecracker's docs ask of the caller); SendCtrlAltDel once it counts. Returns the
    api_server metrics after a FlushMetrics."""
    for name in ("serial.out", "metrics.json"):
        path = os.path.join(root, name)
        open(path, "wb").close()
        os.chown(path, uid, gid)
    start_in_jail(sock, before=[
        ("PUT", "/serial", '{"serial_out_path": "/serial.out"}', 204),
        ("PUT", "/metrics", '{"metrics_path": "/metrics.json"}', 204)])
    out = os.path.join(root, "serial.out")

    def counted():
        if not os.path.exists(out):
            return False
        with open(out, "rb") as f:
            return b"counter: 3" in f.read()
    wait_until(counted, 30, "the jailed guest counting on /serial.out")
    code, text = fc_curl(sock, "PUT", "/actions", '{"action_type": "FlushMetrics"}')
    check(code == 204, "FlushMetrics: %d %s" % (code, text))
    with open(os.path.join(root, "metrics.json")) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    check(lines, "no metrics written")
    code, text = fc_curl(sock, "PUT", "/actions", '{"action_type": "SendCtrlAltDel"}')
    check(code == 204, "SendCtrlAltDel: %d %s" % (code, text))
    return lines[-1]["api_server"]


@test("fast")
def test_compat_jailer_start_time(ctx):
    """The jailer passes its start time and CPU times on (--start-time-us,
    --start-time-cpu-us, --parent-cpu-time-us) and the VMM counts its start-up from them,
    into process_startup_time_us / _cpu_us."""
    prefix = tempfile.mkdtemp(prefix="ember-install-")
    base = tempfile.mkdtemp(prefix="ember-srv-")
    p = None
    try:
        fc, jl = install(ctx, prefix)
        root = os.path.join(base, "firecracker", "st1", "root")
        os.makedirs(root)
        shutil.copy(kernel(ctx), os.path.join(root, "vmlinux"))
        err_path = os.path.join(ctx.workdir, "jailer.err")
        err = open(err_path, "wb")
        t_launch = time.monotonic_ns() // 1000
        p = subprocess.Popen([jl, "--id", "st1", "--exec-file", fc, "--uid", "0", "--gid", "0",
                              "--chroot-base-dir", base, "--", "--level", "Debug"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        sock = os.path.join(root, "run", "firecracker.socket")
        wait_until(lambda: os.path.exists(sock) or p.poll() is not None, 30, "the jail socket")
        check(p.poll() is None, "the jailer exited %r" % p.poll())
        code, _ = fc_curl(sock, "GET", "/", None)
        t_answered = time.monotonic_ns() // 1000
        check(code == 200, "GET /: %d" % code)
        argv = jailed_vmm_argv(p.pid)  # no --daemonize, no --new-pid-ns: the same process
        t0 = flag_value(argv, "--start-time-us")
        cpu0 = flag_value(argv, "--start-time-cpu-us")
        parent = flag_value(argv, "--parent-cpu-time-us")
        check(t_launch <= t0 <= t_answered, "--start-time-us %d is not the jailer's start "
              "(launched at %d, answered at %d)" % (t0, t_launch, t_answered))
        check(cpu0 > 0 and parent >= 0, "CPU times: %r" % argv)
        with open(err_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        m = re.search(r"started in (\d+) us \((\d+) us of CPU\), counted from the jailer's "
                      r"start \(--start-time-us (\d+)\)", log)
        check(m and int(m.group(3)) == t0, "the VMM did not count from the jailer's start: %s" %
              log)
        st = boot_in_jail(sock, root)
        check(st["process_startup_time_us"] == int(m.group(1)) and
              st["process_startup_time_cpu_us"] == int(m.group(2)),
              "metrics %r against the log %r" % (st, m.group(0)))
        check(0 < st["process_startup_time_us"] <= t_answered - t0, "startup: %r" % st)
        check(st["process_startup_time_cpu_us"] >= parent, "parent CPU time added: %r" % st)
        check(p.wait(20) == 0, "exit status")
    finally:
        stop_and_remove(p, prefix, base)


# Firecracker's docs/jailer.md, "Example Run and Notes", as printed there (its line breaks
# joined; /usr/bin/ becomes the test's install prefix).
DOCS_JAILER_ID = "551e7604-e35c-42b3-b825-416853441234"
DOCS_JAILER_CMD = ("/usr/bin/jailer --id 551e7604-e35c-42b3-b825-416853441234 "
                   "--cgroup cpuset.mems=0 --cgroup "
                   "cpuset.cpus=$(cat /sys/devices/system/node/node0/cpulist) "
                   "--exec-file /usr/bin/firecracker --uid 123 --gid 100 "
                   "--netns /var/run/netns/my_netns --daemonize")


def mount_of(path):
    """(mount point, fstype) of the mount holding `path`."""
    best = ("/", "")
    for mnt, fstype, _ in mountinfo():
        if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
            best = (mnt, fstype)
    return best


def gone(pid):
    """`pid` has exited (no longer there, or a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # reaped before the open, or the read
        return True


@test("fast")
def test_compat_jailer_docs_example(ctx):
    """The jailer command of Firecracker's docs/jailer.md, verbatim, run by the shell: jailer's
    defaults (cgroup v1, parent cgroup `firecracker`, chroot base /srv/jailer), cpuset limits
    for NUMA node 0, uid 123 gid 100, a network namespace, --daemonize; then a boot through
    /srv/jailer/firecracker/<id>/root/run/firecracker.socket."""
    cpulist_path = "/sys/devices/system/node/node0/cpulist"
    check(os.path.exists(cpulist_path), "no %s on this machine" % cpulist_path)
    with open(cpulist_path) as f:
        cpulist = f.read().strip()
    undo = []  # cleanup steps, run last-first
    prefix = tempfile.mkdtemp(prefix="ember-install-")
    undo.append(lambda: shutil.rmtree(prefix, ignore_errors=True))
    pid = None
    try:
        fc, jl = install(ctx, prefix)
        # cgroup v1 with cpuset: the host's, or one mounted here where cgroup v2 holds cpuset
        # unused (the nested machine mounts only cgroup2).
        _, v1 = cgroup_mounts()
        cpuset = v1.get("cpuset")
        if not cpuset:
            cpuset = tempfile.mkdtemp(prefix="ember-cpuset-v1-", dir="/run")
            undo.append(lambda: os.rmdir(cpuset))
            r = subprocess.run(["mount", "-t", "cgroup", "-o", "cpuset", "cgroup", cpuset],
                               capture_output=True)
            check(r.returncode == 0, "mount a cgroup v1 cpuset hierarchy on %s: %s" %
                  (cpuset, r.stderr.decode()))
            undo.append(lambda: subprocess.run(["umount", cpuset]))
        parent_cg = os.path.join(cpuset, "firecracker")
        leaf_cg = os.path.join(parent_cg, DOCS_JAILER_ID)
        had_parent = os.path.isdir(parent_cg)

        def rm_cgroups():
            for d in [leaf_cg] + ([] if had_parent else [parent_cg]):
                for _ in range(100):  # the VMM may take a moment to leave
                    try:
                        if os.path.isdir(d):
                            os.rmdir(d)
                        break
                    except OSError:
                        time.sleep(0.05)
        undo.append(rm_cgroups)
        # The default chroot base. A 9p share (the nested machine's view of the host) cannot
        # hold device nodes or sockets: a tmpfs over it there.
        base = "/srv/jailer"
        if not os.path.isdir(base):
            os.makedirs(base)
            undo.append(lambda: os.rmdir(base))
        if mount_of(base)[1] == "9p":
            subprocess.run(["mount", "-t", "tmpfs", "tmpfs", base], check=True)
            undo.append(lambda: subprocess.run(["umount", base]))
        jail = os.path.join(base, "firecracker", DOCS_JAILER_ID)
        check(not os.path.exists(jail), "%s is left from an earlier run" % jail)
        undo.append(lambda: shutil.rmtree(jail, ignore_errors=True))
        if not os.path.exists("/var/run/netns/my_netns"):
            subprocess.run(["ip", "netns", "add", "my_netns"], check=True)
            undo.append(lambda: subprocess.run(["ip", "netns", "delete", "my_netns"]))
        # The caller's part (docs: "hard links for (or copy) any resources"): the kernel.
        root = os.path.join(jail, "root")
        os.makedirs(root)
        shutil.copy(kernel(ctx), os.path.join(root, "vmlinux"))
        os.chmod(os.path.join(root, "vmlinux"), 0o644)

        cmd = DOCS_JAILER_CMD.replace("/usr/bin/", prefix + "/bin/")
        err_path = os.path.join(ctx.workdir, "jailer.err")
        err = open(err_path, "wb")
        # No --new-pid-ns: the jailer execs the VMM in its own process, or (when it leads a
        # process group and so cannot setsid) in a child, and exits 0.
        jp = subprocess.Popen(["sh", "-c", cmd], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=err)
        undo.append(lambda: jp.poll() is None and (jp.kill() or jp.wait()))
        sock = os.path.join(root, "run", "firecracker.socket")
        procs = os.path.join(leaf_cg, "cgroup.procs")

        def vmm_pid():
            try:
                with open(procs) as f:
                    pids = [int(x) for x in f.read().split()]
            except FileNotFoundError:
                return None
            return pids[0] if len(pids) == 1 else None
        try:
            wait_until(lambda: os.path.exists(sock) and vmm_pid(), 30,
                       "the socket %s and one process in %s" % (sock, procs))
        except AssertionError as e:
            with open(err_path) as f:
                raise AssertionError("%s; the jailer's status %r, its stderr: %s; in the jail: %s"
                                     % (e, jp.poll(), f.read(), os.listdir(root)))
        pid = vmm_pid()
        undo.append(lambda: os.path.exists("/proc/%d" % pid) and os.kill(pid, 9))
        check(jp.poll() in (None, 0), "the jailer exited %r" % jp.poll())
        # What the docs say the jailer does, seen from outside.
        for name, want in (("cpuset.mems", "0"), ("cpuset.cpus", cpulist)):
            with open(os.path.join(leaf_cg, name)) as f:
                check(f.read().strip() == want, "%s in %s" % (name, leaf_cg))
        st = {}
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                st[k] = v.split()
        check(st["Uid"][:2] == ["123", "123"] and st["Gid"][:2] == ["100", "100"],
              "uid/gid: %r %r" % (st["Uid"], st["Gid"]))
        check(os.stat("/proc/%d/ns/net" % pid).st_ino == os.stat("/var/run/netns/my_netns").st_ino,
              "the VMM is not in my_netns")
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rpartition(")")[2].split()
        check(int(fields[3]) == pid, "--daemonize: the VMM leads its own session")
        for fd in (0, 1, 2):
            check(os.readlink("/proc/%d/fd/%d" % (pid, fd)) == "/dev/null", "fd %d" % fd)
        a, b = os.stat("/proc/%d/root" % pid), os.stat(root)
        check((a.st_dev, a.st_ino) == (b.st_dev, b.st_ino), "the VMM's root is not %s" % root)
        argv = jailed_vmm_argv(pid)
        check(argv[:3] == ["firecracker", "--id", DOCS_JAILER_ID], "exec: %r" % argv)
        t0 = flag_value(argv, "--start-time-us")
        api = boot_in_jail(sock, root, 123, 100)
        check(0 < api["process_startup_time_us"] <= time.monotonic_ns() // 1000 - t0,
              "startup from the jailer's start: %r" % api)
        wait_until(lambda: gone(pid), 20, "the VMM to exit after SendCtrlAltDel")
        if jp.pid == pid:
            check(jp.wait(10) == 0, "the VMM's exit status")
    finally:
        for step in reversed(undo):
            try:
                step()
            except OSError:
                pass
