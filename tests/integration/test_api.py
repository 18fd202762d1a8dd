"""test_api.py - the REST API on a Unix socket: the lifecycle driven with curl
(configure, start, pause, resume, Ctrl-Alt-Del), every endpoint's success and
errors, and hostile clients, against Ember running the test guest."""
import json
import os
import re
import socket
import subprocess

from harness import check, test, vcpus_parked, wait_until


class Ember:
    """An `ember --api-sock` process; stdout (the guest console) goes to a file."""

    def __init__(self, ctx, args=(), prefix=(), name=None, api_timeout=10, cwd=None):
        """`prefix`: a command Ember runs under (for example prlimit and its flags, or a
        namespace). `name`: what its socket, console and log files are called, for a test that
        runs several. `api_timeout`: seconds a request may take. `cwd`: Ember's working
        directory (relative paths in requests resolve there)."""
        files = (name + ".sock", name + ".out", name + ".err") if name else (
            "api.sock", "console.out", "ember.err")
        self.sock, self.out_path, self.err_path = (os.path.join(ctx.workdir, f) for f in files)
        self.ctx = ctx
        self.api_timeout = api_timeout
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(list(prefix) + [ctx.ember, "--api-sock", self.sock] +
                                     list(args),
                                     stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err,
                                     cwd=cwd)
        wait_until(lambda: os.path.exists(self.sock) or self.proc.poll() is not None, 10,
                   "the API socket " + self.sock)
        check(os.path.exists(self.sock), "ember exited at start:\n" + self.log())

    def console(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def curl(self, method, path, body=None):
        cmd = ["curl", "-s", "--max-time", str(self.api_timeout), "--unix-socket", self.sock,
               "-X", method, "-w", "\n%{http_code}", "-H", "Accept: application/json",
               "http://localhost" + path]
        if body is not None:
            cmd += ["-H", "Content-Type: application/json", "-d",
                    body if isinstance(body, str) else json.dumps(body)]
        p = subprocess.run(cmd, capture_output=True, timeout=self.api_timeout + 5)
        text, _, code = p.stdout.decode().rpartition("\n")
        return int(code or 0), (json.loads(text) if text.strip() else None)

    def ok(self, method, path, body=None):
        """The request must succeed with 204."""
        code, reply = self.curl(method, path, body)
        check(code == 204, "%s %s: %d %r\n%s" % (method, path, code, reply, self.log()[-3000:]))

    def raw(self, data, timeout=5):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(self.sock)
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking it all: read the answer
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out:
                    head, _, rest = out.partition(b"\r\n\r\n")
                    m = re.search(rb"Content-Length: (\d+)", head)
                    if len(rest) >= (int(m.group(1)) if m else 0):
                        break
        finally:
            s.close()
        return out

    def wait(self, timeout=10):
        try:
            return self.proc.wait(timeout)
        finally:
            self.out.close()
            self.err.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()


def counters(text):
    """The numbers of the complete `counter: N` lines (a console read as the guest writes can
    end in part of one)."""
    return [int(x) for x in re.findall(r"^counter: (\d+)\r?\n", text, re.M)]


def configure(e, ctx, args="counter=0", vcpus=1):
    code, _ = e.curl("PUT", "/boot-source",
                     {"kernel_image_path": ctx.guest("guest-pvh.elf"), "boot_args": args})
    check(code == 204, "PUT /boot-source: %d" % code)
    code, _ = e.curl("PUT", "/machine-config", {"vcpu_count": vcpus, "mem_size_mib": 64})
    check(code == 204, "PUT /machine-config: %d" % code)


@test("fast")
def test_api_lifecycle(ctx):
    e = Ember(ctx)
    try:
        code, info = e.curl("GET", "/")
        check(code == 200 and info["state"] == "Not started", "GET / before start: %r" % info)
        configure(e, ctx, vcpus=2)
        check(e.curl("PUT", "/actions", {"action_type": "FlushMetrics"})[0] == 400,
              "FlushMetrics without metrics configured")
        metrics_path = os.path.join(ctx.workdir, "metrics.json")
        check(e.curl("PUT", "/metrics", {"metrics_path": metrics_path})[0] == 204, "PUT /metrics")
        code, _ = e.curl("PUT", "/actions", {"action_type": "InstanceStart"})
        check(code == 204, "InstanceStart: %d" % code)
        wait_until(lambda: len(counters(e.console())) >= 3, 10, "the guest to start counting")
        check(e.curl("GET", "/")[1]["state"] == "Running", "state Running")

        # A pause answers once every vCPU is parked: none can run guest code then.
        code, _ = e.curl("PATCH", "/vm", {"state": "Paused"})
        check(code == 204, "pause: %d" % code)
        a = len(counters(e.console()))
        check(vcpus_parked(e.proc.pid), "a vCPU thread is not parked after the pause answered")
        check(e.curl("GET", "/")[1]["state"] == "Paused", "state Paused")
        b = len(counters(e.console()))
        check(a == b, "the counter advanced while paused (%d -> %d)" % (a, b))

        code, _ = e.curl("PATCH", "/vm", {"state": "Resumed"})
        check(code == 204, "resume: %d" % code)
        wait_until(lambda: len(counters(e.console())) > b + 5, 10,
                   "the counter to advance after resume (from %d)" % b)
        seq = counters(e.console())
        check(seq == list(range(len(seq))), "counter lines lost or repeated")

        check(e.curl("PUT", "/actions", {"action_type": "FlushMetrics"})[0] == 204, "FlushMetrics")
        code, _ = e.curl("PUT", "/actions", {"action_type": "SendCtrlAltDel"})
        check(code == 204, "SendCtrlAltDel: %d" % code)
        rc = e.wait()
        with open(metrics_path) as f:
            lines = [json.loads(l) for l in f]  # every line is one JSON object
        check(len(lines) == 3, "metrics lines at start, FlushMetrics and exit: %d" % len(lines))
        check(lines[1]["vmm"]["pause_count"] == 1 and lines[1]["vmm"]["resume_count"] == 1,
              "pause/resume counted: %r" % lines[1])
        check(lines[1]["vcpu"]["exit_io_out"] > 0, "vCPU exits counted: %r" % lines[1])
        check(lines[2]["i8042"]["reset_count"] == 1, "reset counted at exit: %r" % lines[2])
        check(rc == 0, "Ctrl-Alt-Del must reset the guest and end Ember with 0, got %d\n%s" %
              (rc, e.log()))
        check("ctrl-alt-del: received" in e.console(), "guest did not see Ctrl-Alt-Del")
        check(not os.path.exists(e.sock), "socket not removed at exit")
    finally:
        e.kill()


@test("fast")
def test_api_endpoints_errors(ctx):
    e = Ember(ctx)
    try:
        cases = [
            ("GET", "/version", None, 200),
            ("GET", "/machine-config", None, 200),
            ("GET", "/nowhere", None, 400),
            ("DELETE", "/machine-config", None, 400),
            ("POST", "/actions", {"action_type": "InstanceStart"}, 400),
            ("PUT", "/machine-config", {"vcpu_count": 0, "mem_size_mib": 64}, 400),
            ("PUT", "/machine-config", {"vcpu_count": 33, "mem_size_mib": 64}, 400),
            ("PUT", "/machine-config", {"vcpu_count": "2", "mem_size_mib": 64}, 400),
            ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64, "x": 1}, 400),
            ("PATCH", "/machine-config", {"mem_size_mib": -1}, 400),
            ("PUT", "/boot-source", {"boot_args": "x"}, 400),
            ("PUT", "/boot-source", "{not json", 400),
            ("PUT", "/drives/d1", {"drive_id": "d2", "path_on_host": "/x", "is_root_device": False}, 400),
            ("PUT", "/drives/bad-id!", {"drive_id": "bad-id!", "path_on_host": "/x",
                                        "is_root_device": False}, 400),
            ("PUT", "/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0",
                                                 "guest_mac": "zz:00:00:00:00:01"}, 400),
            ("PUT", "/actions", {"action_type": "Reboot"}, 400),
            ("PUT", "/actions", {"action_type": "InstanceStart"}, 400),  # no boot-source yet
            ("PUT", "/actions", {"action_type": "SendCtrlAltDel"}, 400),  # not running
            ("PATCH", "/vm", {"state": "Paused"}, 400),  # not running
            ("PATCH", "/vm", {"state": "Sleeping"}, 400),
            ("PUT", "/balloon", {"amount_mib": 1}, 400),
            ("PUT", "/vsock", {}, 400),
            ("PUT", "/snapshot/create", {}, 400),
            ("PUT", "/logger", {"level": "Loud"}, 400),
            ("PUT", "/metrics", {}, 400),
        ]
        for method, path, body, want in cases:
            code, reply = e.curl(method, path, body)
            check(code == want, "%s %s -> %d, want %d (%r)" % (method, path, code, want, reply))
            if want >= 400:
                check(reply and reply.get("fault_message"), "%s %s: no fault_message" % (method, path))
        # Rejected requests changed nothing.
        code, mc = e.curl("GET", "/machine-config")
        check(mc["vcpu_count"] == 1 and mc["mem_size_mib"] == 128, "config changed: %r" % mc)
        code, full = e.curl("GET", "/vm/config")
        check(code == 200 and full["drives"] == [] and full["network-interfaces"] == [],
              "GET /vm/config: %r" % full)
        # Valid device and logger configuration round-trips through GET /vm/config.
        disk = os.path.join(ctx.workdir, "disk.img")
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        drive = {"drive_id": "rootfs", "path_on_host": disk, "is_root_device": True,
                 "is_read_only": True}
        check(e.curl("PUT", "/drives/rootfs", drive)[0] == 204, "PUT drive")
        drive2 = dict(drive, drive_id="second")
        check(e.curl("PUT", "/drives/second", drive2)[0] == 400, "two root devices accepted")
        check(e.curl("PUT", "/logger", {"log_path": os.path.join(ctx.workdir, "log"),
                                        "level": "Info"})[0] == 204, "PUT logger")
        configure(e, ctx, args="counter=0")
        code, full = e.curl("GET", "/vm/config")
        check([d["drive_id"] for d in full["drives"]] == ["rootfs"], "drives: %r" % full)
        check(full["boot-source"]["boot_args"] == "counter=0", "boot-source: %r" % full)
        full["boot-source"]["boot_args"] = "quiet"
        path = os.path.join(ctx.workdir, "again.json")
        with open(path, "w") as f:
            json.dump(full, f)
        p = subprocess.run([ctx.ember, "--no-api", "--config-file", path], capture_output=True,
                           timeout=30)
        check(p.returncode == 0 and b"guest: done" in p.stdout,
              "GET /vm/config output does not boot again: %r" % p.stderr)
        # Post-boot rules.
        check(e.curl("PUT", "/actions", {"action_type": "InstanceStart"})[0] == 204, "start")
        check(e.curl("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 64})[0] == 400,
              "machine-config accepted after boot")
        check(e.curl("PUT", "/actions", {"action_type": "InstanceStart"})[0] == 400,
              "second InstanceStart accepted")
        check(e.curl("PUT", "/drives/rootfs", drive)[0] == 400, "drive PUT accepted after boot")
        check(e.curl("PUT", "/actions", {"action_type": "SendCtrlAltDel"})[0] == 204, "CAD")
        check(e.wait() == 0, "Ctrl-Alt-Del should end Ember with 0")
    finally:
        e.kill()


@test("fast")
def test_api_hostile_clients(ctx):
    e = Ember(ctx)
    try:
        configure(e, ctx)
        # A client that promises a body and goes silent must not block anyone.
        stalled = socket.socket(socket.AF_UNIX)
        stalled.connect(e.sock)
        stalled.sendall(b"PUT /machine-config HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        check(e.curl("PUT", "/actions", {"action_type": "InstanceStart"})[0] == 204, "start")
        resp = e.raw(b"PUT /machine-config HTTP/1.1\r\nContent-Length: 60000\r\n\r\n" + b"x" * 60000)
        check(b" 400 " in resp.split(b"\r\n")[0] and b"larger than the limit" in resp,
              "oversized body: %r" % resp[:200])
        resp = e.raw(b"PUT /actions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        check(resp.startswith(b"HTTP/1.1 4") or resp.startswith(b"HTTP/1.1 5"), "chunked: %r" % resp)
        resp = e.raw(os.urandom(4096))
        check(resp.startswith(b"HTTP/1.1 4"), "garbage: %r" % resp[:100])
        resp = e.raw(b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 10000 + b"\r\n")
        check(resp.startswith(b"HTTP/1.1 4"), "10,000 headers: %r" % resp[:100])
        # Pipelined requests on one connection each get their answer.
        resp = e.raw(b"GET /version HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        check(resp.count(b"HTTP/1.1 200") == 2, "pipelined: %r" % resp)
        # 500 connections at once, each asking GET /.
        socks = []
        for _ in range(500):
            s = socket.socket(socket.AF_UNIX)
            s.connect(e.sock)
            socks.append(s)
        for s in socks:
            s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        ok = 0
        for s in socks:
            s.settimeout(10)
            if s.recv(4096).startswith(b"HTTP/1.1 200"):
                ok += 1
            s.close()
        check(ok == 500, "only %d of 500 concurrent clients got an answer" % ok)
        stalled.close()
        # The guest kept running through all of it.
        n = len(counters(e.console()))
        wait_until(lambda: len(counters(e.console())) > n, 10,
                   "the guest to go on counting after the abuse (it stopped?)")
        code, info = e.curl("GET", "/")
        check(code == 200 and info["state"] == "Running", "server unhealthy after abuse")
        rss_kib = int(re.search(r"VmRSS:\s+(\d+)", open("/proc/%d/status" % e.proc.pid).read()).group(1))
        check(rss_kib < 64 * 1024, "RSS grew to %d KiB" % rss_kib)
    finally:
        e.kill()


@test("fast")
def test_api_socket_rules(ctx):
    e = Ember(ctx)
    try:
        # A live socket is not taken over.
        p = subprocess.run([ctx.ember, "--api-sock", e.sock], capture_output=True, timeout=10)
        check(p.returncode == 1 and b"another process" in p.stderr, "live socket: %r" % p.stderr)
    finally:
        e.kill()
    # A stale socket is replaced.
    s = socket.socket(socket.AF_UNIX)
    stale = os.path.join(ctx.workdir, "stale.sock")
    s.bind(stale)
    s.close()
    p = subprocess.Popen([ctx.ember, "--api-sock", stale], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)

    def accepts():
        c = socket.socket(socket.AF_UNIX)
        try:
            c.connect(stale)
            return True
        except OSError:
            return False
        finally:
            c.close()
    wait_until(accepts, 10, "Ember to take over the stale socket and accept on it")
    p.terminate()
    check(p.wait(10) == 0 and not os.path.exists(stale), "SIGTERM must exit 0 and remove the socket")
    # A path that is not a socket is refused.
    plain = os.path.join(ctx.workdir, "plain")
    open(plain, "w").close()
    p = subprocess.run([ctx.ember, "--api-sock", plain], capture_output=True, timeout=10)
    check(p.returncode == 1 and b"not a socket" in p.stderr, "plain file: %r" % p.stderr)


@test("fast")
def test_emberctl(ctx):
    tool = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "emberctl")
    e = Ember(ctx)

    def ctl(*args):
        p = subprocess.run([tool, "--sock", e.sock] + list(args), capture_output=True, timeout=30)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    try:
        rc, out, _ = ctl("get", "/")
        check(rc == 0 and json.loads(out)["state"] == "Not started", "get /: %r" % out)
        rc, _, err = ctl("put", "/machine-config", '{"vcpu_count": 99, "mem_size_mib": 64}')
        check(rc == 1 and err.startswith("emberctl: HTTP 400: machine-config.vcpu_count"),
              "readable error: %r" % err)
        rc, _, err = ctl("put", "/machine-config", "{oops")
        check(rc == 1 and "malformed" in err, "bad JSON: %r" % err)
        rc, _, _ = ctl("put", "/boot-source", json.dumps(
            {"kernel_image_path": ctx.guest("guest-pvh.elf"), "boot_args": "counter=0"}))
        check(rc == 0, "put boot-source")
        check(ctl("start")[0] == 0, "start")
        check(ctl("pause")[0] == 0 and json.loads(ctl("get", "/")[1])["state"] == "Paused", "pause")
        check(ctl("resume")[0] == 0, "resume")
        rc, out, _ = ctl("config")
        check(rc == 0 and json.loads(out)["boot-source"]["boot_args"] == "counter=0", "config")
        check(ctl("ctrl-alt-del")[0] == 0, "ctrl-alt-del")
        check(e.wait() == 0, "guest reset")
        rc, _, err = ctl("get", "/")
        check(rc == 2 and "cannot reach" in err, "no server: %r" % err)
    finally:
        e.kill()


@test("fast")
def test_metrics_path_flag(ctx):
    from harness import guest_config, run_ember
    path = os.path.join(ctx.workdir, "m.json")
    res = run_ember(ctx, guest_config(ctx.guest("guest-pvh.elf"), boot_args="quiet"),
                    args=["--metrics-path", path])
    check(res.rc == 0, "boot with --metrics-path", res)
    with open(path) as f:
        lines = [json.loads(l) for l in f]
    check(len(lines) == 2, "a line at start and one at exit: %r" % lines)
    check(lines[1]["i8042"]["reset_count"] == 1 and lines[1]["vcpu"]["exit_io_out"] > 0,
          "counters in the exit line: %r" % lines[1])
