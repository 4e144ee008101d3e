/* logicd's SIGHUP: re-read the configuration (the same --config file and
 * flags as at start) and apply what can change while running. What that is,
 * and what needs a restart, is listed in docs/operations.md ("Reloading"). */
#ifndef LOGICD_RELOAD_H
#define LOGICD_RELOAD_H

#include "config.h"
#include "rpc_server.h"

struct logicd_reload {
  int argc;                     /* the command line logicd started with */
  char **argv;
  struct logicd_config *running; /* the settings in force: what a reload
                                    applies is swapped into it, the rest is
                                    compared with it and left alone */
  struct server *server;
};

/* Reloads (for server_config.reload; `user` is a struct logicd_reload).
 * Tells the service manager RELOADING=1, then READY=1. A configuration
 * that does not load (a syntax error, an unreadable secret file, a value
 * out of range) changes nothing: the error is logged and the running
 * settings stay. */
void logicd_reload(void *user);

/* Replaces the secrets new HELLOs are checked against: rpc_server.h. */

#endif
