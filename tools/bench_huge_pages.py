#!/usr/bin/env python3
"""bench_huge_pages.py - boot time and host memory of a Linux guest with machine-config
huge_pages None, Transparent and 2M (issue 10), the three interleaved in each round.

  tools/with-kvm -- python3 tools/bench_huge_pages.py --ember build/ember --images build/images
                    [-n 5] [--mem 256] [--touch-mib 64] [--json FILE]

The guest: build/images/vmlinux + initramfs.cpio, 1 vCPU, --mem MiB. Its init runs a command
that prints `ember-hp-booted`, then has `dd` allocate and fill a --touch-mib buffer (so guest RAM
really gets used), then prints `ember-hp-ready` and sleeps.

Per run (stdout read unbuffered, each line stamped as it arrives):
  boot   exec -> `ember-hp-booted` (Linux up to its first user-space command)
  host memory once `ember-hp-ready` is seen, from /proc/PID/smaps summed over every mapping:
         Rss (4 KiB and transparent huge pages; hugetlb pages are not in it), AnonHugePages
         (the transparent huge pages within Rss), and Private_Hugetlb + Shared_Hugetlb (the 2M
         hugetlbfs pages); "backing" = Rss + hugetlb is what the VM holds of host RAM.
  in use   the 2M pool's HugePages_Total - HugePages_Free, as /proc/meminfo counts it.

For 2M the tool reserves enough pages (--mem / 2 + 16) in /proc/sys/vm/nr_hugepages, and puts
the old value back at the end, whatever happens. Prints a table of medians [min..max] and
writes JSON with every sample.
"""
import argparse
import json
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time

MODES = ("None", "Transparent", "2M")
LINUX_ARGS = "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux"
BOOTED, READY = "ember-hp-booted", "ember-hp-ready"
TIMEOUT_S = 300.0
NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages"


def read_int(path):
    with open(path) as f:
        return int(f.read().split()[0])


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = int(v.split()[0])
    return out


def smaps_kib(pid):
    """{Rss, AnonHugePages, Hugetlb} in KiB over every mapping of `pid`."""
    tot = {"Rss": 0, "AnonHugePages": 0, "Hugetlb": 0}
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Rss", "AnonHugePages"):
                tot[k] += int(v.split()[0])
            elif k in ("Private_Hugetlb", "Shared_Hugetlb"):
                tot["Hugetlb"] += int(v.split()[0])
    return tot


def one_run(ember, cfg_path):
    """Boot once; (boot_s, memory dict) or raise RuntimeError naming what went wrong."""
    t0 = time.monotonic()
    p = subprocess.Popen([ember, "--no-api", "--config-file", cfg_path], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    buf, booted, out = b"", None, b""
    try:
        deadline = t0 + TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("no `%s` within %g s; console tail: %r" %
                                   (READY, TIMEOUT_S, out[-400:]))
            if not sel.select(min(left, 1.0)):
                continue
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError("Ember exited (%s) before `%s`; stderr: %s; console: %r" %
                                   (p.wait(), READY, p.stderr.read()[-400:], out[-400:]))
            out += chunk
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                text = line.decode("utf-8", "replace").strip()
                if text == BOOTED and booted is None:
                    booted = time.monotonic() - t0
                elif text == READY:
                    if booted is None:
                        raise RuntimeError("`%s` before `%s`" % (READY, BOOTED))
                    mem = smaps_kib(p.pid)
                    mi = meminfo()
                    mem["HugetlbInUse"] = (mi["HugePages_Total"] - mi["HugePages_Free"]) * \
                        mi["Hugepagesize"]
                    return booted, mem
    finally:
        sel.close()
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stdout.close()
        p.stderr.close()


def spread(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ember", required=True)
    ap.add_argument("--images", required=True, help="directory with vmlinux and initramfs.cpio")
    ap.add_argument("-n", type=int, default=5, help="rounds (each boots all three modes)")
    ap.add_argument("--mem", type=int, default=256, help="guest memory, MiB")
    ap.add_argument("--touch-mib", type=int, default=64, help="what the guest's dd fills, MiB")
    ap.add_argument("--json", help="write every sample and the summary here")
    a = ap.parse_args()
    kernel = os.path.abspath(os.path.join(a.images, "vmlinux"))
    initrd = os.path.abspath(os.path.join(a.images, "initramfs.cpio"))
    for path in (kernel, initrd, a.ember):
        if not os.path.exists(path):
            sys.exit("bench_huge_pages: %s does not exist (make images / make)" % path)
    cmd = ("echo %s; dd if=/dev/zero of=/dev/null bs=%dM count=1 2>/dev/null; echo %s; "
           "sleep 1000" % (BOOTED, a.touch_mib, READY))
    tmp = tempfile.mkdtemp(prefix="ember-bench-hp-")
    cfgs = {}
    for mode in MODES:
        cfg = {"boot-source": {"kernel_image_path": kernel, "initrd_path": initrd,
                               "boot_args": '%s ember.cmd="%s"' % (LINUX_ARGS, cmd)},
               "machine-config": {"vcpu_count": 1, "mem_size_mib": a.mem, "smt": False,
                                  "huge_pages": mode}}
        cfgs[mode] = os.path.join(tmp, "vm-%s.json" % mode)
        with open(cfgs[mode], "w") as f:
            json.dump(cfg, f)
    old_nr = read_int(NR_HUGEPAGES)
    samples = {m: [] for m in MODES}
    failures = []
    print("Linux %s + %s, %d MiB, 1 vCPU; the guest fills %d MiB; %d rounds of %s" %
          (kernel, initrd, a.mem, a.touch_mib, a.n, ", ".join(MODES)), flush=True)
    try:
        with open(NR_HUGEPAGES, "w") as f:
            f.write(str(a.mem // 2 + 16))
        for r in range(a.n):
            for mode in MODES:
                try:
                    boot, mem = one_run(a.ember, cfgs[mode])
                except RuntimeError as e:
                    failures.append("%s round %d: %s" % (mode, r + 1, e))
                    print("  %s round %d FAILED: %s" % (mode, r + 1, e), flush=True)
                    continue
                mem["boot_s"] = boot
                samples[mode].append(mem)
            print("  round %d/%d done" % (r + 1, a.n), flush=True)
    finally:
        with open(NR_HUGEPAGES, "w") as f:
            f.write(str(old_nr))
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)
    summary = {}
    print("\n%-12s %-24s %-22s %-22s %-22s %-22s" % ("huge_pages", "boot (s)", "Rss (MiB)",
          "AnonHugePages (MiB)", "hugetlb (MiB)", "backing (MiB)"))
    for mode in MODES:
        s = samples[mode]
        if not s:
            print("%-12s no successful run" % mode)
            continue
        row = {"boot_s": spread([x["boot_s"] for x in s]),
               "rss_mib": spread([x["Rss"] / 1024 for x in s]),
               "anon_huge_mib": spread([x["AnonHugePages"] / 1024 for x in s]),
               "hugetlb_mib": spread([x["Hugetlb"] / 1024 for x in s]),
               "backing_mib": spread([(x["Rss"] + x["Hugetlb"]) / 1024 for x in s]),
               "hugetlb_in_use_mib": spread([x["HugetlbInUse"] / 1024 for x in s])}
        summary[mode] = row
        print("%-12s %-24s %-22s %-22s %-22s %-22s" % (mode, *(
            "%.2f [%.2f..%.2f]" % (row[k]["median"], row[k]["min"], row[k]["max"])
            for k in ("boot_s", "rss_mib", "anon_huge_mib", "hugetlb_mib", "backing_mib"))))
    for f in failures:
        print("failed: " + f)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"mem_mib": a.mem, "touch_mib": a.touch_mib, "samples": samples,
                       "summary": summary, "failures": failures}, f, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
