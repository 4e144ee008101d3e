/* tcp.c: the raw TCP (or TLS) listener: the same frames as the websocket,
 * back to back on a byte stream (docs/protocol.md §1). Depends on
 * clients.h, front.h, rx.h, tx.h: a TCP connection is a struct client with
 * transport GW_T_TCP, and everything after framing is the websocket's
 * code. */
#ifndef GATEWAYD_TCP_H
#define GATEWAYD_TCP_H

#include <libwebsockets.h>

struct gw;

/* Fills `p` (two entries: the TCP protocol and the terminator). */
void gw_tcp_protocols(struct gw *gw, struct lws_protocols p[2]);
/* Creates the TCP vhost on gw->context when tcp_listen is set (else does
 * nothing). Returns 0, or -1 (logged) when it cannot listen. */
int gw_tcp_listen(struct gw *gw);

#endif
