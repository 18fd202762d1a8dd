/* cpuid.h - the CPUID table the guest sees, and CPU template files.
 *
 * The table starts from KVM_GET_SUPPORTED_CPUID and is normalized: the
 * hypervisor bit set, TSC-deadline advertised when KVM emulates it, APIC ids
 * and topology leaves (1, 4, 0xb, 0x1f) describing `n` single-thread cores
 * (or n/2 cores of two threads with machine-config.smt),
 * no PMU leaf (0xa). A CPU template file (Firecracker's custom template JSON:
 * "cpuid_modifiers" with per-register 32-bit bitmaps of 0/1/x, and
 * "msr_modifiers" with 64-bit bitmaps) is applied on top, so a host's quirks
 * can be masked without rebuilding Ember.
 */
#ifndef EMBER_CPUID_H
#define EMBER_CPUID_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#define CPUID_MAX_ENTRIES 256
#define CPU_TEMPLATE_MAX 64

struct cpuid_table {
    unsigned n;
    struct kvm_cpuid_entry2 e[CPUID_MAX_ENTRIES];
};

enum cpuid_reg { CPUID_EAX = 0, CPUID_EBX, CPUID_ECX, CPUID_EDX };

struct cpuid_modifier {
    uint32_t leaf, subleaf;
    enum cpuid_reg reg;
    uint32_t mask;  /* bits the template decides */
    uint32_t value; /* their values */
};

struct msr_modifier {
    uint32_t addr;
    uint64_t mask;
    uint64_t value;
};

struct cpu_template {
    unsigned n_cpuid;
    struct cpuid_modifier cpuid[CPU_TEMPLATE_MAX];
    unsigned n_msr;
    struct msr_modifier msr[CPU_TEMPLATE_MAX];
};

int cpuid_get_supported(int kvm_fd, struct cpuid_table *t);
/* smt: two threads per core in leaves 1, 4, 0xb and 0x1f (n_vcpus is 1 or
 * even); else n_vcpus single-thread cores. */
void cpuid_normalize(struct cpuid_table *t, unsigned n_vcpus, bool tsc_deadline, bool smt);
/* Per-vCPU fix-ups (APIC id) of a normalized table. */
void cpuid_for_vcpu(struct cpuid_table *t, unsigned index);
struct kvm_cpuid_entry2 *cpuid_find(struct cpuid_table *t, uint32_t leaf, uint32_t subleaf);

/* Parse a template from text / a file; errors name the JSON field. */
int cpu_template_parse(const char *text, struct cpu_template *tpl);
int cpu_template_load(const char *path, struct cpu_template *tpl);
/* Apply the cpuid modifiers; a leaf absent from the table is added. */
int cpu_template_apply_cpuid(const struct cpu_template *tpl, struct cpuid_table *t);

#endif
