#!/usr/bin/env python3
"""bench_nested.py - the nested KVM machine's own start-up cost (tools/with-kvm --nested).

  bench_nested.py [-n 5] [-m MIB] [--json FILE]

Runs `with-kvm --nested -- true` n times (the kernel and initramfs cached by a first, uncounted
run) and reports, as median and min..max:
  start -> command runs   with-kvm's start until the command inside begins (its `nested
                          machine up after S s` line): QEMU start, the nested kernel's boot,
                          module loading, the 9p root
  start -> exit           the whole run of a command that does nothing: the above plus the
                          power-off and clean-up
This is the fixed cost every group pays once on a host without /dev/kvm. It is the emulator's
time: compare it only with figures from the same host and run.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

WITH_KVM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "with-kvm")


def one(mem):
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, WITH_KVM, "--nested", "-t", "300", "-m", str(mem), "--",
                        "true"], capture_output=True, text=True)
    total = time.monotonic() - t0
    m = re.search(r"nested machine up after ([0-9.]+) s", p.stderr)
    if p.returncode != 0 or not m:
        raise SystemExit("with-kvm --nested -- true failed (exit %d):\n%s" % (p.returncode,
                                                                           p.stderr))
    return float(m.group(1)), total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("-m", dest="mem", type=int, default=8192)
    ap.add_argument("--json")
    a = ap.parse_args()
    print("nested machine start-up (with-kvm --nested -m %d -- true), n=%d" % (a.mem, a.n))
    one(a.mem)  # warm the caches
    up, total = [], []
    for _ in range(a.n):
        u, t = one(a.mem)
        up.append(u)
        total.append(t)
    res = {}
    for name, xs in (("start -> command runs", up), ("start -> exit", total)):
        res[name] = {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}
        print("  %-24s %6.2f s median (%.2f..%.2f)" % (name, res[name]["median"], min(xs), max(xs)))
    print("BENCH_JSON " + json.dumps({"nested_startup": res, "mem_mib": a.mem}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
