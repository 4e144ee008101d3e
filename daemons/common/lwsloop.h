/* An lws context on a libev loop the daemon owns, or on lws's own poll()
 * loop. Owning the libev loop lets a daemon stop it exactly when its
 * shutdown drain is done and arm its own timers (lws 4.1.6 loses re-arms of
 * its libev timer made from inside its callback). */
#ifndef MIMD_LWSLOOP_H
#define MIMD_LWSLOOP_H

#include <libwebsockets.h>
#include <stdbool.h>

/* Creates the context described by `info` (borrowed; its foreign_loops and
 * LIBEV option are set here). With `libev` true and libev built in, the
 * context runs on a new libev loop returned in `*ev_loop` (a struct ev_loop
 * *, owned by the caller: ev_loop_destroy() it after lws_context_destroy());
 * otherwise `*ev_loop` is NULL and lws uses its poll() loop. NULL when the
 * context cannot be created (nothing is left allocated). */
struct lws_context *mimd_lws_context_create(
    struct lws_context_creation_info *info, bool libev, void **ev_loop);

/* Whether the daemons were built with libev. */
bool mimd_have_libev(void);

#endif
