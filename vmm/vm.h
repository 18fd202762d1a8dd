/* vm.h - one microVM: KVM handles, guest RAM, buses, legacy devices, vCPUs.
 *
 * vm_create() checks /dev/kvm and builds the VM (irqchip, PIT, memory);
 * vm_boot() loads the kernel and starts the vCPU threads; vm_attach() puts
 * its fds on the main loop; vm_finish() stops the vCPUs and returns the
 * process exit status.
 *
 * Exit statuses (documented in README.md):
 *   0   guest reset/reboot (i8042 reset, KVM system-event reset/shutdown)
 *   1   configuration or setup error (one line on stderr says what)
 *   2   unexpected VMM error at run time
 *   3   guest triple fault (KVM_EXIT_SHUTDOWN)
 *   4   KVM could not run the guest (internal/emulation error, failed entry)
 *   5   guest kernel panic (seen on the console, then the guest reset)
 */
#ifndef EMBER_VM_H
#define EMBER_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../boot/boot.h"
#include "boot_timer.h"
#include "bus.h"
#include "config.h"
#include "cpuid.h"
#include "evloop.h"
#include "guest_mem.h"
#include "i8042.h"
#include "serial.h"
#include "vdev.h"

enum ember_exit {
    EMBER_EXIT_OK = 0,
    EMBER_EXIT_ERROR = 1,
    EMBER_EXIT_UNEXPECTED = 2,
    EMBER_EXIT_TRIPLE_FAULT = 3,
    EMBER_EXIT_KVM_ERROR = 4,
    EMBER_EXIT_GUEST_PANIC = 5,
};

struct vcpu {
    struct vm *vm;
    unsigned index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool started;
};

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
    int irqfds[24];   /* eventfd per GSI that has a device, -1 otherwise */
    unsigned n_vdevs; /* virtio devices (vdev.h) */
    struct vdev vdevs[VDEV_MAX];

    unsigned n_vcpus;
    struct vcpu vcpus[CONFIG_MAX_VCPUS];

    int exit_efd;           /* the event loop's wake-up when the VM must end */
    atomic_int exit_status; /* -1 until the first exit request */
    char exit_reason[256];
    struct boot_timer boot_timer;

    /* Main-thread event loop hooks (vm_attach). */
    struct evloop *ev;
    struct ev_handler ev_exit, ev_stdin, ev_serial;
    bool stdin_on, stdin_eof;

    /* Pause: vCPU threads park on resume_cond while `paused`. */
    pthread_mutex_t pause_lock;
    pthread_cond_t parked_cond, resume_cond;
    bool paused;
    unsigned n_started, n_parked;
    bool stdin_raw; /* the terminal was put in raw mode and must be restored */
};

int vm_create(struct vm *vm, const struct vm_config *cfg, const struct vm_options *opt);
int vm_boot(struct vm *vm, const struct vm_config *cfg, const struct vm_options *opt);
/* Register the VM's fds (exit, console) with the caller's loop, run it
 * until vm_exited(), then vm_finish() stops the vCPUs and returns the status. */
int vm_attach(struct vm *vm, struct evloop *ev);
bool vm_exited(struct vm *vm);
int vm_finish(struct vm *vm);

/* Stop every vCPU outside KVM_RUN (returns once all are parked) / let them go. */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
bool vm_is_paused(struct vm *vm);
/* Called by a vCPU thread between KVM_RUN calls. */
void vcpu_park_if_paused(struct vcpu *v);
void vm_destroy(struct vm *vm);

/* Ask the VM to end with `status`; the first request wins. Callable from any
 * thread (vCPU threads use it for resets, faults and errors). */
void vm_request_exit(struct vm *vm, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The eventfd that raises interrupt `gsi` in the guest (edge). */
int vm_irqfd(struct vm *vm, unsigned gsi);

/* Default kernel command line when boot-source.boot_args is not given. */
#define VM_DEFAULT_BOOT_ARGS                                                                       \
    "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux i8042.nopnp "         \
    "i8042.dumbkbd"

#endif
