/* jail_opts.c - ember-jailer's command line parsing and syntax checks (see
 * jail_opts.h). */
#define _GNU_SOURCE
#include "jail_opts.h"

#include "../vmm/base/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

bool jail_valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n < 1 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return false;
    }
    return true;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !*s)
        return -EINVAL;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return -EINVAL;
    if (strlen(s) > 20)
        return -ERANGE;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

int jail_parse_id_number(const char *s, const char *flag, uint32_t *out)
{
    uint64_t v;
    if (parse_u64(s, 0xfffffffeULL, &v) < 0)
        return err_set(-EINVAL, "%s: '%s' is not a number from 0 to 4294967294", flag, s);
    *out = (uint32_t)v;
    return 0;
}

int jail_parse_cgroup(const char *arg, struct jail_cgroup_arg *out)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1])
        return err_set(-EINVAL, "--cgroup %s: expected FILE=VALUE (e.g. memory.max=268435456)",
                       arg);
    size_t flen = (size_t)(eq - arg);
    if (strlen(arg) >= sizeof(out->buf))
        return err_set(-EINVAL, "--cgroup %s: too long", arg);
    const char *dot = memchr(arg, '.', flen);
    if (!dot || dot == arg || dot == eq - 1)
        return err_set(-EINVAL, "--cgroup %s: FILE must be CONTROLLER.NAME (e.g. cpu.max)", arg);
    for (size_t i = 0; i < flen; i++) {
        char c = arg[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.'))
            return err_set(-EINVAL, "--cgroup %s: invalid character in the file name", arg);
    }
    if (strchr(eq + 1, '\n'))
        return err_set(-EINVAL, "--cgroup %s: the value must not contain a newline", arg);
    memcpy(out->buf, arg, strlen(arg) + 1);
    out->buf[flen] = '\0';
    out->file = out->buf;
    out->value = out->buf + flen + 1;
    return 0;
}

int jail_parse_rlimit(const char *arg, struct jail_rlimit_arg *out)
{
    const char *eq = strchr(arg, '=');
    if (!eq)
        return err_set(-EINVAL, "--resource-limit %s: expected fsize=N or no-file=N", arg);
    size_t n = (size_t)(eq - arg);
    if (n == 5 && !strncmp(arg, "fsize", 5))
        out->resource = RLIMIT_FSIZE;
    else if (n == 7 && !strncmp(arg, "no-file", 7))
        out->resource = RLIMIT_NOFILE;
    else
        return err_set(-EINVAL, "--resource-limit %s: unknown resource (fsize or no-file)", arg);
    if (parse_u64(eq + 1, 1ULL << 63, &out->value) < 0)
        return err_set(-EINVAL, "--resource-limit %s: the limit must be a number from 0 to 2^63",
                       arg);
    return 0;
}

bool jail_valid_cgroup_path(const char *p)
{
    if (!*p || *p == '/' || strlen(p) > 1024)
        return false;
    const char *c = p;
    while (*c) {
        const char *end = strchr(c, '/');
        size_t n = end ? (size_t)(end - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        for (size_t i = 0; i < n; i++) {
            char ch = c[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
                return false;
        }
        if (!end)
            break;
        c = end + 1;
        if (!*c)
            return false; /* trailing '/' */
    }
    return true;
}

/* The value of flag `name` at argv[*i]: `--name VALUE` or `--name=VALUE`. NULL
 * if argv[*i] is not that flag; sets *missing if the flag has no value. */
static const char *flag_value(int argc, char **argv, int *i, const char *name, bool *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, "--", 2) || strncmp(a + 2, name, n))
        return NULL;
    if (a[2 + n] == '=')
        return a + 3 + n;
    if (a[2 + n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

/* The flags that take a value. */
static const char *const valued_flags[] = {"id",
                                           "exec-file",
                                           "uid",
                                           "gid",
                                           "chroot-base-dir",
                                           "netns",
                                           "cgroup",
                                           "cgroup-version",
                                           "parent-cgroup",
                                           "resource-limit",
                                           NULL};

/* --NAME VALUE into the options. */
static int apply_value(struct jail_opts *o, const char *name, const char *v)
{
    int r;
    uint32_t n = 0;
    if (!strcmp(name, "id")) {
        o->id = v;
    } else if (!strcmp(name, "exec-file")) {
        o->exec_file = v;
    } else if (!strcmp(name, "uid") || !strcmp(name, "gid")) {
        bool uid = name[0] == 'u';
        if ((r = jail_parse_id_number(v, uid ? "--uid" : "--gid", &n)) < 0)
            return r;
        *(uid ? &o->uid : &o->gid) = n;
        *(uid ? &o->have_uid : &o->have_gid) = true;
    } else if (!strcmp(name, "chroot-base-dir")) {
        o->base_dir = v;
    } else if (!strcmp(name, "netns")) {
        o->netns = v;
    } else if (!strcmp(name, "cgroup-version")) {
        if (strcmp(v, "1") && strcmp(v, "2"))
            return err_set(-EINVAL, "--cgroup-version %s: must be 1 or 2", v);
        o->cgroup_version = v[0] - '0';
    } else if (!strcmp(name, "cgroup")) {
        if (o->n_cgroups == JAIL_MAX_CGROUPS)
            return err_set(-E2BIG, "--cgroup: at most %d", JAIL_MAX_CGROUPS);
        if ((r = jail_parse_cgroup(v, &o->cgroups[o->n_cgroups])) < 0)
            return r;
        o->n_cgroups++;
    } else if (!strcmp(name, "parent-cgroup")) {
        o->parent_cgroup = v;
    } else { /* resource-limit */
        if (o->n_rlimits == JAIL_MAX_RLIMITS)
            return err_set(-E2BIG, "--resource-limit: at most %d", JAIL_MAX_RLIMITS);
        if ((r = jail_parse_rlimit(v, &o->rlimits[o->n_rlimits])) < 0)
            return r;
        o->n_rlimits++;
    }
    return 0;
}

/* What must hold once every flag is read. */
static int check_opts(struct jail_opts *o)
{
    if (!o->id)
        return err_set(-EINVAL, "--id: required");
    if (!jail_valid_id(o->id))
        return err_set(-EINVAL, "--id %s: must be 1 to 64 characters of letters, digits and '-'",
                       o->id);
    if (!o->exec_file || !*o->exec_file)
        return err_set(-EINVAL, "--exec-file: required");
    if (!o->have_uid)
        return err_set(-EINVAL, "--uid: required");
    if (!o->have_gid)
        return err_set(-EINVAL, "--gid: required");
    /* uid/gid 0 is accepted, as Firecracker's jailer does (Kata passes
     * --uid 0 --gid 0); jailer.c warns loudly. --allow-root is still taken. */
    o->runs_as_root = o->uid == 0 || o->gid == 0;
    if (o->base_dir[0] != '/')
        return err_set(-EINVAL, "--chroot-base-dir %s: must be an absolute path", o->base_dir);
    if (strlen(o->base_dir) > 2048)
        return err_set(-ENAMETOOLONG, "--chroot-base-dir: path too long");
    const char *slash = strrchr(o->exec_file, '/');
    o->exec_name = slash ? slash + 1 : o->exec_file;
    if (!*o->exec_name || !strcmp(o->exec_name, ".") || !strcmp(o->exec_name, ".."))
        return err_set(-EINVAL, "--exec-file %s: not a file name", o->exec_file);
    if (!o->parent_cgroup) /* as Firecracker: the exec file's name */
        o->parent_cgroup = o->exec_name;
    if (!jail_valid_cgroup_path(o->parent_cgroup))
        return err_set(-EINVAL,
                       "--parent-cgroup %s: must be a relative cgroup path (letters, digits, "
                       "'-', '_', '.', components separated by '/', no '..')",
                       o->parent_cgroup);
    for (int i = 0; i < o->ember_argc; i++)
        if (!strcmp(o->ember_argv[i], "--id") || !strncmp(o->ember_argv[i], "--id=", 5))
            return err_set(-EINVAL, "--id after --: the jailer passes --id %s to the VMM itself",
                           o->id);
    return 0;
}

int jail_parse_args(int argc, char **argv, struct jail_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->base_dir = JAIL_DEFAULT_BASE;
    o->parent_cgroup = NULL; /* the exec file's name, set in check_opts() */
    /* Invoked as `jailer`: Firecracker's default, cgroup v1; else v2. */
    const char *self = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
    self = self ? self + 1 : (argc > 0 && argv[0] ? argv[0] : "");
    o->cgroup_version = strcmp(self, "jailer") == 0 ? 1 : 2;
    static char *no_args[] = {NULL};
    o->ember_argv = no_args;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            o->ember_argv = argv + i + 1;
            o->ember_argc = argc - i - 1;
            break;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h") || !strcmp(a, "--version")) {
            *(a[2] == 'v' ? &o->version : &o->help) = true;
            return 0;
        }
        bool *flag = !strcmp(a, "--daemonize")    ? &o->daemonize
                     : !strcmp(a, "--new-pid-ns") ? &o->new_pid_ns
                     : !strcmp(a, "--allow-root") ? &o->allow_root
                                                  : NULL;
        if (flag) {
            *flag = true;
            continue;
        }
        bool missing = false;
        const char *v = NULL;
        size_t k;
        for (k = 0; valued_flags[k] && !v && !missing; k++)
            v = flag_value(argc, argv, &i, valued_flags[k], &missing);
        if (missing)
            return err_set(-EINVAL, "%s: missing value", a);
        if (!v)
            return err_set(-EINVAL, "%s: unknown argument (Ember's own arguments go after --)", a);
        int r = apply_value(o, valued_flags[k - 1], v);
        if (r < 0)
            return r;
    }
    return check_opts(o);
}
