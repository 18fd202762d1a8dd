/* log.c - log line formatting and output (see log.h). */
#define _GNU_SOURCE
#include "log.h"

#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <strings.h>
#include <unistd.h>

static char log_id[CONFIG_ID_MAX + 1] = "anonymous-instance";
static enum log_level log_level = LOG_INFO;
static bool log_show_level, log_show_origin;
static int log_fd = STDERR_FILENO;
static atomic_uint_fast64_t log_drops;
static __thread char thread_name[16] = "main";
static uint64_t start_us;
static char log_module[128]; /* "": no filter */

/* The one table of levels: Firecracker's names (its API and flags) and the
 * tags in log lines. */
static const struct {
    const char *name, *tag;
} levels[] = {
    [LOG_ERROR] = {"Error", "ERROR"}, [LOG_WARNING] = {"Warning", "WARN"},
    [LOG_INFO] = {"Info", "INFO"},    [LOG_DEBUG] = {"Debug", "DEBUG"},
    [LOG_TRACE] = {"Trace", "TRACE"}, [LOG_OFF] = {"Off", "OFF"},
};

int log_level_parse(const char *name, enum log_level *out)
{
    for (int i = 0; i <= LOG_OFF; i++)
        if (strcasecmp(name, levels[i].name) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    if (strcasecmp(name, "Warn") == 0) { /* Firecracker takes it too */
        *out = LOG_WARNING;
        return 0;
    }
    return -EINVAL;
}

const char *log_level_name(enum log_level level)
{
    return (unsigned)level <= LOG_OFF ? levels[level].name : "?";
}

void log_set_id(const char *id)
{
    snprintf(log_id, sizeof(log_id), "%s", id);
}

void log_set_level(enum log_level level)
{
    log_level = level;
}

void log_set_format(bool show_level, bool show_origin)
{
    log_show_level = show_level;
    log_show_origin = show_origin;
}

void log_set_thread_name(const char *name)
{
    snprintf(thread_name, sizeof(thread_name), "%s", name);
}

int log_open(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        return err_set(-e, "log_path %s: %s", path, strerror(e));
    }
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = fd;
    return 0;
}

int log_set_module(const char *module)
{
    char m[sizeof(log_module)];
    size_t n = 0;
    if (!module)
        module = "";
    const char *c = module;
    if (strncmp(c, "api_server", 10) == 0) { /* Firecracker's API crate: our api/ */
        memcpy(m, "api", 3);
        n = 3;
        c += 10;
    }
    for (; *c; c++) {
        if (n + 1 >= sizeof(m))
            return err_set(-EINVAL, "module %s: too long", module);
        if (c[0] == ':' && c[1] == ':') {
            m[n++] = '/';
            c++;
        } else {
            m[n++] = *c;
        }
    }
    m[n] = '\0';
    memcpy(log_module, m, n + 1);
    return 0;
}

bool log_on_stderr(void)
{
    return log_fd == STDERR_FILENO;
}

uint64_t log_dropped(void)
{
    return atomic_load(&log_drops);
}

/* Days since 1970-01-01 to the proleptic Gregorian date (H. Hinnant's
 * days-to-civil: eras of 400 years, years starting on March 1st). */
void utc_time(int64_t secs, struct utc_time *out)
{
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t rem = secs - days * 86400;
    out->hour = (int)(rem / 3600);
    out->min = (int)(rem / 60 % 60);
    out->sec = (int)(rem % 60);
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;                                      /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11], from March */
    out->day = (int)(doy - (153 * mp + 2) / 5 + 1);
    out->month = (int)(mp < 10 ? mp + 3 : mp - 9);
    out->year = (int)(yoe + era * 400 + (out->month <= 2));
}

void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
{
    if (level > log_level || log_level == LOG_OFF)
        return;
    if (log_module[0] && strncmp(file, log_module, strlen(log_module)) != 0)
        return;
    char buf[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct utc_time t;
    utc_time(ts.tv_sec, &t);
    int n = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%09ld [%s:%s", t.year,
                     t.month, t.day, t.hour, t.min, t.sec, ts.tv_nsec, log_id, thread_name);
    if (log_show_level)
        n += snprintf(buf + n, sizeof(buf) - n, ":%s", levels[level].tag);
    if (log_show_origin)
        n += snprintf(buf + n, sizeof(buf) - n, ":%s:%d", file, line);
    n += snprintf(buf + n, sizeof(buf) - n, "] ");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
    va_end(ap);
    n = (m < 0) ? n : (n + m > (int)sizeof(buf) - 2 ? (int)sizeof(buf) - 2 : n + m);
    buf[n++] = '\n';
    /* One write per line keeps lines whole; a full FIFO drops the line. */
    if (write(log_fd, buf, n) != n)
        atomic_fetch_add(&log_drops, 1);
}

uint64_t time_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000ULL + ts.tv_nsec / 1000;
}

void time_mark_start(void)
{
    start_us = time_now_us();
}

uint64_t time_start_us(void)
{
    return start_us;
}
