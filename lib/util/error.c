/* Errors and version: the one table of negative error codes (errno values
 * and libmim's own range), their names, texts and wire codes. */
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
