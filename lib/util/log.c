/* Logging: the library never prints; it hands lines to the handler of an
 * object's config or, without one, to the process-wide handler. */
#include "util/internal.h"

#include <stdarg.h>
#include <stdio.h>

static mim_log_fn log_fn;
static void *log_user;
static enum mim_log_level log_max = MIM_LOG_INFO;

void mim_log_set_handler(mim_log_fn fn, void *user,
                         enum mim_log_level max_level) {
  log_fn = fn;
  log_user = user;
  log_max = max_level;
}

bool mim__log_enabled(enum mim_log_level level) {
  return log_fn != NULL && level <= log_max;
}

static void log_line(mim_log_fn fn, void *user, enum mim_log_level level,
                     const char *fmt, va_list ap) {
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  fn(user, level, line);
}

void mim__log(enum mim_log_level level, const char *fmt, ...) {
  if (!mim__log_enabled(level))
    return;
  va_list ap;
  va_start(ap, fmt);
  log_line(log_fn, log_user, level, fmt, ap);
  va_end(ap);
}

void mim__log_to(const struct mim__log_sink *sink, enum mim_log_level level,
                 const char *fmt, ...) {
  va_list ap;
  if (sink == NULL || sink->fn == NULL) {
    if (!mim__log_enabled(level))
      return;
    va_start(ap, fmt);
    log_line(log_fn, log_user, level, fmt, ap);
    va_end(ap);
    return;
  }
  if (level > sink->max_level)
    return;
  va_start(ap, fmt);
  log_line(sink->fn, sink->user, level, fmt, ap);
  va_end(ap);
}
