"""test_virtio_hostile.py - a hostile test guest against Ember's virtio-blk:
descriptor loops, chains longer than the queue, addresses past RAM, addr+len
overflow, nested indirect tables, zero-length buffers, rings outside RAM, a
notification storm, an avail index jump. For each: Ember survives (the guest
finishes and Ember exits 0), the bad request fails (no OK status, or
DEVICE_NEEDS_RESET), the other drive keeps working, the same drive works
after a reset, and Ember's log names the drive.

virtio-net gets the same treatment on its TX ring (loop, past RAM, overflow,
nested indirect, shorter than the header, a frame too long) and its RX ring (a
buffer shorter than the header, one past RAM): the chain comes back unused,
Ember logs one line naming the interface, and 200 UDP echoes afterwards all
arrive intact."""
import hashlib
import re
import sys

from harness import check, guest_config, run_ember, test
from test_virtio_blk import drive, make_image
from test_virtio_net import ECHO_PORT, GUEST_IP, UDP_SENDER, NetNS, start_guest

SEED = 77


def hostile(ctx, case, log_required=True, extra=""):
    imgs = [make_image(ctx, "h%d.img" % i, 2048, seed=SEED) for i in range(2)]
    hashes = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in imgs]
    cfg = guest_config(ctx.guest("guest-pvh.elf"), boot_args="quiet smp=0 hostile=%s,%d%s" % (case, SEED, extra))
    cfg["drives"] = [drive("hostile0", imgs[0]), drive("other1", imgs[1])]
    res = run_ember(ctx, cfg, timeout=120)
    check(res.rc == 0, "ember must survive and exit 0", res)
    check(res.line("guest") == "done", "guest did not finish", res)
    what = [l for l in res.lines("hostile") if l.startswith("case=")]
    check(len(what) == 1 and what[0].startswith("case=%s " % case), "hostile case did not run", res)
    if case == "storm":
        check("good-request ok" in res.lines("hostile"), "the request under the storm must complete", res)
    else:
        check("bad-request failed" in res.lines("hostile"), "the bad request did not fail", res)
    check("other-device ok" in res.lines("hostile"), "the other drive stopped working", res)
    check("same-device-after-reset ok" in res.lines("hostile"), "the drive did not recover after a reset", res)
    if log_required:
        check(re.search(r"^.*hostile0.*$", res.err, re.M) and
              any(re.search(r"loop|chain|desc|address|range|overflow|indirect|nest|length|ring|reset|"
                            r"invalid|bad|malformed|outside|avail|index|zero", l, re.I)
                  for l in res.err.splitlines() if "hostile0" in l),
              "no log line about the bad request naming the drive", res)
    for p, h in zip(imgs, hashes):
        check(hashlib.sha256(open(p, "rb").read()).hexdigest() == h, "a drive file changed")
    return res


@test("fast")
def test_hostile_descriptor_loop(ctx):
    hostile(ctx, "loop")


@test("fast")
def test_hostile_chain_longer_than_queue(ctx):
    hostile(ctx, "longchain")


@test("fast")
def test_hostile_address_past_ram(ctx):
    hostile(ctx, "pastram")


@test("fast")
def test_hostile_addr_len_overflow(ctx):
    hostile(ctx, "overflow")


@test("fast")
def test_hostile_nested_indirect(ctx):
    hostile(ctx, "nested")


@test("fast")
def test_hostile_zero_length_buffers(ctx):
    hostile(ctx, "zerolen")


@test("fast")
def test_hostile_rings_outside_ram(ctx):
    hostile(ctx, "ringsout")


def storm(ctx, n):
    res = hostile(ctx, "storm", log_required=False, extra=",%d" % n)
    m = [l for l in res.lines("hostile") if l.startswith("storm ")]
    check(m and "notifies=%d " % n in m[0] + " ", "storm did not run", res)


@test("fast")
def test_hostile_notification_storm(ctx):
    # Each QueueNotify write costs ~85 us on this PVM host even through ioeventfd.
    storm(ctx, 100000)


@test("slow")
def test_hostile_notification_storm_1m(ctx):
    storm(ctx, 1000000)


@test("fast")
def test_hostile_avail_index_jump(ctx):
    hostile(ctx, "availjump")


# ---- virtio-net: one malformed chain, then the interface must still work ----

def net_hostile(ctx, case):
    """The guest hands the interface one malformed chain (TX cases: on the TX
    ring; rx*: RX buffer 0 spoiled before the first frame), then echoes 200
    UDP datagrams from the host. The bad chain comes back unused (length 0,
    no DEVICE_NEEDS_RESET), no echo is lost or corrupted, Ember logs one
    line naming the interface, and it exits 0."""
    with NetNS() as ns:
        g, _ = start_guest(ctx, ns, "net-echo=%d net-timeout=60 net-hostile=%s" % (ECHO_PORT, case))
        try:
            if not case.startswith("rx"):
                line = g.wait_line("net-hostile: ")
                check(line == "net-hostile: case=%s completed=1 id-ok=1 used-len=0 needs-reset=0" % case,
                      "the bad TX chain must come back unused: %r\n%s" % (line, g.describe()))
            g.wait_line("net0: ready")
            udp = ns.exec([sys.executable, "-c", UDP_SENDER, GUEST_IP, str(ECHO_PORT), "200", "echo"],
                          timeout=120)
            res = udp.stdout.decode().strip()
            check(res == "sent=200 echoed=200 bad=0", "UDP echo after the bad chain: %r %s\n%s" % (
                res, udp.stderr.decode(), g.describe()))
            rc = g.finish()
            check(rc == 0, "ember exit status %s\n%s" % (rc, g.describe()))
            if case.startswith("rx"):
                check("net0: bad rx used id=0 len=0" in g.out,
                      "the spoiled RX buffer must come back unused\n" + g.describe())
            err = g.err.decode("utf-8", "replace")
            bad = [l for l in err.splitlines() if "net n0: malformed %s descriptor chain" %
                   ("RX" if case.startswith("rx") else "TX") in l]
            check(len(bad) == 1, "want one log line naming the interface, got %r\n%s" % (bad, g.describe()))
        finally:
            g.kill()


@test("fast")
def test_net_hostile_tx_loop(ctx):
    net_hostile(ctx, "loop")


@test("fast")
def test_net_hostile_tx_past_ram(ctx):
    net_hostile(ctx, "pastram")


@test("fast")
def test_net_hostile_tx_addr_len_overflow(ctx):
    net_hostile(ctx, "overflow")


@test("fast")
def test_net_hostile_tx_nested_indirect(ctx):
    net_hostile(ctx, "nested")


@test("fast")
def test_net_hostile_tx_shorter_than_header(ctx):
    net_hostile(ctx, "short")


@test("fast")
def test_net_hostile_tx_frame_too_long(ctx):
    net_hostile(ctx, "huge")


@test("fast")
def test_net_hostile_rx_buffer_shorter_than_header(ctx):
    net_hostile(ctx, "rxshort")


@test("fast")
def test_net_hostile_rx_buffer_past_ram(ctx):
    net_hostile(ctx, "rxpastram")
