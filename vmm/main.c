/* main.c - the `ember` process: flags, configuration, VM lifetime. */
#define _GNU_SOURCE
#include "../api/config_json.h"
#include "config.h"
#include "err.h"
#include "log.h"
#include "vm.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#ifndef EMBER_VERSION
#define EMBER_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: ember --config-file FILE --no-api [options]\n"
            "\n"
            "Boots one microVM from Firecracker's JSON configuration format.\n"
            "\n"
            "  --config-file FILE        VM configuration (boot-source, machine-config, drives,\n"
            "                            network-interfaces, logger, metrics)\n"
            "  --no-api                  do not serve the REST API; boot from --config-file\n"
            "  --id ID                   instance id used in log lines (default anonymous-instance)\n"
            "  --boot-protocol P         auto (default), pvh or linux64: how to enter an ELF kernel\n"
            "  --cpu-template FILE       CPU template JSON (cpuid_modifiers, msr_modifiers)\n"
            "  --boot-timer              accepted for Firecracker compatibility (port 0x3f0 is\n"
            "                            always on)\n"
            "  --log-path PATH           write log lines to PATH (file or FIFO) instead of stderr\n"
            "  --level LEVEL             Error, Warning, Info (default), Debug, Trace or Off\n"
            "  --show-level              include the level in log lines\n"
            "  --show-log-origin         include file:line in log lines\n"
            "  --version                 print the version and exit\n"
            "  --help                    this text\n"
            "\n"
            "Exit status: 0 guest reset/reboot, 1 bad configuration or setup error, 2 unexpected\n"
            "VMM error, 3 guest triple fault, 4 KVM could not run the guest, 5 guest kernel panic.\n");
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

int main(int argc, char **argv)
{
    time_mark_start();
    /* A failure must never leave a core dump of guest memory behind. */
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);

    const char *config_file = NULL, *log_path = NULL;
    bool no_api = false, show_level = false, show_origin = false;
    enum log_level level = LOG_INFO;
    struct vm_options opt = {.boot_proto = BOOT_PROTO_AUTO};
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
    if (!no_api)
        return fail("the REST API server is not available in this build yet: use --no-api "
                    "with --config-file");
    if (!config_file)
        return fail("--no-api needs --config-file");

    log_set_level(level);
    log_set_format(show_level, show_origin);
    if (log_path && log_open(log_path))
        return fail(err_msg());

    struct vm_config cfg;
    config_init(&cfg);
    if (config_load_file(config_file, &cfg)) {
        config_free(&cfg);
        return fail(err_msg());
    }
    if (!cfg.has_boot_source) {
        config_free(&cfg);
        return fail("boot-source: missing (kernel_image_path is required)");
    }
    if (cfg.has_logger) {
        log_set_level(cfg.logger.level);
        log_set_format(cfg.logger.show_level, cfg.logger.show_log_origin);
        if (cfg.logger.log_path && log_open(cfg.logger.log_path)) {
            config_free(&cfg);
            return fail(err_msg());
        }
    }

    /* Parsed and validated, but the virtio devices are not in this build yet. */
    for (int i = 0; i < cfg.n_drives; i++)
        log_warn("drives[%d] (%s): virtio-blk is not available in this build; the drive is not "
                 "attached",
                 i, cfg.drives[i].drive_id);
    for (int i = 0; i < cfg.n_nets; i++)
        log_warn("network-interfaces[%d] (%s): virtio-net is not available in this build; the "
                 "interface is not attached",
                 i, cfg.nets[i].iface_id);

    static struct vm vm; /* large (vCPU table); keep it off the stack */
    int status;
    if (vm_create(&vm, &cfg, &opt) || vm_boot(&vm, &cfg, &opt)) {
        snprintf(msg, sizeof(msg), "%s", err_msg());
        status = fail(msg);
    } else {
        status = vm_run(&vm);
        /* vm_run logged the reason; say it on stderr too if the log is elsewhere. */
        if (status != EMBER_EXIT_OK && !log_on_stderr())
            fprintf(stderr, "ember: %s (exit status %d)\n", vm.exit_reason, status);
    }
    vm_destroy(&vm);
    config_free(&cfg);
    return status;
}
