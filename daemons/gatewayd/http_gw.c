/* The HTTP gateway: clients that can only speak HTTP (scripts, curl,
 * browsers' EventSource) reach the same sessions, routing, limits and
 * guarantees as websocket clients (docs/protocol.md "HTTP and SSE").
 *
 * Neither transport is framed on the wire, so this module stands where
 * rx.c and the websocket writer stand for a websocket: it makes the frames
 * the client would have sent (an AuthRequest from the token, the request
 * from the JSON body, pulls and acks for a stream) and hands them to the
 * client side's one request path (ops->frame: limits, pending FIFO,
 * forwarding); and every frame the client side queues for the connection
 * (replies, pushes, errors, kicks, answers made locally) comes here
 * through client->take and is translated to HTTP.
 *
 * POST /http/v1/<command>: one request per HTTP request. The connection
 * logs in with MIM_CAP_TRANSIENT: logicd registers no route for it, so it
 * never kicks the live websocket or SSE session of the same uid + device
 * and receives no pushes (docs/rpc.md). After the AuthResponse, the
 * request; after its reply, the HTTP response; then the connection closes.
 *
 * GET /http/v1/events: a normal login (it is the device's session, like a
 * websocket: a second one of the same device replaces it with a kick),
 * with MIM_CAP_PULL_NO_ACK, then one SSE event per inbox entry. The
 * stream resumes after Last-Event-ID N (or the device's ack cursor): it
 * pulls after N page by page, then goes live. `delivered` is the inbox_seq
 * of the last event written; a push at or below it is a duplicate and is
 * dropped, a push above delivered + 1 reveals a gap (an entry that did not
 * arrive as a push, or pushes that raced the pull) and starts a pull after
 * `delivered`; pushes during a pull are dropped but remembered
 * (push_max), and the catch-up pulls until it has passed them; it goes
 * live only once its last page has been written. So the stream holds every
 * entry once, in order, whatever the interleaving of the pull replies and
 * the pushes.
 *
 * Memory: live events count against send_queue_bytes (past it: kick SLOW,
 * as for a websocket); a catch-up page (at most reply_bytes_max of
 * protobuf, more as JSON) is queued whole, and the next page is asked for
 * only once it has been written.
 *
 * The cursor moves only when the client says what it has: Last-Event-ID N
 * on (re)connect acks N, and POST /http/v1/ack acks explicitly. Events
 * written to the socket are not acknowledged by being written. */
#include "http_gw.h"

#include "front.h"
#include "gateway.h"
#include "http_json.h"
#include "tx.h"

#include <log.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

/* Longest token taken from a request: tokens are 66 characters
 * (docs/protocol.md §12); a longer one is refused before anything else. */
#define TOKEN_MAX 512
/* A POST waiting for logicd's answer gives up after this long. */
#define POST_TIMEOUT_S 30
/* What the client is told to wait before reconnecting (SSE `retry:`). */
#define SSE_RETRY_MS 2000

enum hstate {
  HS_BODY,    /* POST: reading the body */
  HS_AUTH,    /* the AuthRequest is out */
  HS_CMD,     /* POST: the request is out */
  HS_DONE,    /* answered: closing */
  SSE_CATCHUP, /* pulling after `delivered` */
  SSE_LIVE,   /* pushes */
};

struct gw_http {
  const struct gw_http_ops *ops;
  bool sse;
  enum hstate state;
  uint32_t cmd; /* POST: the request's command */
  char uid[MIM_ID_MAX + 1];
  char device[MIM_ID_MAX + 1];
  char token[TOKEN_MAX + 1];
  uint8_t *body; /* POST: the JSON, then the request's protobuf body */
  size_t body_len, body_cap;
  /* a request is due: sent from the WRITEABLE callback, never from inside
   * the delivery of a reply (the client side is still updating the
   * connection's state then) */
  bool want_send;
  int status;        /* HTTP status of the response; 0: not decided */
  bool headers_sent;
  /* SSE */
  bool have_last;
  uint64_t last_id;  /* Last-Event-ID */
  bool ack_due;      /* Last-Event-ID is to be acknowledged */
  uint64_t delivered; /* inbox_seq of the last event written */
  uint64_t push_max;  /* highest push dropped during a catch-up */
  bool pull_out;      /* a pull is in flight */
  bool pulled_all;    /* the last pull reached the inbox's end */
  int64_t next_seq;
};

static void take(struct gw *gw, struct client *c, struct qnode *n);

/* The heartbeat interval: sse_ping_s, but at most half idle_timeout_s, so
 * that whatever watches a connection's silence (lws's validity backstop,
 * proxies configured like the gateway) sees a stream alive. */
static lws_usec_t ping_us(const struct gw *gw) {
  int64_t s = gw->cfg->sse_ping_s, half = gw->cfg->idle_timeout_s / 2;
  if (half < 1)
    half = 1;
  return (lws_usec_t)(s < half ? s : half) * LWS_US_PER_SEC;
}

/* ---- requests per address ----
 * Every POST is a connection of its own, so the per-connection buckets of
 * the front door (and logicd's per-connection send rate) do not slow a
 * client that opens one after another. HTTP requests are therefore also
 * counted per client address (IPv4 address, IPv6 /64, as the connection
 * caps count them) in a token bucket: http_rate_per_s sustained, bursts of
 * http_rate_burst. The buckets live in a fixed table, so an address storm
 * costs no memory: a slot is taken over once its bucket has refilled
 * (it then holds nothing worth keeping); when every probed slot holds a
 * busy bucket of another address, the request is let through (an
 * attacker needs thousands of busy addresses for that, and the connection
 * caps still hold). */
#define RATE_SLOTS 4096
#define RATE_PROBE 8

struct rate_slot {
  uint64_t hi, lo; /* the address; 0/0: empty */
  double tokens;
  lws_usec_t at;
};

static struct rate_slot rate_tab[RATE_SLOTS];
static uint64_t rate_seed;

static bool addr_of(struct lws *wsi, uint64_t *hi, uint64_t *lo) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  int fd = (int)lws_get_socket_fd(wsi);
  memset(&ss, 0, sizeof ss);
  if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
    return false;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
    *hi = 1;
    *lo = a->sin_addr.s_addr;
    return true;
  }
  if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
    uint64_t p;
    memcpy(&p, a->sin6_addr.s6_addr, 8); /* the /64 */
    *hi = 2;
    *lo = p;
    return true;
  }
  return false;
}

/* Takes one request token for the address of `wsi`: false when it has
 * none left. */
static bool rate_take(struct gw *gw, struct lws *wsi) {
  double rate = (double)gw->cfg->http_rate_per_s;
  double burst = (double)gw->cfg->http_rate_burst;
  uint64_t hi, lo;
  if (rate <= 0 || !addr_of(wsi, &hi, &lo))
    return true;
  if (rate_seed == 0 &&
      getrandom(&rate_seed, sizeof rate_seed, GRND_NONBLOCK) !=
          (ssize_t)sizeof rate_seed)
    rate_seed = (uint64_t)lws_now_usecs() | 1;
  /* addresses are chosen by clients: the slot depends on a secret seed */
  uint64_t h = (hi * 0x9e3779b97f4a7c15u) ^ lo ^ rate_seed;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdu;
  h ^= h >> 29;
  h *= 0xc4ceb9fe1a85ec53u;
  h ^= h >> 32;
  lws_usec_t now = lws_now_usecs();
  struct rate_slot *free_slot = NULL;
  for (unsigned i = 0; i < RATE_PROBE; i++) {
    struct rate_slot *s = &rate_tab[(h + i) % RATE_SLOTS];
    double t = s->tokens + (double)(now - s->at) / 1e6 * rate;
    if (t > burst)
      t = burst;
    if (s->hi == hi && s->lo == lo) {
      s->at = now;
      if (t < 1) {
        s->tokens = t;
        return false;
      }
      s->tokens = t - 1;
      return true;
    }
    if (free_slot == NULL && (s->hi == 0 || t >= burst))
      free_slot = s;
  }
  if (free_slot != NULL) {
    free_slot->hi = hi;
    free_slot->lo = lo;
    free_slot->tokens = burst - 1;
    free_slot->at = now;
  }
  return true;
}

/* ---- output: raw bytes on the client's send queue ---- */

static size_t node_cost(const struct qnode *n) {
  return sizeof *n + LWS_PRE + n->len;
}

static void append_node(struct client *c, struct qnode *n) {
  c->q_bytes += node_cost(n);
  if (c->q_tail)
    c->q_tail->next = n;
  else
    c->q_head = n;
  c->q_tail = n;
  lws_callback_on_writable(c->wsi);
}

/* Queues the concatenation of the three pieces. Returns 0, -ENOMEM, or
 * -ENOBUFS when the backlog would pass send_queue_bytes (the caller treats
 * the client as a slow consumer). An empty queue takes any one node, and
 * so does a stream catching up: a pulled page is bounded by logicd's
 * reply_bytes_max, and the next page is asked for only once this one has
 * been written (send_due()). */
static int out(struct gw *gw, struct client *c, const char *a, size_t al,
               const char *b, size_t bl, const char *z, size_t zl) {
  struct qnode *n = gw_qnode_new(al + bl + zl);
  if (n == NULL)
    return -ENOMEM;
  memcpy(n->data + LWS_PRE, a, al);
  if (bl)
    memcpy(n->data + LWS_PRE + al, b, bl);
  if (zl)
    memcpy(n->data + LWS_PRE + al + bl, z, zl);
  bool paged = c->http->sse && c->http->state == SSE_CATCHUP;
  if (c->q_head != NULL && !paged &&
      c->q_bytes + node_cost(n) > (size_t)gw->cfg->send_queue_bytes) {
    free(n);
    return -ENOBUFS;
  }
  append_node(c, n);
  return 0;
}

/* The whole answer of a POST (or a refused stream): status + JSON, then
 * the connection closes. */
static void respond(struct gw *gw, struct client *c, int status, char *json,
                    size_t len) {
  struct gw_http *h = c->http;
  if (h->status != 0 || c->closing) {
    free(json);
    return;
  }
  h->status = status;
  h->state = HS_DONE;
  if (json == NULL || out(gw, c, json, len, "\n", 1, NULL, 0) < 0)
    h->status = 500;
  free(json);
  gw_close(gw, c, 1000, "done");
}

static void respond_error(struct gw *gw, struct client *c, int32_t code,
                          const char *msg) {
  size_t len = 0;
  char *j = gw_json_error(code, msg, &len);
  respond(gw, c, gw_json_http_status(code), j, len);
}

/* An SSE event (`event` NULL: the default "message" type), or closes the
 * stream as a slow consumer. */
static void event(struct gw *gw, struct client *c, const char *event_name,
                  uint64_t id, char *json, size_t len) {
  char head[96];
  int hl;
  if (json == NULL) {
    gw_close(gw, c, 1011, "out of memory");
    return;
  }
  if (event_name && id)
    hl = snprintf(head, sizeof head, "event: %s\nid: %llu\ndata: ", event_name,
                  (unsigned long long)id);
  else if (event_name)
    hl = snprintf(head, sizeof head, "event: %s\ndata: ", event_name);
  else if (id)
    hl = snprintf(head, sizeof head, "id: %llu\ndata: ", (unsigned long long)id);
  else
    hl = snprintf(head, sizeof head, "data: ");
  int rc = out(gw, c, head, (size_t)hl, json, len, "\n\n", 2);
  free(json);
  if (rc == -ENOBUFS) {
    /* what it has not taken stays in the inbox: the reconnect resumes */
    mimd_info("conn %llu: SSE queue over %lld bytes: slow consumer, closing",
              (unsigned long long)c->id, (long long)gw->cfg->send_queue_bytes);
    gw_queue_free(c);
    size_t kl = 0;
    char *k = gw_json_kick(MIM_KICK_SLOW, "slow consumer", &kl);
    if (k != NULL)
      (void)out(gw, c, "event: kick\ndata: ", 18, k, kl, "\n\n", 2);
    free(k);
    gw_close(gw, c, 1008, "slow consumer");
  } else if (rc < 0) {
    gw_close(gw, c, 1011, "out of memory");
  }
}

/* ---- requests to logicd (through the client side's path) ---- */

static void send_frame(struct gw *gw, struct client *c,
                       const struct mim_packet *p) {
  struct gw_http *h = c->http;
  uint8_t stack[512];
  size_t size = mim_packet_encoded_size(p);
  uint8_t *buf = size <= sizeof stack ? stack : malloc(size);
  size_t len = 0;
  if (buf == NULL || mim_packet_encode_body(p, buf, size, &len) < 0) {
    if (buf != stack)
      free(buf);
    respond_error(gw, c, MIM_ERR_BUSY, "out of memory");
    return;
  }
  struct mim_header hd = {MIM_PROTOCOL_VERSION, p->cmd, (uint32_t)len};
  h->ops->frame(gw, c, &hd, buf);
  if (buf != stack)
    free(buf);
}

static void send_auth(struct gw *gw, struct client *c) {
  struct gw_http *h = c->http;
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_AUTH_REQ;
  p.token = h->token;
  p.uid = h->uid;
  p.device = h->device[0] ? h->device : NULL;
  p.seq = h->next_seq++;
  p.ts = gw_now_ms();
  p.caps = h->sse ? MIM_CAP_PULL_NO_ACK : MIM_CAP_TRANSIENT;
  h->state = HS_AUTH;
  send_frame(gw, c, &p);
  /* the token is not kept longer than needed */
  memset(h->token, 0, sizeof h->token);
}

static void send_pull(struct gw *gw, struct client *c) {
  struct gw_http *h = c->http;
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_PULL_REQ;
  p.has_after_seq = true;
  p.after_seq = h->delivered;
  p.seq = h->next_seq++;
  h->pull_out = true;
  send_frame(gw, c, &p);
}

static void send_ack(struct gw *gw, struct client *c, uint64_t seq) {
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_C2C_PUSH_ACK;
  p.inbox_seq = seq;
  send_frame(gw, c, &p);
}

/* The POST's own request, from the encoded body kept in h->body; an ack
 * is followed by a heartbeat, whose reply says the ack was taken. */
static void send_command(struct gw *gw, struct client *c) {
  struct gw_http *h = c->http;
  struct mim_header hd = {MIM_PROTOCOL_VERSION, h->cmd, (uint32_t)h->body_len};
  h->state = HS_CMD;
  h->ops->frame(gw, c, &hd, h->body);
  if (h->cmd == MIM_CMD_C2C_PUSH_ACK && !c->closing) {
    struct mim_header hb = {MIM_PROTOCOL_VERSION, MIM_CMD_HEARTBEAT_REQ, 0};
    h->ops->frame(gw, c, &hb, NULL);
  }
}

static void send_due(struct gw *gw, struct client *c) {
  struct gw_http *h = c->http;
  if (!h->want_send || c->closing)
    return;
  if (!h->sse) {
    h->want_send = false;
    send_command(gw, c);
    return;
  }
  /* a stream asks for the next page only once the previous one has been
   * written: a slow reader slows its catch-up, not the gateway's memory */
  if (c->q_head != NULL)
    return;
  h->want_send = false;
  if (h->pulled_all && h->push_max <= h->delivered) {
    /* caught up, and the catch-up is written: pushes from now on. Those
     * dropped meanwhile are all at or below `delivered`. */
    h->state = SSE_LIVE;
    return;
  }
  if (h->ack_due) {
    h->ack_due = false;
    send_ack(gw, c, h->delivered);
  }
  send_pull(gw, c);
}

static void want_send(struct client *c) {
  c->http->want_send = true;
  lws_callback_on_writable(c->wsi);
}

/* ---- frames for the client, translated ---- */

static void emit_entry(struct gw *gw, struct client *c,
                       const struct mim_pull_item *it) {
  struct gw_http *h = c->http;
  size_t len = 0;
  char *j = gw_json_item(it, &len);
  event(gw, c, NULL, it->inbox_seq, j, len);
  if (it->inbox_seq > h->delivered)
    h->delivered = it->inbox_seq;
}

static void sse_ready(struct gw *gw, struct client *c,
                      const struct mim_packet *p) {
  struct gw_http *h = c->http;
  h->status = 200;
  /* where the stream starts: after what the client says it has, or after
   * what the device acknowledged. An id past the inbox's end (a client
   * confused about whose stream it is) would silence the stream; it is
   * taken as the end. */
  if (h->have_last) {
    h->delivered =
        h->last_id > p->last_inbox_seq ? p->last_inbox_seq : h->last_id;
    h->ack_due = h->delivered > 0;
  } else {
    h->delivered = p->ack_seq;
  }
  char hello[160];
  int n = snprintf(hello, sizeof hello,
                   "{\"last_inbox_seq\":%llu,\"ack_seq\":%llu,\"resume_after\":%llu}",
                   (unsigned long long)p->last_inbox_seq,
                   (unsigned long long)p->ack_seq,
                   (unsigned long long)h->delivered);
  char retry[32];
  int rl = snprintf(retry, sizeof retry, "retry: %d\n", SSE_RETRY_MS);
  (void)out(gw, c, retry, (size_t)rl, NULL, 0, NULL, 0);
  event(gw, c, "ready", 0, strdup(hello), (size_t)n);
  h->state = SSE_CATCHUP;
  want_send(c);
  lws_set_timer_usecs(c->wsi, ping_us(gw));
}

static void sse_pulled(struct gw *gw, struct client *c,
                       const struct mim_packet *p) {
  struct gw_http *h = c->http;
  h->pull_out = false;
  h->pulled_all = !p->has_more;
  for (size_t i = 0; i < p->n_items && !c->closing; i++)
    if (p->items[i].inbox_seq > h->delivered)
      emit_entry(gw, c, &p->items[i]);
  if (c->closing)
    return;
  /* the next page, or (once this one is written: send_due()) live */
  want_send(c);
}

static void sse_push(struct gw *gw, struct client *c, const struct mim_packet *p) {
  struct gw_http *h = c->http;
  uint64_t seq = p->inbox_seq;
  if (h->state == SSE_CATCHUP || h->pull_out) {
    mimd_debug("conn %llu: push %llu during a catch-up after %llu: dropped",
               (unsigned long long)c->id, (unsigned long long)seq,
               (unsigned long long)h->delivered);
    if (seq > h->push_max)
      h->push_max = seq; /* the pull (or the next one) brings it */
    return;
  }
  if (h->state != SSE_LIVE || (seq != 0 && seq <= h->delivered))
    return; /* before the stream started, or delivered already */
  if (seq != 0 && seq != h->delivered + 1) {
    mimd_debug("conn %llu: push %llu after %llu: a gap, pulling",
               (unsigned long long)c->id, (unsigned long long)seq,
               (unsigned long long)h->delivered);
    /* a gap: what is missing is in the inbox */
    h->push_max = seq;
    h->state = SSE_CATCHUP;
    h->pulled_all = false;
    want_send(c);
    return;
  }
  struct mim_pull_item it;
  gw_json_push_item(p, &it);
  emit_entry(gw, c, &it);
}

static void on_kick(struct gw *gw, struct client *c, const struct mim_packet *p) {
  struct gw_http *h = c->http;
  if (h->status == 0) {
    respond_error(gw, c,
                  p->reason == MIM_KICK_TOKEN_EXPIRED ? MIM_ERR_TOKEN_EXPIRED
                  : p->reason == MIM_KICK_SLOW        ? MIM_ERR_RATE_LIMITED
                                                      : MIM_ERR_UNAVAILABLE,
                  p->text);
    return;
  }
  size_t len = 0;
  char *j = gw_json_kick(p->reason, p->text, &len);
  event(gw, c, "kick", 0, j, len);
  /* the client side closes the connection right after the Kick */
}

static void on_packet(struct gw *gw, struct client *c, const struct mim_packet *p) {
  struct gw_http *h = c->http;
  if (p->cmd == MIM_CMD_KICK) {
    on_kick(gw, c, p);
    return;
  }
  if (h->state == HS_AUTH) {
    if (p->cmd == MIM_CMD_AUTH_RSP && p->status == 0) {
      if (h->sse) {
        sse_ready(gw, c, p);
      } else {
        h->state = HS_CMD;
        want_send(c);
      }
    } else if (p->cmd == MIM_CMD_AUTH_RSP) {
      respond_error(gw, c, p->status, p->text);
    } else if (p->cmd == MIM_CMD_ERROR) {
      respond_error(gw, c, p->status, p->text);
    }
    return;
  }
  if (h->state == HS_CMD) {
    if (p->cmd == MIM_CMD_ERROR) {
      respond_error(gw, c, p->status, p->text);
    } else if ((int)p->cmd == mim_cmd_reply(h->cmd) ||
               (h->cmd == MIM_CMD_C2C_PUSH_ACK &&
                p->cmd == MIM_CMD_HEARTBEAT_RSP)) {
      size_t len = 0;
      char *j = gw_json_reply(p, &len);
      respond(gw, c, 200, j, len);
    }
    return; /* a transient session gets no pushes; anything else is noise */
  }
  if (!h->sse || h->state == HS_DONE)
    return;
  switch (p->cmd) {
  case MIM_CMD_PULL_RSP:
    sse_pulled(gw, c, p);
    break;
  case MIM_CMD_C2C_PUSH:
  case MIM_CMD_C2G_PUSH:
  case MIM_CMD_SERVER_PUSH:
    sse_push(gw, c, p);
    break;
  case MIM_CMD_ERROR: {
    if (p->failed_cmd == MIM_CMD_C2C_PUSH_ACK)
      break; /* the resume still works; only the cursor stays */
    /* a pull refused (BUSY, UNAVAILABLE, ...): the stream ends and the
     * client reconnects after Last-Event-ID, losing nothing */
    size_t len = 0;
    char *j = gw_json_error(p->status, p->text, &len);
    event(gw, c, "mim-error", 0, j, len);
    gw_close(gw, c, 1011, "error");
    break;
  }
  default:
    break;
  }
}

static void take(struct gw *gw, struct client *c, struct qnode *n) {
  if (c->closing || c->http == NULL || n->len < MIM_HEADER_SIZE) {
    free(n);
    return;
  }
  struct mim_header hd;
  mim_header_decode(n->data + LWS_PRE, &hd);
  struct mim_packet p;
  mim_packet_init(&p);
  int rc = mim_packet_decode(&p, hd.cmd, n->data + LWS_PRE + MIM_HEADER_SIZE,
                             n->len - MIM_HEADER_SIZE);
  free(n);
  if (rc < 0) {
    /* logicd and the gateway only send what they can decode */
    mimd_error("conn %llu: undecodable cmd %u for an HTTP client",
               (unsigned long long)c->id, hd.cmd);
    gw_close(gw, c, 1011, "internal error");
    return;
  }
  p.cmd = hd.cmd;
  on_packet(gw, c, &p);
  mim_packet_finish(&p);
}

/* ---- the request ---- */

/* A refusal before the connection was registered: the answer, then the
 * close. */
static int refuse(struct gw *gw, struct client *c, int32_t code,
                  const char *why) {
  respond_error(gw, c, code, why);
  return 0;
}

/* The token: `Authorization: Bearer <token>`, or, where allowed, the
 * `token` query parameter. Returns its length, 0 if absent, -1 if too
 * long or not a bearer token. */
static int get_token(struct gw *gw, struct lws *wsi, char *dst, bool query_ok) {
  char auth[TOKEN_MAX + 16];
  int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
  if (n > 0) {
    if (n >= (int)sizeof auth ||
        lws_hdr_copy(wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
      return -1;
    if (strncasecmp(auth, "Bearer ", 7) != 0)
      return -1;
    const char *t = auth + 7;
    while (*t == ' ')
      t++;
    size_t l = strlen(t);
    if (l == 0 || l > TOKEN_MAX)
      return -1;
    memcpy(dst, t, l + 1);
    return (int)l;
  }
  if (!query_ok || !gw->cfg->http_query_token)
    return 0;
  char buf[TOKEN_MAX + 16];
  const char *v = lws_get_urlarg_by_name(wsi, "token=", buf, sizeof buf);
  if (v == NULL)
    return 0;
  size_t l = strlen(v);
  if (l == 0 || l > TOKEN_MAX)
    return -1;
  memcpy(dst, v, l + 1);
  return (int)l;
}

/* Query parameter `name` ("uid=") into `dst` (MIM_ID_MAX + 1 bytes):
 * 1 found, 0 absent, -1 too long. */
static int get_arg(struct lws *wsi, const char *name, char *dst) {
  char buf[MIM_ID_MAX + 32];
  const char *v = lws_get_urlarg_by_name(wsi, name, buf, sizeof buf);
  if (v == NULL)
    return 0;
  size_t l = strlen(v);
  if (l > MIM_ID_MAX)
    return -1;
  memcpy(dst, v, l + 1);
  return 1;
}

/* Last-Event-ID (header, or `last_event_id` in the query for clients that
 * cannot set headers): decimal digits only. 1 found, 0 absent, -1 bad. */
static int get_last_id(struct lws *wsi, uint64_t *out) {
  char v[40] = "";
  int n = lws_hdr_custom_copy(wsi, v, sizeof v, "last-event-id:", 14);
  if (n < 0) {
    char buf[64];
    const char *q = lws_get_urlarg_by_name(wsi, "last_event_id=", buf, sizeof buf);
    if (q == NULL)
      return 0;
    snprintf(v, sizeof v, "%s", q);
  }
  const char *s = v;
  while (*s == ' ')
    s++;
  if (*s == '\0')
    return 0; /* EventSource sends an empty one before the first id */
  uint64_t x = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || x > (UINT64_MAX - 9) / 10)
      return -1;
    x = x * 10 + (uint64_t)(*s - '0');
  }
  *out = x;
  return 1;
}

static int start_sse(struct gw *gw, const struct gw_http_ops *ops,
                     struct client *c, struct lws *wsi) {
  struct gw_http *h = c->http;
  h->sse = true;
  c->transport = GW_T_SSE;
  int lr = get_last_id(wsi, &h->last_id);
  if (lr < 0)
    return refuse(gw, c, MIM_ERR_MALFORMED, "bad Last-Event-ID");
  h->have_last = lr > 0;
  if (ops->open(gw, c, wsi) < 0)
    return -1;
  send_auth(gw, c);
  return 0;
}

int gw_http_request(struct gw *gw, const struct gw_http_ops *ops,
                    struct client *c, struct lws *wsi, const char *uri) {
  struct gw_http *h = calloc(1, sizeof *h);
  if (h == NULL)
    return -1;
  h->ops = ops;
  h->next_seq = 1;
  c->http = h;
  c->wsi = wsi;
  c->take = take;
  c->transport = GW_T_HTTP;
  const char *name = uri + strlen(GW_HTTP_PREFIX);
  bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
  bool post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
  bool events = strcmp(name, "events") == 0;
  if (events ? !get : !post) {
    h->cmd = events ? 0 : gw_json_cmd(name);
    if (!events && h->cmd == 0)
      return refuse(gw, c, MIM_ERR_UNKNOWN_CMD, "no such path");
    return refuse(gw, c, MIM_ERR_MALFORMED,
                  events ? "use GET for events" : "use POST for commands");
  }
  if (!events && (h->cmd = gw_json_cmd(name)) == 0)
    return refuse(gw, c, MIM_ERR_UNKNOWN_CMD, "no such command");
  if (!rate_take(gw, wsi))
    return refuse(gw, c, MIM_ERR_RATE_LIMITED,
                  "too many HTTP requests from this address");
  /* the token may travel in the URL only for EventSource, which cannot
   * set headers (docs/security.md: tokens in URLs) */
  int tl = get_token(gw, wsi, h->token, events);
  if (tl <= 0)
    return refuse(gw, c, MIM_ERR_UNAUTHENTICATED,
                  tl < 0 ? "bad Authorization" : "no token");
  int ur = get_arg(wsi, "uid=", h->uid), dr = get_arg(wsi, "device=", h->device);
  if (ur <= 0 || dr < 0 || !mim_id_valid(h->uid) ||
      (dr > 0 && !mim_id_valid(h->device)))
    return refuse(gw, c, MIM_ERR_MALFORMED, "uid (and device) must be valid ids");
  if (events)
    return start_sse(gw, ops, c, wsi);
  char cl[24];
  int64_t want = -1;
  if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)
    want = strtoll(cl, NULL, 10);
  if (want > gw->cfg->http_max_body)
    return refuse(gw, c, MIM_ERR_TOO_LARGE, "body larger than allowed");
  if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
    /* lws 4.1 does not decode chunked request bodies: 411 Length Required
     * (curl sends Content-Length for -d and --data-binary) */
    size_t len = 0;
    char *j = gw_json_error(MIM_ERR_MALFORMED, "Content-Length required", &len);
    respond(gw, c, 411, j, len);
    return 0;
  }
  h->state = HS_BODY;
  if (want <= 0)
    return gw_http_body_done(gw, c); /* no body: an empty request */
  return 0;
}

int gw_http_body(struct gw *gw, struct client *c, const void *in, size_t len) {
  struct gw_http *h = c->http;
  if (h == NULL || h->state != HS_BODY || c->closing)
    return 0;
  if (h->body_len + len > (size_t)gw->cfg->http_max_body) {
    refuse(gw, c, MIM_ERR_TOO_LARGE, "body larger than allowed");
    return 0;
  }
  if (h->body_len + len > h->body_cap) {
    size_t cap = h->body_cap ? h->body_cap : 1024;
    while (cap < h->body_len + len)
      cap *= 2;
    if (cap > (size_t)gw->cfg->http_max_body)
      cap = (size_t)gw->cfg->http_max_body;
    uint8_t *b = realloc(h->body, cap);
    if (b == NULL)
      return -1;
    h->body = b;
    h->body_cap = cap;
  }
  memcpy(h->body + h->body_len, in, len);
  h->body_len += len;
  return 0;
}

int gw_http_body_done(struct gw *gw, struct client *c) {
  struct gw_http *h = c->http;
  if (h == NULL || h->state != HS_BODY || c->closing)
    return 0;
  struct gw_json_req r;
  const char *why;
  int rc = gw_json_request(h->cmd, h->body, h->body_len, &r, &why);
  if (rc < 0)
    return refuse(gw, c, rc == -ENOMEM ? MIM_ERR_BUSY : MIM_ERR_MALFORMED, why);
  size_t size = mim_packet_encoded_size(&r.p), len = 0;
  uint8_t *enc = size > 0 ? malloc(size) : NULL;
  rc = enc ? mim_packet_encode_body(&r.p, enc, size, &len) : -ENOMEM;
  gw_json_req_free(&r);
  if (rc < 0) {
    free(enc);
    return refuse(gw, c, rc == -ENOMEM ? MIM_ERR_BUSY : MIM_ERR_MALFORMED,
                  "request cannot be encoded");
  }
  if (len > (size_t)gw->cfg->max_frame) {
    free(enc);
    return refuse(gw, c, MIM_ERR_FRAME_TOO_BIG, "request larger than max_frame");
  }
  free(h->body);
  h->body = enc;
  h->body_len = len;
  h->body_cap = size;
  if (h->ops->open(gw, c, c->wsi) < 0)
    return -1;
  /* a POST that logicd never answers still ends */
  lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, POST_TIMEOUT_S);
  send_auth(gw, c);
  return 0;
}

/* ---- writing ---- */

static int write_headers(struct gw *gw, struct client *c) {
  (void)gw;
  struct gw_http *h = c->http;
  uint8_t buf[LWS_PRE + 512];
  uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
  bool sse = h->sse && h->status == 200;
  if (lws_add_http_header_status(c->wsi, (unsigned)h->status, &p, end) ||
      lws_add_http_header_by_token(
          c->wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
          (const uint8_t *)(sse ? "text/event-stream" : "application/json"),
          sse ? 17 : 16, &p, end) ||
      lws_add_http_header_by_token(c->wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                   (const uint8_t *)"no-store", 8, &p, end) ||
      lws_add_http_header_by_token(c->wsi, WSI_TOKEN_CONNECTION,
                                   (const uint8_t *)"close", 5, &p, end))
    return -1;
  if (sse) {
    /* proxies (nginx) must not buffer a stream */
    if (lws_add_http_header_by_name(c->wsi, (const uint8_t *)"x-accel-buffering:",
                                    (const uint8_t *)"no", 2, &p, end))
      return -1;
  } else if (lws_add_http_header_content_length(
                 c->wsi, c->q_head ? c->q_head->len : 0, &p, end)) {
    return -1;
  }
  if (lws_finalize_write_http_header(c->wsi, start, &p, end))
    return -1;
  h->headers_sent = true;
  if (sse) /* a stream has no HTTP timeout; liveness is the heartbeat */
    lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);
  return 0;
}

int gw_http_writeable(struct gw *gw, struct client *c) {
  struct gw_http *h = c->http;
  if (h == NULL)
    return -1;
  send_due(gw, c);
  if (h->status != 0 && !h->headers_sent) {
    if (write_headers(gw, c) < 0)
      return -1;
    if (c->q_head || c->closing)
      lws_callback_on_writable(c->wsi);
    return 0;
  }
  if (c->q_head != NULL && h->headers_sent) {
    struct qnode *n = c->q_head;
    int w = lws_write(c->wsi, n->data + LWS_PRE, n->len, LWS_WRITE_HTTP);
    c->q_head = n->next;
    if (c->q_head == NULL)
      c->q_tail = NULL;
    c->q_bytes -= node_cost(n);
    size_t want = n->len;
    free(n);
    if (w < 0 || (size_t)w < want)
      return -1;
    if (h->sse)
      lws_validity_confirmed(c->wsi);
    if (c->q_head || c->closing || h->want_send)
      lws_callback_on_writable(c->wsi);
    return 0;
  }
  if (c->closing) {
    if (!h->headers_sent && h->status == 0) {
      /* closed before any answer was decided (a stop, a failed link) */
      h->status = 503;
      lws_callback_on_writable(c->wsi);
      return 0;
    }
    return -1;
  }
  return 0;
}

int gw_http_timer(struct gw *gw, struct client *c) {
  struct gw_http *h = c->http;
  if (h == NULL || !h->sse || c->closing)
    return 0;
  /* a comment line: EventSource ignores it, proxies see traffic, and a
   * dead peer shows up as a failed write */
  if (c->q_head == NULL)
    (void)out(gw, c, ": ping\n\n", 8, NULL, 0, NULL, 0);
  lws_set_timer_usecs(c->wsi, ping_us(gw));
  return 0;
}

void gw_http_free(struct client *c) {
  if (c->http == NULL)
    return;
  free(c->http->body);
  memset(c->http->token, 0, sizeof c->http->token);
  free(c->http);
  c->http = NULL;
  c->take = NULL;
  gw_queue_free(c);
}
