/* gatewayd internals shared by its files: the daemon state (struct gw), one
 * client connection (struct client) and the entry points of each file.
 *
 *   loop.c      lws context on a libev (or poll) loop, run, stop, drain
 *   clients.c   websocket protocol callback, connection table, auth timer,
 *               DELIVER / KICK / SESSION / SESSIONS on the client side
 *   rx.c        websocket message -> frames (reassembly, limits, batching)
 *   front.c     connection caps, open-file headroom, upgrade deadline,
 *               per-connection rate limits
 *   tx.c        per-connection send queue, local packets, closing
 *   pending.c   requests awaiting their answer: reply order, link loss
 *   upstream.c  the RPC link to logicd
 *   conntab.c   conn_id -> client hash table
 *   ../common/outq.c  byte queue with LWS_PRE headroom (the RPC output)
 *
 * Everything runs on the one lws service thread; nothing here is locked. */
#ifndef GATEWAYD_GATEWAY_H
#define GATEWAYD_GATEWAY_H

#include "config.h"
#include "conntab.h"
#include "../common/outq.h"

#include <libwebsockets.h>
#include <mim/codec.h>
#include <mim/rpc.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef MIMD_HAVE_LIBEV
#include <ev.h>
#endif

struct gw;

/* A one-shot timer on the daemon's loop (loop.c). On libev it is an
 * ev_timer, not an lws_sul: lws 4.1.6's libev glue re-arms its own timer
 * watcher while it is still active (ev_timer_set + ev_timer_start, a no-op
 * on an active watcher), so an lws_sul due before the one lws armed fires
 * late — seconds late for an auth deadline. On lws's poll() loop it is an
 * lws_sul, which that loop services correctly. */
struct gw_timer {
  struct gw *gw;
  void (*cb)(struct gw *gw);
  lws_sorted_usec_list_t sul;
#ifdef MIMD_HAVE_LIBEV
  ev_timer ev;
#endif
};

/* ---- one client connection (lws per-session data, zeroed by lws) ---- */

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

struct client {
  struct lws *wsi;
  uint64_t id; /* conn_id; 0 until ESTABLISHED registered it */

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

  /* closing: the queue drains, then a close frame with this code */
  bool closing;
  bool close_sent;
  uint16_t close_code;
  const char *close_reason; /* static string */
};

/* ---- the front door (front.c) ---- */

/* Connections from one address: IPv4 per address, IPv6 per /64 (one host
 * is usually given a whole /64). */
struct ipkey {
  uint64_t hi, lo;
};

struct ipslot {
  struct ipkey key;
  uint32_t n; /* sockets open from it; 0 marks an empty slot */
};

/* An accepted socket, from accept() to close, websocket or not yet: what
 * the connection caps and the upgrade deadline count. Hangs off the wsi as
 * its opaque user data. */
struct gw_sock {
  struct lws *wsi;
  struct ipkey key;
  struct gw_sock *prev, *next; /* the upgrade deadline list */
  bool in_hs;
  lws_usec_t deadline;
};

struct front {
  struct ipslot *ips; /* open addressing, a power of two slots */
  size_t ips_cap, ips_count;
  uint64_t k0, k1; /* hash key: addresses are chosen by clients */
  size_t n_socks;  /* accepted sockets open */
  struct gw_sock *hs_head, *hs_tail;
  struct gw_timer handshake;
  long fd_limit; /* RLIMIT_NOFILE at start (0: unknown) */
  long fd_base;  /* descriptors open before any client */
  /* what the last accept() got: its peer, picked up when lws adopts it */
  int stash_fd;
  struct ipkey stash_key;
  /* refusals since the last log line, by reason */
  uint64_t refused[4];
  lws_usec_t refused_logged;
};

/* ---- the daemon ---- */

enum gw_state { GW_RUNNING, GW_DRAINING, GW_DONE };

enum up_state {
  UP_IDLE,       /* no link; a retry may be scheduled */
  UP_CONNECTING, /* TCP / unix connect in progress */
  UP_HELLO,      /* HELLO sent, waiting for HELLO_ACK */
  UP_READY,      /* accepted: requests flow */
};

struct upstream {
  struct lws *wsi;
  enum up_state state;
  struct mimd_outq out;
  struct mim_stream_decoder *dec;
  struct gw_timer retry;
  struct gw_timer live;   /* while READY: PINGs and the silence deadline */
  lws_usec_t heard;       /* last bytes from logicd */
  lws_usec_t pinged;      /* last PING sent since `heard`, 0 = none */
  uint64_t nonce;
  uint32_t backoff_ms;
  lws_usec_t ready_since; /* when the current link became READY */
  uint64_t gen;           /* bumped each time a link becomes READY */
  bool failing;           /* failures are logged once per streak */
  bool stopped;           /* shutting down: never reconnect */
  char *address;          /* "+/path" (lws's unix socket form) or the host */
};

struct gw {
  struct gw_config *cfg;
  struct lws_context *context;
  struct lws_vhost *vhost;
  struct lws_protocols protocols[3];
  lws_retry_bo_t ws_policy;
  void *ev_loop; /* our libev loop, NULL on lws's poll() loop */
#ifdef MIMD_HAVE_LIBEV
  ev_timer pump; /* see loop.c */
#endif
  bool loop_stop;
  enum gw_state state;
  struct gw_timer drain;

  /* clients */
  struct conntab conns;
  uint64_t next_conn_id;
  struct client *ua_head, *ua_tail;
  struct gw_timer auth;

  struct upstream up;

  struct front front; /* front.c: who may connect, and for how long */
};

/* ---- loop.c ---- */

void gw_timer_init(struct gw *gw, struct gw_timer *t, void (*cb)(struct gw *));
/* (Re)arms `t` to fire once after `delay_us`. */
void gw_timer_set(struct gw_timer *t, lws_usec_t delay_us);
void gw_timer_cancel(struct gw_timer *t);

/* Builds the context, the listener and the RPC link; prints "ready".
 * `cfg` is borrowed until gw_finish(). Returns 0 or -1 (logged). */
int gw_start(struct gw *gw, struct gw_config *cfg);
/* Runs until a stop has drained. Returns 0, or -1 if the loop failed. */
int gw_run(struct gw *gw);
/* Closes everything and frees; also after a failed gw_start(). */
void gw_finish(struct gw *gw);
/* SIGTERM/SIGINT: refuse new clients, kick the others with 1001, let the
 * CONN_CLOSEDs reach logicd, then end gw_run() (or after a deadline). */
void gw_begin_stop(struct gw *gw);
/* Called whenever a connection or the RPC backlog goes away: ends the
 * stop once nothing is left. */
void gw_check_drained(struct gw *gw);

/* ---- clients.c ---- */

/* Fills protocols[0]: the websocket protocol, the vhost's default. */
void gw_clients_protocol(struct gw *gw, struct lws_protocols *p);
/* The auth deadline timer fired. */
void gw_clients_auth_timer(struct gw *gw);
/* A frame from client `c`, borrowed for the call: forward it to logicd,
 * or answer it here while logicd is away. */
void gw_client_on_frame(struct gw *gw, struct client *c,
                        const struct mim_header *h, const uint8_t *body);
/* RPC DELIVER / KICK / SESSION from logicd (`r` and `msg` borrowed for
 * the call). */
void gw_clients_deliver(struct gw *gw, const struct mim_rpc *r);
/* logicd bound (or, uid "", unbound) a connection's session. */
void gw_clients_session(struct gw *gw, const struct mim_rpc *r);
void gw_clients_kick(struct gw *gw, uint64_t conn_id, int32_t reason,
                     const char *msg);
/* Queues SESSIONS (every authenticated connection) on a new link.
 * Errors: -ENOMEM. */
int gw_clients_sessions(struct gw *gw);
/* Kicks every client (SHUTDOWN) and starts closing it with 1001. */
void gw_clients_shutdown(struct gw *gw);
/* Frees the table once lws_context_destroy() has closed everything. */
void gw_clients_finish(struct gw *gw);

/* ---- pending.c ---- */

/* Makes room for what a `cmd` request from `c` may add. Errors: -ENOBUFS
 * the client has GW_PENDING_MAX requests unanswered (it floods: the caller
 * cuts it off); -ENOMEM. */
int gw_pending_reserve(struct client *c, uint32_t cmd);
/* Request `h` + `body` (borrowed for the call) went to logicd; a reply
 * DELIVERed later answers it. Needs a successful gw_pending_reserve()
 * first; acks (9, 13, 29), which get no reply, are not recorded. */
void gw_pending_forwarded(struct client *c, const struct mim_header *h,
                          const uint8_t *body);
/* Answers request (seq, cmd) here: `answer` is GW_ANSWER_HEARTBEAT or a
 * negative libmim error. Sent at once if nothing is pending, otherwise
 * after the replies to the requests before it (needs a reservation). */
void gw_pending_answer(struct gw *gw, struct client *c, int64_t seq,
                       uint32_t cmd, int answer);
/* Whether a DELIVER of `cmd` (body `body`, borrowed) is the reply to a
 * forwarded request; pushes, kicks and Errors about acks are not. */
bool gw_pending_is_reply(uint32_t cmd, const uint8_t *body, size_t len);
/* A reply to `c` has been queued: the oldest request is answered, and the
 * local answers behind it go out. */
void gw_pending_replied(struct gw *gw, struct client *c);
/* The logicd link is gone: every forwarded request of every connection is
 * answered with UNAVAILABLE (heartbeats as usual), in request order. */
void gw_pending_link_down(struct gw *gw);
void gw_pending_free(struct client *c);
/* The seq of request `h` (body borrowed for the call), for its answer; 0
 * when the body does not parse (logicd's MALFORMED says 0 as well). */
int64_t gw_request_seq(const struct mim_header *h, const uint8_t *body);

/* What rx.c does with a frame once its header is in. */
enum gw_screen {
  GW_TAKE,   /* buffer the body and hand the frame to gw_client_on_frame() */
  GW_SKIP,   /* refused unread: drop the body, then gw_client_on_frame()
                with body NULL answers it */
  GW_CLOSED, /* refused with a close: nothing more to do */
};

/* Decides about a frame from its header alone (docs/protocol.md §2, §6):
 * server-to-client and unknown commands and unknown versions are never
 * decoded; before login, and for any AuthRequest, bodies above
 * auth_max_body close the connection. */
enum gw_screen gw_client_screen(struct gw *gw, struct client *c,
                                const struct mim_header *h);

/* ---- front.c ---- */

/* Reads the open-file limit and what is open; before any client. Errors:
 * -ENOMEM. */
int gw_front_start(struct gw *gw);
/* Frees the address table; after lws_context_destroy() (which closes every
 * socket through gw_front_destroyed()). The timer is cancelled before. */
void gw_front_finish(struct gw *gw);
/* LWS_CALLBACK_FILTER_NETWORK_CONNECTION: whether to keep a socket just
 * accepted (`a` borrowed): the caps per address and in total, and the
 * descriptors kept free for the logicd link. */
bool gw_front_admit(struct gw *gw, const struct lws_filter_network_conn_args *a);
/* LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED: counts the socket and starts
 * its upgrade deadline. Returns -1 (lws closes it) when out of memory. */
int gw_front_accepted(struct gw *gw, struct lws *wsi);
/* The websocket upgrade completed: no upgrade deadline any more. */
void gw_front_upgraded(struct gw *gw, struct lws *wsi);
/* LWS_CALLBACK_WSI_DESTROY: uncounts the socket, if it was one of ours. */
void gw_front_destroyed(struct gw *gw, struct lws *wsi);
/* The upgrade deadline timer fired. */
void gw_front_handshake_timer(struct gw *gw);

/* RATE_LIMITED answers are counted over windows of this many seconds; more
 * than rate_strikes in one window close the connection. */
#define GW_STRIKE_WINDOW_S 10

/* Fills both buckets of a new connection. */
void gw_rate_init(struct gw *gw, struct client *c);
/* `len` bytes arrived from `c`. */
void gw_rate_bytes(struct gw *gw, struct client *c, size_t len);
/* Takes a request token. Returns 0, -MIM_ERR_RATE_LIMITED (answer it so),
 * or -ECONNABORTED: rate_strikes refusals within the strike window, the
 * caller kicks the connection. */
int gw_rate_take(struct gw *gw, struct client *c);

/* ---- rx.c ---- */

/* One piece of a websocket message (`in` borrowed for the call). Complete
 * frames go to gw_client_on_frame(); a protocol error queues an Error and
 * starts the close, so there is nothing for the caller to do. */
void gw_rx(struct gw *gw, struct client *c, const uint8_t *in, size_t len,
           bool first, bool final);
/* Drops a half-received frame. */
void gw_rx_reset(struct client *c);

/* ---- tx.c ---- */

/* A node for a `frame_len`-byte frame (LWS_PRE headroom included), or
 * NULL. The caller fills data + LWS_PRE and may lower `len`. */
struct qnode *gw_qnode_new(size_t frame_len);
/* Takes `n`. Dropped if `c` is closing; over send_queue_bytes the client
 * is cut off as a slow consumer. */
void gw_queue(struct gw *gw, struct client *c, struct qnode *n);
/* Encodes `p` and queues it; `force` ignores the bound (for the one packet
 * that explains a close). Errors: -EINVAL, -ENOMEM, encoder errors. */
int gw_send_packet(struct gw *gw, struct client *c, const struct mim_packet *p,
                   bool force);
/* Queues Error{code of `err` (a negative libmim code), msg (NULL: the
 * standard text), seq, cmd, retryable}. */
int gw_send_error(struct gw *gw, struct client *c, int err, int64_t seq,
                  uint32_t cmd, const char *msg);
/* Queues Kick{reason, text, uid of `c`}, past the queue bound: the packet
 * that explains the close that follows. */
void gw_send_kick(struct gw *gw, struct client *c, int32_t reason,
                  const char *text);
/* Stops taking frames for `c`; once its queue is written it gets a close
 * frame with `code` and `reason` (a static string). A client that does not
 * read is dropped after a grace period. */
void gw_close(struct gw *gw, struct client *c, uint16_t code,
              const char *reason);
/* The same, after an Error{err, msg = reason, cmd} (seq 0: a frame that
 * is refused was never read that far). */
void gw_close_with_error(struct gw *gw, struct client *c, int err, uint32_t cmd,
                         uint16_t code, const char *reason);
/* LWS_CALLBACK_SERVER_WRITEABLE. Returns -1 to have lws close. */
int gw_writeable(struct gw *gw, struct client *c);
void gw_queue_free(struct client *c);
/* Wall clock in ms (the `ts` of packets made here). */
int64_t gw_now_ms(void);

/* ---- upstream.c ---- */

/* Fills protocols[1]: the raw-socket protocol of the RPC link. */
void gw_upstream_protocol(struct gw *gw, struct lws_protocols *p);
/* Starts connecting to logicd. Errors: -ENOMEM. */
int gw_upstream_start(struct gw *gw);
/* The reconnect timer fired. */
void gw_upstream_retry(struct gw *gw);
/* The liveness timer fired: PING a silent logicd, drop a dead link. */
void gw_upstream_live(struct gw *gw);
/* Queues REQUEST (`body` borrowed for the call). Errors: -ENOTCONN no
 * accepted link; -ENOBUFS logicd is not keeping up; -ENOMEM. */
int gw_upstream_request(struct gw *gw, uint64_t conn_id, uint32_t version,
                        uint32_t cmd, const uint8_t *body, size_t len);
/* Queues CONN_CLOSED if the link is up (otherwise logicd has already
 * dropped every route of this gateway). */
void gw_upstream_conn_closed(struct gw *gw, uint64_t conn_id);
/* Queues any RPC packet regardless of the backlog. Errors as above. */
int gw_upstream_send(struct gw *gw, const struct mim_rpc *r);
/* Nothing is waiting to be written to an accepted link. */
bool gw_upstream_flushed(const struct gw *gw);
/* No reconnects from now on; before the context is destroyed. */
void gw_upstream_stop(struct gw *gw);
void gw_upstream_finish(struct gw *gw);

#endif
