#include "lwsloop.h"

#ifdef MIMD_HAVE_LIBEV
#include <ev.h>
#endif

bool mimd_have_libev(void) {
#ifdef MIMD_HAVE_LIBEV
  return true;
#else
  return false;
#endif
}

struct lws_context *mimd_lws_context_create(
    struct lws_context_creation_info *info, bool libev, void **ev_loop) {
  *ev_loop = NULL;
#ifdef MIMD_HAVE_LIBEV
  static void *foreign[1]; /* lws reads it during lws_create_context only */
  if (libev) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (loop == NULL)
      return NULL;
    foreign[0] = loop;
    info->foreign_loops = foreign;
    info->options |= LWS_SERVER_OPTION_LIBEV;
    struct lws_context *ctx = lws_create_context(info);
    info->foreign_loops = NULL;
    if (ctx == NULL) {
      ev_loop_destroy(loop);
      return NULL;
    }
    *ev_loop = loop;
    return ctx;
  }
#else
  (void)libev;
#endif
  return lws_create_context(info);
}
