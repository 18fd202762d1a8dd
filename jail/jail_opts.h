/* jail_opts.h - ember-jailer's command line: parsing and the checks that need
 * no file system access (id, uid/gid, cgroup and rlimit syntax). The checks
 * that look at the host (exec file, netns, cgroup files, base dir) are in
 * jailer.c.
 */
#ifndef EMBER_JAIL_OPTS_H
#define EMBER_JAIL_OPTS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define JAIL_MAX_CGROUPS 32
#define JAIL_MAX_RLIMITS 8
#define JAIL_DEFAULT_BASE "/srv/jailer"
/* --parent-cgroup's default is the exec file's name (as Firecracker); the
 * cgroup version's is 2, or Firecracker's 1 when invoked as `jailer`. */
/* RLIMIT_NOFILE when --resource-limit no-file is not given (as Firecracker). */
#define JAIL_DEFAULT_NOFILE 2048

struct jail_cgroup_arg {
    const char *file;  /* "memory.max": points into `buf` */
    const char *value; /* "268435456" */
    char buf[256];
};

struct jail_rlimit_arg {
    int resource; /* RLIMIT_FSIZE or RLIMIT_NOFILE */
    uint64_t value;
};

struct jail_opts {
    const char *id;
    const char *exec_file;
    const char *exec_name; /* basename of exec_file */
    uid_t uid;
    gid_t gid;
    bool have_uid, have_gid;
    bool allow_root;   /* accepted, no longer needed */
    bool runs_as_root; /* --uid 0 or --gid 0: allowed, with a warning */
    const char *base_dir;
    const char *netns;
    int cgroup_version; /* 1 or 2 */
    const char *parent_cgroup;
    struct jail_cgroup_arg cgroups[JAIL_MAX_CGROUPS];
    int n_cgroups;
    struct jail_rlimit_arg rlimits[JAIL_MAX_RLIMITS];
    int n_rlimits;
    bool daemonize;
    bool new_pid_ns;
    char **ember_argv; /* the arguments after `--` (NULL-terminated) */
    int ember_argc;
    bool help, version;
};

/* True if `id` is 1..64 characters of letters, digits and '-'. */
bool jail_valid_id(const char *id);

/* Parse a uid/gid: decimal, 0 .. 2^32-2. */
int jail_parse_id_number(const char *s, const char *flag, uint32_t *out);

/* "FILE=VALUE": FILE is "controller.name" (letters, digits, '_', '.'), VALUE
 * non-empty without newlines. */
int jail_parse_cgroup(const char *arg, struct jail_cgroup_arg *out);

/* "fsize=N" or "no-file=N" (N decimal, 0 .. 2^63). */
int jail_parse_rlimit(const char *arg, struct jail_rlimit_arg *out);

/* A cgroup path relative to the hierarchy root: components of letters,
 * digits, '-', '_', '.', separated by '/', no "." or "..", no leading '/'. */
bool jail_valid_cgroup_path(const char *p);

/* Parse argv (argv[0] is the program). Fills `o` (pointers into argv), checks
 * syntax and the required flags; does not touch the file system. */
int jail_parse_args(int argc, char **argv, struct jail_opts *o);

#endif
