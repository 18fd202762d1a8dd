#!/usr/bin/env python3
"""bench_api.py - API figures for Ember (issue 4's benchmark, first part).

  python3 tools/bench_api.py --ember build/ember --guest-dir build/guest [-n 50] [-r 10000]

1. start-up: process exec -> API socket accepting (a connect() succeeds),
   median and spread over -n runs, plus the process's CPU time to that point.
2. round trip: -r sequential requests on one persistent connection for
   `GET /` and `PUT /machine-config`, p50/p99/max in microseconds.
3. InstanceStart -> boot-timer write (Ember's own Guest-boot-time line, which
   counts from InstanceStart with the API) next to the --no-api path (counts
   from process exec), test guest with `quiet`, -n runs each, interleaved.
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import tempfile
import time


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def summary(xs):
    return "median %.3f  min %.3f  p25 %.3f  p75 %.3f  max %.3f" % (
        statistics.median(xs), min(xs), pct(xs, 25), pct(xs, 75), max(xs))


def wait_accepting(path, deadline):
    while time.perf_counter() < deadline:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return True
        except OSError:
            time.sleep(0.00005)
        finally:
            s.close()
    return False


def request(s, method, path, body=b""):
    head = "%s %s HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (method, path, len(body))
    s.sendall(head.encode() + body)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head)
    need = int(m.group(1)) if m else 0
    while len(rest) < need:
        rest += s.recv(65536)
    return int(head.split(b" ")[1])


def cpu_ms(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ember", required=True)
    ap.add_argument("--guest-dir", required=True)
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("-r", type=int, default=10000)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ember-bench-api.")
    sock = os.path.join(work, "api.sock")
    print("load: %s" % open("/proc/loadavg").read().strip())

    # 1. start-up
    startup, cpu = [], []
    for _ in range(a.n):
        t0 = time.perf_counter()
        p = subprocess.Popen([a.ember, "--api-sock", sock], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ok = wait_accepting(sock, t0 + 5)
        t1 = time.perf_counter()
        if ok:
            startup.append((t1 - t0) * 1000)
            cpu.append(cpu_ms(p.pid))
        p.terminate()
        p.wait()
    print("exec -> API socket accepting (ms), n=%d: %s" % (len(startup), summary(startup)))
    print("  CPU time of the process by then (ms, 10 ms ticks): median %.1f" % statistics.median(cpu))

    # 2. round trips
    p = subprocess.Popen([a.ember, "--api-sock", sock], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_accepting(sock, time.perf_counter() + 5)
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    body = json.dumps({"vcpu_count": 2, "mem_size_mib": 256}).encode()
    for name, method, path, b in (("GET /", "GET", "/", b""),
                                  ("PUT /machine-config", "PUT", "/machine-config", body)):
        lat = []
        for _ in range(a.r):
            t0 = time.perf_counter()
            code = request(s, method, path, b)
            lat.append((time.perf_counter() - t0) * 1e6)
            assert code in (200, 204), code
        print("%-20s round trip (us), %d requests: p50 %.1f  p99 %.1f  max %.1f" % (
            name, a.r, pct(lat, 50), pct(lat, 99), max(lat)))
    s.close()
    p.terminate()
    p.wait()

    # 3. InstanceStart -> boot timer, next to --no-api
    guest = os.path.join(os.path.abspath(a.guest_dir), "guest-pvh.elf")
    cfg = {"boot-source": {"kernel_image_path": guest, "boot_args": "quiet"},
           "machine-config": {"vcpu_count": 1, "mem_size_mib": 128, "smt": False}}
    cfg_path = os.path.join(work, "vm.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    api_bt, noapi_bt = [], []
    for _ in range(a.n):
        p = subprocess.Popen([a.ember, "--api-sock", sock], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_accepting(sock, time.perf_counter() + 5)
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        request(s, "PUT", "/boot-source", json.dumps(cfg["boot-source"]).encode())
        request(s, "PUT", "/actions", b'{"action_type": "InstanceStart"}')
        s.close()
        err = p.communicate(timeout=30)[1].decode()
        m = re.search(r"Guest-boot-time = (\d+) us", err)
        if m:
            api_bt.append(int(m.group(1)) / 1000)
        r = subprocess.run([a.ember, "--no-api", "--config-file", cfg_path],
                           capture_output=True, timeout=30)
        m = re.search(r"Guest-boot-time = (\d+) us", r.stderr.decode())
        if m:
            noapi_bt.append(int(m.group(1)) / 1000)
    print("InstanceStart -> boot-timer write (ms), n=%d: %s" % (len(api_bt), summary(api_bt)))
    print("--no-api exec -> boot-timer write (ms), n=%d: %s" % (len(noapi_bt), summary(noapi_bt)))
    print("load: %s" % open("/proc/loadavg").read().strip())


if __name__ == "__main__":
    main()
