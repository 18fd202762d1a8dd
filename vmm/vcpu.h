/* vcpu.h - vCPUs: creation, boot-state setup, the KVM_RUN loop threads, and
 * the run control they share (pause, resume, the VM's exit).
 *
 * Every vCPU gets the VM's CPUID (with its own APIC id), the boot MSRs, a
 * clean FPU and LAPIC LINT0=ExtINT / LINT1=NMI. Only the BSP gets registers:
 * the others wait for INIT/SIPI from the guest, as on real hardware.
 *
 * A vCPU thread runs KVM_RUN and hands PIO/MMIO exits to its buses. It
 * leaves its loop when the VM is to exit (any thread may ask, with
 * vcpu_ctl_request_exit) or when it cannot go on (it asks itself); either
 * way it is accounted for, so a pause never waits for a thread that is gone.
 *
 * Exit statuses (README.md's table):
 *   0   guest reset/reboot (i8042 reset, KVM system-event reset/shutdown)
 *   1   configuration or setup error (one line on stderr says what)
 *   2   unexpected VMM error at run time
 *   3   guest triple fault (KVM_EXIT_SHUTDOWN)
 *   4   KVM could not run the guest (internal/emulation error, failed entry)
 *   5   guest kernel panic (seen on the console, then the guest reset)
 */
#ifndef EMBER_VCPU_H
#define EMBER_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "../boot/boot.h"
#include "base/bus.h"
#include "cpuid.h"

enum ember_exit {
    EMBER_EXIT_OK = 0,
    EMBER_EXIT_ERROR = 1,
    EMBER_EXIT_UNEXPECTED = 2,
    EMBER_EXIT_TRIPLE_FAULT = 3,
    EMBER_EXIT_KVM_ERROR = 4,
    EMBER_EXIT_GUEST_PANIC = 5,
};

/* Sent to a vCPU thread to take it out of KVM_RUN. */
#define VCPU_KICK_SIGNAL SIGUSR1

/* The run state a VM's vCPU threads share. */
struct vcpu_ctl {
    pthread_mutex_t lock;
    pthread_cond_t parked_cond, resume_cond;
    bool paused;
    unsigned n_running;     /* threads started and not yet out of their loop */
    unsigned n_parked;      /* of those, parked by a pause */
    atomic_int exit_status; /* -1 until the first exit request */
    char exit_reason[256];
    int exit_efd; /* eventfd written at the first exit request: the main loop's wake-up */
};

struct vcpu {
    struct vcpu_ctl *ctl;
    struct bus *pio, *mmio;
    unsigned index;
    int fd;
    int run_size;
    struct kvm_run *run;
    pthread_t thread;
    bool started;
};

int vcpu_ctl_init(struct vcpu_ctl *c);
void vcpu_ctl_destroy(struct vcpu_ctl *c);
/* Ask the VM to end with `status`; the first request wins. Any thread. */
void vcpu_ctl_request_exit(struct vcpu_ctl *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool vcpu_ctl_exited(struct vcpu_ctl *c);
/* Take every running vCPU out of KVM_RUN and wait until each has parked (or
 * left its loop). 0, or -ESHUTDOWN if the VM is exiting. */
int vcpu_ctl_pause(struct vcpu_ctl *c, struct vcpu *v, unsigned n);
void vcpu_ctl_resume(struct vcpu_ctl *c, struct vcpu *v, unsigned n);
bool vcpu_ctl_paused(struct vcpu_ctl *c);
/* Let every thread out of its loop and join it (after an exit request). */
void vcpu_ctl_stop(struct vcpu_ctl *c, struct vcpu *v, unsigned n);

int vcpu_create(struct vcpu *v, int vm_fd, int run_size, unsigned index, struct vcpu_ctl *ctl,
                struct bus *pio, struct bus *mmio);
/* CPUID (the VM's table, this vCPU's APIC id), MSRs (and the template's), FPU, LAPIC. */
int vcpu_setup(struct vcpu *v, const struct cpuid_table *cpuid, const struct cpu_template *tpl);
/* Load the BSP's registers for `entry` (protected mode for PVH, long mode
 * with identity paging for the Linux 64-bit protocol). */
int vcpu_set_boot_regs(struct vcpu *v, const struct boot_entry *entry);
int vcpu_start(struct vcpu *v);
void vcpu_destroy(struct vcpu *v);

/* A vCPU's state as KVM keeps it, for snapshots (plain data). msrs holds
 * every MSR KVM would read of those the VM lists (vcpu_save's `msr_index`). */
#define VCPU_MAX_MSRS 320
struct vcpu_state {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_xsave xsave;
    struct kvm_xcrs xcrs;
    struct kvm_debugregs debugregs;
    struct kvm_lapic_state lapic;
    struct kvm_mp_state mp_state;
    struct kvm_vcpu_events events;
    uint32_t tsc_khz;
    uint32_t n_msrs, n_cpuid;
    struct kvm_msr_entry msrs[VCPU_MAX_MSRS];
    struct kvm_cpuid_entry2 cpuid[CPUID_MAX_ENTRIES];
};

/* The MSRs KVM can save (KVM_GET_MSR_INDEX_LIST), at most VCPU_MAX_MSRS; the count or -errno. */
int vcpu_msr_index(int kvm_fd, uint32_t *index, unsigned max);
/* Out of KVM_RUN (paused): read everything back. */
int vcpu_save(struct vcpu *v, const uint32_t *msr_index, unsigned n_msrs, struct vcpu_state *s);
/* Into a vCPU just created (not started): CPUID, MP state, registers, FPU
 * state, debug registers, LAPIC, MSRs, pending events, in that order. The
 * message names the vCPU and the piece KVM refused. */
int vcpu_restore(struct vcpu *v, const struct vcpu_state *s);

#endif
