#!/usr/bin/env bash
# demo.sh - from a fresh Debian 12 machine (as root): install what is
# missing, build Ember, the test guest and the Linux images, then boot
#   1. Ember's own test guest (a few milliseconds), and
#   2. the Linux kernel built here, with a busybox initramfs, through user space.
# The boots need KVM, so they run through tools/with-kvm: here if /dev/kvm works,
# else in a nested KVM machine (QEMU's emulator with kvm_amd inside; README, "Hosts
# without KVM"). The console is shown as it happens; boot times come from Ember's log.
#   demo.sh            everything
#   demo.sh --boot     only the two boots (what with-kvm runs)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}

if [ "${1:-}" != "--boot" ]; then
  command -v make >/dev/null && command -v gcc >/dev/null || {
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q build-essential; }
  tools/install-deps.sh
  make -j2 all
  make images
  exec tools/with-kvm -t 1800 -- "$0" --boot
fi

work=$(mktemp -d /tmp/ember-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo
echo "=== 1. Ember's test guest (tests/guest): PVH entry, 2 vCPUs, 128 MiB ==="
cat > "$work/guest.json" <<JSON
{
  "boot-source": {"kernel_image_path": "$PWD/$BUILD/guest/guest-pvh.elf",
                  "boot_args": "demo hello from the command line"},
  "machine-config": {"vcpu_count": 2, "mem_size_mib": 128, "smt": false}
}
JSON
"$BUILD/ember" --no-api --config-file "$work/guest.json" </dev/null || true

echo
echo "=== 2. Linux 6.1 (built from linux-source-6.1) with a busybox initramfs ==="
args="console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux ember.cmd=\"echo hello from Linux user space\""
if [ -e /sys/module/kvm_pvm ]; then
  # A PVM host (shared/HOST-NOTES.md of 2026-11-22): our kernel's gated patches need these flags.
  args="$args $(cat "$BUILD/images/cmdline-host.txt")"
fi
cat > "$work/linux.json" <<JSON
{
  "boot-source": {"kernel_image_path": "$PWD/$BUILD/images/vmlinux",
                  "initrd_path": "$PWD/$BUILD/images/initramfs.cpio",
                  "boot_args": $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$args")},
  "machine-config": {"vcpu_count": 1, "mem_size_mib": 256, "smt": false}
}
JSON
set +e
"$BUILD/ember" --no-api --config-file "$work/linux.json" </dev/null | tee "$work/console.log"
status=${PIPESTATUS[0]}
set -e
echo
echo "=== Ember exited with status $status ==="
echo "How far the guest got:"
for m in "Linux version" "smp: Brought up" "Memory:" "Run /init as init process" \
         "ember-init: user space up" "hello from Linux user space" "ember-init: command exited"; do
  line=$(grep -m1 -F "$m" "$work/console.log" || true)
  [ -n "$line" ] && echo "  reached: $line" || echo "  not reached: $m"
done
exit "$status"
