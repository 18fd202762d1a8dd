/* test_jailer.c - unit tests for ember-jailer's flag parsing and syntax checks
 * (jail/jail_opts.c): ids, uid/gid, --cgroup and --resource-limit syntax,
 * cgroup paths, root refusal, required flags and the arguments after --. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../jail/jail_opts.h"
#include "../../vmm/base/err.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

static void test_ids(void **state)
{
    (void)state;
    assert_true(jail_valid_id("a"));
    assert_true(jail_valid_id("vm-1-ABC"));
    char id[66];
    memset(id, 'x', 64);
    id[64] = '\0';
    assert_true(jail_valid_id(id));
    id[64] = 'x';
    id[65] = '\0';
    assert_false(jail_valid_id(id));
    assert_false(jail_valid_id(""));
    assert_false(jail_valid_id("a_b"));
    assert_false(jail_valid_id("a/b"));
    assert_false(jail_valid_id("a b"));
}

static void test_cgroup_arg(void **state)
{
    (void)state;
    struct jail_cgroup_arg a;
    assert_int_equal(jail_parse_cgroup("cpu.max=50000 100000", &a), 0);
    assert_string_equal(a.file, "cpu.max");
    assert_string_equal(a.value, "50000 100000");
    assert_int_equal(jail_parse_cgroup("memory.max=1=2", &a), 0);
    assert_string_equal(a.value, "1=2");
    assert_int_equal(jail_parse_cgroup("memory.max", &a), -EINVAL);
    assert_int_equal(jail_parse_cgroup("memory.max=", &a), -EINVAL);
    assert_int_equal(jail_parse_cgroup("=1", &a), -EINVAL);
    assert_int_equal(jail_parse_cgroup("memory=1", &a), -EINVAL);
    assert_int_equal(jail_parse_cgroup("../x.max=1", &a), -EINVAL);
    assert_int_equal(jail_parse_cgroup("memory.max=1\n+cpu", &a), -EINVAL);
    assert_non_null(strstr(err_msg(), "newline"));
}

static void test_rlimit_arg(void **state)
{
    (void)state;
    struct jail_rlimit_arg r;
    assert_int_equal(jail_parse_rlimit("fsize=1048576", &r), 0);
    assert_int_equal(r.resource, RLIMIT_FSIZE);
    assert_int_equal(r.value, 1048576);
    assert_int_equal(jail_parse_rlimit("no-file=64", &r), 0);
    assert_int_equal(r.resource, RLIMIT_NOFILE);
    assert_int_equal(r.value, 64);
    assert_int_equal(jail_parse_rlimit("cores=1", &r), -EINVAL);
    assert_int_equal(jail_parse_rlimit("fsize=-1", &r), -EINVAL);
    assert_int_equal(jail_parse_rlimit("fsize=", &r), -EINVAL);
    assert_int_equal(jail_parse_rlimit("fsize=99999999999999999999", &r), -EINVAL);
    assert_int_equal(jail_parse_rlimit("fsize", &r), -EINVAL);
}

static void test_cgroup_paths(void **state)
{
    (void)state;
    assert_true(jail_valid_cgroup_path("ember"));
    assert_true(jail_valid_cgroup_path("a/b.c/d_e-f"));
    assert_false(jail_valid_cgroup_path(""));
    assert_false(jail_valid_cgroup_path("/abs"));
    assert_false(jail_valid_cgroup_path("a/../b"));
    assert_false(jail_valid_cgroup_path(".."));
    assert_false(jail_valid_cgroup_path("a//b"));
    assert_false(jail_valid_cgroup_path("a/"));
    assert_false(jail_valid_cgroup_path("a b"));
}

static int parse(struct jail_opts *o, char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    err_clear();
    return jail_parse_args(argc, argv, o);
}

static void test_args(void **state)
{
    (void)state;
    struct jail_opts o;
    char *ok[] = {"ember-jailer",     "--id",          "vm1",          "--exec-file",
                  "/usr/bin/ember",   "--uid",         "123",          "--gid=456",
                  "--cgroup",         "memory.max=1",  "--cgroup",     "cpu.max=max",
                  "--resource-limit", "no-file=10",    "--new-pid-ns", "--",
                  "--no-api",         "--config-file", "/vm.json",     NULL};
    assert_int_equal(parse(&o, ok), 0);
    assert_string_equal(o.id, "vm1");
    assert_string_equal(o.exec_name, "ember");
    assert_int_equal(o.uid, 123);
    assert_int_equal(o.gid, 456);
    assert_int_equal(o.n_cgroups, 2);
    assert_int_equal(o.n_rlimits, 1);
    assert_true(o.new_pid_ns);
    assert_false(o.daemonize);
    assert_string_equal(o.base_dir, JAIL_DEFAULT_BASE);
    assert_string_equal(o.parent_cgroup, "ember"); /* the exec file's name */
    assert_int_equal(o.cgroup_version, 2);
    assert_int_equal(o.ember_argc, 3);
    assert_string_equal(o.ember_argv[0], "--no-api");
    assert_null(o.ember_argv[3]);

    /* uid/gid 0 is accepted (as Firecracker's jailer; Kata passes 0 0). */
    char *root[] = {"j", "--id", "a", "--exec-file", "/e", "--uid", "0", "--gid", "5", NULL};
    assert_int_equal(parse(&o, root), 0);
    assert_true(o.runs_as_root);
    /* Invoked as `jailer`: Firecracker's defaults, cgroup v1 and the exec
     * file's name as the parent cgroup. */
    char *fc[] = {"/usr/bin/jailer", "--id", "a",     "--exec-file", "/usr/bin/firecracker",
                  "--uid",           "0",    "--gid", "0",           NULL};
    assert_int_equal(parse(&o, fc), 0);
    assert_int_equal(o.cgroup_version, 1);
    assert_string_equal(o.parent_cgroup, "firecracker");
    char *root_ok[] = {"j", "--id",  "a", "--exec-file",  "/e", "--uid",
                       "0", "--gid", "0", "--allow-root", NULL};
    assert_int_equal(parse(&o, root_ok), 0);

    char *bad_id[] = {"j", "--id", "a_b", "--exec-file", "/e", "--uid", "1", "--gid", "1", NULL};
    assert_int_equal(parse(&o, bad_id), -EINVAL);
    assert_non_null(strstr(err_msg(), "--id a_b"));
    char *no_exec[] = {"j", "--id", "a", "--uid", "1", "--gid", "1", NULL};
    assert_int_equal(parse(&o, no_exec), -EINVAL);
    assert_non_null(strstr(err_msg(), "--exec-file"));
    char *no_gid[] = {"j", "--id", "a", "--exec-file", "/e", "--uid", "1", NULL};
    assert_int_equal(parse(&o, no_gid), -EINVAL);
    char *bad_uid[] = {"j", "--id", "a", "--exec-file", "/e", "--uid", "-1", "--gid", "1", NULL};
    assert_int_equal(parse(&o, bad_uid), -EINVAL);
    char *rel[] = {"j", "--id",  "a", "--exec-file",       "/e",  "--uid",
                   "1", "--gid", "1", "--chroot-base-dir", "srv", NULL};
    assert_int_equal(parse(&o, rel), -EINVAL);
    char *v3[] = {"j", "--cgroup-version", "3", NULL};
    assert_int_equal(parse(&o, v3), -EINVAL);
    char *unknown[] = {"j", "--no-api", NULL};
    assert_int_equal(parse(&o, unknown), -EINVAL);
    assert_non_null(strstr(err_msg(), "--no-api"));
    char *missing[] = {"j", "--id", NULL};
    assert_int_equal(parse(&o, missing), -EINVAL);
    char *dup_id[] = {"j",     "--id", "a",  "--exec-file", "/e", "--uid", "1",
                      "--gid", "1",    "--", "--id",        "b",  NULL};
    assert_int_equal(parse(&o, dup_id), -EINVAL);
    char *bad_parent[] = {"j", "--id",  "a", "--exec-file",     "/e",   "--uid",
                          "1", "--gid", "1", "--parent-cgroup", "../x", NULL};
    assert_int_equal(parse(&o, bad_parent), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),        cmocka_unit_test(test_cgroup_arg),
        cmocka_unit_test(test_rlimit_arg), cmocka_unit_test(test_cgroup_paths),
        cmocka_unit_test(test_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
