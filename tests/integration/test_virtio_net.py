"""test_virtio_net.py - virtio-net with the test guest over a tap inside a
network namespace the test creates (never the host's own interfaces): the
host pings the guest (ARP + ICMP echo), sends 10,000 UDP datagrams that the
guest echoes back (checksums checked both ways), and fills the guest's RX
ring while it stalls: not one frame may be lost.

Also runnable by hand against QEMU's microvm, to check the guest driver:
  python3 tests/integration/test_virtio_net.py --qemu build/guest/guest-pvh.elf
"""
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, guest_config, test  # noqa: E402

GUEST_IP = "172.16.0.2"
HOST_IP = "172.16.0.1"
GUEST_MAC = "06:00:ac:10:00:02"
ECHO_PORT = 7000
COUNT_PORT = 7001

QEMU = ["qemu-system-x86_64", "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=off,pit=off,pic=off,acpi=off",
        "-enable-kvm", "-cpu", "kvm64,+tsc-deadline", "-m", "128", "-smp", "1", "-nodefaults",
        "-no-user-config", "-display", "none", "-serial", "stdio", "-device",
        "isa-debug-exit,iobase=0xf4,iosize=1", "-global", "virtio-mmio.force-legacy=false"]


class NetNS:
    """A network namespace with one tap (host side 172.16.0.1/24); removed on exit."""

    def __init__(self):
        self.name = "ember-it-" + uuid.uuid4().hex[:8]
        self.tap = "tap0"

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            for cmd in (["tuntap", "add", "dev", self.tap, "mode", "tap"],
                        ["addr", "add", HOST_IP + "/24", "dev", self.tap],
                        ["link", "set", "lo", "up"],
                        ["link", "set", self.tap, "up"]):
                subprocess.run(["ip", "-n", self.name] + cmd, check=True)
            self.exec(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], check=False)
        except Exception:
            self.__exit__()
            raise
        return self

    def exec(self, cmd, **kw):
        return subprocess.run(["ip", "netns", "exec", self.name] + cmd, capture_output=True, **kw)

    def prefix(self):
        return ["ip", "netns", "exec", self.name]

    def __exit__(self, *a):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class Guest:
    """A running VMM (ember or qemu) whose console lines arrive on a queue."""

    def __init__(self, cmd, cwd=None):
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, cwd=cwd)
        self.lines = queue.Queue()
        self.out = []
        self.err = b""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for raw in self.p.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.out.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _read_err(self):
        self.err = self.p.stderr.read()

    def wait_line(self, prefix, timeout=30):
        end = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError("no line starting %r\n%s" % (prefix, self.describe()))
            if line.startswith(prefix):
                return line

    def finish(self, timeout=30):
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        time.sleep(0.1)
        return rc

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def describe(self):
        return "--- console ---\n%s\n--- stderr ---\n%s" % (
            "\n".join(self.out[-60:]), self.err.decode("utf-8", "replace")[-3000:])


def start_guest(ctx, ns, args, qemu_kernel=None):
    boot_args = "quiet smp=0 net-ip=%s %s" % (GUEST_IP, args)
    if qemu_kernel:
        cmd = ns.prefix() + QEMU + [
            "-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no" % ns.tap,
            "-device", "virtio-net-device,netdev=n0,mac=%s" % GUEST_MAC,
            "-kernel", qemu_kernel,
            "-append", "exit=debug virtio_mmio.device=512@0xfeb00e00:12 " + boot_args]
        return Guest(cmd), True
    import json
    cfg = guest_config(ctx.guest("guest-pvh.elf"), boot_args=boot_args)
    cfg["network-interfaces"] = [{"iface_id": "n0", "host_dev_name": ns.tap, "guest_mac": GUEST_MAC}]
    path = os.path.join(ctx.workdir, "vm.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return Guest(ns.prefix() + [ctx.ember, "--no-api", "--config-file", path], cwd=ctx.workdir), False


def counters(line):
    return dict(kv.split("=") for kv in line.split(": ", 1)[1].split())


def check_exit(g, rc, qemu):
    want = 1 if qemu else 0
    check(rc == want, "VMM exit status %s, want %s\n%s" % (rc, want, g.describe()))


UDP_SENDER = r"""
import socket, struct, sys, time
ip, port, n, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 0))
s.settimeout(5)
bad = got = 0
if mode == "echo":
    # Windowed: at most 64 datagrams in flight, every echo checked byte for byte.
    pending = {}
    sent = 0
    while got < n:
        while sent < n and len(pending) < 64:
            payload = struct.pack("<I", sent) + bytes((sent * 7 + i) & 255 for i in range(sent % 1000 + 4))
            pending[sent] = payload
            s.sendto(payload, (ip, port))
            sent += 1
        try:
            data, src = s.recvfrom(2048)
        except socket.timeout:
            break
        seq = struct.unpack("<I", data[:4])[0]
        if src != (ip, port) or pending.pop(seq, None) != data:
            bad += 1
        else:
            got += 1
    print("sent=%d echoed=%d bad=%d" % (sent, got, bad))
else:
    for i in range(n):
        s.sendto(struct.pack("<I", i) + b"x" * 60, (ip, port))
    print("sent=%d" % n)
s.sendto(b"quit", (ip, port))
"""


def run_ping_echo(ctx, qemu_kernel=None):
    with NetNS() as ns:
        g, qemu = start_guest(ctx, ns, "net-echo=%d net-timeout=120" % ECHO_PORT, qemu_kernel)
        try:
            g.wait_line("net0: ready")
            first = g.out[:]
            mac = [l for l in first if l.startswith("net0: mac=")]
            check(mac and mac[0].split()[1] == "mac=" + ":".join(
                "%x" % int(b, 16) for b in GUEST_MAC.split(":")), "guest MAC from config space\n" + g.describe())
            ping = ns.exec(["ping", "-c", "5", "-i", "0.2", "-W", "5", GUEST_IP], timeout=60)
            out = ping.stdout.decode()
            check(ping.returncode == 0 and " 0% packet loss" in out, "ping failed:\n%s\n%s" % (out, g.describe()))
            neigh = ns.exec(["ip", "neigh", "show", GUEST_IP, "dev", ns.tap]).stdout.decode().lower()
            check(GUEST_MAC in neigh, "ARP entry for the guest: %r" % neigh)
            udp = ns.exec([sys.executable, "-c", UDP_SENDER, GUEST_IP, str(ECHO_PORT), "10000", "echo"],
                          timeout=300)
            res = udp.stdout.decode().strip()
            check(res == "sent=10000 echoed=10000 bad=0", "UDP echo: %r %s\n%s" % (
                res, udp.stderr.decode(), g.describe()))
            rc = g.finish()
            c = counters(g.wait_line("net0: rx="))
            check(int(c["icmp"]) == 5 and int(c["udp-echo"]) == 10000 and int(c["arp"]) >= 1,
                  "guest counters %r" % c)
            check(int(c["bad-csum"]) == 0, "frames with bad checksums reached the guest: %r" % c)
            check_exit(g, rc, qemu)
        finally:
            g.kill()


def run_rx_stall(ctx, qemu_kernel=None, n=900):
    with NetNS() as ns:
        # The guest's MAC is known in advance: no ARP needed while its ring is stalled.
        ns.exec(["ip", "neigh", "replace", GUEST_IP, "lladdr", GUEST_MAC, "dev", ns.tap], check=True)
        g, qemu = start_guest(ctx, ns, "net-count=%d net-stall=1500 net-timeout=60" % COUNT_PORT, qemu_kernel)
        try:
            g.wait_line("net0: stalled")
            udp = ns.exec([sys.executable, "-c", UDP_SENDER, GUEST_IP, str(COUNT_PORT), str(n), "count"],
                          timeout=60)
            check(udp.returncode == 0, "sender failed: %s" % udp.stderr.decode())
            full = g.wait_line("net0: ring-full")
            rc = g.finish(timeout=60)
            c = counters(g.wait_line("net0: rx="))
            check(int(c["distinct"]) == n and int(c["dup"]) == 0,
                  "frames lost or duplicated while the RX ring was full (%s): %r\n%s" % (full, c, g.describe()))
            check(int(c["bad-csum"]) == 0, "bad checksums: %r" % c)
            check(full.endswith("used=256"), "the guest's RX ring never filled: %s" % full)
            check_exit(g, rc, qemu)
        finally:
            g.kill()


@test("fast")
def test_net_ping_and_udp_echo(ctx):
    run_ping_echo(ctx)


@test("fast")
def test_net_rx_ring_exhaustion_loses_nothing(ctx):
    run_rx_stall(ctx)


@test("fast")
def test_net_poll_us(ctx):
    """--net-poll-us: off (0) and on (200 us), the guest's burst of 20,000
    datagrams all reaches the tap, and the guest's RX still works (it answers
    ARP first); an out-of-range value is refused."""
    import json
    for poll in ("0", "200"):
        with NetNS() as ns:
            cfg = guest_config(ctx.guest("guest-pvh.elf"), boot_args="quiet smp=0 net-ip=%s "
                               "net-peer=%s net-tx=20000,%d,64" % (GUEST_IP, HOST_IP, COUNT_PORT))
            cfg["network-interfaces"] = [{"iface_id": "n0", "host_dev_name": ns.tap,
                                          "guest_mac": GUEST_MAC}]
            path = os.path.join(ctx.workdir, "vm%s.json" % poll)
            metrics = os.path.join(ctx.workdir, "m%s.json" % poll)
            with open(path, "w") as f:
                json.dump(cfg, f)
            g = Guest(ns.prefix() + [ctx.ember, "--no-api", "--config-file", path, "--net-poll-us",
                                     poll, "--metrics-path", metrics], cwd=ctx.workdir)
            try:
                end = g.wait_line("bench-end: net tx", timeout=60)
                check("frames=20000 " in end, "guest sent: %r\n%s" % (end, g.describe()))
                rc = g.finish()
                check(rc == 0, "exit status %s\n%s" % (rc, g.describe()))
            finally:
                g.kill()
            lines = [json.loads(l) for l in open(metrics)]
            sent = sum(l["net"]["tx_packets_count"] for l in lines)
            check(sent >= 20000, "frames written to the tap: %d" % sent)
    bad = subprocess.run([ctx.ember, "--no-api", "--config-file", path, "--net-poll-us", "1001"],
                         capture_output=True, text=True)
    check(bad.returncode == 1 and "--net-poll-us" in bad.stderr, "out-of-range --net-poll-us: %r"
          % bad.stderr)


@test("fast")
def test_net_two_interfaces_and_a_drive(ctx):
    """Several devices per VM: a drive and two interfaces (slots 0xd0000000..,
    GSIs 5, 6, 7). The guest probes both NICs with their own MAC and MTU from
    config space, answers the host's ping on the first, and reads the drive."""
    import json
    with NetNS() as ns:
        ns_run = ["ip", "-n", ns.name]
        subprocess.run(ns_run + ["tuntap", "add", "dev", "tap1", "mode", "tap"], check=True)
        subprocess.run(ns_run + ["link", "set", "tap1", "up"], check=True)
        img = os.path.join(ctx.workdir, "d.img")
        with open(img, "wb") as f:  # the guest's pattern: sector s holds <s, seed> x 32
            f.write(b"".join(struct.pack("<QQ", s, 77) * 32 for s in range(2048)))
        cfg = guest_config(ctx.guest("guest-pvh.elf"), boot_args="smp=0 net-ip=%s net-echo=%d "
                           "net-timeout=60 blk-read=0,77" % (GUEST_IP, ECHO_PORT))
        cfg["drives"] = [{"drive_id": "d0", "path_on_host": img, "is_root_device": False,
                          "is_read_only": True}]
        cfg["network-interfaces"] = [
            {"iface_id": "n0", "host_dev_name": ns.tap, "guest_mac": GUEST_MAC},
            {"iface_id": "n1", "host_dev_name": "tap1", "guest_mac": "06:00:ac:10:01:09",
             "mtu": 1400}]
        path = os.path.join(ctx.workdir, "vm.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        g = Guest(ns.prefix() + [ctx.ember, "--no-api", "--config-file", path], cwd=ctx.workdir)
        try:
            g.wait_line("net0: ready")
            cmdline = [l for l in g.out if l.startswith("cmdline:")]
            check(cmdline and all("virtio_mmio.device=4K@0x%x:%d" % (0xd0000000 + 0x1000 * i, 5 + i)
                                  in cmdline[0] for i in range(3)), "device entries: %r" % cmdline)
            n1 = [l for l in g.out if l.startswith("net1: mac=")]
            check(n1 and "mac=6:0:ac:10:1:9 " in n1[0] and "mtu=1400 " in n1[0],
                  "second NIC's config space: %r\n%s" % (n1, g.describe()))
            ping = ns.exec(["ping", "-c", "3", "-i", "0.2", "-W", "5", GUEST_IP], timeout=60)
            check(ping.returncode == 0, "ping over the first NIC failed\n" + g.describe())
            ns.exec([sys.executable, "-c", UDP_SENDER, GUEST_IP, str(ECHO_PORT), "10", "echo"],
                    timeout=60)
            rc = g.finish()
            check(rc == 0, "exit status %s\n%s" % (rc, g.describe()))
            check(any(l.startswith("blk0: read-check ok") for l in g.out),
                  "the drive next to the NICs\n" + g.describe())
        finally:
            g.kill()


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--qemu", required=True, help="guest-pvh.elf")
    a = ap.parse_args()

    class C:
        workdir = "/tmp"
    for fn in (run_ping_echo, run_rx_stall):
        t0 = time.monotonic()
        fn(C(), qemu_kernel=os.path.abspath(a.qemu))
        print("PASS (qemu) %s %.2fs" % (fn.__name__, time.monotonic() - t0))
