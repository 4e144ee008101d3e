/* Daemon logging: libmim's and libwebsockets' lines, one format, stderr. */
#ifndef MIMD_LOG_H
#define MIMD_LOG_H

#include <mim/common.h>

/* "error", "warn", "info", "debug" → level; -1 if unknown. */
int mimd_log_level_parse(const char *name);

/* Routes libmim logs (and libwebsockets', mapped onto the same levels) to
 * stderr as "YYYY-mm-ddTHH:MM:SS.mmmZ LEVEL prog: message". */
void mimd_log_init(const char *prog, enum mim_log_level level);

void mimd_log(enum mim_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define mimd_error(...) mimd_log(MIM_LOG_ERROR, __VA_ARGS__)
#define mimd_warn(...) mimd_log(MIM_LOG_WARN, __VA_ARGS__)
#define mimd_info(...) mimd_log(MIM_LOG_INFO, __VA_ARGS__)
#define mimd_debug(...) mimd_log(MIM_LOG_DEBUG, __VA_ARGS__)

#endif
