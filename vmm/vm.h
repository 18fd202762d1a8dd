/* vm.h - one microVM: KVM handles, guest RAM, buses, legacy devices, virtio
 * devices, vCPUs.
 *
 * vm_create() checks /dev/kvm and builds the VM (memory, devices, irqchip,
 * PIT, vCPUs), on a spare VM made earlier (vm_spare_make) if it is given one;
 * vm_load_kernel() loads a kernel and sets up the vCPUs for its
 * entry (a snapshot restore sets them from the snapshot instead, vmm/snapshot.h);
 * vm_attach() puts its fds on the main loop; vm_start() starts the vCPU
 * threads; vm_finish() stops them and returns the process exit status
 * (vcpu.h's table).
 *
 * A pause parks the vCPUs, then quiesces every device: what is in flight
 * completes, held chains go back to their rings, and nothing writes guest
 * memory until the resume. A paused VM's state can be saved (vm_save_*).
 */
#ifndef EMBER_VM_H
#define EMBER_VM_H

#include <stdbool.h>
#include <stdint.h>

#include "../boot/boot.h"
#include "base/bus.h"
#include "base/config.h"
#include "base/evloop.h"
#include "base/guest_mem.h"
#include "boot_timer.h"
#include "cpuid.h"
#include "i8042.h"
#include "serial.h"
#include "vcpu.h"
#include "vdev.h"

/* What a VM needs from KVM before its configuration is known: /dev/kvm opened
 * and checked, an empty VM, and the CPUID KVM supports. Made at process start
 * while the API waits for its first request, so that neither InstanceStart nor
 * a snapshot load waits for KVM_CREATE_VM (the slowest ioctl of a restore).
 * With a guessed RAM size it also holds that much untouched anonymous RAM with
 * its KVM memory slots registered (before any irqchip, when that is cheap): a
 * VM of that size takes it as it is, or maps its snapshot's memory file over it
 * in place, without a slot change; a VM of another size drops it. */
struct vm_spare {
    int kvm_fd, vm_fd; /* -1: none */
    int run_size;
    bool tsc_deadline;
    struct cpuid_table cpuid; /* KVM_GET_SUPPORTED_CPUID */
    struct guest_mem mem;     /* host NULL: none */
};

/* mem_mib: the RAM to hold ready (0: none; without it the spare is still
 * made). 0, or -errno with err_msg() set (s holds no fds then). */
int vm_spare_make(struct vm_spare *s, uint64_t mem_mib);
void vm_spare_close(struct vm_spare *s);

struct vm_options {
    enum boot_protocol boot_proto; /* forced entry protocol, AUTO by default */
    const char *cpu_template_path; /* NULL: none */
    /* Guest RAM: anonymous (false), or the memory file mem_fd mapped
     * MAP_PRIVATE (a restore; vm_create takes the fd, even on failure). */
    bool mem_from_file;
    int mem_fd;
    /* NULL, or a spare VM (vm_spare_make) that vm_create takes, whether it
     * succeeds or not; it is left empty (fds -1). */
    struct vm_spare *spare;
};

struct vm {
    int kvm_fd;
    int vm_fd;
    int run_size;
    struct guest_mem mem;
    struct bus pio;
    struct bus mmio;
    struct cpuid_table cpuid; /* normalized, before per-vCPU fix-ups */
    bool track_dirty;         /* KVM_MEM_LOG_DIRTY_PAGES on every slot */
    int uffd, uffd_sock;      /* a Uffd restore: guest RAM's userfaultfd, the handler's socket */

    struct serial serial;
    struct i8042 i8042;
    struct boot_timer boot_timer;
    int serial_irq, i8042_irq; /* irqfds of the legacy devices, -1 until made */
    struct vdevs vdevs;

    unsigned n_vcpus;
    struct vcpu vcpus[CONFIG_MAX_VCPUS];
    struct vcpu_ctl ctl; /* pause, resume, the exit request */

    /* Main-thread event loop hooks (vm_attach). */
    struct evloop *ev;
    struct ev_handler ev_exit, ev_stdin, ev_serial;
    bool stdin_on, stdin_eof;
    bool stdin_raw; /* the terminal was put in raw mode and must be restored */
};

int vm_create(struct vm *vm, const struct vm_config *cfg, const struct vm_options *opt);
/* Load cfg's kernel (and initrd, command line) into guest RAM and set every
 * vCPU up for its entry. */
int vm_load_kernel(struct vm *vm, const struct vm_config *cfg, const struct vm_options *opt);
/* Start the vCPU threads; `paused`: they park before their first KVM_RUN and
 * the devices stay quiesced (a restore without resume_vm) until vm_resume. */
int vm_start(struct vm *vm, bool paused);
/* Register the VM's fds (exit, console, devices) with the caller's loop, run it
 * until vm_exited(), then vm_finish() stops the vCPUs and returns the status. */
int vm_attach(struct vm *vm, struct evloop *ev);
bool vm_exited(struct vm *vm);
int vm_finish(struct vm *vm);
void vm_destroy(struct vm *vm);

/* Stop every vCPU outside KVM_RUN (returns once all are parked; -ESHUTDOWN
 * if the VM is exiting) / let them go. */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
bool vm_is_paused(struct vm *vm);
/* What KVM keeps for the whole VM: kvmclock, the PIC pair and IOAPIC, the PIT. */
struct vm_kvm_state {
    struct kvm_clock_data clock;
    struct kvm_irqchip irqchip[3]; /* KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE, _IOAPIC */
    struct kvm_pit_state2 pit;
};
/* The legacy devices' guest-visible state. */
struct vm_legacy_state {
    struct serial_state serial;
    struct i8042_state i8042;
    uint64_t boot_time_us; /* the boot timer fired (0: not yet) */
};
/* Paused VM: read them. */
int vm_save_kvm_state(struct vm *vm, struct vm_kvm_state *s);
void vm_save_legacy(struct vm *vm, struct vm_legacy_state *s);
/* Into a VM just built: the irqchip and PIT (before the vCPUs' own state), and
 * kvmclock (after it; `realtime`: advanced by the wall-clock time since the
 * save, KVM_CLOCK_REALTIME); -EINVAL naming the piece if it does not fit. */
int vm_restore_irqchip(struct vm *vm, const struct vm_kvm_state *s);
int vm_restore_clock(struct vm *vm, const struct vm_kvm_state *s, bool realtime);
int vm_restore_legacy(struct vm *vm, const struct vm_legacy_state *s);
/* With machine-config.track_dirty_pages (KVM's dirty log on every RAM slot,
 * and the VMM's own writes): the pages written since the last call (or since tracking began): KVM's
 * dirty log OR the VMM's writes, one bit per 4 KiB page by offset into the mapping (words = (mem
 * size / 4096 + 63) / 64). Clears both. */
int vm_take_dirty(struct vm *vm, uint64_t *bits, uint64_t words);

/* Queue Ctrl-Alt-Del on the i8042 (-ENOSPC: its buffer is full). */
int vm_ctrl_alt_del(struct vm *vm);

/* Ask the VM to end with `status`; the first request wins. Any thread. */
void vm_request_exit(struct vm *vm, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Default kernel command line when boot-source.boot_args is not given. */
#define VM_DEFAULT_BOOT_ARGS                                                                       \
    "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux i8042.nopnp "         \
    "i8042.dumbkbd"

#endif
