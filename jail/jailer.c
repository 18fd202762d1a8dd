/* jailer.c - `ember-jailer`: validates its flags, then builds a jail for one
 * Ember process (private root with three device nodes, cgroup, netns,
 * rlimits, unprivileged uid:gid, no capabilities) and execs Ember in it.
 * Flags follow Firecracker's jailer; docs/jailer.md describes each step.
 */
#define _GNU_SOURCE
#include "jail_opts.h"

#include "../vmm/base/err.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

#define JAILER_VERSION "0.1.0"
#define MAX_CREATED 64
#define OLD_ROOT ".ember-old-root"

static uint64_t cpu_now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (uint64_t)t.tv_sec * 1000000ULL + (uint64_t)t.tv_nsec / 1000;
}

/* A cgroup hierarchy the jail joins: its mount point, our leaf in it, and
 * where we were before (to move back out if a later step fails). */
struct cg_hier {
    char mount[PATH_MAX];
    char leaf[PATH_MAX];
    char orig[PATH_MAX];
    bool joined;
};

struct jail {
    struct jail_opts o;
    uint64_t start_us;       /* CLOCK_MONOTONIC at main(): --start-time-us */
    uint64_t start_cpu_us;   /* CPU time of the processes that forked us: --parent-cpu-time-us */
    char jail_dir[PATH_MAX]; /* <base>/<exec name>/<id> */
    char root[PATH_MAX];     /* <jail_dir>/root */
    char exec_dst[PATH_MAX];
    bool exec_placed;
    /* Directories this run created (host dirs and cgroups), in creation order. */
    char *created[MAX_CREATED];
    int n_created;
    struct cg_hier cg[JAIL_MAX_CGROUPS];
    int n_cg;
    int cg_of_arg[JAIL_MAX_CGROUPS]; /* --cgroup i -> index into cg[] */
    char v2_needed[JAIL_MAX_CGROUPS][64];
    int n_v2_needed;
    bool pivoted;
    int devnull;
};

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: ember-jailer --id ID --exec-file PATH --uid UID --gid GID "
            "[options] -- [ember args]\n"
            "\n"
            "Builds a jail at <chroot-base-dir>/<exec name>/<id>/root and runs the "
            "VMM in it\n"
            "as UID:GID with no capabilities, as `/<exec name> --id ID [ember "
            "args]`.\n"
            "\n"
            "  --id ID                   1 to 64 letters, digits and '-'\n"
            "  --exec-file PATH          the VMM binary (copied or hard-linked into "
            "the jail)\n"
            "  --uid UID, --gid GID      who the VMM runs as (0 is allowed, as Firecracker's\n"
            "                            jailer, with a warning; capabilities are still dropped)\n"
            "  --allow-root              accepted for compatibility (root no longer needs it)\n"
            "  --chroot-base-dir DIR     default " JAIL_DEFAULT_BASE " (must allow device nodes)\n"
            "  --netns PATH              join this network namespace (e.g. "
            "/var/run/netns/NAME)\n"
            "  --cgroup-version 1|2      default 2 (1, Firecracker's, when run as `jailer`)\n"
            "  --cgroup FILE=VALUE       write VALUE to FILE in the jail's cgroup "
            "(repeatable)\n"
            "  --parent-cgroup PATH      cgroup parent, relative to the hierarchy "
            "(default: the exec file's name, as Firecracker)\n"
            "  --resource-limit R=N      fsize=N or no-file=N (repeatable; no-file "
            "default 2048)\n"
            "  --daemonize               setsid, stdin/stdout/stderr to /dev/null\n"
            "  --new-pid-ns              run the VMM as pid 1 of a new PID "
            "namespace; its host pid\n"
            "                            is written to <jail root>/<exec name>.pid\n"
            "  --version, --help\n"
            "\n"
            "Exit status: 1 and one line on stderr if anything is wrong; nothing is "
            "left behind.\n");
}

/* ---- bookkeeping and cleanup
 * ---------------------------------------------------------- */

static int note_created(struct jail *j, const char *path)
{
    if (j->n_created == MAX_CREATED)
        return err_set(-E2BIG, "%s: too many directories to create", path);
    j->created[j->n_created] = strdup(path);
    if (!j->created[j->n_created])
        return err_set(-ENOMEM, "out of memory");
    j->n_created++;
    return 0;
}

static int write_file(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t n = strlen(value);
    ssize_t w = write(fd, value, n);
    int e = w < 0 ? -errno : (size_t)w != n ? -EIO : 0;
    if (close(fd) < 0 && !e)
        e = -errno;
    return e;
}

/* Undo what this run made on the host, newest first. Only before pivot_root:
 * afterwards the host paths are out of reach (and only system failures remain).
 */
static void cleanup(struct jail *j)
{
    if (j->pivoted)
        return;
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", getpid());
    for (int i = 0; i < j->n_cg; i++) {
        if (!j->cg[i].joined)
            continue;
        char p[PATH_MAX + 32];
        snprintf(p, sizeof(p), "%s/cgroup.procs", j->cg[i].orig);
        if (write_file(p, pid) == 0)
            j->cg[i].joined = false;
    }
    if (j->exec_placed)
        unlink(j->exec_dst);
    for (int i = j->n_created - 1; i >= 0; i--) {
        rmdir(j->created[i]);
        free(j->created[i]);
    }
    j->n_created = 0;
}

/* mkdir -p `path` (absolute), recording each directory it creates. */
static int mkdir_p(struct jail *j, const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return err_set(-ENAMETOOLONG, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, mode) == 0) {
            int r = note_created(j, buf);
            if (r < 0)
                return r;
        } else if (errno != EEXIST) {
            return err_set(-errno, "%s: cannot create directory: %s", buf, strerror(errno));
        } else {
            struct stat st;
            if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode))
                return err_set(-ENOTDIR, "%s: exists and is not a directory", buf);
        }
        *p = c;
        if (c == '\0')
            break;
    }
    return 0;
}

/* ---- /proc/self/mountinfo: where the cgroup hierarchies are
 * ----------------------------- */

static void unescape_octal(char *s)
{
    char *d = s;
    while (*s) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 4;
        } else {
            *d++ = *s++;
        }
    }
    *d = '\0';
}

static bool list_has(const char *list, const char *word, char sep)
{
    size_t n = strlen(word);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, sep);
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !strncmp(p, word, n))
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

/* The mount point of cgroup v2 (controller NULL) or of the v1 hierarchy
 * carrying `controller`. */
static int find_cgroup_mount(const char *controller, char *out, size_t outsz)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return err_set(-errno, "/proc/self/mountinfo: %s", strerror(errno));
    char line[4096];
    int found = -ENOENT;
    while (found < 0 && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *fields[64];
        int n = 0;
        for (char *tok = strtok(line, " "); tok && n < 64; tok = strtok(NULL, " "))
            fields[n++] = tok;
        int sep = -1;
        for (int i = 6; i < n; i++)
            if (!strcmp(fields[i], "-")) {
                sep = i;
                break;
            }
        if (sep < 0 || sep + 3 >= n)
            continue;
        const char *fstype = fields[sep + 1], *super = fields[sep + 3];
        bool match = controller ? !strcmp(fstype, "cgroup") && list_has(super, controller, ',')
                                : !strcmp(fstype, "cgroup2");
        if (!match)
            continue;
        unescape_octal(fields[4]);
        if (snprintf(out, outsz, "%s", fields[4]) < (int)outsz)
            found = 0;
    }
    fclose(f);
    return found;
}

/* Our current cgroup in the v2 hierarchy (controller NULL) or the v1 one with
 * `controller`, as a path under `mount`. */
static int own_cgroup(const char *controller, const char *mount, char *out, size_t outsz)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return err_set(-errno, "/proc/self/cgroup: %s", strerror(errno));
    char line[4096];
    int r = err_set(-ENOENT, "/proc/self/cgroup: no entry for %s",
                    controller ? controller : "cgroup v2");
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c1 = *c2 = '\0';
        bool match =
            controller ? list_has(c1 + 1, controller, ',') : !strcmp(line, "0") && c1[1] == '\0';
        if (!match)
            continue;
        const char *path = c2 + 1;
        if (snprintf(out, outsz, "%s%s", mount, strcmp(path, "/") ? path : "") < (int)outsz)
            r = 0;
        break;
    }
    fclose(f);
    return r;
}

/* The first line of a small file into buf, without its newline; returns its
 * length (0 for an empty file or an empty first line: a v1 cpuset.mems that
 * holds nothing reads as "\n") or -errno. */
static int read_small(const char *path, char *buf, size_t sz)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sz - 1);
    int e = n < 0 ? -errno : 0;
    close(fd);
    if (e)
        return e;
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return (int)strlen(buf);
}

/* ---- validation (nothing is created here)
 * --------------------------------------------- */

static int validate_exec(struct jail *j)
{
    struct stat st;
    if (stat(j->o.exec_file, &st) < 0)
        return err_set(-errno, "--exec-file %s: %s", j->o.exec_file, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return err_set(-EINVAL, "--exec-file %s: not a regular file", j->o.exec_file);
    if (access(j->o.exec_file, X_OK) < 0 || !(st.st_mode & 0111))
        return err_set(-EACCES, "--exec-file %s: not executable", j->o.exec_file);
    return 0;
}

/* The ELF interpreter (PT_INTERP) of `path` into `out`; "" for a static binary.
 */
static int elf_interp(const char *path, char *out, size_t outsz)
{
    out[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    Elf64_Ehdr eh;
    int r = 0;
    if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) ||
        memcmp(eh.e_ident, ELFMAG, SELFMAG) || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 256) {
        close(fd);
        return 0; /* not an ELF64 file: leave it to execve */
    }
    for (int i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + (uint64_t)i * sizeof(ph))) !=
            (ssize_t)sizeof(ph))
            break;
        if (ph.p_type != PT_INTERP)
            continue;
        if (ph.p_filesz == 0 || ph.p_filesz >= outsz) {
            r = -EINVAL;
            break;
        }
        if (pread(fd, out, ph.p_filesz, (off_t)ph.p_offset) != (ssize_t)ph.p_filesz) {
            r = -EIO;
            break;
        }
        out[ph.p_filesz] = '\0';
        break;
    }
    close(fd);
    return r;
}

/* A dynamically linked VMM needs its loader (and libraries) inside the jail. */
static int validate_interp(struct jail *j)
{
    char interp[PATH_MAX], inside[2 * PATH_MAX];
    int r = elf_interp(j->o.exec_file, interp, sizeof(interp));
    if (r < 0)
        return err_set(r, "--exec-file %s: bad ELF program headers", j->o.exec_file);
    if (!interp[0])
        return 0;
    snprintf(inside, sizeof(inside), "%s%s", j->root, interp);
    if (access(inside, F_OK) == 0)
        return 0;
    return err_set(-ENOEXEC,
                   "--exec-file %s: dynamically linked (interpreter %s), and the "
                   "jail has no %s: "
                   "link the VMM statically (-static-pie) or place its loader "
                   "and libraries in "
                   "%s",
                   j->o.exec_file, interp, interp, j->root);
}

static int validate_base(struct jail *j)
{
    const struct jail_opts *o = &j->o;
    if (snprintf(j->jail_dir, sizeof(j->jail_dir), "%s/%s/%s", o->base_dir, o->exec_name, o->id) >=
            (int)sizeof(j->jail_dir) ||
        snprintf(j->root, sizeof(j->root), "%s/root", j->jail_dir) >= (int)sizeof(j->root) ||
        snprintf(j->exec_dst, sizeof(j->exec_dst), "%s/%s", j->root, o->exec_name) >=
            (int)sizeof(j->exec_dst))
        return err_set(-ENAMETOOLONG, "--chroot-base-dir %s: path too long", o->base_dir);
    /* The nearest existing ancestor of the jail root decides the file system. */
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s", j->root);
    struct statvfs sv;
    while (statvfs(p, &sv) < 0) {
        if (errno != ENOENT)
            return err_set(-errno, "%s: %s", p, strerror(errno));
        char *slash = strrchr(p, '/');
        if (!slash || slash == p)
            snprintf(p, sizeof(p), "/");
        else
            *slash = '\0';
    }
    struct stat st;
    if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode))
        return err_set(-ENOTDIR, "--chroot-base-dir %s: %s is not a directory", o->base_dir, p);
    if (sv.f_flag & ST_NODEV)
        return err_set(-EINVAL,
                       "--chroot-base-dir %s: %s is on a file system mounted nodev "
                       "(device nodes "
                       "such as /dev/kvm would not work there)",
                       o->base_dir, p);
    if (sv.f_flag & ST_NOEXEC)
        return err_set(-EINVAL,
                       "--chroot-base-dir %s: %s is on a file system mounted "
                       "noexec (the VMM could "
                       "not be executed there)",
                       o->base_dir, p);
    if (sv.f_flag & ST_RDONLY)
        return err_set(-EROFS, "--chroot-base-dir %s: %s is on a read-only file system",
                       o->base_dir, p);
    return 0;
}

static int open_netns(const char *path, int *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(-errno, "--netns %s: %s", path, strerror(errno));
    struct statfs sf;
    if (fstatfs(fd, &sf) < 0 || sf.f_type != NSFS_MAGIC) {
        close(fd);
        return err_set(-EINVAL, "--netns %s: not a namespace file (e.g. /var/run/netns/NAME)",
                       path);
    }
    int type = ioctl(fd, NS_GET_NSTYPE);
    if (type != CLONE_NEWNET) {
        close(fd);
        return err_set(-EINVAL, "--netns %s: a namespace, but not a network namespace", path);
    }
    *out = fd;
    return 0;
}

/* The controller a cgroup file belongs to: the part before the first '.'. */
static void controller_of(const char *file, char *out, size_t sz)
{
    size_t n = strcspn(file, ".");
    if (n >= sz)
        n = sz - 1;
    memcpy(out, file, n);
    out[n] = '\0';
}

static int validate_cgroups_v2(struct jail *j)
{
    struct jail_opts *o = &j->o;
    struct cg_hier *h = &j->cg[0];
    int r = find_cgroup_mount(NULL, h->mount, sizeof(h->mount));
    if (r == -ENOENT) {
        if (o->n_cgroups == 0)
            return 0; /* nothing to limit: no cgroup */
        return err_set(-ENOENT,
                       "--cgroup-version 2: no cgroup2 file system is mounted on this host "
                       "(see /proc/self/mountinfo); try --cgroup-version 1");
    }
    if (r < 0)
        return r;
    j->n_cg = 1;
    if (snprintf(h->leaf, sizeof(h->leaf), "%s/%s/%s", h->mount, o->parent_cgroup, o->id) >=
        (int)sizeof(h->leaf))
        return err_set(-ENAMETOOLONG, "--parent-cgroup %s: path too long", o->parent_cgroup);
    if ((r = own_cgroup(NULL, h->mount, h->orig, sizeof(h->orig))) < 0)
        return r;
    char avail[1024], path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/cgroup.controllers", h->mount);
    if ((r = read_small(path, avail, sizeof(avail))) < 0)
        return err_set(r, "%s: %s", path, strerror(-r));
    for (int i = 0; i < o->n_cgroups; i++) {
        const char *file = o->cgroups[i].file;
        char ctl[64];
        controller_of(file, ctl, sizeof(ctl));
        j->cg_of_arg[i] = 0;
        if (!strcmp(ctl, "cgroup"))
            continue; /* core interface files exist in every cgroup */
        if (list_has(avail, ctl, ' ')) {
            bool dup = false;
            for (int k = 0; k < j->n_v2_needed; k++)
                dup |= !strcmp(j->v2_needed[k], ctl);
            if (!dup)
                snprintf(j->v2_needed[j->n_v2_needed++], sizeof(j->v2_needed[0]), "%s", ctl);
            continue;
        }
        /* Files without a controller (cpu.pressure, cpu.stat) exist in the root
         * too. */
        snprintf(path, sizeof(path), "%s/%s", h->mount, file);
        if (access(path, F_OK) == 0)
            continue;
        return err_set(-ENOENT,
                       "--cgroup %s=%s: no such cgroup file: the %s controller is "
                       "not available "
                       "in cgroup v2 at %s (available: %s)",
                       file, o->cgroups[i].value, ctl, h->mount, *avail ? avail : "none");
    }
    return 0;
}

static int validate_cgroups_v1(struct jail *j)
{
    struct jail_opts *o = &j->o;
    for (int i = 0; i < o->n_cgroups; i++) {
        const char *file = o->cgroups[i].file;
        char ctl[64], mount[PATH_MAX], path[PATH_MAX + 64];
        controller_of(file, ctl, sizeof(ctl));
        int r = find_cgroup_mount(ctl, mount, sizeof(mount));
        if (r == -ENOENT)
            return err_set(-ENOENT,
                           "--cgroup %s=%s: no cgroup v1 hierarchy with the %s controller is "
                           "mounted on this host",
                           file, o->cgroups[i].value, ctl);
        if (r < 0)
            return r;
        snprintf(path, sizeof(path), "%s/%s", mount, file);
        if (access(path, F_OK) < 0)
            return err_set(-ENOENT, "--cgroup %s=%s: no such cgroup file (%s)", file,
                           o->cgroups[i].value, path);
        int k;
        for (k = 0; k < j->n_cg; k++)
            if (!strcmp(j->cg[k].mount, mount))
                break;
        if (k == j->n_cg) {
            struct cg_hier *h = &j->cg[j->n_cg++];
            snprintf(h->mount, sizeof(h->mount), "%s", mount);
            if (snprintf(h->leaf, sizeof(h->leaf), "%s/%s/%s", mount, o->parent_cgroup, o->id) >=
                (int)sizeof(h->leaf))
                return err_set(-ENAMETOOLONG, "--parent-cgroup %s: path too long",
                               o->parent_cgroup);
            if ((r = own_cgroup(ctl, mount, h->orig, sizeof(h->orig))) < 0)
                return r;
        }
        j->cg_of_arg[i] = k;
    }
    return 0;
}

static int validate(struct jail *j)
{
    int r;
    if ((r = validate_exec(j)) < 0 || (r = validate_base(j)) < 0 || (r = validate_interp(j)) < 0)
        return r;
    if (j->o.netns) {
        int fd;
        if ((r = open_netns(j->o.netns, &fd)) < 0)
            return r;
        close(fd);
    }
    r = j->o.cgroup_version == 2 ? validate_cgroups_v2(j) : validate_cgroups_v1(j);
    if (r < 0)
        return r;
    /* A leaf that holds processes belongs to a running jail with this id. */
    for (int i = 0; i < j->n_cg; i++) {
        char path[PATH_MAX + 32], buf[64];
        snprintf(path, sizeof(path), "%s/cgroup.procs", j->cg[i].leaf);
        if (read_small(path, buf, sizeof(buf)) > 0)
            return err_set(-EBUSY, "--id %s: cgroup %s is in use (another jail with this id?)",
                           j->o.id, j->cg[i].leaf);
    }
    return 0;
}

/* ---- the jail, step by step
 * ------------------------------------------------------------ */

static int close_inherited_fds(void)
{
    if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
        return 0;
    for (int fd = 3; fd < 65536; fd++)
        close(fd);
    return 0;
}

static int copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return err_set(-errno, "--exec-file %s: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
    if (out < 0) {
        int e = errno;
        close(in);
        return err_set(-e, "%s: %s", dst, strerror(e));
    }
    int r = 0;
    for (;;) {
        char buf[65536];
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = err_set(-errno, "--exec-file %s: read: %s", src, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                r = err_set(-errno, "%s: write: %s", dst, strerror(errno));
                break;
            }
            off += w;
        }
        if (r < 0)
            break;
    }
    if (fchmod(out, 0755) < 0 && !r)
        r = err_set(-errno, "%s: chmod: %s", dst, strerror(errno));
    if (close(out) < 0 && !r)
        r = err_set(-errno, "%s: %s", dst, strerror(errno));
    close(in);
    return r;
}

/* Hard-link the VMM into the jail when on the same file system and runnable
 * by anyone (the link shares the inode), else copy it. */
static int place_exec(struct jail *j)
{
    struct stat src, dir, old;
    if (stat(j->o.exec_file, &src) < 0)
        return err_set(-errno, "--exec-file %s: %s", j->o.exec_file, strerror(errno));
    if (stat(j->root, &dir) < 0)
        return err_set(-errno, "%s: %s", j->root, strerror(errno));
    if (lstat(j->exec_dst, &old) == 0) {
        if (!S_ISREG(old.st_mode) || unlink(j->exec_dst) < 0)
            return err_set(-EEXIST, "%s: exists and cannot be replaced", j->exec_dst);
    }
    if (src.st_dev == dir.st_dev && (src.st_mode & S_IXOTH) &&
        !(src.st_mode & (S_ISUID | S_ISGID)) &&
        /* Follow a symlink (`make install` links bin/firecracker to ember): a link to
         * the symlink itself would point out of the jail. */
        linkat(AT_FDCWD, j->o.exec_file, AT_FDCWD, j->exec_dst, AT_SYMLINK_FOLLOW) == 0) {
        j->exec_placed = true;
        return 0;
    }
    int r = copy_file(j->o.exec_file, j->exec_dst);
    j->exec_placed = true; /* remove even a partial copy on failure */
    return r;
}

static int join_netns(struct jail *j)
{
    if (!j->o.netns)
        return 0;
    int fd, r;
    if ((r = open_netns(j->o.netns, &fd)) < 0)
        return r;
    r = setns(fd, CLONE_NEWNET) < 0
            ? err_set(-errno, "--netns %s: setns: %s", j->o.netns, strerror(errno))
            : 0;
    close(fd);
    return r;
}

static int apply_rlimits(struct jail *j)
{
    bool nofile = false;
    for (int i = 0; i < j->o.n_rlimits; i++)
        nofile |= j->o.rlimits[i].resource == RLIMIT_NOFILE;
    if (!nofile) {
        struct rlimit rl = {JAIL_DEFAULT_NOFILE, JAIL_DEFAULT_NOFILE};
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            return err_set(-errno, "setrlimit(RLIMIT_NOFILE, %d): %s", JAIL_DEFAULT_NOFILE,
                           strerror(errno));
    }
    for (int i = 0; i < j->o.n_rlimits; i++) {
        const struct jail_rlimit_arg *a = &j->o.rlimits[i];
        rlim_t v = a->value >= (1ULL << 63) ? RLIM_INFINITY : (rlim_t)a->value;
        struct rlimit rl = {v, v};
        if (setrlimit(a->resource, &rl) < 0)
            return err_set(-errno, "--resource-limit %s=%llu: %s",
                           a->resource == RLIMIT_FSIZE ? "fsize" : "no-file",
                           (unsigned long long)a->value, strerror(errno));
    }
    return 0;
}

/* Enable `ctl` in `dir`'s cgroup.subtree_control unless it already is. Called for every
 * level above the leaf before the leaf is made (setup_cgroups), so a leaf is always created
 * under a parent whose mask has the controller, and gets its files at mkdir. A listed
 * controller needs no write: a write would take cgroup_mutex and drain the whole subtree
 * (every sibling jail) each time. */
static int enable_controller(const char *dir, const char *ctl)
{
    char path[PATH_MAX + 32], cur[1024], req[80];
    snprintf(path, sizeof(path), "%s/cgroup.subtree_control", dir);
    int r = read_small(path, cur, sizeof(cur));
    if (r < 0)
        return err_set(r, "%s: %s", path, strerror(-r));
    if (list_has(cur, ctl, ' '))
        return 0;
    snprintf(req, sizeof(req), "+%s", ctl);
    if ((r = write_file(path, req)) < 0)
        return err_set(r, "%s: cannot enable the %s controller: %s", path, ctl, strerror(-r));
    return 0;
}

static int setup_cgroups(struct jail *j)
{
    const struct jail_opts *o = &j->o;
    int r;
    for (int i = 0; i < j->n_cg; i++) {
        struct cg_hier *h = &j->cg[i];
        if (o->cgroup_version == 2 && j->n_v2_needed) {
            /* The parent first, the controllers enabled down to it, then the leaf. A leaf
             * made before its parent's subtree_control lists a controller gets no files
             * for it, and another jailer's write may still be applying it to existing
             * children when we read it listed: parallel starts under one parent failed
             * with "no such cgroup file". */
            char parent[PATH_MAX];
            snprintf(parent, sizeof(parent), "%s/%s", h->mount, o->parent_cgroup);
            if ((r = mkdir_p(j, parent, 0755)) < 0)
                return r;
            /* Each level from the root down to the parent delegates the controllers.
             */
            char dir[PATH_MAX];
            snprintf(dir, sizeof(dir), "%s", h->mount);
            const char *rest = o->parent_cgroup;
            for (;;) {
                for (int k = 0; k < j->n_v2_needed; k++)
                    if ((r = enable_controller(dir, j->v2_needed[k])) < 0)
                        return r;
                if (!*rest)
                    break;
                size_t n = strcspn(rest, "/");
                size_t len = strlen(dir);
                snprintf(dir + len, sizeof(dir) - len, "/%.*s", (int)n, rest);
                rest += n;
                if (*rest == '/')
                    rest++;
            }
        }
        if ((r = mkdir_p(j, h->leaf, 0755)) < 0)
            return r;
        if (o->cgroup_version == 1 && strstr(h->mount, "cpuset")) {
            /* A v1 cpuset cgroup starts empty: inherit cpus and mems down the path.
             */
            char dir[PATH_MAX];
            snprintf(dir, sizeof(dir), "%s", h->mount);
            const char *rest = o->parent_cgroup;
            char chain[PATH_MAX];
            snprintf(chain, sizeof(chain), "%s/%s", rest, o->id);
            rest = chain;
            while (*rest) {
                char parent[PATH_MAX];
                snprintf(parent, sizeof(parent), "%s", dir);
                size_t n = strcspn(rest, "/");
                size_t len = strlen(dir);
                snprintf(dir + len, sizeof(dir) - len, "/%.*s", (int)n, rest);
                rest += n;
                if (*rest == '/')
                    rest++;
                static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};
                for (int f = 0; f < 2; f++) {
                    char pv[4096], cv[4096], pp[PATH_MAX + 32], cp[PATH_MAX + 32];
                    snprintf(pp, sizeof(pp), "%s/%s", parent, files[f]);
                    snprintf(cp, sizeof(cp), "%s/%s", dir, files[f]);
                    if (read_small(cp, cv, sizeof(cv)) == 0 && read_small(pp, pv, sizeof(pv)) > 0 &&
                        (r = write_file(cp, pv)) < 0)
                        return err_set(r, "%s: %s", cp, strerror(-r));
                }
            }
        }
    }
    for (int i = 0; i < o->n_cgroups; i++) {
        const struct jail_cgroup_arg *a = &o->cgroups[i];
        char path[PATH_MAX + 64];
        snprintf(path, sizeof(path), "%s/%s", j->cg[j->cg_of_arg[i]].leaf, a->file);
        if (access(path, F_OK) < 0)
            return err_set(-ENOENT, "--cgroup %s=%s: no such cgroup file (%s)", a->file, a->value,
                           path);
        if ((r = write_file(path, a->value)) < 0)
            return err_set(r, "--cgroup %s=%s: writing %s: %s", a->file, a->value, path,
                           strerror(-r));
    }
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", getpid());
    for (int i = 0; i < j->n_cg; i++) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/cgroup.procs", j->cg[i].leaf);
        if ((r = write_file(path, pid)) < 0)
            return err_set(r, "%s: cannot move the jailer in: %s", path, strerror(-r));
        j->cg[i].joined = true;
    }
    return 0;
}

static int enter_root(struct jail *j)
{
    if (unshare(CLONE_NEWNS) < 0)
        return err_set(-errno, "unshare(CLONE_NEWNS): %s", strerror(errno));
    if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        return err_set(-errno, "mount / MS_SLAVE|MS_REC: %s", strerror(errno));
    if (mount(j->root, j->root, NULL, MS_BIND | MS_REC, NULL) < 0)
        return err_set(-errno, "%s: bind mount: %s", j->root, strerror(errno));
    if (chdir(j->root) < 0)
        return err_set(-errno, "%s: chdir: %s", j->root, strerror(errno));
    if (mkdir(OLD_ROOT, 0700) < 0 && errno != EEXIST)
        return err_set(-errno, "%s/" OLD_ROOT ": %s", j->root, strerror(errno));
    if (syscall(SYS_pivot_root, ".", OLD_ROOT) < 0) {
        int e = errno;
        rmdir(OLD_ROOT);
        return err_set(-e, "%s: pivot_root: %s", j->root, strerror(e));
    }
    j->pivoted = true;
    if (chdir("/") < 0)
        return err_set(-errno, "chdir /: %s", strerror(errno));
    if (umount2("/" OLD_ROOT, MNT_DETACH) < 0)
        return err_set(-errno, "umount old root: %s", strerror(errno));
    if (rmdir("/" OLD_ROOT) < 0)
        return err_set(-errno, "rmdir old root: %s", strerror(errno));
    return 0;
}

static int make_dir_owned(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return err_set(-errno, "jail %s: %s", path, strerror(errno));
    if (chown(path, uid, gid) < 0 || chmod(path, mode) < 0)
        return err_set(-errno, "jail %s: %s", path, strerror(errno));
    return 0;
}

static int make_devices(struct jail *j)
{
    static const struct {
        const char *path;
        unsigned maj, min;
        mode_t mode;
    } nodes[] = {
        {"/dev/kvm", 10, 232, 0600},
        {"/dev/net/tun", 10, 200, 0600},
        {"/dev/urandom", 1, 9, 0600},
    };
    int r;
    if ((r = make_dir_owned("/dev", 0755, 0, 0)) < 0 ||
        (r = make_dir_owned("/dev/net", 0755, 0, 0)) < 0)
        return r;
    for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
        unlink(nodes[i].path); /* a node left by an earlier run of this id */
        if (mknod(nodes[i].path, S_IFCHR | nodes[i].mode, makedev(nodes[i].maj, nodes[i].min)) < 0)
            return err_set(-errno, "jail %s: mknod: %s", nodes[i].path, strerror(errno));
        if (chown(nodes[i].path, j->o.uid, j->o.gid) < 0 || chmod(nodes[i].path, nodes[i].mode) < 0)
            return err_set(-errno, "jail %s: %s", nodes[i].path, strerror(errno));
    }
    /* /run, writable by the VMM: Ember's default API socket is /run/ember.socket.
     */
    return make_dir_owned("/run", 0700, j->o.uid, j->o.gid);
}

static int write_pid_file(const struct jail *j, pid_t pid)
{
    char path[PATH_MAX], buf[32];
    snprintf(path, sizeof(path), "/%s.pid", j->o.exec_name);
    snprintf(buf, sizeof(buf), "%d\n", pid);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return err_set(-errno, "jail %s: %s", path, strerror(errno));
    ssize_t w = write(fd, buf, strlen(buf));
    close(fd);
    return w == (ssize_t)strlen(buf) ? 0 : err_set(-EIO, "jail %s: write failed", path);
}

/* Returns in the process that goes on to exec the VMM; a parent that only
 * hands over exits here. */
static int daemonize_and_pid_ns(struct jail *j)
{
    bool forked = false;
    if (j->o.daemonize) {
        if (setsid() < 0) {
            /* A process-group leader cannot setsid: do it in a child. */
            uint64_t cpu = cpu_now_us();
            pid_t pid = fork();
            if (pid < 0)
                return err_set(-errno, "fork: %s", strerror(errno));
            if (pid > 0)
                _exit(j->o.new_pid_ns || write_pid_file(j, pid) == 0 ? 0 : 1);
            forked = true;
            j->start_cpu_us += cpu;
            if (setsid() < 0)
                return err_set(-errno, "setsid: %s", strerror(errno));
        }
        if (dup2(j->devnull, 0) < 0 || dup2(j->devnull, 1) < 0 || dup2(j->devnull, 2) < 0)
            return err_set(-errno, "/dev/null: dup2: %s", strerror(errno));
    }
    if (j->devnull >= 0) {
        close(j->devnull);
        j->devnull = -1;
    }
    (void)forked;
    if (j->o.new_pid_ns) {
        if (unshare(CLONE_NEWPID) < 0)
            return err_set(-errno, "unshare(CLONE_NEWPID): %s", strerror(errno));
        uint64_t cpu = cpu_now_us();
        pid_t pid = fork();
        if (pid < 0)
            return err_set(-errno, "fork: %s", strerror(errno));
        if (pid > 0) {
            int r = write_pid_file(j, pid);
            if (r < 0) {
                fprintf(stderr, "ember-jailer: %s\n", err_msg());
                kill(pid, SIGKILL);
                _exit(1);
            }
            _exit(0);
        }
        j->start_cpu_us += cpu;
    }
    return 0;
}

static int drop_privileges(struct jail *j)
{
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        return err_set(-errno, "prctl(PR_CAP_AMBIENT_CLEAR_ALL): %s", strerror(errno));
    for (int cap = 0; cap < 64; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno == EINVAL)
            break;
    if (setgroups(0, NULL) < 0)
        return err_set(-errno, "setgroups: %s", strerror(errno));
    if (setresgid(j->o.gid, j->o.gid, j->o.gid) < 0)
        return err_set(-errno, "--gid %u: setresgid: %s", (unsigned)j->o.gid, strerror(errno));
    if (setresuid(j->o.uid, j->o.uid, j->o.uid) < 0)
        return err_set(-errno, "--uid %u: setresuid: %s", (unsigned)j->o.uid, strerror(errno));
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    /* Clears whatever is left (inheritable; everything when running as uid 0). */
    if (syscall(SYS_capset, &hdr, data) < 0)
        return err_set(-errno, "capset: %s", strerror(errno));
    memset(data, 0xff, sizeof(data));
    if (syscall(SYS_capget, &hdr, data) < 0)
        return err_set(-errno, "capget: %s", strerror(errno));
    for (int i = 0; i < 2; i++)
        if (data[i].effective || data[i].permitted || data[i].inheritable)
            return err_set(-EPERM, "capabilities remain after dropping to %u:%u",
                           (unsigned)j->o.uid, (unsigned)j->o.gid);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return err_set(-errno, "prctl(PR_SET_NO_NEW_PRIVS): %s", strerror(errno));
    return 0;
}

static int exec_vmm(struct jail *j)
{
    const struct jail_opts *o = &j->o;
    int n = o->ember_argc + 10;
    char **argv = calloc((size_t)n, sizeof(char *));
    if (!argv)
        return err_set(-ENOMEM, "out of memory");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "/%s", o->exec_name);
    /* As Firecracker's jailer: the start time and CPU times, so the VMM's
     * process_startup_time_us counts from the jailer's start. */
    char t0[24], tcpu[24], tparent[24];
    struct timespec cpu;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    snprintf(t0, sizeof(t0), "%llu", (unsigned long long)j->start_us);
    snprintf(tcpu, sizeof(tcpu), "%llu",
             (unsigned long long)cpu.tv_sec * 1000000ULL + (unsigned long long)cpu.tv_nsec / 1000);
    snprintf(tparent, sizeof(tparent), "%llu", (unsigned long long)j->start_cpu_us);
    argv[0] = (char *)o->exec_name;
    argv[1] = (char *)"--id";
    argv[2] = (char *)o->id;
    argv[3] = (char *)"--start-time-us";
    argv[4] = t0;
    argv[5] = (char *)"--start-time-cpu-us";
    argv[6] = tcpu;
    argv[7] = (char *)"--parent-cpu-time-us";
    argv[8] = tparent;
    for (int i = 0; i < o->ember_argc; i++)
        argv[9 + i] = o->ember_argv[i];
    char *envp[] = {NULL};
    execve(path, argv, envp);
    int e = errno;
    free(argv);
    return err_set(-e, "jail %s: exec: %s", path, strerror(e));
}

static int run(struct jail *j)
{
    int r;
    if ((r = validate(j)) < 0)
        return r;
    close_inherited_fds();
    clearenv();
    umask(022);
    if (j->o.daemonize) {
        j->devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (j->devnull < 0)
            return err_set(-errno, "/dev/null: %s", strerror(errno));
    }
    if ((r = mkdir_p(j, j->root, 0755)) < 0 || (r = place_exec(j)) < 0 || (r = join_netns(j)) < 0 ||
        (r = apply_rlimits(j)) < 0 || (r = setup_cgroups(j)) < 0 || (r = enter_root(j)) < 0 ||
        (r = make_devices(j)) < 0 || (r = daemonize_and_pid_ns(j)) < 0 ||
        (r = drop_privileges(j)) < 0)
        return r;
    return exec_vmm(j);
}

int main(int argc, char **argv)
{
    static struct jail j;
    j.devnull = -1;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    j.start_us = (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
    int r = jail_parse_args(argc, argv, &j.o);
    if (r == 0 && j.o.runs_as_root && !j.o.help && !j.o.version)
        fprintf(stderr,
                "ember-jailer: WARNING: --uid %u --gid %u: the VMM will run as root (uid or gid "
                "0) inside the jail. A guest that escapes into the VMM then holds root's "
                "file access in the jail and on everything the jail can reach; use an "
                "unprivileged uid:gid in production.\n",
                (unsigned)j.o.uid, (unsigned)j.o.gid);
    if (r == 0 && j.o.help) {
        usage(stdout);
        return 0;
    }
    if (r == 0 && j.o.version) {
        printf("ember-jailer " JAILER_VERSION "\n");
        return 0;
    }
    if (r == 0)
        r = run(&j);
    if (r < 0) {
        cleanup(&j);
        fprintf(stderr, "ember-jailer: %s\n", err_msg());
        return 1;
    }
    return 0;
}
