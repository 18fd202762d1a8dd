#!/usr/bin/env python3
"""check_layers.py - Ember's layers point down only: fail on any #include that points up.

  tests/check_layers.py [--self-test]

The layers (README, "Layout"; docs/layers.svg):
  base    vmm/base/    the ground: includes nothing outside itself
  boot    boot/        the ground and itself
  virtio  virtio/      the ground and itself
  api     api/         the ground and itself
  jail    jail/        the ground and itself
  top     vmm/         everything (the VM, vCPUs, device registry, legacy devices, main)
Only product code is checked (tests and tools may include anything). Each violation is printed
as FILE:LINE: LAYER includes PATH (LAYER); the exit status is 1 if there is any.
--self-test checks the checker on made-up files: one that must pass, one that must not.
"""
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
ALLOWED = {
    "base": {"base"},
    "boot": {"boot", "base"},
    "virtio": {"virtio", "base"},
    "api": {"api", "base"},
    "jail": {"jail", "base"},
    "top": {"top", "base", "boot", "virtio", "api", "jail"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of(path):
    """The layer of a repository-relative path, or None if it is not product code."""
    parts = path.split("/")
    if parts[0] == "vmm":
        return "base" if len(parts) > 2 and parts[1] == "base" else "top"
    if parts[0] in ("boot", "virtio", "api", "jail"):
        return parts[0]
    return None


def violations(sources):
    """sources: {relative path: text}. Returns [(path, line number, included path, why)]."""
    out = []
    for path, text in sorted(sources.items()):
        mine = layer_of(path)
        if mine is None:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            target = os.path.normpath(os.path.join(os.path.dirname(path), m.group(1)))
            theirs = layer_of(target)
            if theirs is None:
                if not target.startswith(("build/", "..")):
                    out.append((path, n, target, "outside every layer"))
                continue
            if theirs not in ALLOWED[mine]:
                out.append((path, n, target, "%s includes %s" % (mine, theirs)))
    return out


def product_sources():
    src = {}
    for top in ("vmm", "boot", "virtio", "api", "jail"):
        for d, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith((".c", ".h")):
                    p = os.path.join(d, f)
                    with open(p, encoding="utf-8") as fh:
                        src[os.path.relpath(p, ROOT)] = fh.read()
    return src


def self_test():
    good = {"vmm/base/log.c": '#include "log.h"\n#include "config.h"\n',
            "virtio/blk.c": '#include "blk.h"\n#include "../vmm/base/err.h"\n',
            "vmm/vm.c": '#include "../virtio/blk.h"\n#include "../api/routes.h"\n'}
    bad = {"vmm/base/guest_mem.c": '#include "../../boot/layout.h"\n',
           "api/routes.c": '#include "../vmm/vm.h"\n',
           "virtio/net.c": '#include "../jail/seccomp.h"\n'}
    assert violations(good) == [], violations(good)
    got = violations(bad)
    assert len(got) == 3, got
    assert {g[0] for g in got} == set(bad), got
    print("check_layers self-test: 0 violations in the good set, %d of %d in the bad set" % (
        len(got), len(bad)))


def main():
    self_test()
    if sys.argv[1:] == ["--self-test"]:
        return 0
    src = product_sources()
    bad = violations(src)
    for path, n, target, why in bad:
        print("%s:%d: %s (%s)" % (path, n, target, why))
    print("check_layers: %d files, %d include(s) pointing up a layer" % (len(src), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
