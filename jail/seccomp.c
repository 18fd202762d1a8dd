/* seccomp.c - per-thread seccomp filters: the allow-lists per thread kind,
 * their compilation to BPF (libseccomp), the filter file, installation and
 * the SIGSYS handler (see seccomp.h and docs/seccomp.md). */
#define _GNU_SOURCE
#include "seccomp.h"

#include "../vmm/base/err.h"
#include "../vmm/base/log.h"
#include "../vmm/base/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/fs.h>
#include <linux/filter.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <ucontext.h>
#include <time.h>
#include <unistd.h>

/* ---- the allow-lists ---- */

struct rule {
    int nr;        /* __NR_* */
    int errno_ret; /* 0: allow; else fail the call with this errno (not counted) */
    unsigned n;    /* argument comparisons, all of which must hold */
    struct scmp_arg_cmp a[2];
    const char *why;
};

#define ARG(i, cmp, x, y)                                                                          \
    {                                                                                              \
        .arg = (i), .op = (cmp), .datum_a = (x), .datum_b = (y)                                    \
    }
#define ALLOW(name, why)                                                                           \
    {                                                                                              \
        __NR_##name, 0, 0, {{0}}, why                                                              \
    }
#define ALLOW1(name, c0, why)                                                                      \
    {                                                                                              \
        __NR_##name, 0, 1, {c0}, why                                                               \
    }
#define ALLOW2(name, c0, c1, why)                                                                  \
    {                                                                                              \
        __NR_##name, 0, 2, {c0, c1}, why                                                           \
    }
#define FAIL(name, err, why)                                                                       \
    {                                                                                              \
        __NR_##name, err, 0, {{0}}, why                                                            \
    }
/* ioctl's request is an unsigned int in the kernel: compare the low 32 bits. */
#define IOCTL(req, why) ALLOW1(ioctl, ARG(1, SCMP_CMP_MASKED_EQ, 0xffffffffu, (req)), why)
#define NO_EXEC(i) ARG(i, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)
#define ARG_EQ(i, v) ARG(i, SCMP_CMP_EQ, (v), 0)

/* The main thread: API server, event loop, VM construction at InstanceStart,
 * device queues and their I/O. vCPU threads are cloned from it and inherit
 * this filter under their own, so what a vCPU thread needs is here too. */
static const struct rule vmm_rules[] = {
    /* file and device I/O */
    ALLOW(read, "API requests, eventfds/timerfds/signalfd, stdin, tap, kernel/initrd files"),
    ALLOW(write, "guest console, log and metrics lines, eventfds, tap"),
    ALLOW(readv, "virtio-net: tap frames into guest buffers"),
    ALLOW(writev, "virtio-net: guest frames to the tap"),
    ALLOW(pread64, "kernel and initrd loading; virtio-blk Sync engine"),
    ALLOW(pwrite64, "virtio-blk Sync engine"),
    ALLOW(preadv, "virtio-blk Sync engine: scatter reads into guest memory"),
    ALLOW(pwritev, "virtio-blk Sync engine: gather writes from guest memory"),
    ALLOW(fsync, "virtio-blk flush"),
    ALLOW(fdatasync, "virtio-blk flush"),
    ALLOW(openat, "kernel/initrd/drive files at InstanceStart and PATCH /drives, /dev/kvm, "
                  "/dev/net/tun, PUT /logger and /metrics files, /proc/meminfo"),
    ALLOW(close, "every fd Ember opens"),
    ALLOW(fstat, "file sizes (kernel, initrd, drives); stdio"),
    ALLOW(newfstatat, "glibc's fstat/stat (AT_EMPTY_PATH)"),
    ALLOW(statfs, "virtio-blk: the drive's filesystem (block size, O_DIRECT)"),
    ALLOW(lseek, "stdio streams (CPU template, /proc/meminfo)"),
    ALLOW(unlink, "API socket removed at exit; a snapshot's temporary file after a failure"),
    ALLOW(ftruncate, "snapshot memory file sized to guest RAM"),
    ALLOW(rename, "snapshot file moved into place once complete"),
    ALLOW(mincore, "Full snapshot: the guest pages ever touched"),
    ALLOW(userfaultfd, "snapshot load, Uffd backend"),
    ALLOW(connect, "snapshot load, Uffd backend: the page-fault handler's socket"),
    ALLOW(sendmsg, "snapshot load, Uffd backend: the userfaultfd and the memory layout"),
    ALLOW1(fcntl, ARG_EQ(1, F_GETFL), "stdin and tap flags"),
    ALLOW1(fcntl, ARG_EQ(1, F_SETFL), "O_NONBLOCK on stdin and tap"),
    ALLOW1(fcntl, ARG_EQ(1, F_GETFD), "fd checks"),
    ALLOW1(fcntl, ARG_EQ(1, F_SETFD), "FD_CLOEXEC"),
    /* KVM: system fd at InstanceStart */
    IOCTL(KVM_GET_API_VERSION, "/dev/kvm check"),
    IOCTL(KVM_CHECK_EXTENSION, "/dev/kvm capabilities"),
    IOCTL(KVM_GET_VCPU_MMAP_SIZE, "kvm_run mapping size"),
    IOCTL(KVM_GET_SUPPORTED_CPUID, "CPUID table"),
    IOCTL(KVM_CREATE_VM, "the VM"),
    /* KVM: VM fd */
    IOCTL(KVM_SET_USER_MEMORY_REGION, "guest RAM slots"),
    IOCTL(KVM_SET_TSS_ADDR, "VM setup"),
    IOCTL(KVM_SET_IDENTITY_MAP_ADDR, "VM setup"),
    IOCTL(KVM_CREATE_IRQCHIP, "in-kernel PIC/IOAPIC/LAPIC"),
    IOCTL(KVM_CREATE_PIT2, "in-kernel PIT"),
    IOCTL(KVM_CREATE_VCPU, "vCPUs"),
    IOCTL(KVM_IRQFD, "device interrupts through eventfds"),
    IOCTL(KVM_IOEVENTFD, "virtqueue notifications through eventfds"),
    IOCTL(KVM_IRQ_LINE, "legacy interrupt lines"),
    /* KVM: vCPU fds, set up by the main thread before the vCPU threads start */
    IOCTL(KVM_SET_CPUID2, "vCPU CPUID"),
    IOCTL(KVM_GET_MSRS, "CPU template MSR modifiers"),
    IOCTL(KVM_SET_MSRS, "boot MSRs, CPU template"),
    IOCTL(KVM_GET_LAPIC, "LAPIC LINT0/LINT1 setup"),
    IOCTL(KVM_SET_LAPIC, "LAPIC LINT0/LINT1 setup"),
    IOCTL(KVM_SET_FPU, "clean FPU"),
    IOCTL(KVM_GET_SREGS, "boot segment registers"),
    IOCTL(KVM_SET_SREGS, "boot segment registers"),
    IOCTL(KVM_SET_REGS, "boot registers"),
    IOCTL(KVM_GET_REGS, "inherited by vCPU threads: RIP in exit reports"),
    IOCTL(KVM_RUN, "inherited by vCPU threads"),
    IOCTL(KVM_KVMCLOCK_CTRL, "inherited by vCPU threads: tell the guest it was paused"),
    /* KVM: snapshots (create: read back; load: set, before the vCPU threads start) */
    IOCTL(KVM_GET_MSR_INDEX_LIST, "snapshot: the MSRs KVM can save"),
    IOCTL(KVM_GET_CPUID2, "snapshot: vCPU CPUID"),
    IOCTL(KVM_GET_XSAVE, "snapshot: FPU/SSE/AVX state"),
    IOCTL(KVM_SET_XSAVE, "snapshot load: FPU/SSE/AVX state"),
    IOCTL(KVM_GET_XCRS, "snapshot: XCR0"),
    IOCTL(KVM_SET_XCRS, "snapshot load: XCR0"),
    IOCTL(KVM_GET_DEBUGREGS, "snapshot: debug registers"),
    IOCTL(KVM_SET_DEBUGREGS, "snapshot load: debug registers"),
    IOCTL(KVM_GET_MP_STATE, "snapshot: vCPU run state"),
    IOCTL(KVM_SET_MP_STATE, "snapshot load: vCPU run state"),
    IOCTL(KVM_GET_VCPU_EVENTS, "snapshot: pending exceptions and interrupts"),
    IOCTL(KVM_SET_VCPU_EVENTS, "snapshot load: pending exceptions and interrupts"),
    IOCTL(KVM_GET_TSC_KHZ, "snapshot: TSC frequency"),
    IOCTL(KVM_SET_TSC_KHZ, "snapshot load: TSC frequency of the saved host"),
    IOCTL(KVM_GET_CLOCK, "snapshot: kvmclock"),
    IOCTL(KVM_SET_CLOCK, "snapshot load: kvmclock"),
    IOCTL(KVM_GET_IRQCHIP, "snapshot: PIC and IOAPIC"),
    IOCTL(KVM_SET_IRQCHIP, "snapshot load: PIC and IOAPIC"),
    IOCTL(KVM_GET_PIT2, "snapshot: PIT"),
    IOCTL(KVM_SET_PIT2, "snapshot load: PIT"),
    IOCTL(KVM_GET_DIRTY_LOG, "Diff snapshots: pages the guest wrote"),
    IOCTL(UFFDIO_API, "snapshot load, Uffd backend: userfaultfd handshake"),
    IOCTL(UFFDIO_REGISTER, "snapshot load, Uffd backend: guest RAM to the page-fault handler"),
    IOCTL(BLKGETSIZE64, "virtio-blk: size of a drive that is a block device"),
    /* tap and terminal */
    IOCTL(TUNSETIFF, "attach to the tap device"),
    IOCTL(SIOCGIFINDEX, "tap: if_nametoindex (on an AF_UNIX socket)"),
    IOCTL(TUNGETIFF, "tap: is the device persistent (left alone at exit)"),
    IOCTL(TUNSETVNETHDRSZ, "tap virtio-net header size"),
    IOCTL(TUNSETOFFLOAD, "tap checksum/TSO offloads"),
    IOCTL(TCGETS, "isatty/tcgetattr on stdin"),
    IOCTL(TCSETS, "raw terminal for the guest console, restored at exit"),
    /* event loop */
    ALLOW(epoll_wait, "the event loop"),
    ALLOW(epoll_ctl, "fds joining/leaving the event loop"),
    ALLOW(eventfd2, "irqfds, ioeventfds, exit and io_uring completion eventfds"),
    ALLOW(timerfd_create, "metrics timer, rate limiters"),
    ALLOW(timerfd_settime, "metrics timer, rate limiters"),
    ALLOW(io_uring_setup, "virtio-blk Async engine"),
    ALLOW(io_uring_enter, "virtio-blk Async engine"),
    ALLOW(io_uring_register, "virtio-blk Async engine (eventfd, files)"),
    /* API socket */
    ALLOW(accept4, "API connections"),
    ALLOW(recvfrom, "API requests (recv)"),
    ALLOW(sendto, "API responses (send, MSG_NOSIGNAL)"),
    ALLOW1(socket, ARG_EQ(0, AF_UNIX), "Unix sockets only"),
    /* memory */
    ALLOW1(mmap, NO_EXEC(2), "malloc, guest RAM, kvm_run, io_uring rings, thread stacks"),
    ALLOW1(mprotect, NO_EXEC(2), "malloc arenas, thread stack guard pages"),
    ALLOW(munmap, "free, guest RAM and kvm_run at exit"),
    ALLOW(mremap, "realloc of large blocks"),
    ALLOW(madvise, "free; thread stacks released at thread exit"),
    ALLOW(brk, "malloc"),
    /* threads and signals */
    ALLOW1(clone, ARG(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD),
           "vCPU threads (threads only, no new processes)"),
    FAIL(clone3, ENOSYS, "refused so that glibc falls back to clone, whose flags are checked"),
    ALLOW(set_robust_list, "new thread start-up (glibc)"),
    ALLOW(rseq, "new thread start-up (glibc)"),
    ALLOW(futex, "mutexes, condition variables, pthread_join"),
    ALLOW(rt_sigaction, "vCPU kick signal handler"),
    ALLOW(rt_sigprocmask, "thread start/exit (glibc)"),
    ALLOW(rt_sigreturn, "return from the vCPU kick handler"),
    ALLOW(getpid, "pthread_kill"),
    ALLOW(tgkill, "kick vCPU threads out of KVM_RUN (pause, exit)"),
    ALLOW1(prctl, ARG_EQ(0, PR_SET_NAME), "vCPU thread names"),
    ALLOW1(prctl, ARG_EQ(0, PR_SET_NO_NEW_PRIVS), "vCPU threads installing their filter"),
    ALLOW1(prctl, ARG_EQ(0, PR_SET_SECCOMP), "vCPU threads installing their filter"),
    ALLOW(exit, "thread exit"),
    ALLOW(exit_group, "process exit"),
    /* time, randomness */
    ALLOW(clock_gettime, "timestamps when the vDSO falls back to the syscall"),
    ALLOW(clock_nanosleep, "inherited by vCPU threads: AP waiting for SIPI"),
    ALLOW(getrandom, "json-c hash seed"),
};

/* vCPU threads: KVM_RUN and the PIO/MMIO handlers (UART output, i8042,
 * virtio-mmio registers), pausing, and leaving. A device's activation or
 * reset is only recorded here and handed to the main loop (virtio/mmio.h), so
 * no device work (epoll, io_uring, tap ioctls) runs on a vCPU thread. */
static const struct rule vcpu_rules[] = {
    IOCTL(KVM_RUN, "run the guest"),
    IOCTL(KVM_GET_REGS, "RIP in exit reports"),
    IOCTL(KVM_KVMCLOCK_CTRL, "on pause: tell the guest's kvmclock it was stopped"),
    ALLOW(write, "guest console output, irqfd/kick/device-work/exit eventfds, log lines"),
    ALLOW(timerfd_settime, "serial output rate limiter: arm its refill timer"),
    ALLOW(futex, "device locks, pause/resume"),
    ALLOW(rt_sigreturn, "return from the kick handler"),
    ALLOW(clock_nanosleep, "AP waiting for SIPI (KVM_RUN -> EAGAIN on PVM)"),
    ALLOW(clock_gettime, "timestamps when the vDSO falls back to the syscall"),
    ALLOW(rt_sigprocmask, "thread exit (glibc)"),
    ALLOW(madvise, "thread exit: glibc releases the stack"),
    ALLOW(exit, "thread exit"),
    ALLOW(exit_group, "process exit (fatal errors, the SIGSYS handler)"),
};

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
/* Sanitizer builds only (make sanitize; CI runs the fast tests under it):
 * what the ASan/UBSan runtime does on its own, added to both kinds. */
static const struct rule sanitizer_rules[] = {
    ALLOW(sigaltstack, "ASan: alternate signal stack per thread"),
    ALLOW(gettid, "ASan: thread registry"),
    ALLOW(sched_getaffinity, "ASan: new threads"),
    ALLOW(sched_yield, "ASan/LSan: spin locks"),
    ALLOW(getpid, "ASan: reports, thread registry"),
    ALLOW(getppid, "LSan: tracer checks its parent"),
    ALLOW(readlink, "ASan: reports (/proc/self/exe)"),
    ALLOW(getdents, "LSan: /proc/self/task at exit (raw syscall)"),
    ALLOW(open, "LSan: /proc/self/task, /proc/self/maps (raw syscall)"),
    ALLOW(ptrace, "LSan: stops the threads to scan them at exit"),
    ALLOW(wait4, "LSan: waits for its tracer"),
    ALLOW(kill, "LSan: tracer"),
    ALLOW1(clone, ARG(0, SCMP_CMP_MASKED_EQ, CLONE_VM | CLONE_UNTRACED, CLONE_VM | CLONE_UNTRACED),
           "LSan: its tracer task at exit"),
    ALLOW1(prctl, ARG_EQ(0, PR_GET_DUMPABLE), "LSan"),
    ALLOW1(prctl, ARG_EQ(0, PR_SET_DUMPABLE), "LSan"),
    ALLOW1(prctl, ARG_EQ(0, PR_SET_PTRACER), "LSan"),
    ALLOW1(prctl, ARG_EQ(0, PR_SET_PDEATHSIG), "LSan tracer"),
    ALLOW(munmap, "ASan: allocator, thread exit"),
    ALLOW1(mmap, NO_EXEC(2), "ASan: allocator, shadow, per-thread state"),
    ALLOW1(mprotect, NO_EXEC(2), "ASan: allocator"),
    ALLOW(read, "ASan: reports (/proc/self/maps)"),
    ALLOW(openat, "ASan: reports (/proc/self/maps)"),
    ALLOW(close, "ASan: reports"),
    ALLOW(rt_sigaction, "LSan tracer"),
    ALLOW(rt_sigprocmask, "LSan tracer"),
    ALLOW(set_robust_list, "new threads"),
    ALLOW(rseq, "new threads"),
    ALLOW(exit, "LSan tracer"),
};
#define SANITIZER_RULES sanitizer_rules, sizeof(sanitizer_rules) / sizeof(sanitizer_rules[0])
#else
#define SANITIZER_RULES NULL, 0
#endif

static const struct {
    const char *name;
    const struct rule *rules;
    size_t n;
} kinds[SECCOMP_KIND_COUNT] = {
    [SECCOMP_KIND_VMM] = {"vmm", vmm_rules, sizeof(vmm_rules) / sizeof(vmm_rules[0])},
    [SECCOMP_KIND_VCPU] = {"vcpu", vcpu_rules, sizeof(vcpu_rules) / sizeof(vcpu_rules[0])},
};

const char *seccomp_kind_name(enum seccomp_kind kind)
{
    return (unsigned)kind < SECCOMP_KIND_COUNT ? kinds[kind].name : "?";
}

static void rule_lists(enum seccomp_kind kind, const struct rule *lists[2], size_t ns[2])
{
    static const struct {
        const struct rule *r;
        size_t n;
    } extra = {SANITIZER_RULES};
    lists[0] = kinds[kind].rules;
    ns[0] = kinds[kind].n;
    lists[1] = extra.r;
    ns[1] = extra.n;
}

unsigned seccomp_allowed_count(enum seccomp_kind kind)
{
    if ((unsigned)kind >= SECCOMP_KIND_COUNT)
        return 0;
    const struct rule *lists[2];
    size_t ns[2];
    rule_lists(kind, lists, ns);
    unsigned count = 0;
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; i < ns[l]; i++) {
            const struct rule *r = &lists[l][i];
            if (r->errno_ret)
                continue;
            bool seen = false;
            for (int l2 = 0; l2 <= l && !seen; l2++)
                for (size_t j = 0; j < (l2 == l ? i : ns[l2]) && !seen; j++)
                    seen = lists[l2][j].nr == r->nr && !lists[l2][j].errno_ret;
            count += !seen;
        }
    return count;
}

/* ---- compiling ---- */

int seccomp_compile(enum seccomp_kind kind, struct sock_filter **prog, unsigned *len)
{
    *prog = NULL;
    *len = 0;
    if ((unsigned)kind >= SECCOMP_KIND_COUNT)
        return err_set(-EINVAL, "seccomp: unknown thread kind %d", (int)kind);
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
    if (!ctx)
        return err_set(-ENOMEM, "seccomp: cannot create the %s filter", kinds[kind].name);
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_TRAP);
    /* A binary tree of syscall numbers instead of a linear scan (libseccomp >= 2.5). */
    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    const struct rule *lists[2];
    size_t ns[2];
    rule_lists(kind, lists, ns);
    for (int l = 0; l < 2 && !rc; l++)
        for (size_t i = 0; i < ns[l] && !rc; i++) {
            const struct rule *r = &lists[l][i];
            uint32_t action =
                r->errno_ret ? SCMP_ACT_ERRNO((uint32_t)r->errno_ret) : SCMP_ACT_ALLOW;
            rc = seccomp_rule_add_array(ctx, action, r->nr, r->n, r->a);
            if (rc)
                err_set(rc, "seccomp: %s filter: rule for %s (%s) refused: %s", kinds[kind].name,
                        seccomp_syscall_name(r->nr), r->why, strerror(-rc));
        }
    if (rc) {
        seccomp_release(ctx);
        if (rc == -EBADF || rc == -ENOMEM)
            err_set(rc, "seccomp: cannot build the %s filter", kinds[kind].name);
        return rc;
    }
    int fd = memfd_create("ember-seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        seccomp_release(ctx);
        return err_set(-e, "seccomp: memfd_create: %s", strerror(e));
    }
    rc = seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
    struct stat st;
    if (rc || fstat(fd, &st) < 0 || st.st_size <= 0 ||
        st.st_size % (off_t)sizeof(struct sock_filter) ||
        st.st_size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS) {
        close(fd);
        return err_set(rc ? rc : -E2BIG, "seccomp: cannot export the %s filter", kinds[kind].name);
    }
    struct sock_filter *p = malloc((size_t)st.st_size);
    if (!p || pread(fd, p, (size_t)st.st_size, 0) != st.st_size) {
        free(p);
        close(fd);
        return err_set(-EIO, "seccomp: cannot read back the %s filter", kinds[kind].name);
    }
    close(fd);
    *prog = p;
    *len = (unsigned)(st.st_size / (off_t)sizeof(struct sock_filter));
    return 0;
}

/* FNV-1a over every rule of every kind: what this build's filters allow. */
const char *seccomp_build_id(void)
{
    static char id[48];
    if (id[0])
        return id;
    uint64_t h = 0xcbf29ce484222325ull;
#define MIX(v)                                                                                     \
    do {                                                                                           \
        uint64_t v_ = (uint64_t)(v);                                                               \
        for (int b_ = 0; b_ < 8; b_++) {                                                           \
            h ^= (v_ >> (8 * b_)) & 0xff;                                                          \
            h *= 0x100000001b3ull;                                                                 \
        }                                                                                          \
    } while (0)
    for (int k = 0; k < SECCOMP_KIND_COUNT; k++) {
        const struct rule *lists[2];
        size_t ns[2];
        rule_lists((enum seccomp_kind)k, lists, ns);
        MIX(k);
        for (int l = 0; l < 2; l++)
            for (size_t i = 0; i < ns[l]; i++) {
                const struct rule *r = &lists[l][i];
                MIX(r->nr);
                MIX(r->errno_ret);
                MIX(r->n);
                for (unsigned a = 0; a < r->n; a++) {
                    MIX(r->a[a].arg);
                    MIX(r->a[a].op);
                    MIX(r->a[a].datum_a);
                    MIX(r->a[a].datum_b);
                }
            }
    }
#undef MIX
    snprintf(id, sizeof(id), "x86_64-%016llx", (unsigned long long)h);
    return id;
}

/* ---- the filter file ---- */

#define FILE_MAGIC "EMBERSEC"
#define FILE_VERSION 1u

struct file_header {
    char magic[8];
    uint32_t version;
    uint32_t audit_arch;
    char build_id[48];
    uint32_t n_kinds;
};

struct file_prog {
    char kind[16];
    uint32_t n_insns;
    uint32_t reserved;
};

int seccomp_parse(const void *buf, size_t len, const struct sock_filter *progs[SECCOMP_KIND_COUNT],
                  unsigned lens[SECCOMP_KIND_COUNT])
{
    const unsigned char *p = buf;
    struct file_header h;
    for (int k = 0; k < SECCOMP_KIND_COUNT; k++) {
        progs[k] = NULL;
        lens[k] = 0;
    }
    if (len < sizeof(h))
        return err_set(-EINVAL, "too short for a filter file header (%zu bytes)", len);
    memcpy(&h, p, sizeof(h));
    if (memcmp(h.magic, FILE_MAGIC, 8))
        return err_set(-EINVAL, "not an Ember seccomp filter file (bad magic; make one with "
                                "ember --export-seccomp)");
    if (h.version != FILE_VERSION)
        return err_set(-EINVAL, "format version %u, this build reads version %u", h.version,
                       FILE_VERSION);
    if (h.audit_arch != AUDIT_ARCH_X86_64)
        return err_set(-EINVAL, "compiled for architecture 0x%x, not x86_64", h.audit_arch);
    if (strnlen(h.build_id, sizeof(h.build_id)) == sizeof(h.build_id) ||
        strcmp(h.build_id, seccomp_build_id()))
        return err_set(-EINVAL, "compiled for build %.47s, this is build %s", h.build_id,
                       seccomp_build_id());
    if (h.n_kinds != SECCOMP_KIND_COUNT)
        return err_set(-EINVAL, "%u filters, expected %d (vmm, vcpu)", h.n_kinds,
                       SECCOMP_KIND_COUNT);
    size_t off = sizeof(h);
    for (unsigned i = 0; i < h.n_kinds; i++) {
        struct file_prog fp;
        if (len - off < sizeof(fp))
            return err_set(-EINVAL, "truncated (filter %u header)", i);
        memcpy(&fp, p + off, sizeof(fp));
        off += sizeof(fp);
        int k = -1;
        for (int j = 0; j < SECCOMP_KIND_COUNT; j++)
            if (strnlen(fp.kind, sizeof(fp.kind)) < sizeof(fp.kind) &&
                strcmp(fp.kind, kinds[j].name) == 0)
                k = j;
        if (k < 0)
            return err_set(-EINVAL, "filter %u: unknown thread kind \"%.15s\"", i, fp.kind);
        if (progs[k])
            return err_set(-EINVAL, "filter %u: thread kind %s given twice", i, kinds[k].name);
        if (fp.n_insns == 0 || fp.n_insns > BPF_MAXINSNS || fp.reserved)
            return err_set(-EINVAL, "filter %u (%s): %u instructions (1 to %d allowed)", i,
                           kinds[k].name, fp.n_insns, BPF_MAXINSNS);
        size_t bytes = (size_t)fp.n_insns * sizeof(struct sock_filter);
        if (len - off < bytes)
            return err_set(-EINVAL, "truncated (filter %u, %s)", i, kinds[k].name);
        if ((uintptr_t)(p + off) % _Alignof(struct sock_filter))
            return err_set(-EINVAL, "misaligned buffer");
        progs[k] = (const struct sock_filter *)(const void *)(p + off);
        lens[k] = fp.n_insns;
        off += bytes;
    }
    if (off != len)
        return err_set(-EINVAL, "%zu unexpected bytes after the last filter", len - off);
    return 0;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -errno ? -errno : -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int seccomp_export(const char *path)
{
    struct file_header h;
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, FILE_MAGIC, 8);
    h.version = FILE_VERSION;
    h.audit_arch = AUDIT_ARCH_X86_64;
    snprintf(h.build_id, sizeof(h.build_id), "%s", seccomp_build_id());
    h.n_kinds = SECCOMP_KIND_COUNT;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        return err_set(-e, "--export-seccomp %s: %s", path, strerror(e));
    }
    int rc = write_all(fd, &h, sizeof(h));
    for (int k = 0; k < SECCOMP_KIND_COUNT && !rc; k++) {
        struct sock_filter *prog;
        unsigned n;
        if ((rc = seccomp_compile((enum seccomp_kind)k, &prog, &n)))
            break;
        struct file_prog fp;
        memset(&fp, 0, sizeof(fp));
        snprintf(fp.kind, sizeof(fp.kind), "%s", kinds[k].name);
        fp.n_insns = n;
        rc = write_all(fd, &fp, sizeof(fp));
        if (!rc)
            rc = write_all(fd, prog, n * sizeof(*prog));
        free(prog);
        if (rc)
            err_set(rc, "--export-seccomp %s: %s", path, strerror(-rc));
    }
    if (close(fd) < 0 && !rc)
        rc = err_set(-errno, "--export-seccomp %s: %s", path, strerror(errno));
    if (rc)
        unlink(path);
    return rc;
}

/* ---- setup, install, SIGSYS ---- */

static bool enabled;
static struct sock_filter *progs[SECCOMP_KIND_COUNT];
static unsigned prog_lens[SECCOMP_KIND_COUNT];
static void *file_image;            /* --seccomp-filter: progs point into it */
static atomic_int log_copy_fd = -1; /* seccomp_log_path() */
static __thread int tls_kind = -1;
static __thread unsigned tls_index;

static size_t put_str(char *buf, size_t n, size_t cap, const char *s)
{
    while (*s && n < cap)
        buf[n++] = *s++;
    return n;
}

static size_t put_num(char *buf, size_t n, size_t cap, unsigned long v)
{
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i && n < cap)
        buf[n++] = tmp[--i];
    return n;
}

/* Async-signal-safe: only write(2), then metrics_flush (we _exit next). */
static atomic_int sigsys_taken;

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    /* The first forbidden call reports and ends the process; a thread that
     * faults meanwhile (two vCPUs at once) waits here for the exit. */
    if (atomic_exchange(&sigsys_taken, 1)) {
        for (;;) {
            struct timespec ts = {1, 0};
            clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
        }
    }
    char line[256];
    size_t n = 0, cap = sizeof(line) - 1;
    long nr = si->si_syscall;
    n = put_str(line, n, cap, "ember: seccomp: forbidden syscall ");
    n = put_str(line, n, cap, seccomp_syscall_name(nr));
    n = put_str(line, n, cap, " (");
    n = put_num(line, n, cap, (unsigned long)nr);
    n = put_str(line, n, cap, ")");
    if (nr == __NR_ioctl && uc) {
        /* which request: the second argument, still in rsi */
        const ucontext_t *u = uc;
        unsigned long req = (unsigned long)u->uc_mcontext.gregs[REG_RSI] & 0xffffffffu;
        char hex[16];
        int i = 0;
        do {
            hex[i++] = "0123456789abcdef"[req & 0xf];
            req >>= 4;
        } while (req && i < (int)sizeof(hex));
        n = put_str(line, n, cap, " request 0x");
        while (i && n < cap)
            line[n++] = hex[--i];
    }
    n = put_str(line, n, cap, " on the ");
    n = put_str(line, n, cap, tls_kind < 0 ? "new (vmm filter inherited)" : kinds[tls_kind].name);
    if (tls_kind == SECCOMP_KIND_VCPU) {
        n = put_str(line, n, cap, " ");
        n = put_num(line, n, cap, tls_index);
    }
    n = put_str(line, n, cap, " thread");
    if (si->si_arch != AUDIT_ARCH_X86_64)
        n = put_str(line, n, cap, " (not an x86_64 syscall)");
    n = put_str(line, n, cap, "; exiting with status 148\n");
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere else to report it */
    }
    int lfd = atomic_load_explicit(&log_copy_fd, memory_order_relaxed);
    if (lfd >= 0 && write(lfd, line, n) < 0) {
        /* the stderr copy stands */
    }
    METRIC_INC(seccomp_num_faults);
    metrics_flush();
    _exit(SECCOMP_EXIT_STATUS);
}

int seccomp_log_path(const char *path)
{
    int fd = -1;
    if (path) {
        fd = open(path, O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            return err_set(-e, "log_path %s: %s", path, strerror(e));
        }
    }
    int old = atomic_exchange(&log_copy_fd, fd);
    if (old >= 0)
        close(old);
    return 0;
}

/* The filters compiled at build time (seccomp-gen links them into `ember`);
 * absent (weak) in unit tests and fuzzers, which compile at run time. */
const void *ember_seccomp_blob(size_t *len) __attribute__((weak));

static bool use_builtin_blob(void)
{
    if (!ember_seccomp_blob)
        return false;
    size_t len = 0;
    const void *blob = ember_seccomp_blob(&len);
    const struct sock_filter *p[SECCOMP_KIND_COUNT];
    unsigned lens[SECCOMP_KIND_COUNT];
    if (seccomp_parse(blob, len, p, lens)) {
        /* Made from other tables (cannot happen with the Makefile's rules):
         * compile this build's own. */
        log_debug("seccomp: built-in filters unusable (%s); compiling", err_msg());
        return false;
    }
    for (int k = 0; k < SECCOMP_KIND_COUNT; k++) {
        progs[k] = (struct sock_filter *)p[k];
        prog_lens[k] = lens[k];
    }
    return true;
}

int seccomp_setup(bool enable, const char *filter_file)
{
    enabled = enable;
    if (!enable)
        return 0;
    if (filter_file) {
        int fd = open(filter_file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            return err_set(-e, "--seccomp-filter %s: %s", filter_file, strerror(e));
        }
        struct stat st;
        size_t max = sizeof(struct file_header) +
                     SECCOMP_KIND_COUNT *
                         (sizeof(struct file_prog) + BPF_MAXINSNS * sizeof(struct sock_filter));
        if (fstat(fd, &st) < 0 || st.st_size < 0 || (size_t)st.st_size > max) {
            close(fd);
            return err_set(-EINVAL,
                           "--seccomp-filter %s: not an Ember seccomp filter file "
                           "(size)",
                           filter_file);
        }
        file_image = malloc((size_t)st.st_size + 1);
        ssize_t r = file_image ? pread(fd, file_image, (size_t)st.st_size, 0) : -1;
        close(fd);
        if (r != st.st_size)
            return err_set(-EIO, "--seccomp-filter %s: cannot read it", filter_file);
        const struct sock_filter *p[SECCOMP_KIND_COUNT];
        if (seccomp_parse(file_image, (size_t)st.st_size, p, prog_lens)) {
            char why[256];
            snprintf(why, sizeof(why), "%s", err_msg());
            return err_set(-EINVAL, "--seccomp-filter %s: %s", filter_file, why);
        }
        for (int k = 0; k < SECCOMP_KIND_COUNT; k++)
            progs[k] = (struct sock_filter *)p[k];
    } else if (!use_builtin_blob()) {
        for (int k = 0; k < SECCOMP_KIND_COUNT; k++) {
            int rc = seccomp_compile((enum seccomp_kind)k, &progs[k], &prog_lens[k]);
            if (rc)
                return rc;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigfillset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) < 0)
        return err_set(-errno, "seccomp: SIGSYS handler: %s", strerror(errno));
    return 0;
}

int seccomp_install(enum seccomp_kind kind, unsigned index)
{
    if ((unsigned)kind >= SECCOMP_KIND_COUNT)
        return err_set(-EINVAL, "seccomp: unknown thread kind %d", (int)kind);
    tls_kind = kind;
    tls_index = index;
    if (!enabled)
        return 0;
    struct sock_fprog prog = {.len = (unsigned short)prog_lens[kind], .filter = progs[kind]};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return err_set(-errno, "seccomp: PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0) {
        int e = errno;
        tls_kind = -1;
        return err_set(-e, "seccomp: cannot install the %s filter: %s", kinds[kind].name,
                       strerror(e));
    }
    return 0;
}

/* ---- syscall names, for the SIGSYS handler (a table: async-signal-safe) ---- */

// clang-format off
#define N(x) [__NR_##x] = #x,
static const char *const syscall_names[] = {
N(read) N(write) N(open) N(close) N(stat) N(fstat) 
N(lstat) N(poll) N(lseek) N(mmap) N(mprotect) N(munmap) 
N(brk) N(rt_sigaction) N(rt_sigprocmask) N(rt_sigreturn) N(ioctl) N(pread64) 
N(pwrite64) N(readv) N(writev) N(access) N(pipe) N(select) 
N(sched_yield) N(mremap) N(msync) N(mincore) N(madvise) N(shmget) 
N(shmat) N(shmctl) N(dup) N(dup2) N(pause) N(nanosleep) 
N(getitimer) N(alarm) N(setitimer) N(getpid) N(sendfile) N(socket) 
N(connect) N(accept) N(sendto) N(recvfrom) N(sendmsg) N(recvmsg) 
N(shutdown) N(bind) N(listen) N(getsockname) N(getpeername) N(socketpair) 
N(setsockopt) N(getsockopt) N(clone) N(fork) N(vfork) N(execve) 
N(exit) N(wait4) N(kill) N(uname) N(semget) N(semop) 
N(semctl) N(shmdt) N(msgget) N(msgsnd) N(msgrcv) N(msgctl) 
N(fcntl) N(flock) N(fsync) N(fdatasync) N(truncate) N(ftruncate) 
N(getdents) N(getcwd) N(chdir) N(fchdir) N(rename) N(mkdir) 
N(rmdir) N(creat) N(link) N(unlink) N(symlink) N(readlink) 
N(chmod) N(fchmod) N(chown) N(fchown) N(lchown) N(umask) 
N(gettimeofday) N(getrlimit) N(getrusage) N(sysinfo) N(times) N(ptrace) 
N(getuid) N(syslog) N(getgid) N(setuid) N(setgid) N(geteuid) 
N(getegid) N(setpgid) N(getppid) N(getpgrp) N(setsid) N(setreuid) 
N(setregid) N(getgroups) N(setgroups) N(setresuid) N(getresuid) N(setresgid) 
N(getresgid) N(getpgid) N(setfsuid) N(setfsgid) N(getsid) N(capget) 
N(capset) N(rt_sigpending) N(rt_sigtimedwait) N(rt_sigqueueinfo) N(rt_sigsuspend) N(sigaltstack) 
N(utime) N(mknod) N(uselib) N(personality) N(ustat) N(statfs) 
N(fstatfs) N(sysfs) N(getpriority) N(setpriority) N(sched_setparam) N(sched_getparam) 
N(sched_setscheduler) N(sched_getscheduler) N(sched_get_priority_max) N(sched_get_priority_min) N(sched_rr_get_interval) N(mlock) 
N(munlock) N(mlockall) N(munlockall) N(vhangup) N(modify_ldt) N(pivot_root) 
N(_sysctl) N(prctl) N(arch_prctl) N(adjtimex) N(setrlimit) N(chroot) 
N(sync) N(acct) N(settimeofday) N(mount) N(umount2) N(swapon) 
N(swapoff) N(reboot) N(sethostname) N(setdomainname) N(iopl) N(ioperm) 
N(create_module) N(init_module) N(delete_module) N(get_kernel_syms) N(query_module) N(quotactl) 
N(nfsservctl) N(getpmsg) N(putpmsg) N(afs_syscall) N(tuxcall) N(security) 
N(gettid) N(readahead) N(setxattr) N(lsetxattr) N(fsetxattr) N(getxattr) 
N(lgetxattr) N(fgetxattr) N(listxattr) N(llistxattr) N(flistxattr) N(removexattr) 
N(lremovexattr) N(fremovexattr) N(tkill) N(time) N(futex) N(sched_setaffinity) 
N(sched_getaffinity) N(set_thread_area) N(io_setup) N(io_destroy) N(io_getevents) N(io_submit) 
N(io_cancel) N(get_thread_area) N(lookup_dcookie) N(epoll_create) N(epoll_ctl_old) N(epoll_wait_old) 
N(remap_file_pages) N(getdents64) N(set_tid_address) N(restart_syscall) N(semtimedop) N(fadvise64) 
N(timer_create) N(timer_settime) N(timer_gettime) N(timer_getoverrun) N(timer_delete) N(clock_settime) 
N(clock_gettime) N(clock_getres) N(clock_nanosleep) N(exit_group) N(epoll_wait) N(epoll_ctl) 
N(tgkill) N(utimes) N(vserver) N(mbind) N(set_mempolicy) N(get_mempolicy) 
N(mq_open) N(mq_unlink) N(mq_timedsend) N(mq_timedreceive) N(mq_notify) N(mq_getsetattr) 
N(kexec_load) N(waitid) N(add_key) N(request_key) N(keyctl) N(ioprio_set) 
N(ioprio_get) N(inotify_init) N(inotify_add_watch) N(inotify_rm_watch) N(migrate_pages) N(openat) 
N(mkdirat) N(mknodat) N(fchownat) N(futimesat) N(newfstatat) N(unlinkat) 
N(renameat) N(linkat) N(symlinkat) N(readlinkat) N(fchmodat) N(faccessat) 
N(pselect6) N(ppoll) N(unshare) N(set_robust_list) N(get_robust_list) N(splice) 
N(tee) N(sync_file_range) N(vmsplice) N(move_pages) N(utimensat) N(epoll_pwait) 
N(signalfd) N(timerfd_create) N(eventfd) N(fallocate) N(timerfd_settime) N(timerfd_gettime) 
N(accept4) N(signalfd4) N(eventfd2) N(epoll_create1) N(dup3) N(pipe2) 
N(inotify_init1) N(preadv) N(pwritev) N(rt_tgsigqueueinfo) N(perf_event_open) N(recvmmsg) 
N(fanotify_init) N(fanotify_mark) N(prlimit64) N(name_to_handle_at) N(open_by_handle_at) N(clock_adjtime) 
N(syncfs) N(sendmmsg) N(setns) N(getcpu) N(process_vm_readv) N(process_vm_writev) 
N(kcmp) N(finit_module) N(sched_setattr) N(sched_getattr) N(renameat2) N(seccomp) 
N(getrandom) N(memfd_create) N(kexec_file_load) N(bpf) N(execveat) N(userfaultfd) 
N(membarrier) N(mlock2) N(copy_file_range) N(preadv2) N(pwritev2) N(pkey_mprotect) 
N(pkey_alloc) N(pkey_free) N(statx) N(io_pgetevents) N(rseq) N(pidfd_send_signal) 
N(io_uring_setup) N(io_uring_enter) N(io_uring_register) N(open_tree) N(move_mount) N(fsopen) 
N(fsconfig) N(fsmount) N(fspick) N(pidfd_open) N(clone3) N(close_range) 
N(openat2) N(pidfd_getfd) N(faccessat2) N(process_madvise) N(epoll_pwait2) N(mount_setattr) 
N(quotactl_fd) N(landlock_create_ruleset) N(landlock_add_rule) N(landlock_restrict_self) N(memfd_secret) N(process_mrelease) 
N(futex_waitv) N(set_mempolicy_home_node) 
};
#undef N
// clang-format on

const char *seccomp_syscall_name(long nr)
{
    if (nr < 0 || (size_t)nr >= sizeof(syscall_names) / sizeof(syscall_names[0]) ||
        !syscall_names[nr])
        return "?";
    return syscall_names[nr];
}
