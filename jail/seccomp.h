/* seccomp.h - per-thread seccomp filters (libseccomp), one per thread kind.
 *
 * Thread kinds (DESIGN.md, "Threads and the event loop"):
 *   vmm  - the main thread: the epoll loop, which also serves the REST API
 *          (Ember has no separate API thread, hence no "api" kind), builds
 *          and starts the VM at InstanceStart, and runs the devices' queues.
 *   vcpu - one per vCPU: the KVM_RUN loop and the PIO/MMIO handlers.
 * Each thread installs its own filter (no TSYNC) after PR_SET_NO_NEW_PRIVS:
 * the main thread before it serves the API or starts the VM (with or without
 * --no-api: one filter per kind), a vCPU thread just before its first KVM_RUN.
 * vCPU threads are cloned by the main thread after its filter is in place, so
 * they inherit it and stack theirs on top: a vCPU thread may only make the
 * calls both filters allow. The allow-lists are in seccomp.c and
 * docs/seccomp.md.
 *
 * A forbidden call traps (SIGSYS): the handler writes one line naming the
 * syscall and the thread kind to stderr (and to the log file if one is set),
 * bumps seccomp.num_faults, flushes metrics and _exit(148) (Firecracker's
 * status).
 *
 * Filter file (--seccomp-filter FILE, written by --export-seccomp FILE),
 * little-endian, every field in host order:
 *   char     magic[8]      "EMBERSEC"
 *   uint32_t version       1
 *   uint32_t audit_arch    AUDIT_ARCH_X86_64
 *   char     build_id[48]  NUL-padded; must equal seccomp_build_id()
 *   uint32_t n_kinds       2
 *   then n_kinds times:
 *     char     kind[16]    "vmm" or "vcpu", NUL-padded
 *     uint32_t n_insns     1 .. 4096
 *     uint32_t reserved    0
 *     struct sock_filter insns[n_insns]   (8 bytes each: code, jt, jf, k)
 * The file must end right after the last program. The build id names the
 * architecture and a hash of the compiled-in allow-lists, so a file made by
 * one build is refused by a build whose needs differ.
 */
#ifndef EMBER_SECCOMP_H
#define EMBER_SECCOMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum seccomp_kind {
    SECCOMP_KIND_VMM,
    SECCOMP_KIND_VCPU,
    SECCOMP_KIND_COUNT,
};

/* Exit status of a process killed by a forbidden syscall (as Firecracker). */
#define SECCOMP_EXIT_STATUS 148

/* Main thread, before any other thread exists. With `enabled`, compile every
 * kind's filter (or, with `filter_file`, load them from that file) and
 * install the SIGSYS handler; filters are installed later by
 * seccomp_install(). Returns 0 or -errno (err_set names the file/field). */
int seccomp_setup(bool enabled, const char *filter_file);

/* Calling thread: PR_SET_NO_NEW_PRIVS, then this kind's filter. A no-op
 * (returning 0) when seccomp_setup() ran with enabled = false. `index` is the
 * vCPU number (for the fault message), ignored for the vmm kind. */
int seccomp_install(enum seccomp_kind kind, unsigned index);

/* The SIGSYS line also goes to the log file at `path` (log_open()'s path,
 * opened again here: log.c keeps its fd private); NULL: stderr only. */
int seccomp_log_path(const char *path);

/* Write this build's filters to `path` in the format above. */
int seccomp_export(const char *path);

/* Parse a filter file image; on success `progs[k]`/`lens[k]` point into
 * `buf`. Returns 0 or -EINVAL with err_set naming what is wrong. */
struct sock_filter;
int seccomp_parse(const void *buf, size_t len, const struct sock_filter *progs[SECCOMP_KIND_COUNT],
                  unsigned lens[SECCOMP_KIND_COUNT]);

/* Compile `kind`'s built-in allow-list to BPF (malloc'd; caller frees). */
int seccomp_compile(enum seccomp_kind kind, struct sock_filter **prog, unsigned *len);

const char *seccomp_kind_name(enum seccomp_kind kind);
/* Distinct syscalls `kind`'s allow-list lets through (argument filters aside). */
unsigned seccomp_allowed_count(enum seccomp_kind kind);
/* "x86_64-" + 16 hex digits hashing the allow-lists compiled in. */
const char *seccomp_build_id(void);
/* Name of x86_64 syscall `nr` ("?" if unknown); async-signal-safe. */
const char *seccomp_syscall_name(long nr);

#endif
