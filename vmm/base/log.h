/* log.h - Ember's log lines, in Firecracker's shape:
 *   TIMESTAMP [ID:THREAD(:LEVEL)(:FILE:LINE)] message
 * written to stderr, or to the file/FIFO set with log_open(). A full FIFO
 * never blocks the VMM: the line is dropped and counted.
 */
#ifndef EMBER_LOG_H
#define EMBER_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/* Firecracker's level names (Error, Warning, Info, Debug, Trace, Off), in any
 * case, and "Warn": 0 or -EINVAL. */
int log_level_parse(const char *name, enum log_level *out);
/* Firecracker's name of a level ("Warning"). */
const char *log_level_name(enum log_level level);

void log_set_id(const char *id);
void log_set_level(enum log_level level);
void log_set_format(bool show_level, bool show_origin);
/* Only log lines from source files whose path starts with `module` (e.g.
 * "virtio", "api/routes.c"); Firecracker's crate paths are mapped
 * ("api_server" -> "api", "vmm::devices" -> "vmm/devices"). NULL or "": no
 * filter. Set before other threads log. 0 or -EINVAL (too long). */
int log_set_module(const char *module);
/* Name of the calling thread as printed in log lines ("main", "vcpu 0"). */
void log_set_thread_name(const char *name);
/* Send log lines to `path` (file appended to, or FIFO opened non-blocking). */
int log_open(const char *path);
uint64_t log_dropped(void);
/* True while log lines go to stderr (no --log-path / logger.log_path). */
bool log_on_stderr(void);

void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_error(...) log_write(LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARNING, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define log_debug(...) log_write(LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)

/* The UTC calendar time `secs` seconds after the epoch, as log lines print it.
 * Computed here: glibc's gmtime_r reads /etc/localtime on its first call,
 * which costs every start a file read (9p-shared in the nested machine). */
struct utc_time {
    int year, month, day, hour, min, sec; /* month 1-12, day 1-31 */
};
void utc_time(int64_t secs, struct utc_time *out);

/* Microseconds of CLOCK_MONOTONIC; and the process start reference. */
uint64_t time_now_us(void);
void time_mark_start(void);
uint64_t time_start_us(void);

#endif
