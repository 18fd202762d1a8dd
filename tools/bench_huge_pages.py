"""bench_huge_pages.py EMBER KERNEL - boot time (Guest-boot-time) and peak RSS (ru_maxrss) of the
test guest (512 MiB, exit=debug) with huge_pages None / Transparent / 2M, 7 runs interleaved;
reserves 300 2M pages and sets nr_hugepages back to 0 at the end. Run it as root through
tools/with-kvm (issue 10 measurement)."""
import json, os, re, statistics, subprocess, sys, tempfile
ember, kernel = sys.argv[1], sys.argv[2]
open("/proc/sys/vm/nr_hugepages", "w").write("300")
res = {m: {"boot": [], "rss": [], "wall": []} for m in ("None", "Transparent", "2M")}
d = tempfile.mkdtemp()
for i in range(7):
    for m in res:
        cfg = {"boot-source": {"kernel_image_path": kernel, "boot_args": "exit=debug"},
               "machine-config": {"vcpu_count": 1, "mem_size_mib": 512, "huge_pages": m}}
        p = os.path.join(d, "vm.json"); json.dump(cfg, open(p, "w"))
        import time; t0 = time.monotonic()
        pr = subprocess.Popen([ember, "--no-api", "--config-file", p], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        err = pr.stderr.read().decode(); _, st, ru = os.wait4(pr.pid, 0)
        wall = time.monotonic() - t0
        b = re.search(r"Guest-boot-time = (\d+) us", err)
        if not b: print(m, "no boot time:", err[-300:]); continue
        res[m]["boot"].append(int(b.group(1)) / 1000); res[m]["rss"].append(ru.ru_maxrss / 1024)
        res[m]["wall"].append(wall * 1000)
for m, r in res.items():
    print("%-12s n=%d boot %.2f ms (%.2f..%.2f)  exec->exit %.1f ms  peak RSS %.2f MiB (%.2f..%.2f)" % (
        m, len(r["boot"]), statistics.median(r["boot"]), min(r["boot"]), max(r["boot"]),
        statistics.median(r["wall"]), statistics.median(r["rss"]), min(r["rss"]), max(r["rss"])))
open("/proc/sys/vm/nr_hugepages", "w").write("0")
