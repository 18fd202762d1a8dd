/* vcpu.c - vCPU setup, the exit loop, and the run control its threads share
 * (pause, resume, exit requests; see vcpu.h). */
#define _GNU_SOURCE
#include "vcpu.h"

#include "../boot/layout.h"
#include "../jail/seccomp.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MSR_IA32_TSC 0x10
#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102

/* A vCPU thread's stack: KVM_RUN and its exits (bus, device registers, a log line) use a few
 * KiB (20 KiB resident, measured); glibc's default is 8 MiB, which on a host with transparent
 * huge pages "always" can fault in as a 2 MiB page. Below 2 MiB no huge page fits. */
#define VCPU_STACK_SIZE (256 * 1024)

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI 0x4
#define APIC_MODE_EXTINT 0x7

/* ---- run control ---------------------------------------------------------- */

int vcpu_ctl_init(struct vcpu_ctl *c)
{
    memset(c, 0, sizeof(*c));
    atomic_init(&c->exit_status, -1);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->parked_cond, NULL);
    pthread_cond_init(&c->resume_cond, NULL);
    c->exit_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->exit_efd < 0)
        return err_set(-errno, "eventfd: %s", strerror(errno));
    return 0;
}

void vcpu_ctl_destroy(struct vcpu_ctl *c)
{
    if (c->exit_efd >= 0)
        close(c->exit_efd);
    c->exit_efd = -1;
    pthread_cond_destroy(&c->parked_cond);
    pthread_cond_destroy(&c->resume_cond);
    pthread_mutex_destroy(&c->lock);
}

bool vcpu_ctl_exited(struct vcpu_ctl *c)
{
    return atomic_load(&c->exit_status) >= 0;
}

void vcpu_ctl_request_exit(struct vcpu_ctl *c, int status, const char *fmt, ...)
{
    int expected = -1;
    if (!atomic_compare_exchange_strong(&c->exit_status, &expected, status))
        return; /* the first reason wins */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->exit_reason, sizeof(c->exit_reason), fmt, ap);
    va_end(ap);
    /* Whoever waits for parked or resumed threads must look again. */
    pthread_mutex_lock(&c->lock);
    pthread_cond_broadcast(&c->parked_cond);
    pthread_cond_broadcast(&c->resume_cond);
    pthread_mutex_unlock(&c->lock);
    uint64_t one = 1;
    if (write(c->exit_efd, &one, sizeof(one)) < 0) {
        /* an eventfd write only fails on overflow, which one write cannot cause */
    }
}

static void kick_handler(int sig)
{
    (void)sig; /* only interrupts KVM_RUN */
}

/* Make every started vCPU leave KVM_RUN (now, or at once if it is not in it). */
static void kick_all(struct vcpu *v, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (!v[i].started)
            continue;
        v[i].run->immediate_exit = 1;
        pthread_kill(v[i].thread, VCPU_KICK_SIGNAL);
    }
}

int vcpu_ctl_pause(struct vcpu_ctl *c, struct vcpu *v, unsigned n)
{
    pthread_mutex_lock(&c->lock);
    c->paused = true;
    kick_all(v, n);
    while (c->n_parked < c->n_running && !vcpu_ctl_exited(c))
        pthread_cond_wait(&c->parked_cond, &c->lock);
    bool exited = vcpu_ctl_exited(c);
    pthread_mutex_unlock(&c->lock);
    return exited ? -ESHUTDOWN : 0;
}

void vcpu_ctl_resume(struct vcpu_ctl *c, struct vcpu *v, unsigned n)
{
    pthread_mutex_lock(&c->lock);
    c->paused = false;
    for (unsigned i = 0; i < n; i++)
        if (v[i].run)
            v[i].run->immediate_exit = 0;
    pthread_cond_broadcast(&c->resume_cond);
    pthread_mutex_unlock(&c->lock);
}

bool vcpu_ctl_paused(struct vcpu_ctl *c)
{
    pthread_mutex_lock(&c->lock);
    bool p = c->paused;
    pthread_mutex_unlock(&c->lock);
    return p;
}

void vcpu_ctl_stop(struct vcpu_ctl *c, struct vcpu *v, unsigned n)
{
    pthread_mutex_lock(&c->lock);
    c->paused = false;
    pthread_cond_broadcast(&c->resume_cond);
    pthread_mutex_unlock(&c->lock);
    kick_all(v, n);
    for (unsigned i = 0; i < n; i++) {
        if (v[i].started)
            pthread_join(v[i].thread, NULL);
        v[i].started = false;
    }
}

/* Between KVM_RUN calls: park while the VM is paused. The exit just handled
 * (a port or MMIO access) is only complete, and the registers past its
 * instruction, after the next KVM_RUN: one with immediate_exit set completes
 * it and returns EINTR without running the guest. Without it a snapshot
 * taken in the pause would replay the access (a console byte twice). */
static void park_if_paused(struct vcpu *v)
{
    struct vcpu_ctl *c = v->ctl;
    pthread_mutex_lock(&c->lock);
    if (c->paused && !vcpu_ctl_exited(c)) {
        v->run->immediate_exit = 1;
        int r = ioctl(v->fd, KVM_RUN, 0);
        if (r == 0 || (errno != EINTR && errno != EAGAIN))
            log_debug("vcpu %u: KVM_RUN completing the last exit: %s", v->index,
                      r == 0 ? "returned 0" : strerror(errno));
        /* Tell a kvmclock guest it was stopped, so its soft-lockup and RCU
         * watchdogs do not count the pause (EINVAL without kvmclock: fine). */
        ioctl(v->fd, KVM_KVMCLOCK_CTRL, 0);
        c->n_parked++;
        pthread_cond_broadcast(&c->parked_cond);
        while (c->paused && !vcpu_ctl_exited(c))
            pthread_cond_wait(&c->resume_cond, &c->lock);
        c->n_parked--;
    }
    pthread_mutex_unlock(&c->lock);
}

/* A thread out of its loop, for whatever reason: a pause no longer waits for it. */
static void leave_loop(struct vcpu *v)
{
    struct vcpu_ctl *c = v->ctl;
    pthread_mutex_lock(&c->lock);
    c->n_running--;
    pthread_cond_broadcast(&c->parked_cond);
    pthread_mutex_unlock(&c->lock);
}

/* ---- creation and set-up ----------------------------------------------------- */

int vcpu_create(struct vcpu *v, int vm_fd, int run_size, unsigned index, struct vcpu_ctl *ctl,
                struct bus *pio, struct bus *mmio)
{
    memset(v, 0, sizeof(*v));
    v->ctl = ctl;
    v->pio = pio;
    v->mmio = mmio;
    v->index = index;
    v->run_size = run_size;
    v->fd = ioctl(vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
    if (v->fd < 0) {
        int e = errno;
        v->fd = -1;
        return err_set(-e, "vcpu %u: KVM_CREATE_VCPU failed: %s", index, strerror(e));
    }
    v->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        int e = errno;
        v->run = NULL;
        return err_set(-e, "vcpu %u: cannot map kvm_run: %s", index, strerror(e));
    }
    return 0;
}

void vcpu_destroy(struct vcpu *v)
{
    if (v->run)
        munmap(v->run, v->run_size);
    if (v->fd >= 0)
        close(v->fd);
    v->run = NULL;
    v->fd = -1;
}

/* The VM's table (template cpuid modifiers already applied) with this vCPU's APIC id. */
static int set_cpuid(struct vcpu *v, const struct cpuid_table *cpuid)
{
    static __thread struct {
        struct kvm_cpuid2 hdr;
        struct kvm_cpuid_entry2 e[CPUID_MAX_ENTRIES];
    } buf;
    struct cpuid_table t = *cpuid;
    cpuid_for_vcpu(&t, v->index);
    buf.hdr.nent = t.n;
    buf.hdr.padding = 0;
    memcpy(buf.e, t.e, t.n * sizeof(t.e[0]));
    if (ioctl(v->fd, KVM_SET_CPUID2, &buf) < 0) {
        int e = errno;
        return err_set(-e, "vcpu %u: KVM_SET_CPUID2 failed: %s", v->index, strerror(e));
    }
    return 0;
}

/* KVM_SET_MSRS stops at the first MSR it refuses; report it and go on with
 * the rest, since a host may lack one of the optional boot MSRs. */
static int set_msrs(struct vcpu *v, const struct kvm_msr_entry *list, unsigned n)
{
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[CPU_TEMPLATE_MAX + 16];
    } buf;
    unsigned done = 0;
    while (done < n) {
        memset(&buf, 0, sizeof(buf));
        buf.hdr.nmsrs = n - done;
        memcpy(buf.e, list + done, (n - done) * sizeof(list[0]));
        int r = ioctl(v->fd, KVM_SET_MSRS, &buf);
        if (r < 0) {
            int e = errno;
            return err_set(-e, "vcpu %u: KVM_SET_MSRS failed: %s", v->index, strerror(e));
        }
        done += (unsigned)r;
        if (done < n) {
            log_debug("vcpu %u: MSR 0x%x not accepted by KVM; left at its default", v->index,
                      list[done].index);
            done++;
        }
    }
    return 0;
}

static int setup_msrs(struct vcpu *v, const struct cpu_template *tpl)
{
    struct kvm_msr_entry list[CPU_TEMPLATE_MAX + 16];
    unsigned n = 0;
    static const struct {
        uint32_t index;
        uint64_t value;
    } boot[] = {
        {MSR_IA32_SYSENTER_CS, 0},
        {MSR_IA32_SYSENTER_ESP, 0},
        {MSR_IA32_SYSENTER_EIP, 0},
        {MSR_STAR, 0},
        {MSR_CSTAR, 0},
        {MSR_KERNEL_GS_BASE, 0},
        {MSR_SYSCALL_MASK, 0},
        {MSR_LSTAR, 0},
        {MSR_IA32_TSC, 0},
        {MSR_IA32_MISC_ENABLE, 1 /* fast strings */},
        {MSR_MTRR_DEF_TYPE, (1 << 11) | 6 /* MTRRs on, default write-back */},
    };
    for (size_t i = 0; i < sizeof(boot) / sizeof(boot[0]); i++)
        list[n++] = (struct kvm_msr_entry){.index = boot[i].index, .data = boot[i].value};
    int rc = set_msrs(v, list, n);
    if (rc || !tpl || !tpl->n_msr)
        return rc;
    /* Template MSR modifiers: read the current value, replace the masked bits. */
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[CPU_TEMPLATE_MAX];
    } get;
    memset(&get, 0, sizeof(get));
    get.hdr.nmsrs = tpl->n_msr;
    for (unsigned i = 0; i < tpl->n_msr; i++)
        get.e[i].index = tpl->msr[i].addr;
    int got = ioctl(v->fd, KVM_GET_MSRS, &get);
    if (got < 0 || (unsigned)got < tpl->n_msr)
        return err_set(-EINVAL, "cpu template: MSR 0x%x cannot be read on this host",
                       tpl->msr[got < 0 ? 0 : got].addr);
    for (unsigned i = 0; i < tpl->n_msr; i++) {
        list[i] = get.e[i];
        list[i].data = (list[i].data & ~tpl->msr[i].mask) | (tpl->msr[i].value & tpl->msr[i].mask);
    }
    memset(&get, 0, sizeof(get));
    get.hdr.nmsrs = tpl->n_msr;
    memcpy(get.e, list, tpl->n_msr * sizeof(list[0]));
    int r = ioctl(v->fd, KVM_SET_MSRS, &get);
    if (r < 0 || (unsigned)r < tpl->n_msr)
        return err_set(-EINVAL, "cpu template: MSR 0x%x cannot be written on this host",
                       tpl->msr[r < 0 ? 0 : r].addr);
    return 0;
}

static int setup_lapic(struct vcpu *v)
{
    struct kvm_lapic_state lapic;
    if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
        return err_set(-errno, "vcpu %u: KVM_GET_LAPIC failed", v->index);
    uint32_t *lvt0 = (uint32_t *)&lapic.regs[APIC_LVT0];
    uint32_t *lvt1 = (uint32_t *)&lapic.regs[APIC_LVT1];
    *lvt0 = (*lvt0 & ~0x700u) | (APIC_MODE_EXTINT << 8);
    *lvt1 = (*lvt1 & ~0x700u) | (APIC_MODE_NMI << 8);
    if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
        return err_set(-errno, "vcpu %u: KVM_SET_LAPIC failed", v->index);
    return 0;
}

int vcpu_setup(struct vcpu *v, const struct cpuid_table *cpuid, const struct cpu_template *tpl)
{
    int rc = set_cpuid(v, cpuid);
    if (rc)
        return rc;
    if ((rc = setup_msrs(v, tpl)))
        return rc;
    struct kvm_fpu fpu;
    memset(&fpu, 0, sizeof(fpu));
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
        return err_set(-errno, "vcpu %u: KVM_SET_FPU failed", v->index);
    return setup_lapic(v);
}

static struct kvm_segment flat_segment(uint16_t sel, uint8_t type, bool code64)
{
    struct kvm_segment s = {
        .base = 0,
        .limit = 0xffffffff,
        .selector = sel,
        .type = type,
        .present = 1,
        .dpl = 0,
        .db = code64 ? 0 : 1,
        .s = 1,
        .l = code64 ? 1 : 0,
        .g = 1,
    };
    return s;
}

int vcpu_set_boot_regs(struct vcpu *v, const struct boot_entry *entry)
{
    struct kvm_sregs sregs;
    if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
        return err_set(-errno, "vcpu %u: KVM_GET_SREGS failed", v->index);
    bool lm = entry->proto == BOOT_PROTO_LINUX64;
    struct kvm_segment code = flat_segment(0x10, 0xb, lm);
    struct kvm_segment data = flat_segment(0x18, 0x3, false);
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.tr = (struct kvm_segment){
        .base = 0, .limit = 0x67, .selector = 0x20, .type = 0xb, .present = 1, .s = 0};
    sregs.gdt.base = LAYOUT_GDT;
    sregs.gdt.limit = 4 * 8 - 1;
    sregs.idt.base = LAYOUT_IDT;
    sregs.idt.limit = 0;
    if (lm) {
        sregs.cr0 = 0x80000011; /* PG | ET | PE */
        sregs.cr3 = LAYOUT_PML4;
        sregs.cr4 = 0x20;   /* PAE */
        sregs.efer = 0x500; /* LMA | LME */
    } else {
        sregs.cr0 = 0x11; /* ET | PE */
        sregs.cr3 = 0;
        sregs.cr4 = 0;
        sregs.efer = 0;
    }
    if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
        return err_set(-errno, "vcpu %u: KVM_SET_SREGS failed", v->index);

    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    regs.rflags = 0x2;
    regs.rip = entry->rip;
    regs.rsp = entry->rsp;
    regs.rbp = entry->rsp;
    regs.rsi = entry->rsi;
    regs.rbx = entry->rbx;
    if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
        return err_set(-errno, "vcpu %u: KVM_SET_REGS failed", v->index);
    return 0;
}

static uint64_t vcpu_rip(struct vcpu *v)
{
    struct kvm_regs regs;
    if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0)
        return 0;
    return regs.rip;
}

static const char *internal_suberror(uint32_t s)
{
    switch (s) {
    case KVM_INTERNAL_ERROR_EMULATION:
        return "emulation failure";
    case KVM_INTERNAL_ERROR_SIMUL_EX:
        return "exception while delivering an exception";
    case KVM_INTERNAL_ERROR_DELIVERY_EV:
        return "event delivery failure";
    default:
        return "internal error";
    }
}

static void handle_io(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    uint8_t *p = (uint8_t *)run + run->io.data_offset;
    for (uint32_t i = 0; i < run->io.count; i++, p += run->io.size) {
        if (run->io.direction == KVM_EXIT_IO_OUT)
            bus_write(v->pio, run->io.port, p, run->io.size);
        else
            bus_read(v->pio, run->io.port, p, run->io.size);
    }
}

/* One exit; returns false when this vCPU must stop running. A guest that
 * panicked before its reset or triple fault is told apart by the VM
 * (vm_finish: the console saw the banner), not here. */
static bool handle_exit(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    struct vcpu_ctl *c = v->ctl;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        if (run->io.direction == KVM_EXIT_IO_OUT)
            METRIC_INC(exit_io_out);
        else
            METRIC_INC(exit_io_in);
        handle_io(v);
        return true;
    case KVM_EXIT_MMIO:
        if (run->mmio.is_write) {
            METRIC_INC(exit_mmio_write);
            bus_write(v->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
        } else {
            METRIC_INC(exit_mmio_read);
            bus_read(v->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
        }
        return true;
    case KVM_EXIT_HLT:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
    case KVM_EXIT_INTR:
        return true;
    case KVM_EXIT_SHUTDOWN:
        METRIC_INC(vcpu_failures);
        vcpu_ctl_request_exit(c, EMBER_EXIT_TRIPLE_FAULT,
                              "guest stopped: triple fault (KVM_EXIT_SHUTDOWN) on vcpu %u at RIP "
                              "0x%llx",
                              v->index, (unsigned long long)vcpu_rip(v));
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        if (run->system_event.type == KVM_SYSTEM_EVENT_CRASH)
            vcpu_ctl_request_exit(c, EMBER_EXIT_GUEST_PANIC,
                                  "guest panicked: system event %u on vcpu %u at RIP 0x%llx",
                                  run->system_event.type, v->index,
                                  (unsigned long long)vcpu_rip(v));
        else
            vcpu_ctl_request_exit(c, EMBER_EXIT_OK, "guest reset: system event %u on vcpu %u",
                                  run->system_event.type, v->index);
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        METRIC_INC(vcpu_failures);
        vcpu_ctl_request_exit(c, EMBER_EXIT_KVM_ERROR,
                              "guest stopped: KVM internal error (suberror %u: %s) on vcpu %u at "
                              "RIP 0x%llx",
                              run->internal.suberror, internal_suberror(run->internal.suberror),
                              v->index, (unsigned long long)vcpu_rip(v));
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        vcpu_ctl_request_exit(c, EMBER_EXIT_KVM_ERROR,
                              "guest stopped: KVM entry failed (reason 0x%llx) on vcpu %u at RIP "
                              "0x%llx",
                              (unsigned long long)run->fail_entry.hardware_entry_failure_reason,
                              v->index, (unsigned long long)vcpu_rip(v));
        return false;
    default:
        vcpu_ctl_request_exit(c, EMBER_EXIT_KVM_ERROR,
                              "guest stopped: unhandled KVM exit %u on vcpu %u at RIP 0x%llx",
                              run->exit_reason, v->index, (unsigned long long)vcpu_rip(v));
        return false;
    }
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct vcpu_ctl *c = v->ctl;
    char name[16];
    snprintf(name, sizeof(name), "vcpu %u", v->index);
    log_set_thread_name(name);
    snprintf(name, sizeof(name), "ember_vcpu%u", v->index);
    pthread_setname_np(pthread_self(), name);

    /* This thread's seccomp filter, just before its first KVM_RUN. */
    if (seccomp_install(SECCOMP_KIND_VCPU, v->index)) {
        vcpu_ctl_request_exit(c, EMBER_EXIT_UNEXPECTED, "vcpu %u: %s", v->index, err_msg());
        leave_loop(v);
        return NULL;
    }

    while (!vcpu_ctl_exited(c)) {
        park_if_paused(v);
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            if (e == EAGAIN) {
                /* An AP still waiting for its SIPI (seen on PVM hosts). */
                struct timespec ts = {0, 200000};
                nanosleep(&ts, NULL);
                continue;
            }
            vcpu_ctl_request_exit(c, EMBER_EXIT_UNEXPECTED, "vcpu %u: KVM_RUN failed: %s", v->index,
                                  strerror(e));
            break;
        }
        if (!handle_exit(v))
            break;
    }
    leave_loop(v);
    return NULL;
}

int vcpu_start(struct vcpu *v)
{
    /* The kick only has to interrupt KVM_RUN (installing it again is harmless). */
    struct sigaction sa = {.sa_handler = kick_handler};
    sigemptyset(&sa.sa_mask);
    sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
    pthread_mutex_lock(&v->ctl->lock);
    v->ctl->n_running++;
    pthread_mutex_unlock(&v->ctl->lock);
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (!rc)
        rc = pthread_attr_setstacksize(&attr, VCPU_STACK_SIZE);
    if (!rc)
        rc = pthread_create(&v->thread, &attr, vcpu_thread, v);
    pthread_attr_destroy(&attr);
    if (rc) {
        pthread_mutex_lock(&v->ctl->lock);
        v->ctl->n_running--;
        pthread_mutex_unlock(&v->ctl->lock);
        return err_set(-rc, "vcpu %u: cannot start its thread: %s", v->index, strerror(rc));
    }
    v->started = true;
    return 0;
}

/* ---- snapshots ---------------------------------------------------------------- */

int vcpu_msr_index(int kvm_fd, uint32_t *index, unsigned max)
{
    struct {
        struct kvm_msr_list hdr;
        uint32_t idx[VCPU_MAX_MSRS];
    } list;
    list.hdr.nmsrs = VCPU_MAX_MSRS;
    if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &list) < 0)
        return err_set(-errno, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
    unsigned n = list.hdr.nmsrs < max ? list.hdr.nmsrs : max;
    memcpy(index, list.idx, n * sizeof(uint32_t));
    return (int)n;
}

/* Read the listed MSRs; KVM stops at one it cannot read: skip it, go on. */
static int save_msrs(struct vcpu *v, const uint32_t *index, unsigned n, struct vcpu_state *s)
{
    static __thread struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[VCPU_MAX_MSRS];
    } buf;
    unsigned done = 0;
    s->n_msrs = 0;
    while (done < n) {
        memset(&buf, 0, sizeof(buf));
        buf.hdr.nmsrs = n - done;
        for (unsigned i = 0; i < n - done; i++)
            buf.e[i].index = index[done + i];
        int r = ioctl(v->fd, KVM_GET_MSRS, &buf);
        if (r < 0)
            return err_set(-errno, "vcpu %u: KVM_GET_MSRS: %s", v->index, strerror(errno));
        memcpy(&s->msrs[s->n_msrs], buf.e, (unsigned)r * sizeof(buf.e[0]));
        s->n_msrs += (unsigned)r;
        done += (unsigned)r + 1; /* the one it stopped at is not readable here */
    }
    return 0;
}

int vcpu_save(struct vcpu *v, const uint32_t *msr_index, unsigned n_msrs, struct vcpu_state *s)
{
    memset(s, 0, sizeof(*s));
    static const struct {
        unsigned long req;
        size_t off;
        const char *what;
    } gets[] = {
        {KVM_GET_REGS, offsetof(struct vcpu_state, regs), "KVM_GET_REGS"},
        {KVM_GET_SREGS, offsetof(struct vcpu_state, sregs), "KVM_GET_SREGS"},
        {KVM_GET_XSAVE, offsetof(struct vcpu_state, xsave), "KVM_GET_XSAVE"},
        {KVM_GET_XCRS, offsetof(struct vcpu_state, xcrs), "KVM_GET_XCRS"},
        {KVM_GET_DEBUGREGS, offsetof(struct vcpu_state, debugregs), "KVM_GET_DEBUGREGS"},
        {KVM_GET_LAPIC, offsetof(struct vcpu_state, lapic), "KVM_GET_LAPIC"},
        {KVM_GET_MP_STATE, offsetof(struct vcpu_state, mp_state), "KVM_GET_MP_STATE"},
        {KVM_GET_VCPU_EVENTS, offsetof(struct vcpu_state, events), "KVM_GET_VCPU_EVENTS"},
    };
    for (size_t i = 0; i < sizeof(gets) / sizeof(gets[0]); i++)
        if (ioctl(v->fd, gets[i].req, (char *)s + gets[i].off) < 0)
            return err_set(-errno, "vcpu %u: %s: %s", v->index, gets[i].what, strerror(errno));
    int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
    s->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
    struct {
        struct kvm_cpuid2 hdr;
        struct kvm_cpuid_entry2 e[CPUID_MAX_ENTRIES];
    } cpuid;
    cpuid.hdr.nent = CPUID_MAX_ENTRIES;
    cpuid.hdr.padding = 0;
    if (ioctl(v->fd, KVM_GET_CPUID2, &cpuid) < 0)
        return err_set(-errno, "vcpu %u: KVM_GET_CPUID2: %s", v->index, strerror(errno));
    s->n_cpuid = cpuid.hdr.nent;
    memcpy(s->cpuid, cpuid.e, s->n_cpuid * sizeof(cpuid.e[0]));
    return save_msrs(v, msr_index, n_msrs, s);
}

/* KVM_SET_MSRS stops at the first it refuses: skip it (a host may lack one), go on. */
static int restore_msrs(struct vcpu *v, const struct vcpu_state *s)
{
    static __thread struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[VCPU_MAX_MSRS];
    } buf;
    unsigned done = 0;
    while (done < s->n_msrs) {
        memset(&buf, 0, sizeof(buf));
        buf.hdr.nmsrs = s->n_msrs - done;
        memcpy(buf.e, &s->msrs[done], buf.hdr.nmsrs * sizeof(buf.e[0]));
        int r = ioctl(v->fd, KVM_SET_MSRS, &buf);
        if (r < 0)
            return err_set(-errno, "vcpu %u: KVM_SET_MSRS: %s", v->index, strerror(errno));
        done += (unsigned)r;
        if (done < s->n_msrs) {
            log_debug("vcpu %u: MSR 0x%x of the snapshot not accepted by KVM", v->index,
                      s->msrs[done].index);
            done++;
        }
    }
    return 0;
}

int vcpu_restore(struct vcpu *v, const struct vcpu_state *s)
{
    if (s->n_cpuid > CPUID_MAX_ENTRIES || s->n_msrs > VCPU_MAX_MSRS)
        return err_set(-EINVAL, "vcpu %u: snapshot holds %u CPUID entries and %u MSRs (at most "
                                "%u and %u)",
                       v->index, s->n_cpuid, s->n_msrs, CPUID_MAX_ENTRIES, VCPU_MAX_MSRS);
    struct {
        struct kvm_cpuid2 hdr;
        struct kvm_cpuid_entry2 e[CPUID_MAX_ENTRIES];
    } cpuid;
    cpuid.hdr.nent = s->n_cpuid;
    cpuid.hdr.padding = 0;
    memcpy(cpuid.e, s->cpuid, s->n_cpuid * sizeof(cpuid.e[0]));
    if (ioctl(v->fd, KVM_SET_CPUID2, &cpuid) < 0)
        return err_set(-errno, "vcpu %u: KVM_SET_CPUID2: %s", v->index, strerror(errno));
    if (s->tsc_khz) {
        int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
        if (khz > 0 && (uint32_t)khz != s->tsc_khz &&
            ioctl(v->fd, KVM_SET_TSC_KHZ, (unsigned long)s->tsc_khz) < 0)
            log_warn("vcpu %u: the snapshot's TSC ran at %u kHz, this host's at %d and KVM "
                     "cannot scale it: guest time may drift",
                     v->index, s->tsc_khz, khz);
    }
    static const struct {
        unsigned long req;
        size_t off;
        const char *what;
    } sets[] = {
        {KVM_SET_MP_STATE, offsetof(struct vcpu_state, mp_state), "KVM_SET_MP_STATE"},
        {KVM_SET_REGS, offsetof(struct vcpu_state, regs), "KVM_SET_REGS"},
        {KVM_SET_SREGS, offsetof(struct vcpu_state, sregs), "KVM_SET_SREGS"},
        {KVM_SET_XSAVE, offsetof(struct vcpu_state, xsave), "KVM_SET_XSAVE"},
        {KVM_SET_XCRS, offsetof(struct vcpu_state, xcrs), "KVM_SET_XCRS"},
        {KVM_SET_DEBUGREGS, offsetof(struct vcpu_state, debugregs), "KVM_SET_DEBUGREGS"},
        {KVM_SET_LAPIC, offsetof(struct vcpu_state, lapic), "KVM_SET_LAPIC"},
    };
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
        if (ioctl(v->fd, sets[i].req, (const char *)s + sets[i].off) < 0)
            return err_set(-errno, "vcpu %u: %s: %s", v->index, sets[i].what, strerror(errno));
    int rc = restore_msrs(v, s);
    if (rc)
        return rc;
    struct kvm_vcpu_events ev = s->events;
    if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
        return err_set(-errno, "vcpu %u: KVM_SET_VCPU_EVENTS: %s", v->index, strerror(errno));
    return 0;
}
