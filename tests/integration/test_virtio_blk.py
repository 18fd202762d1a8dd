"""test_virtio_blk.py - virtio-blk with the test guest: a host-prepared
pattern read back, 64 MiB written and flushed and checked on the host after
exit, a read-only drive refusing writes (host file unchanged), GET_ID, several
drives, both engines (Sync and Async), and durability: 20 times the test
SIGKILLs Ember the moment the guest says a record is flushed, and the record
must be in the host file.

Sector pattern (tests/guest/README.md): every 512-byte sector s holds 32 times
the 16 bytes <u64 s, u64 seed> (little endian)."""
import hashlib
import json
import os
import random
import struct
import subprocess
import time

from harness import check, guest_config, read_lines, run_ember, test


def pattern(first, count, seed):
    return b"".join(struct.pack("<QQ", s, seed) * 32 for s in range(first, first + count))


def make_image(ctx, name, sectors, seed=None):
    path = os.path.join(ctx.workdir, name)
    with open(path, "wb") as f:
        if seed is None:
            f.truncate(sectors * 512)
        else:
            for s in range(0, sectors, 2048):
                f.write(pattern(s, min(2048, sectors - s), seed))
    return path


def drive(drive_id, path, ro=False, engine="Sync", cache="Writeback"):
    return {"drive_id": drive_id, "path_on_host": path, "is_root_device": False,
            "is_read_only": ro, "cache_type": cache, "io_engine": engine}


def boot(ctx, drives, args, mem_mib=256, timeout=120):
    cfg = guest_config(ctx.guest("guest-pvh.elf"), boot_args="quiet smp=0 " + args, mem_mib=mem_mib)
    cfg["drives"] = drives
    res = run_ember(ctx, cfg, timeout=timeout)
    check(res.rc == 0, "ember did not exit 0", res)
    check(res.line("guest") == "done", "guest did not finish", res)
    return res


def probe_line(res, i):
    return \
        [dict(kv.split("=", 1) for kv in l.split() if "=" in kv) for l in res.lines("blk%d" % i)
         if l.startswith("capacity=")][0]


def read_pattern(ctx, engine):
    img = make_image(ctx, "a.img", 8192, seed=0x5eed)
    res = boot(ctx, [drive("d0", img, engine=engine)], "blk-read=0,0x5eed")
    p = probe_line(res, 0)
    check(p["capacity"] == "8192" and p["ro"] == "0" and p["id"] == "d0", "probe line %r" % p, res)
    check("read-check ok sectors=8192" in res.lines("blk0"), "pattern read back wrong", res)


@test("fast")
def test_blk_read_pattern_sync(ctx):
    read_pattern(ctx, "Sync")


@test("fast")
def test_blk_read_pattern_async(ctx):
    read_pattern(ctx, "Async")


def write_flush(ctx, engine):
    img = make_image(ctx, "w.img", 64 * 2048 + 2048)  # 65 MiB of zeros
    res = boot(ctx, [drive("d0", img, engine=engine)], "blk-write=0,4242,64 blk-read=0,4242")
    check("write ok sectors=131072 flush-status=0" in res.lines("blk0"), "write/flush failed", res)
    # The guest's own read-back differs after 64 MiB (zeros there): proves reads see the writes.
    check(any(l.startswith("read-check FAIL sector=131072 ") for l in res.lines("blk0")),
          "read-back should fail exactly at the first unwritten sector", res)
    with open(img, "rb") as f:
        for s in range(0, 64 * 2048, 2048):
            got = f.read(2048 * 512)
            check(got == pattern(s, 2048, 4242), "host file differs in MiB %d" % (s // 2048))
        check(f.read() == bytes(2048 * 512), "bytes past 64 MiB changed")


@test("fast")
def test_blk_write_64mib_flush_sync(ctx):
    write_flush(ctx, "Sync")


@test("fast")
def test_blk_write_64mib_flush_async(ctx):
    write_flush(ctx, "Async")


@test("fast")
def test_blk_read_only_rejects_writes(ctx):
    img = make_image(ctx, "ro.img", 2048, seed=7)
    before = hashlib.sha256(open(img, "rb").read()).hexdigest()
    res = boot(ctx, [drive("d0", img, ro=True)], "blk-rowrite=0 blk-read=0,7")
    p = probe_line(res, 0)
    check(p["ro"] == "1", "VIRTIO_BLK_F_RO not offered", res)
    st = [l for l in res.lines("blk0") if l.startswith("ro-write")]
    check(st and st[0].startswith("ro-write status=1 "), "write to a read-only drive must be IOERR (1)", res)
    check("read-check ok sectors=2048" in res.lines("blk0"), "read-only drive must still read", res)
    check(hashlib.sha256(open(img, "rb").read()).hexdigest() == before, "read-only file changed")


@test("fast")
def test_blk_several_drives_get_id(ctx):
    ids = ["rootfs", "data_1", "scratch_drive_xyz"]
    imgs = [make_image(ctx, "m%d.img" % i, 1024 * (i + 1), seed=100 + i) for i in range(3)]
    engines = ["Sync", "Async", "Sync"]
    res = boot(ctx, [drive(ids[i], imgs[i], ro=(i == 1), engine=engines[i]) for i in range(3)],
               " ".join("blk-read=%d,%d" % (i, 100 + i) for i in range(3)))
    for i in range(3):
        p = probe_line(res, i)
        check(p["id"] == ids[i] and p["get-id-status"] == "0", "GET_ID of drive %d: %r" % (i, p), res)
        check(p["capacity"] == str(1024 * (i + 1)), "capacity of drive %d" % i, res)
        check(p["ro"] == ("1" if i == 1 else "0"), "ro flag of drive %d" % i, res)
        check("read-check ok sectors=%d" % (1024 * (i + 1)) in res.lines("blk%d" % i),
              "drive %d read back wrong (drives swapped?)" % i, res)


@test("fast")
def test_blk_indirect_event_idx(ctx):
    img = make_image(ctx, "i.img", 4096, seed=9)
    res = boot(ctx, [drive("d0", img, engine="Async")], "vio-indirect vio-event-idx blk-read=0,9 "
               "blk-bench=0,0,32,2000 blk-read=0,9")
    feats = int(probe_line(res, 0)["features"], 16)
    check(feats & (1 << 28) and feats & (1 << 29), "INDIRECT_DESC/EVENT_IDX not negotiated", res)
    check(res.lines("blk0").count("read-check ok sectors=4096") == 2, "read with indirect/event-idx", res)
    check("bench-end: blk randread ops=2000 bytes=8192000 errors=0" in res.out, "qd32 reads", res)


@test("fast")
def test_blk_durability_sigkill(ctx):
    """20 runs: SIGKILL on the guest's `durable: K` marker; records 0..K must be in the file."""
    losses = []
    for run in range(20):
        seed = 0x1000 + run
        img = make_image(ctx, "dur.img", 2048)
        cfg = guest_config(ctx.guest("guest-pvh.elf"), boot_args="quiet smp=0 blk-durable=0,%d" % seed)
        cfg["drives"] = [drive("d0", img, engine="Async" if run % 2 else "Sync")]
        path = os.path.join(ctx.workdir, "dur.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        target = random.Random(run).randrange(0, 8)
        p = subprocess.Popen([ctx.ember, "--no-api", "--config-file", path], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        seen = None
        try:
            for raw in read_lines(p.stdout, 30, "run %d: the guest's `durable: K` markers up to "
                                  "%d" % (run, target)):
                line = raw.decode("utf-8", "replace").strip()
                if line.startswith("durable: ") and line != "durable: error":
                    seen = int(line.split()[1])
                    if seen >= target:
                        p.kill()
                        break
        except AssertionError as e:
            raise AssertionError("%s; the last marker was %r" % (e, seen))
        finally:
            p.kill()
            p.wait()
        check(seen is not None and seen >= target, "run %d: no durable marker %d (last %r)" % (run, target, seen))
        with open(img, "rb") as f:
            data = f.read((seen + 1) * 512)
        for k in range(seen + 1):
            if data[k * 512:(k + 1) * 512] != pattern(k, 1, seed):
                losses.append((run, k))
    check(not losses, "flushed records lost after SIGKILL: %r" % losses)


@test("fast")
def test_blk_poll_us(ctx):
    """--blk-poll-us: off (0) and on (200 us), a QD32 run reads the right data
    and completes every request; an out-of-range value is refused. (That a
    request added while the device polls is served without a kick is
    test_blk's test_poll_serves_without_kick; kick counts depend on
    scheduling, so they are benchmark figures, not assertions.)"""
    img = make_image(ctx, "p.img", 4096, seed=11)
    cfg = guest_config(ctx.guest("guest-pvh.elf"), mem_mib=256, boot_args="quiet smp=0 vio-event-idx "
                       "blk-read=0,11 blk-bench=0,0,32,20000 blk-read=0,11")
    cfg["drives"] = [drive("d0", img, engine="Async")]
    for poll in ("0", "200"):
        metrics = os.path.join(ctx.workdir, "m%s.json" % poll)
        res = run_ember(ctx, cfg, args=["--blk-poll-us", poll, "--metrics-path", metrics],
                        name="poll" + poll)
        check(res.rc == 0 and res.line("guest") == "done", "guest did not finish", res)
        check(res.lines("blk0").count("read-check ok sectors=4096") == 2, "reads", res)
        check("bench-end: blk randread ops=20000 bytes=81920000 errors=0" in res.out, "qd32", res)
        lines = [json.loads(l) for l in open(metrics)]
        reads = sum(l["block"]["read_count"] for l in lines)
        check(reads >= 20000, "reads counted: %d" % reads, res)
    bad = run_ember(ctx, cfg, args=["--blk-poll-us", "5000"], name="bad")
    check(bad.rc == 1 and "--blk-poll-us" in bad.err, "out-of-range --blk-poll-us accepted", bad)
