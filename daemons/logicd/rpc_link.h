/* One RPC link (a gateway or mimctl connected to logicd): its stream
 * decoder, its output queue and its handshake state. Knows lws only as far
 * as writing goes; what frames mean is rpc_server.c's business. */
#ifndef LOGICD_RPC_LINK_H
#define LOGICD_RPC_LINK_H

#include "outq.h" /* daemons/common */

#include <libwebsockets.h>
#include <mim/codec.h>
#include <mim/rpc.h>

/* RPC bodies can be large: a DELIVER to thousands of connections. */
#define RPC_MAX_BODY (16u * 1024 * 1024)

enum link_role {
  LINK_NEW = 0,     /* no (accepted) HELLO yet, or detached (replaced) */
  LINK_GATEWAY,     /* a gateway the logic knows by `gateway` */
  LINK_ADMIN,       /* mimctl: ADMIN requests only */
};

struct link {
  struct link *next, *prev; /* the server's list of live links */
  struct lws *wsi;
  struct mim_stream_decoder *dec;
  struct mimd_outq out;
  size_t out_max;           /* bytes queued before the link is cut off */
  enum link_role role;
  uint32_t gateway;         /* LINK_GATEWAY: the logic's handle */
  bool closing;             /* reads are ignored; closes once flushed */
  bool doomed;              /* to be detached and killed (see server) */
  bool paused;              /* output above the pause mark: not read */
  bool via_admin;           /* accepted on the operator socket */
  int64_t born_ms;          /* monotonic ms: accepted */
  int64_t heard_ms;         /* monotonic ms: last bytes received */
  int64_t pinged_ms;        /* monotonic ms: last PING sent, 0 = none since
                               heard_ms */
  bool sessions_closed;     /* a REQUEST or CONN_CLOSED came: no SESSIONS
                               any more (docs/rpc.md) */
  char id[MIM_ID_MAX + 1];  /* gateway_id from HELLO */
  char peer[64];            /* remote address, for log lines */
};

/* Errors: -ENOMEM. */
int link_create(struct link **out, struct lws *wsi, size_t out_max);

/* Frees the link (not its socket). NULL is a no-op. */
void link_destroy(struct link *k);

/* "gw-1 (127.0.0.1)" style name for log lines; static buffer. */
const char *link_name(const struct link *k);

/* Encodes `r` onto the output queue and asks for a writable callback.
 * Errors: -ENOBUFS the queue would exceed out_max (the peer is not reading);
 * -ENOMEM; encoder errors. Nothing is queued on error. */
int link_send(struct link *k, const struct mim_rpc *r);

/* Stops reading; closes once what is queued is written (or after a few
 * seconds if the peer does not read). */
void link_close_soon(struct link *k);

/* Closes the socket at once, dropping queued output. */
void link_kill(struct link *k);

/* For LWS_CALLBACK_RAW_WRITEABLE: writes the next chunk. Returns -1 when
 * the link must close now (write failed, or closing and flushed). */
int link_on_writable(struct link *k);

#endif
