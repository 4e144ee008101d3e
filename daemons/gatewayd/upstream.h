/* upstream.c: the RPC link to logicd (connect, HELLO, backoff, liveness,
 * dispatch). Knows nothing of client connections: reports through
 * struct gw_upstream_ops. Depends on <timer.h>, ../common/outq.h and
 * config.h only: it never sees struct gw. */
#ifndef GATEWAYD_UPSTREAM_H
#define GATEWAYD_UPSTREAM_H

#include "../common/outq.h"
#include "config.h"
#include <timer.h>

#include <libwebsockets.h>
#include <mim/codec.h>
#include <mim/rpc.h>
#include <stdbool.h>
#include <stdint.h>


/* What the link reports upward, each with the `ops_user` given at start.
 * The link knows nothing of client connections: the wiring (gateway.c)
 * routes these to the client side. */
struct gw_upstream_ops {
  /* The link was accepted: queue what logicd must learn first (SESSIONS).
   * A negative return drops the link. */
  int (*ready)(void *user);
  /* RPC DELIVER / KICK / SESSION from logicd, borrowed for the call. */
  void (*deliver)(void *user, const struct mim_rpc *r);
  void (*kick)(void *user, uint64_t conn_id, int32_t reason, const char *text);
  void (*session)(void *user, const struct mim_rpc *r);
  /* An accepted link went down: nothing it had not answered will be. */
  void (*link_lost)(void *user);
  /* The output went empty or the link closed (a stop may be complete). */
  void (*idle)(void *user);
};

enum up_state {
  UP_IDLE,       /* no link; a retry may be scheduled */
  UP_CONNECTING, /* TCP / unix connect in progress */
  UP_HELLO,      /* HELLO sent, waiting for HELLO_ACK */
  UP_READY,      /* accepted: requests flow */
};

struct upstream {
  const struct gw_config *cfg;   /* borrowed, from gw_upstream_start() */
  struct lws_context *context;   /* borrowed */
  struct lws_vhost *vhost;       /* borrowed: the link's client vhost */
  struct lws *wsi;
  enum up_state state;
  struct mimd_outq out;
  struct mim_stream_decoder *dec;
  struct mimd_timer retry;
  struct mimd_timer live;   /* while READY: PINGs and the silence deadline */
  lws_usec_t heard;       /* last bytes from logicd */
  lws_usec_t pinged;      /* last PING sent since `heard`, 0 = none */
  uint64_t nonce;
  uint32_t backoff_ms;
  lws_usec_t ready_since; /* when the current link became READY */
  uint64_t gen;           /* bumped each time a link becomes READY */
  bool failing;           /* failures are logged once per streak */
  bool stopped;           /* shutting down: never reconnect */
  char *address;
  const struct gw_upstream_ops *ops; /* set by gw_upstream_start() */
  void *ops_user;          /* "+/path" (lws's unix socket form) or the host */
};



/* Fills protocols[1]: the raw-socket protocol of the RPC link. */
void gw_upstream_protocol(struct upstream *up, struct lws_protocols *p);
/* Starts connecting to logicd; `ops` (static) and `user` receive what the
 * link reports. Errors: -ENOMEM. */
int gw_upstream_start(struct upstream *up, const struct gw_config *cfg,
                      struct lws_context *context, struct lws_vhost *vhost,
                      const struct gw_upstream_ops *ops, void *user);
/* The reconnect timer fired. */
void gw_upstream_retry(void *up);
/* The liveness timer fired: PING a silent logicd, drop a dead link. */
void gw_upstream_live(void *up);
/* Queues REQUEST (`body` borrowed for the call). Errors: -ENOTCONN no
 * accepted link; -ENOBUFS logicd is not keeping up; -ENOMEM. */
int gw_upstream_request(struct upstream *up, uint64_t conn_id,
                        uint32_t version,
                        uint32_t cmd, const uint8_t *body, size_t len);
/* Queues CONN_CLOSED if the link is up (otherwise logicd has already
 * dropped every route of this gateway). */
void gw_upstream_conn_closed(struct upstream *up, uint64_t conn_id);
/* Queues any RPC packet regardless of the backlog. Errors as above. */
int gw_upstream_send(struct upstream *up, const struct mim_rpc *r);
/* Nothing is waiting to be written to an accepted link. */
bool gw_upstream_flushed(const struct upstream *up);
/* No reconnects from now on; before the context is destroyed. */
void gw_upstream_stop(struct upstream *up);
void gw_upstream_finish(struct upstream *up);

#endif
