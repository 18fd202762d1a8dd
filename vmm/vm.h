/* vm.h - one microVM: KVM handles, guest RAM, buses, legacy devices, virtio
 * devices, vCPUs.
 *
 * vm_create() checks /dev/kvm and builds the VM (memory, devices, irqchip,
 * PIT, vCPUs); vm_boot() loads the kernel and starts the vCPU threads;
 * vm_attach() puts its fds on the main loop; vm_finish() stops the vCPUs and
 * returns the process exit status (vcpu.h's table).
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

struct vm_options {
    enum boot_protocol boot_proto; /* forced entry protocol, AUTO by default */
    const char *cpu_template_path; /* NULL: none */
};

struct vm {
    int kvm_fd;
    int vm_fd;
    int run_size;
    struct guest_mem mem;
    struct bus pio;
    struct bus mmio;
    struct cpuid_table cpuid; /* normalized, before per-vCPU fix-ups */

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
int vm_boot(struct vm *vm, const struct vm_config *cfg, const struct vm_options *opt);
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
