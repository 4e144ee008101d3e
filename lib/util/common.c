/* Errors, logging and version: what every module of libmim shares. */
#include "util/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <mim/version.h>

const char *mim_version(void) { return MIM_VERSION_STRING; }

/* errno values libmim returns, with the wire code they map to. */
#define MIM_ERRNO_MAP(XX)                                                      \
  XX(ENOMEM, MIM_ERR_BUSY, true)                                               \
  XX(EINVAL, MIM_ERR_MALFORMED, false)                                         \
  XX(EBADMSG, MIM_ERR_MALFORMED, false)                                        \
  XX(EAGAIN, MIM_ERR_BUSY, true)                                               \
  XX(ENOBUFS, MIM_ERR_BUSY, true)                                              \
  XX(EMSGSIZE, MIM_ERR_FRAME_TOO_BIG, false)                                   \
  XX(ENOENT, MIM_ERR_MALFORMED, false)                                         \
  XX(EEXIST, MIM_ERR_MALFORMED, false)                                         \
  XX(EIO, MIM_ERR_STORE, true)                                                 \
  XX(ENOSPC, MIM_ERR_STORE_FULL, true)                                         \
  XX(EACCES, MIM_ERR_STORE, false)                                             \
  XX(EPERM, MIM_ERR_FORBIDDEN, false)                                          \
  XX(ETIMEDOUT, MIM_ERR_UNAVAILABLE, true)                                     \
  XX(ECONNRESET, MIM_ERR_UNAVAILABLE, true)                                    \
  XX(ENOTSUP, MIM_ERR_UNKNOWN_CMD, false)                                      \
  XX(EBUSY, MIM_ERR_BUSY, true)

const char *mim_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define XX(name, value, retry, text)                                           \
  case -MIM_ERR_##name:                                                        \
    return text;
    MIM_ERR_MAP(XX)
#undef XX
  default:
    break;
  }
  if (err < 0 && -err < MIM_ERR__FIRST)
    return strerror(-err);
  return "unknown error";
}

const char *mim_err_name(int err) {
  switch (err) {
  case 0:
    return "OK";
#define XX(name, value, retry, text)                                           \
  case -MIM_ERR_##name:                                                        \
    return "MIM_ERR_" #name;
    MIM_ERR_MAP(XX)
#undef XX
#define XX(name, wire, retry)                                                  \
  case -name:                                                                  \
    return #name;
    MIM_ERRNO_MAP(XX)
#undef XX
  default:
    return "UNKNOWN";
  }
}

bool mim_err_retryable(int err) {
  switch (err) {
#define XX(name, value, retry, text)                                           \
  case -MIM_ERR_##name:                                                        \
    return retry;
    MIM_ERR_MAP(XX)
#undef XX
#define XX(name, wire, retry)                                                  \
  case -name:                                                                  \
    return retry;
    MIM_ERRNO_MAP(XX)
#undef XX
  default:
    return false;
  }
}

int32_t mim_err_wire_code(int err) {
  if (err == 0)
    return 0;
  if (-err >= MIM_ERR__FIRST && -err <= MIM_ERR__LAST)
    return -err;
  switch (err) {
#define XX(name, wire, retry)                                                  \
  case -name:                                                                  \
    return wire;
    MIM_ERRNO_MAP(XX)
#undef XX
  default:
    return MIM_ERR_STORE;
  }
}

/* ---- UTF-8 ---- */

size_t mim__utf8_char_len(const uint8_t *s, size_t n) {
  uint8_t c = s[0];
  if (c < 0x80)
    return 1;
  size_t len;
  uint32_t cp, min;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2, cp = c & 0x1f, min = 0x80;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3, cp = c & 0x0f, min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0; /* 0x80..0xc1 (continuation, overlong lead), 0xf5..0xff */
  }
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return len;
}

bool mim_utf8_valid(const void *s, size_t len) {
  if (s == NULL)
    return len == 0;
  const uint8_t *p = s, *end = p + len;
  while (p < end) {
    /* message text is mostly ASCII: skip it a word at a time, so that
     * checking every stored and read message costs next to nothing */
    while ((size_t)(end - p) >= 8) {
      uint64_t w;
      memcpy(&w, p, sizeof w);
      if (w & UINT64_C(0x8080808080808080))
        break;
      p += 8;
    }
    if (p == end)
      break;
    if (*p < 0x80) {
      p++;
      continue;
    }
    size_t n = mim__utf8_char_len(p, (size_t)(end - p));
    if (n == 0)
      return false;
    p += n;
  }
  return true;
}

/* ---- logging ---- */

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
