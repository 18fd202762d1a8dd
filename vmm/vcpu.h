/* vcpu.h - vCPU creation, boot-state setup and the KVM_RUN loop thread.
 *
 * Every vCPU gets the VM's CPUID (with its own APIC id), the boot MSRs, a
 * clean FPU and LAPIC LINT0=ExtINT / LINT1=NMI. Only the BSP gets registers:
 * the others wait for INIT/SIPI from the guest, as on real hardware.
 */
#ifndef EMBER_VCPU_H
#define EMBER_VCPU_H

#include <signal.h>

#include "vm.h"

/* Sent to a vCPU thread to take it out of KVM_RUN. */
#define VCPU_KICK_SIGNAL SIGUSR1

int vcpu_create(struct vm *vm, unsigned index);
int vcpu_setup(struct vcpu *v, const struct cpu_template *tpl);
/* Load the BSP's registers for `entry` (protected mode for PVH, long mode
 * with identity paging for the Linux 64-bit protocol). */
int vcpu_set_boot_regs(struct vcpu *v, const struct boot_entry *entry);
int vcpu_start(struct vcpu *v);
void vcpu_destroy(struct vcpu *v);

#endif
