"""test_virtio_hostile.py - a hostile test guest against Ember's virtio-blk:
descriptor loops, chains longer than the queue, addresses past RAM, addr+len
overflow, nested indirect tables, zero-length buffers, rings outside RAM, a
notification storm, an avail index jump. For each: Ember survives (the guest
finishes and Ember exits 0), the bad request fails (no OK status, or
DEVICE_NEEDS_RESET), the other drive keeps working, the same drive works
after a reset, and Ember's log names the drive."""
import hashlib
import re

from harness import check, guest_config, run_ember, test
from test_virtio_blk import drive, make_image

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
