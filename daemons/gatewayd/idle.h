/* idle.c: keep-alive pings and the idle deadline of client connections. Depends on client.h,
 * tx.h and <timer.h>. */
#ifndef GATEWAYD_IDLE_H
#define GATEWAYD_IDLE_H

#include "client.h"

struct gw;

/* Something was heard from `c` (a websocket message, a pong): its idle
 * deadline restarts. Also puts a new connection on the list. */
void gw_idle_touch(struct gw *gw, struct client *c);

/* Takes `c` off the list (it is closing or closed). */
void gw_idle_unlink(struct gw *gw, struct client *c);

/* The idle timer fired: every connection silent for ping_interval_s gets
 * a ping (at its next WRITEABLE, see ping_due), every one silent for
 * idle_timeout_s Kick IDLE and a close frame 4002 (docs/protocol.md §11). */
void gw_idle_timer(void *gw);

/* The close code of an idle connection (private range of RFC 6455). */
#define GW_CLOSE_IDLE 4002

#endif
