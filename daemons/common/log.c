#include "log.h"

#include <libwebsockets.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *prog_name = "mimd";
static enum mim_log_level max_level = MIM_LOG_INFO;
static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

int mimd_log_level_parse(const char *name) {
  static const char *const lower[] = {"error", "warn", "info", "debug"};
  for (int i = 0; i < 4; i++)
    if (name != NULL && strcasecmp(name, lower[i]) == 0)
      return i;
  return -1;
}

static void emit(enum mim_log_level level, const char *msg) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(stderr, "%s.%03ldZ %-5s %s: %s\n", when, ts.tv_nsec / 1000000,
          names[level], prog_name, msg);
}

static void from_libmim(void *user, enum mim_log_level level, const char *msg) {
  (void)user;
  emit(level, msg);
}

static void from_lws(int lws_level, const char *line) {
  enum mim_log_level level = lws_level & LLL_ERR    ? MIM_LOG_ERROR
                             : lws_level & LLL_WARN ? MIM_LOG_WARN
                             : lws_level & (LLL_NOTICE | LLL_USER)
                                 ? MIM_LOG_INFO
                                 : MIM_LOG_DEBUG;
  if (level > max_level)
    return;
  char buf[512];
  snprintf(buf, sizeof buf, "lws: %s", line);
  size_t n = strlen(buf);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    buf[--n] = '\0';
  emit(level, buf);
}

void mimd_log_init(const char *prog, enum mim_log_level level) {
  prog_name = prog;
  max_level = level;
  mim_log_set_handler(from_libmim, NULL, level);
  int lws_mask = LLL_ERR | LLL_USER;
  if (level >= MIM_LOG_WARN)
    lws_mask |= LLL_WARN;
  if (level >= MIM_LOG_DEBUG)
    lws_mask |= LLL_NOTICE | LLL_INFO;
  lws_set_log_level(lws_mask, from_lws);
}

void mimd_log(enum mim_log_level level, const char *fmt, ...) {
  if (level > max_level)
    return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  emit(level, buf);
}
