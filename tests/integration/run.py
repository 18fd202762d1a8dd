#!/usr/bin/env python3
"""run.py - run one group of Ember's integration tests and print
`N passed, N failed`. Exit status 0 only if every test passed.

  run.py --group fast|slow --ember build/ember --guest-dir build/guest [--images build/images] [-k NAME]
"""
import argparse
import importlib
import os
import shutil
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# Every tests/integration/test_*.py module registers its tests with @harness.test(group).
MODULES = sorted(f[:-3] for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", choices=["fast", "slow", "nested"], required=True)
    ap.add_argument("--ember", required=True)
    ap.add_argument("--guest-dir", required=True)
    ap.add_argument("--images")
    ap.add_argument("-k", dest="filter")
    a = ap.parse_args()
    for m in MODULES:
        importlib.import_module(m)
    # Orphans (daemons a test started) come back to us, so nothing outlives its test.
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    passed = failed = 0
    for group, fn in harness.TESTS:
        if group != a.group or (a.filter and a.filter not in fn.__name__):
            continue
        work = harness.scratch_dir()
        ctx = harness.Ctx(a.ember, a.guest_dir, a.images, work)
        t0 = time.monotonic()

        def watchdog(_sig, _frame, name=fn.__name__, limit=fn.timeout):
            raise harness.TestTimeout("%s: still running after its %d s limit (the traceback "
                                      "shows what it was waiting for)" % (name, limit))

        signal.signal(signal.SIGALRM, watchdog)
        signal.alarm(fn.timeout)
        try:
            fn(ctx)
            signal.alarm(0)
            passed += 1
            print("PASS %-40s %6.2fs" % (fn.__name__, time.monotonic() - t0), flush=True)
            shutil.rmtree(work, ignore_errors=True)
        except Exception:
            signal.alarm(0)
            failed += 1
            print("FAIL %-40s %6.2fs (scratch kept in %s)" % (fn.__name__, time.monotonic() - t0, work),
                  flush=True)
            traceback.print_exc()
        left = harness.kill_children()
        if left:
            print("     (%d process(es) the test left running were killed)" % left, flush=True)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
