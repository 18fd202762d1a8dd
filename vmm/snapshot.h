/* snapshot.h - save a paused VM to a snapshot file and a memory file, and build a VM from them.
 *
 * The snapshot file (vmm/base/snapfile.h) holds, one section each: what the
 * snapshot is (SNAP_INFO), the VM's configuration as Firecracker's JSON
 * (SNAP_CONFIG: boot-source, machine-config, drives, network-interfaces,
 * serial; never logger or metrics, which belong to the process), KVM's
 * VM-wide state (SNAP_VM: kvmclock, PIC, IOAPIC, PIT), every vCPU
 * (SNAP_VCPU, index = vCPU), every virtio device (SNAP_DEVICE, index = its
 * slot: its kind and id, its transport, its own state) and the legacy devices
 * (SNAP_LEGACY: serial, i8042, boot timer).
 *
 * The memory file is guest RAM laid out as the VM maps it (below the MMIO gap,
 * then above it), exactly mem_size_mib MiB long. A Full snapshot writes every
 * page that is not zero and leaves holes elsewhere; a Diff snapshot writes
 * only the pages written since the previous snapshot (or the restore), into a
 * file it creates sparse or over an existing copy of the base (which then
 * becomes the later state). tools/rebase-snap lays a Diff file over its base.
 *
 * A load checks the whole snapshot file first, then builds the VM from its
 * configuration (drives reopened from their paths, interfaces attached to the
 * taps in network_overrides or to the saved names), maps the memory (File:
 * MAP_PRIVATE, so clones share its pages; Uffd: a page-fault handler serves
 * them, Firecracker's protocol), and sets every piece of state back. Any
 * failure undoes everything: the process is left as it was before the load.
 */
#ifndef EMBER_SNAPSHOT_H
#define EMBER_SNAPSHOT_H

#include <stdio.h>

#include "base/config.h"
#include "vm.h"

enum snap_section_type {
    SNAP_INFO = 1,
    SNAP_CONFIG = 2,
    SNAP_VM = 3,
    SNAP_VCPU = 4,
    SNAP_DEVICE = 5,
    SNAP_LEGACY = 6,
};

/* A paused VM (cfg: the configuration it was built from): write the snapshot
 * file and the memory file. Errors name the path or the piece that failed;
 * nothing is left at snapshot_path on failure. */
int snapshot_create(struct vm *vm, const struct vm_config *cfg,
                    const struct snapshot_create_params *p);

/* Build *vm from the snapshot (vm_create, state restored, attached to `ev`,
 * vCPU threads started; paused unless p->resume_vm). *cfg receives the
 * restored configuration (its cpu_template kept). On failure *vm is destroyed
 * and *cfg is untouched. The boot timer is re-armed: the guest's next write to
 * its port is logged as the time from the load. */
int snapshot_load(struct vm *vm, struct vm_config *cfg, const struct snapshot_load_params *p,
                  const struct vm_options *opt, struct evloop *ev);

/* --describe-snapshot: check the file and print what it holds (format
 * version, producer, vCPUs, memory, devices, configuration). 0 or -errno. */
int snapshot_describe(const char *path, FILE *out);

#endif
