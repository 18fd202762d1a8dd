/* main.c - the `ember` process: flags, configuration, VM lifetime. */
#define _GNU_SOURCE
#include "../api/config_json.h"
#include "../api/routes.h"
#include "../api/server.h"
#include "../jail/seccomp.h"
#include "../virtio/blk.h"
#include "../virtio/net.h"
#include "config.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "vm.h"

#include <errno.h>
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

#ifndef EMBER_VERSION
#define EMBER_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: ember [--api-sock PATH] [--config-file FILE [--no-api]] [options]\n"
        "\n"
        "Runs one microVM, configured over Firecracker's REST API on a Unix socket\n"
        "and/or from Firecracker's JSON configuration format.\n"
        "\n"
        "  --api-sock PATH           API socket (default /run/ember.socket); a stale socket\n"
        "                            is replaced, a live one is an error\n"
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
        "  --no-seccomp              do not install the seccomp filters (not for production)\n"
        "  --seccomp-filter FILE     use the filters in FILE (from --export-seccomp of this\n"
        "                            build) instead of the built-in ones\n"
        "  --export-seccomp FILE     write this build's seccomp filters to FILE and exit\n"
        "  --version                 print the version and exit\n"
        "  --help                    this text\n"
        "\n"
        "Exit status: 0 guest reset/reboot, 1 bad configuration or setup error, 2 unexpected\n"
        "VMM error, 3 guest triple fault, 4 KVM could not run the guest, 5 guest kernel panic,\n"
        "148 a thread made a syscall its seccomp filter forbids.\n");
}

static int parse_level(const char *s, enum log_level *out)
{
    static const char *const names[] = {"error", "warning", "info", "debug", "trace", "off"};
    for (int i = 0; i < 6; i++)
        if (strcasecmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    if (strcasecmp(s, "warn") == 0) {
        *out = LOG_WARNING;
        return 0;
    }
    return -EINVAL;
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
    OPT_NO_SECCOMP, /* seccomp (issue 5) */
    OPT_SECCOMP_FILTER,
    OPT_EXPORT_SECCOMP,
    OPT_BLK_POLL_US,
    OPT_NET_POLL_US,
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
    {NULL, 0, NULL, 0},
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

struct main_ctx {
    struct api_vmm api;
    struct vm vm;
    bool vm_created;
    bool boot_from_start;
    struct vm_options *opt;
    struct evloop ev;
    struct ev_handler ev_sig, ev_metrics;
    int sigfd, metrics_timer;
    bool stop;
};

static int apply_logger(struct api_vmm *a)
{
    const struct logger_config *l = &a->cfg.logger;
    log_set_level(l->level);
    log_set_format(l->show_level, l->show_log_origin);
    int rc = l->log_path ? log_open(l->log_path) : 0;
    if (!rc && l->log_path)
        rc = seccomp_log_path(l->log_path); /* seccomp: the SIGSYS line goes there too */
    return rc;
}

static void on_metrics_timer(struct ev_handler *h, uint32_t events)
{
    uint64_t n;
    (void)events;
    if (read(h->fd, &n, sizeof(n)) == sizeof(n))
        metrics_flush();
}

/* InstanceStart (or --config-file): build the VM, boot it, serve its fds. */
static int api_start(struct api_vmm *a)
{
    struct main_ctx *m = a->opaque;
    uint64_t instance_start = time_now_us();
    m->vm_created = true;
    int rc = vm_create(&m->vm, &a->cfg, m->opt);
    if (!rc && !m->boot_from_start)
        m->vm.boot_timer.start_us = instance_start;
    if (!rc)
        rc = vm_boot(&m->vm, &a->cfg, m->opt);
    if (!rc)
        rc = vm_attach(&m->vm, &m->ev);
    if (rc) {
        char why[512];
        snprintf(why, sizeof(why), "%s", err_msg());
        vm_destroy(&m->vm);
        m->vm_created = false;
        return err_set(rc, "%s", why);
    }
    a->vm = &m->vm;
    /* Metrics: a line at InstanceStart, then one every 60 s. */
    if (metrics_configured()) {
        metrics_flush();
        struct itimerspec every = {{60, 0}, {60, 0}};
        m->metrics_timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (m->metrics_timer >= 0 && timerfd_settime(m->metrics_timer, 0, &every, NULL) == 0)
            evloop_add(&m->ev, &m->ev_metrics, m->metrics_timer, EPOLLIN, on_metrics_timer);
    }
    return 0;
}

/* SIGINT/SIGTERM: a running guest is stopped, then Ember exits cleanly
 * (socket removed, terminal restored). */
static void on_signal(struct ev_handler *h, uint32_t events)
{
    struct main_ctx *m = (struct main_ctx *)((char *)h - offsetof(struct main_ctx, ev_sig));
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

int main(int argc, char **argv)
{
    time_mark_start();
    /* A failure must never leave a core dump of guest memory behind. */
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);

    const char *config_file = NULL, *log_path = NULL, *api_sock = "/run/ember.socket";
    const char *instance_id = "anonymous-instance", *metrics_path = NULL;
    size_t max_payload = HTTP_DEFAULT_MAX_PAYLOAD;
    bool no_api = false, show_level = false, show_origin = false;
    enum log_level level = LOG_INFO;
    struct vm_options opt = {.boot_proto = BOOT_PROTO_AUTO};
    bool no_seccomp = false;
    const char *seccomp_filter = NULL, *export_seccomp = NULL;
    char msg[600];

    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_CONFIG_FILE:
            config_file = optarg;
            break;
        case OPT_NO_API:
            no_api = true;
            break;
        case OPT_ID:
            if (!valid_id(optarg))
                return fail("--id: must be 1 to 64 characters of letters, digits and '-'");
            log_set_id(optarg);
            instance_id = optarg;
            break;
        case OPT_BOOT_PROTOCOL:
            if (strcmp(optarg, "auto") == 0)
                opt.boot_proto = BOOT_PROTO_AUTO;
            else if (strcmp(optarg, "pvh") == 0)
                opt.boot_proto = BOOT_PROTO_PVH;
            else if (strcmp(optarg, "linux64") == 0)
                opt.boot_proto = BOOT_PROTO_LINUX64;
            else
                return fail("--boot-protocol: expected auto, pvh or linux64");
            break;
        case OPT_CPU_TEMPLATE:
            opt.cpu_template_path = optarg;
            break;
        case OPT_BOOT_TIMER:
            break;
        case OPT_LOG_PATH:
            log_path = optarg;
            break;
        case OPT_LEVEL:
            if (parse_level(optarg, &level))
                return fail("--level: expected Error, Warning, Info, Debug, Trace or Off");
            break;
        case OPT_SHOW_LEVEL:
            show_level = true;
            break;
        case OPT_SHOW_ORIGIN:
            show_origin = true;
            break;
        case OPT_VERSION:
            printf("Ember v%s\n", EMBER_VERSION);
            return 0;
        case OPT_HELP:
            usage(stdout);
            return 0;
        case OPT_API_SOCK:
            api_sock = optarg;
            break;
        case OPT_METRICS_PATH:
            metrics_path = optarg;
            break;
        case OPT_NO_SECCOMP:
            no_seccomp = true;
            break;
        case OPT_SECCOMP_FILTER:
            seccomp_filter = optarg;
            break;
        case OPT_EXPORT_SECCOMP:
            export_seccomp = optarg;
            break;
        case OPT_MAX_PAYLOAD: {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end || errno || v < 1024 || v > (16 << 20))
                return fail("--http-api-max-payload-size: expected a byte count from 1024 to "
                            "16777216");
            max_payload = (size_t)v;
            break;
        }
        case OPT_BLK_POLL_US:
        case OPT_NET_POLL_US: {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            bool blk = c == OPT_BLK_POLL_US;
            if (*optarg < '0' || *optarg > '9' || *end || errno || v > 1000)
                return fail(blk ? "--blk-poll-us: expected microseconds from 0 to 1000"
                                : "--net-poll-us: expected microseconds from 0 to 1000");
            *(blk ? &blk_poll_us : &net_poll_us) = (unsigned)v;
            break;
        }
        default:
            snprintf(msg, sizeof(msg), "unknown or incomplete option '%s' (see --help)",
                     argv[optind - 1]);
            return fail(msg);
        }
    }
    if (optind < argc) {
        snprintf(msg, sizeof(msg), "unexpected argument '%s' (see --help)", argv[optind]);
        return fail(msg);
    }
    if (no_api && !config_file)
        return fail("--no-api needs --config-file");
    /* ---- seccomp (issue 5): export, or compile/load the filters ---- */
    if (export_seccomp) {
        if (seccomp_export(export_seccomp))
            return fail(err_msg());
        printf("%s: seccomp filters of build %s (vmm: %u syscalls, vcpu: %u)\n", export_seccomp,
               seccomp_build_id(), seccomp_allowed_count(SECCOMP_KIND_VMM),
               seccomp_allowed_count(SECCOMP_KIND_VCPU));
        return 0;
    }
    if (no_seccomp && seccomp_filter)
        return fail("--no-seccomp and --seccomp-filter cannot be used together");
    if (seccomp_setup(!no_seccomp, seccomp_filter))
        return fail(err_msg());
    /* ---- end seccomp ---- */

    log_set_level(level);
    log_set_format(show_level, show_origin);
    if (log_path && (log_open(log_path) || seccomp_log_path(log_path)))
        return fail(err_msg());
    if (no_seccomp)
        log_warn("--no-seccomp: seccomp filters are off; a guest that escapes into Ember can "
                 "make any system call");

    static struct main_ctx m; /* the VM is large (vCPU table); keep it off the stack */
    static struct api_server srv;
    struct api_vmm *a = &m.api;
    a->id = instance_id;
    a->opaque = &m;
    a->start = api_start;
    a->apply_logger = apply_logger;
    m.opt = &opt;
    m.sigfd = -1;
    m.metrics_timer = -1;
    m.ev.epfd = -1;
    srv.fd = -1;
    config_init(&a->cfg);
    int status = EMBER_EXIT_ERROR;
    if (config_file && config_load_file(config_file, &a->cfg)) {
        snprintf(msg, sizeof(msg), "%s", err_msg());
        goto out;
    }
    if (config_file && !a->cfg.has_boot_source) {
        snprintf(msg, sizeof(msg), "boot-source: missing (kernel_image_path is required)");
        goto out;
    }
    if (a->cfg.has_logger && apply_logger(a)) {
        snprintf(msg, sizeof(msg), "%s", err_msg());
        goto out;
    }
    if (metrics_path && metrics_open(metrics_path)) {
        snprintf(msg, sizeof(msg), "--metrics-path: %s", err_msg());
        goto out;
    }
    if (a->cfg.has_metrics && metrics_open(a->cfg.metrics.metrics_path)) {
        snprintf(msg, sizeof(msg), "%s", err_msg());
        goto out;
    }
    if (evloop_init(&m.ev)) {
        snprintf(msg, sizeof(msg), "epoll: %s", strerror(errno));
        goto out;
    }
    if (watch_signals(&m)) {
        snprintf(msg, sizeof(msg), "signalfd: %s", strerror(errno));
        goto out;
    }
    if (!no_api && api_server_listen(&srv, api_sock, &m.ev, max_payload, api_route, a)) {
        snprintf(msg, sizeof(msg), "%s", err_msg());
        goto out;
    }
    /* seccomp (issue 5): the main thread's filter, before it serves the API or
     * builds the VM (one filter for both, with or without --no-api). */
    if (seccomp_install(SECCOMP_KIND_VMM, 0)) {
        snprintf(msg, sizeof(msg), "%s", err_msg());
        goto out;
    }
    seccomp_test_trigger(SECCOMP_KIND_VMM);
    {
        struct timespec cpu;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
        metrics.process_startup_time_us = time_now_us() - time_start_us();
        metrics.process_startup_time_cpu_us = cpu.tv_sec * 1000000ULL + cpu.tv_nsec / 1000;
    }
    if (config_file) {
        m.boot_from_start = true; /* boot time counts from process start */
        if (api_start(a)) {
            snprintf(msg, sizeof(msg), "%s", err_msg());
            goto out;
        }
        a->started = true;
    }

    while (!m.stop && !(a->started && vm_exited(&m.vm))) {
        int n = evloop_run_once(&m.ev, -1);
        if (n < 0) {
            snprintf(msg, sizeof(msg), "epoll_wait: %s", strerror(-n));
            goto out;
        }
    }
    if (a->started) {
        status = vm_finish(&m.vm);
        /* vm_finish logged the reason; say it on stderr too if the log is elsewhere. */
        if (status != EMBER_EXIT_OK && !log_on_stderr())
            fprintf(stderr, "ember: %s (exit status %d)\n", m.vm.exit_reason, status);
    } else {
        status = EMBER_EXIT_OK; /* stopped by a signal before InstanceStart */
    }
    msg[0] = '\0';
out:
    if (msg[0])
        fail(msg);
    if (metrics_configured()) {
        metrics_flush(); /* the last line, at exit */
        metrics_close();
    }
    if (m.metrics_timer >= 0)
        close(m.metrics_timer);
    api_server_close(&srv);
    if (m.vm_created)
        vm_destroy(&m.vm);
    if (m.sigfd >= 0)
        close(m.sigfd);
    evloop_close(&m.ev);
    config_free(&a->cfg);
    return status;
}
