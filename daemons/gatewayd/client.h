/* One client connection: the record every client-side module (rx, tx,
 * pending, front, clients) works on. Data only; no functions. */
#ifndef GATEWAYD_CLIENT_H
#define GATEWAYD_CLIENT_H

#include <libwebsockets.h>
#include <mim/codec.h>
#include <stdbool.h>
#include <stdint.h>

/* A frame waiting to be written: `len` bytes at data + LWS_PRE, the
 * headroom lws_write() needs for the websocket header. */
struct qnode {
  struct qnode *next;
  size_t len;
  bool batchable; /* may share a websocket message with its neighbours */
  uint8_t data[];
};

/* A request whose answer the client has not been sent yet. Replies on a
 * connection come in request order (docs/protocol.md §4), so these form a
 * FIFO: the head is always a request forwarded to logicd, answers made here
 * (`answer` != 0) wait behind it. */
struct pending_req {
  int64_t seq;
  uint32_t cmd;
  int32_t answer; /* 0: logicd answers; GW_ANSWER_HEARTBEAT; or a negative
                     libmim error to answer with */
};

#define GW_ANSWER_HEARTBEAT 1

/* Unanswered requests a connection may have. logicd answers BUSY past 256
 * and kicks past 512 of its own (docs/protocol.md §12); this only bounds
 * what is in transit besides, e.g. a batch of 10^4 heartbeats in one
 * message. */
#define GW_PENDING_MAX 1024

/* How a connection's bytes are carried. Framing, writing and closing
 * switch on it; everything after framing (limits, the pending FIFO,
 * sessions, DELIVER, kicks) is one code path for all of them. */
enum gw_transport {
  GW_T_WS = 0, /* websocket: frames in binary messages, close frames */
  GW_T_TCP,    /* raw TCP (or TLS) stream: frames back to back, FIN */
  GW_T_SSE,    /* HTTP gateway: Server-Sent Events */
  GW_T_HTTP,   /* HTTP gateway: POST request/response */
};

struct gw;
struct gw_http;

struct client {
  struct lws *wsi;
  enum gw_transport transport;
  uint64_t id; /* conn_id; 0 until ESTABLISHED registered it */
  /* Transports that are not framed on the wire (SSE, HTTP) take each
   * frame queued for the client here instead of the send queue, and
   * translate it (http_gw.c); NULL for websockets. Takes `n`. */
  void (*take)(struct gw *gw, struct client *c, struct qnode *n);
  struct gw_http *http; /* http_gw.c's state, owned */

  /* send queue */
  struct qnode *q_head, *q_tail;
  size_t q_bytes;

  /* receive: the frame being reassembled (rx.c) */
  uint8_t hdr[MIM_HEADER_SIZE];
  uint8_t hdr_len;
  bool rx_complete;   /* a whole frame waits for the end of its message */
  uint32_t rx_frames; /* frames in the current websocket message */
  uint8_t *body;
  uint32_t body_len, body_got;
  uint32_t body_cap; /* allocated: grows with the bytes that arrived */
  bool rx_skip;      /* the frame is refused unread: its body is dropped */
  lws_usec_t valid_us; /* last lws_validity_confirmed() */

  /* rate limits (front.c): token buckets, refilled at rate_us */
  double rq_tokens, rb_tokens;
  lws_usec_t rate_us;
  uint32_t strikes;        /* RATE_LIMITED answers since strike_since */
  lws_usec_t strike_since;

  /* session, as logicd says (RPC SESSION), never as the client asked */
  bool authed;
  /* logicd accepted a login (an AuthResponse with status 0 went by) and
   * its SESSION is still on the way: requests are forwarded, since logicd
   * decides; nothing is learnt from this flag but that */
  bool login_accepted;
  uint32_t caps; /* granted: MIM_CAP_* */
  char *uid;
  char *device;
  uint8_t *ticket; /* logicd's session ticket, for SESSIONS */
  size_t ticket_len;

  /* requests awaiting their answer: a ring of pend_cap entries (pending.c) */
  struct pending_req *pend;
  uint16_t pend_cap, pend_head, pend_n;

  /* auth deadline list (unauthenticated connections, oldest first) */
  struct client *ua_prev, *ua_next;
  bool in_ua;
  lws_usec_t auth_deadline;

  /* keep-alive (idle.c): on one of two lists, least recently heard from
   * first */
  struct client *idle_prev, *idle_next;
  uint8_t idle_list;   /* which list, 0: none */
  bool ping_due;       /* a ping waits for the next WRITEABLE (tx.c) */
  lws_usec_t heard_us; /* last websocket message or pong */

  /* closing: the queue drains, then a close frame with this code (on a
   * stream: a FIN, the code is not sent) */
  bool closing;
  bool close_sent;
  uint16_t close_code;
  const char *close_reason; /* static string */
};

#endif
