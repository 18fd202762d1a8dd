/* main.c - the `ember` process: flags, set-up (configuration, logging,
 * metrics, the API socket, seccomp), the main loop, and the ops the API
 * drives the VM through. */
#define _GNU_SOURCE
#include "../api/config_json.h"
#include "../api/routes.h"
#include "../api/server.h"
#include "../jail/seccomp.h"
#include "base/config.h"
#include "base/container_of.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "snapshot.h"
#include "base/version.h"
#include "cpuid.h"
#include "../virtio/blk.h"
#include "../virtio/net.h"
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: ember [--api-sock PATH] [--config-file FILE [--no-api]] [options]\n"
        "\n"
        "Runs one microVM, configured over Firecracker's REST API on a Unix socket\n"
        "and/or from Firecracker's JSON configuration format.\n"
        "\n"
        "  --api-sock PATH           API socket (default /run/ember.socket, or\n"
        "                            /run/firecracker.socket when run as `firecracker`); a\n"
        "                            stale socket is replaced, a live one is an error\n"
        "  --http-api-max-payload-size N  largest request body in bytes (default 51200)\n"
        "  --blk-poll-us N           after a drive's queue runs empty, poll it N us (0-1000,\n"
        "                            default 20; 0: off) before waiting for the guest's kick\n"
        "  --net-poll-us N           the same for an interface's RX (out of buffers) and TX\n"
        "                            queues (0-1000, default 20; 0: off)\n"
        "  --config-file FILE        VM configuration (boot-source, machine-config, drives,\n"
        "                            network-interfaces, logger, metrics)\n"
        "  --no-api                  do not serve the REST API; boot from --config-file\n"
        "                            (with the API, --config-file pre-configures and starts)\n"
        "  --id ID                   instance id used in log lines (default anonymous-instance)\n"
        "  --boot-protocol P         auto (default), pvh or linux64: how to enter an ELF kernel\n"
        "  --cpu-template FILE       CPU template JSON (cpuid_modifiers, msr_modifiers)\n"
        "  --boot-timer              accepted for Firecracker compatibility (port 0x3f0 is\n"
        "                            always on)\n"
        "  --metrics-path PATH       write metrics lines (JSON) to PATH (file or FIFO)\n"
        "  --log-path PATH           write log lines to PATH (file or FIFO) instead of stderr\n"
        "  --level LEVEL             Error, Warning, Info (default), Debug, Trace or Off\n"
        "  --show-level              include the level in log lines\n"
        "  --show-log-origin         include file:line in log lines\n"
        "  --module M                only log lines from source files under M (e.g. virtio,\n"
        "                            api/routes.c; Firecracker's api_server means api)\n"
        "  --start-time-us US        the process's start (CLOCK_MONOTONIC, us), as passed by\n"
        "                            a jailer: process_startup_time_us counts from it\n"
        "  --start-time-cpu-us US    the process CPU time at exec, as passed by a jailer\n"
        "  --parent-cpu-time-us US   the jailer's own CPU time, added to\n"
        "                            process_startup_time_cpu_us\n"
        "  --no-seccomp              do not install the seccomp filters (not for production)\n"
        "  --seccomp-filter FILE     use the filters in FILE instead of the built-in ones;\n"
        "                            FILE is in Ember's format (written by --export-seccomp\n"
        "                            of this build), not Firecracker's seccompiler output\n"
        "  --export-seccomp FILE     write this build's seccomp filters to FILE and exit\n"
        "  --describe-snapshot FILE  check a snapshot file and print what it holds, then exit\n"
        "  --version                 print the version and exit: the Firecracker version\n"
        "                            whose API Ember implements, then Ember's own\n"
        "\n"
        "Firecracker flags Ember refuses (with a message): --metadata, --mmds-size-limit\n"
        "(Ember has no MMDS), --enable-pci (Ember has no PCI).\n"
        "  --help                    this text\n"
        "\n"
        "Exit status: 0 guest reset/reboot, 1 bad configuration or setup error, 2 unexpected\n"
        "VMM error, 3 guest triple fault, 4 KVM could not run the guest, 5 guest kernel panic,\n"
        "148 a thread made a syscall its seccomp filter forbids.\n");
}

enum {
    OPT_CONFIG_FILE = 256,
    OPT_NO_API,
    OPT_ID,
    OPT_BOOT_PROTOCOL,
    OPT_CPU_TEMPLATE,
    OPT_BOOT_TIMER,
    OPT_LOG_PATH,
    OPT_LEVEL,
    OPT_SHOW_LEVEL,
    OPT_SHOW_ORIGIN,
    OPT_VERSION,
    OPT_HELP,
    OPT_API_SOCK,
    OPT_MAX_PAYLOAD,
    OPT_METRICS_PATH,
    OPT_NO_SECCOMP,
    OPT_SECCOMP_FILTER,
    OPT_EXPORT_SECCOMP,
    OPT_BLK_POLL_US,
    OPT_NET_POLL_US,
    OPT_DESCRIBE_SNAPSHOT,
    OPT_MODULE,
    OPT_START_TIME_US,
    OPT_START_TIME_CPU_US,
    OPT_PARENT_CPU_TIME_US,
    OPT_METADATA,
    OPT_MMDS_SIZE_LIMIT,
    OPT_ENABLE_PCI,
};

static const struct option long_opts[] = {
    {"config-file", required_argument, NULL, OPT_CONFIG_FILE},
    {"no-api", no_argument, NULL, OPT_NO_API},
    {"id", required_argument, NULL, OPT_ID},
    {"boot-protocol", required_argument, NULL, OPT_BOOT_PROTOCOL},
    {"cpu-template", required_argument, NULL, OPT_CPU_TEMPLATE},
    {"boot-timer", no_argument, NULL, OPT_BOOT_TIMER},
    {"log-path", required_argument, NULL, OPT_LOG_PATH},
    {"level", required_argument, NULL, OPT_LEVEL},
    {"show-level", no_argument, NULL, OPT_SHOW_LEVEL},
    {"show-log-origin", no_argument, NULL, OPT_SHOW_ORIGIN},
    {"version", no_argument, NULL, OPT_VERSION},
    {"help", no_argument, NULL, OPT_HELP},
    {"api-sock", required_argument, NULL, OPT_API_SOCK},
    {"metrics-path", required_argument, NULL, OPT_METRICS_PATH},
    {"http-api-max-payload-size", required_argument, NULL, OPT_MAX_PAYLOAD},
    {"no-seccomp", no_argument, NULL, OPT_NO_SECCOMP},
    {"seccomp-filter", required_argument, NULL, OPT_SECCOMP_FILTER},
    {"export-seccomp", required_argument, NULL, OPT_EXPORT_SECCOMP},
    {"blk-poll-us", required_argument, NULL, OPT_BLK_POLL_US},
    {"net-poll-us", required_argument, NULL, OPT_NET_POLL_US},
    {"describe-snapshot", required_argument, NULL, OPT_DESCRIBE_SNAPSHOT},
    {"module", required_argument, NULL, OPT_MODULE},
    {"start-time-us", required_argument, NULL, OPT_START_TIME_US},
    {"start-time-cpu-us", required_argument, NULL, OPT_START_TIME_CPU_US},
    {"parent-cpu-time-us", required_argument, NULL, OPT_PARENT_CPU_TIME_US},
    {"metadata", required_argument, NULL, OPT_METADATA},
    {"mmds-size-limit", required_argument, NULL, OPT_MMDS_SIZE_LIMIT},
    {"enable-pci", no_argument, NULL, OPT_ENABLE_PCI},
    {NULL, 0, NULL, 0},
};

/* What the command line asked for. */
struct flags {
    const char *config_file, *log_path, *api_sock, *instance_id, *metrics_path;
    size_t max_payload;
    bool no_api, show_level, show_origin, no_seccomp;
    enum log_level level;
    struct vm_options vm;
    const char *seccomp_filter, *export_seccomp;
    unsigned blk_poll_us, net_poll_us; /* for every drive / interface */
    const char *module;                /* log filter */
    /* From a jailer (Firecracker's flags): 0 when not given. */
    unsigned long long start_time_us, start_time_cpu_us, parent_cpu_time_us;
    bool has_start_time, has_start_time_cpu;
};

static int fail(const char *msg)
{
    fprintf(stderr, "ember: %s\n", msg);
    return EMBER_EXIT_ERROR;
}

static bool valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > CONFIG_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
              (id[i] >= '0' && id[i] <= '9') || id[i] == '-'))
            return false;
    return true;
}

/* A decimal flag value in [lo, hi]. */
static bool parse_number(const char *s, unsigned long long lo, unsigned long long hi,
                         unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || errno || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* One flag; 0, or the exit status to stop with (after printing what is wrong). */
static int apply_flag(struct flags *f, int c, const char *arg)
{
    unsigned long long v;
    switch (c) {
    case OPT_CONFIG_FILE:
        f->config_file = arg;
        return 0;
    case OPT_NO_API:
        f->no_api = true;
        return 0;
    case OPT_ID:
        if (!valid_id(arg))
            return fail("--id: must be 1 to 64 characters of letters, digits and '-'");
        log_set_id(arg);
        f->instance_id = arg;
        return 0;
    case OPT_BOOT_PROTOCOL:
        if (strcmp(arg, "auto") == 0)
            f->vm.boot_proto = BOOT_PROTO_AUTO;
        else if (strcmp(arg, "pvh") == 0)
            f->vm.boot_proto = BOOT_PROTO_PVH;
        else if (strcmp(arg, "linux64") == 0)
            f->vm.boot_proto = BOOT_PROTO_LINUX64;
        else
            return fail("--boot-protocol: expected auto, pvh or linux64");
        return 0;
    case OPT_CPU_TEMPLATE:
        f->vm.cpu_template_path = arg;
        return 0;
    case OPT_BOOT_TIMER:
        return 0;
    case OPT_LOG_PATH:
        f->log_path = arg;
        return 0;
    case OPT_LEVEL:
        if (log_level_parse(arg, &f->level))
            return fail("--level: expected Error, Warning, Info, Debug, Trace or Off");
        return 0;
    case OPT_SHOW_LEVEL:
        f->show_level = true;
        return 0;
    case OPT_SHOW_ORIGIN:
        f->show_origin = true;
        return 0;
    case OPT_API_SOCK:
        f->api_sock = arg;
        return 0;
    case OPT_METRICS_PATH:
        f->metrics_path = arg;
        return 0;
    case OPT_NO_SECCOMP:
        f->no_seccomp = true;
        return 0;
    case OPT_SECCOMP_FILTER:
        f->seccomp_filter = arg;
        return 0;
    case OPT_EXPORT_SECCOMP:
        f->export_seccomp = arg;
        return 0;
    case OPT_MAX_PAYLOAD:
        if (!parse_number(arg, 1024, 16 << 20, &v))
            return fail("--http-api-max-payload-size: expected a byte count from 1024 to "
                        "16777216");
        f->max_payload = (size_t)v;
        return 0;
    case OPT_BLK_POLL_US:
    case OPT_NET_POLL_US:
        if (!parse_number(arg, 0, CONFIG_POLL_US_MAX, &v))
            return fail(c == OPT_BLK_POLL_US
                            ? "--blk-poll-us: expected microseconds from 0 to 1000"
                            : "--net-poll-us: expected microseconds from 0 to 1000");
        *(c == OPT_BLK_POLL_US ? &f->blk_poll_us : &f->net_poll_us) = (unsigned)v;
        return 0;
    case OPT_MODULE:
        if (!*arg)
            return fail("--module: expected a module (source path prefix), e.g. virtio");
        f->module = arg;
        return 0;
    case OPT_START_TIME_US:
    case OPT_START_TIME_CPU_US:
    case OPT_PARENT_CPU_TIME_US:
        if (!parse_number(arg, 0, UINT64_MAX, &v))
            return fail(c == OPT_START_TIME_US       ? "--start-time-us: expected microseconds"
                        : c == OPT_START_TIME_CPU_US ? "--start-time-cpu-us: expected microseconds"
                                                     : "--parent-cpu-time-us: expected "
                                                       "microseconds");
        if (c == OPT_START_TIME_US) {
            f->start_time_us = v;
            f->has_start_time = true;
        } else if (c == OPT_START_TIME_CPU_US) {
            f->start_time_cpu_us = v;
            f->has_start_time_cpu = true;
        } else {
            f->parent_cpu_time_us = v;
        }
        return 0;
    case OPT_METADATA:
    case OPT_MMDS_SIZE_LIMIT:
        return fail(c == OPT_METADATA
                        ? "--metadata: Ember does not provide MMDS (the microVM metadata "
                          "service), so it takes no metadata"
                        : "--mmds-size-limit: Ember does not provide MMDS (the microVM metadata "
                          "service)");
    case OPT_ENABLE_PCI:
        return fail("--enable-pci: Ember does not provide PCI; its devices are virtio-mmio");
    default:
        return -1;
    }
}

/* Invoked as `firecracker` (a link, or an installed copy under that name):
 * Firecracker's defaults. */
static bool invoked_as_firecracker(const char *argv0)
{
    const char *b = argv0 ? strrchr(argv0, '/') : NULL;
    b = b ? b + 1 : argv0;
    return b && strcmp(b, "firecracker") == 0;
}

/* The whole command line. Returns -1 to go on, else the exit status (0 after
 * --version, --help or --export-seccomp). */
static int parse_flags(int argc, char **argv, struct flags *f)
{
    *f = (struct flags){
        .api_sock =
            invoked_as_firecracker(argv[0]) ? "/run/firecracker.socket" : "/run/ember.socket",
        .instance_id = "anonymous-instance",
        .max_payload = HTTP_DEFAULT_MAX_PAYLOAD,
        .level = LOG_INFO,
        .vm = {.boot_proto = BOOT_PROTO_AUTO},
        .blk_poll_us = CONFIG_POLL_US_DEFAULT,
        .net_poll_us = CONFIG_POLL_US_DEFAULT,
    };
    char msg[600];
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (c == OPT_VERSION) {
            /* The second word is what clients gate on (Kata: >= 0.21.1). */
            printf("Ember v%s (Firecracker API v%s; Ember %s)\n", EMBER_FC_VERSION,
                   EMBER_FC_VERSION, EMBER_VERSION);
            return 0;
        }
        if (c == OPT_DESCRIBE_SNAPSHOT)
            return snapshot_describe(optarg, stdout) ? fail(err_msg()) : 0;
        if (c == OPT_HELP) {
            usage(stdout);
            return 0;
        }
        int st = apply_flag(f, c, optarg);
        if (st > 0)
            return st;
        if (st < 0) {
            snprintf(msg, sizeof(msg), "unknown or incomplete option '%s' (see --help)",
                     argv[optind - 1]);
            return fail(msg);
        }
    }
    if (optind < argc) {
        snprintf(msg, sizeof(msg), "unexpected argument '%s' (see --help)", argv[optind]);
        return fail(msg);
    }
    if (f->no_api && !f->config_file)
        return fail("--no-api needs --config-file");
    if (f->no_seccomp && f->seccomp_filter)
        return fail("--no-seccomp and --seccomp-filter cannot be used together");
    if (f->export_seccomp) {
        if (seccomp_export(f->export_seccomp))
            return fail(err_msg());
        printf("%s: seccomp filters of build %s (vmm: %u syscalls, vcpu: %u)\n", f->export_seccomp,
               seccomp_build_id(), seccomp_allowed_count(SECCOMP_KIND_VMM),
               seccomp_allowed_count(SECCOMP_KIND_VCPU));
        return 0;
    }
    return -1;
}

/* ---- the process's state, and the ops the API drives the VM through ---- */

struct main_ctx {
    struct flags f;
    struct api_vmm api;
    struct api_server srv;
    struct vm vm;
    struct vm_spare spare; /* KVM's part made before the first request (vm.h) */
    bool vm_created;
    bool boot_from_start; /* --config-file: boot time counts from process start */
    struct evloop ev;
    struct ev_handler ev_sig, ev_metrics;
    int sigfd, metrics_timer;
    bool stop;
};

static int op_apply_logger(void *vmm, const struct vm_config *cfg)
{
    (void)vmm;
    const struct logger_config *l = &cfg->logger;
    /* The file first: if it cannot be opened nothing has changed. */
    int rc = l->log_path ? log_open(l->log_path) : 0;
    if (!rc && l->log_path)
        rc = seccomp_log_path(l->log_path); /* seccomp: the SIGSYS line goes there too */
    if (!rc)
        rc = log_set_module(l->module);
    if (rc)
        return rc;
    log_set_level(l->level);
    log_set_format(l->show_level, l->show_log_origin);
    return 0;
}

static void on_metrics_timer(struct ev_handler *h, uint32_t events)
{
    uint64_t n;
    (void)events;
    if (read(h->fd, &n, sizeof(n)) == sizeof(n))
        metrics_flush();
}

/* Metrics: a line at InstanceStart (first_line: written here; op_start
 * writes it before the vCPUs run), then one every 60 s. */
static void start_metrics_timer(struct main_ctx *m, bool first_line)
{
    if (!metrics_configured())
        return;
    if (first_line)
        metrics_flush();
    struct itimerspec every = {{60, 0}, {60, 0}};
    m->metrics_timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (m->metrics_timer >= 0 && timerfd_settime(m->metrics_timer, 0, &every, NULL) == 0)
        evloop_add(&m->ev, &m->ev_metrics, m->metrics_timer, EPOLLIN, on_metrics_timer);
}

/* The spare VM for the next InstanceStart or snapshot load, with RAM of the
 * configured size (Firecracker's default 128 MiB unless set). Without one (no
 * /dev/kvm, say) vm_create tries again and its error is the one reported. */
static void make_spare(struct main_ctx *m)
{
    if (m->spare.vm_fd < 0 && vm_spare_make(&m->spare, m->api.cfg.machine.mem_size_mib))
        log_debug("no spare VM: %s", err_msg());
}

/* InstanceStart (or --config-file): build the VM, boot it, serve its fds. */
static int op_start(void *vmm, const struct vm_config *cfg)
{
    struct main_ctx *m = vmm;
    uint64_t instance_start = time_now_us();
    /* The poll-budget flags are options of every device. */
    struct vm_config *c = &m->api.cfg;
    for (int i = 0; i < c->n_drives; i++)
        c->drives[i].poll_us = m->f.blk_poll_us;
    for (int i = 0; i < c->n_nets; i++)
        c->nets[i].poll_us = m->f.net_poll_us;
    m->vm_created = true;
    int rc = vm_create(&m->vm, cfg, &m->f.vm);
    if (!rc && !m->boot_from_start)
        m->vm.boot_timer.start_us = instance_start;
    if (!rc)
        rc = vm_load_kernel(&m->vm, cfg, &m->f.vm);
    if (!rc)
        rc = vm_attach(&m->vm, &m->ev);
    /* The InstanceStart line before any vCPU runs, so that it comes first. */
    if (!rc && metrics_configured())
        metrics_flush();
    if (!rc)
        rc = vm_start(&m->vm, false);
    if (rc) {
        char why[512];
        snprintf(why, sizeof(why), "%s", err_msg());
        vm_destroy(&m->vm);
        m->vm_created = false;
        make_spare(m);
        return err_set(rc, "%s", why);
    }
    start_metrics_timer(m, false);
    return 0;
}

static int op_pause(void *vmm)
{
    return vm_pause(&((struct main_ctx *)vmm)->vm);
}

static int op_resume(void *vmm)
{
    return vm_resume(&((struct main_ctx *)vmm)->vm);
}

static bool op_is_paused(void *vmm)
{
    return vm_is_paused(&((struct main_ctx *)vmm)->vm);
}

static int op_ctrl_alt_del(void *vmm)
{
    return vm_ctrl_alt_del(&((struct main_ctx *)vmm)->vm);
}

static int op_update_drive(void *vmm, const char *id, const char *path,
                           const struct rate_limiter *rl)
{
    struct device_update u = {.path_on_host = path, .rate_limiter = rl};
    return vdev_update(&((struct main_ctx *)vmm)->vm.vdevs, "drives", id, &u);
}

static int op_update_net(void *vmm, const char *id, const struct rate_limiter *rx,
                         const struct rate_limiter *tx)
{
    struct device_update u = {.rx = rx, .tx = tx};
    return vdev_update(&((struct main_ctx *)vmm)->vm.vdevs, "network-interfaces", id, &u);
}

static int op_create_snapshot(void *vmm, const struct vm_config *cfg,
                              const struct snapshot_create_params *p)
{
    struct main_ctx *m = vmm;
    uint64_t t0 = time_now_us();
    int rc = snapshot_create(&m->vm, cfg, p);
    if (!rc)
        log_info("snapshot created in %llu us", (unsigned long long)(time_now_us() - t0));
    return rc;
}

static int op_load_snapshot(void *vmm, struct vm_config *cfg, const struct snapshot_load_params *p)
{
    struct main_ctx *m = vmm;
    m->vm_created = true;
    int rc = snapshot_load(&m->vm, cfg, p, &m->f.vm, &m->ev);
    if (rc) {
        m->vm_created = false;
        char why[512];
        snprintf(why, sizeof(why), "%s", err_msg());
        make_spare(m);
        return err_set(rc, "%s", why);
    }
    start_metrics_timer(m, true);
    return 0;
}

static int op_check_boot_source(void *vmm, const struct boot_source *b)
{
    (void)vmm;
    const char *const paths[] = {b->kernel_image_path, b->initrd_path};
    const char *const names[] = {"kernel_image_path", "initrd_path"};
    for (int i = 0; i < 2; i++) {
        if (!paths[i])
            continue;
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            return err_set(-e, "boot-source.%s: cannot open %s: %s", names[i], paths[i],
                           strerror(e));
        }
        close(fd);
    }
    return 0;
}

static int op_check_drive(void *vmm, const struct drive_config *d)
{
    (void)vmm;
    return blk_check(d);
}

static int op_check_net(void *vmm, const struct net_config *n)
{
    (void)vmm;
    return net_check(n);
}

static int op_check_cpu_config(void *vmm, const char *json)
{
    (void)vmm;
    static struct cpu_template tpl;
    int rc = cpu_template_parse(json, &tpl);
    if (rc) {
        char why[512];
        snprintf(why, sizeof(why), "%s", err_msg());
        return err_set(rc, "cpu-config: %s", why);
    }
    return 0;
}

static const struct api_vm_ops vm_ops = {
    .create_snapshot = op_create_snapshot,
    .load_snapshot = op_load_snapshot,
    .start = op_start,
    .pause = op_pause,
    .resume = op_resume,
    .is_paused = op_is_paused,
    .ctrl_alt_del = op_ctrl_alt_del,
    .update_drive = op_update_drive,
    .update_net = op_update_net,
    .apply_logger = op_apply_logger,
    .check_boot_source = op_check_boot_source,
    .check_drive = op_check_drive,
    .check_net = op_check_net,
    .check_cpu_config = op_check_cpu_config,
};

/* SIGINT/SIGTERM: a running guest is stopped, then Ember exits cleanly
 * (socket removed, terminal restored). */
static void on_signal(struct ev_handler *h, uint32_t events)
{
    struct main_ctx *m = container_of(h, struct main_ctx, ev_sig);
    struct signalfd_siginfo si;
    (void)events;
    if (read(m->sigfd, &si, sizeof(si)) != sizeof(si))
        return;
    log_info("received signal %u; stopping", si.ssi_signo);
    if (m->api.started)
        vm_request_exit(&m->vm, EMBER_EXIT_OK, "stopped by signal %u", si.ssi_signo);
    else
        m->stop = true;
}

static int watch_signals(struct main_ctx *m)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL))
        return -1;
    m->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (m->sigfd < 0)
        return -1;
    return evloop_add(&m->ev, &m->ev_sig, m->sigfd, EPOLLIN, on_signal);
}

/* ---- set-up, run, tear-down ---- */

/* Everything before the loop: seccomp compiled, logging, the configuration,
 * metrics, the loop and signals, the API socket, this thread's filter, and
 * the boot with --config-file. 0, or -1 with the message in msg. */
static int setup(struct main_ctx *m, char *msg, size_t cap)
{
    struct flags *f = &m->f;
    struct api_vmm *a = &m->api;
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(msg, cap, __VA_ARGS__);                                                           \
        return -1;                                                                                 \
    } while (0)
    if (seccomp_setup(!f->no_seccomp, f->seccomp_filter))
        FAIL("%s", err_msg());
    log_set_level(f->level);
    log_set_format(f->show_level, f->show_origin);
    if (f->module && log_set_module(f->module))
        FAIL("--module: %s", err_msg());
    if (f->log_path && (log_open(f->log_path) || seccomp_log_path(f->log_path)))
        FAIL("%s", err_msg());
    if (f->no_seccomp)
        log_warn("--no-seccomp: seccomp filters are off; a guest that escapes into Ember can "
                 "make any system call");
    if (f->config_file && config_load_file(f->config_file, &a->cfg))
        FAIL("%s", err_msg());
    if (f->config_file && !a->cfg.has_boot_source)
        FAIL("boot-source: missing (kernel_image_path is required)");
    if (a->cfg.cpu_config && op_check_cpu_config(m, a->cfg.cpu_config))
        FAIL("%s", err_msg());
    if (a->cfg.has_logger && op_apply_logger(m, &a->cfg))
        FAIL("%s", err_msg());
    if (f->metrics_path && metrics_open(f->metrics_path))
        FAIL("--metrics-path: %s", err_msg());
    if (a->cfg.has_metrics && metrics_open(a->cfg.metrics.metrics_path))
        FAIL("%s", err_msg());
    if (evloop_init(&m->ev))
        FAIL("epoll: %s", strerror(errno));
    if (watch_signals(m))
        FAIL("signalfd: %s", strerror(errno));
    if (!f->no_api && api_server_listen(&m->srv, f->api_sock, &m->ev, f->max_payload, api_route, a))
        FAIL("%s", err_msg());
    /* The main thread's filter, before it serves the API or builds the VM (one
     * filter for both, with or without --no-api). */
    if (seccomp_install(SECCOMP_KIND_VMM, 0))
        FAIL("%s", err_msg());
    struct timespec cpu;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    /* As Firecracker: from the jailer's --start-time-us / --start-time-cpu-us
     * (+ --parent-cpu-time-us) when given, else from our own exec. */
    uint64_t now = time_now_us(), cpu_us = cpu.tv_sec * 1000000ULL + cpu.tv_nsec / 1000;
    bool from_jailer = f->has_start_time && f->start_time_us <= now;
    uint64_t t0 = from_jailer ? f->start_time_us : time_start_us();
    metrics.process_startup_time_us = now - t0;
    metrics.process_startup_time_cpu_us =
        (f->has_start_time_cpu && f->start_time_cpu_us <= cpu_us ? cpu_us - f->start_time_cpu_us
                                                                 : cpu_us) +
        f->parent_cpu_time_us;
    if (from_jailer)
        log_debug("started in %llu us (%llu us of CPU), counted from the jailer's start "
                  "(--start-time-us %llu)",
                  (unsigned long long)metrics.process_startup_time_us,
                  (unsigned long long)metrics.process_startup_time_cpu_us,
                  (unsigned long long)f->start_time_us);
    else
        log_debug("started in %llu us (%llu us of CPU), counted from exec",
                  (unsigned long long)metrics.process_startup_time_us,
                  (unsigned long long)metrics.process_startup_time_cpu_us);
    if (f->config_file) {
        m->boot_from_start = true;
        if (op_start(m, &a->cfg))
            FAIL("%s", err_msg());
        a->started = true;
    } else {
        make_spare(m); /* requests queue on the socket meanwhile */
    }
    return 0;
#undef FAIL
}

/* The main loop, until the guest or a signal ends it; the exit status. */
static int run(struct main_ctx *m, char *msg, size_t cap)
{
    struct api_vmm *a = &m->api;
    while (!m->stop && !(a->started && vm_exited(&m->vm))) {
        int n = evloop_run_once(&m->ev, -1);
        if (n < 0) {
            snprintf(msg, cap, "epoll_wait: %s", strerror(-n));
            return EMBER_EXIT_ERROR;
        }
    }
    if (!a->started)
        return EMBER_EXIT_OK; /* stopped by a signal before InstanceStart */
    int status = vm_finish(&m->vm);
    /* vm_finish logged the reason; say it on stderr too if the log is elsewhere. */
    if (status != EMBER_EXIT_OK && !log_on_stderr())
        fprintf(stderr, "ember: %s (exit status %d)\n", m->vm.ctl.exit_reason, status);
    return status;
}

static void teardown(struct main_ctx *m)
{
    if (metrics_configured()) {
        metrics_flush(); /* the last line, at exit */
        metrics_close();
    }
    if (m->metrics_timer >= 0)
        close(m->metrics_timer);
    api_server_close(&m->srv);
    if (m->vm_created)
        vm_destroy(&m->vm);
    vm_spare_close(&m->spare);
    if (m->sigfd >= 0)
        close(m->sigfd);
    evloop_close(&m->ev);
    config_free(&m->api.cfg);
}

int main(int argc, char **argv)
{
    time_mark_start();
    /* A failure must never leave a core dump of guest memory behind. */
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);

    static struct main_ctx m; /* the VM is large (vCPU table); keep it off the stack */
    int status = parse_flags(argc, argv, &m.f);
    if (status >= 0)
        return status;
    m.api.id = m.f.instance_id;
    m.api.ops = &vm_ops;
    m.api.vmm = &m;
    m.sigfd = m.metrics_timer = m.ev.epfd = m.srv.fd = -1;
    m.spare.kvm_fd = m.spare.vm_fd = -1;
    m.f.vm.spare = &m.spare;
    config_init(&m.api.cfg);
    char msg[600] = "";
    status = setup(&m, msg, sizeof(msg)) == 0 ? run(&m, msg, sizeof(msg)) : EMBER_EXIT_ERROR;
    if (msg[0])
        fail(msg);
    teardown(&m);
    return status;
}
