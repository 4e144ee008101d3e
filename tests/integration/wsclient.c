/* Synchronous websocket test client on libwebsockets (see wsclient.h). */
#include "wsclient.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libwebsockets.h>

#include <mim/common.h>

/* Largest websocket message and frame body the client accepts. Far above
 * what a gateway should send; it only bounds memory. */
#define WSC_MAX_MESSAGE (32u * 1024 * 1024)
#define WSC_MAX_BODY (16u * 1024 * 1024)
#define WSC_SEND_TIMEOUT_MS 10000
#define WSC_CLOSE_TIMEOUT_MS 2000
#define WSC_SLICE_MS 50

struct rx_entry {
  struct rx_entry *next;
  int err;           /* 0: `pkt` holds a packet; else an error entry */
  uint32_t cmd;      /* the frame's cmd (error entries too, where known) */
  char why[160];     /* error entries: what was wrong */
  struct mim_packet pkt;
};

struct tx_entry {
  struct tx_entry *next;
  size_t len;
  bool binary;
  unsigned char buf[]; /* LWS_PRE bytes of headroom, then `len` bytes */
};

enum wsc_state { WSC_CONNECTING, WSC_OPEN, WSC_CLOSED, WSC_FAILED };

struct wsc_client {
  struct wsc_ctx *ctx;
  struct wsc_client *prev, *next; /* the context's list */
  struct lws *wsi;                /* NULL once lws let go of it */
  enum wsc_state state;
  bool batch;
  bool closing;                   /* we asked lws to close */
  int close_code;                 /* 0 until closed */
  struct rx_entry *rx_head, *rx_tail;
  size_t rx_count;
  struct tx_entry *tx_head, *tx_tail;
  /* the websocket message being reassembled */
  uint8_t *msg;
  size_t msg_len, msg_cap;
  bool in_msg, msg_binary, msg_overflow;
  char error[256];
};

struct wsc_ctx {
  struct lws_context *lws;
  lws_sorted_usec_list_t wake;
  struct wsc_client *clients;
};

static char last_error[512] = "";

const char *wsc_last_error(void) { return last_error; }

static int64_t now_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- queues ---- */

static void rx_push(struct wsc_client *c, struct rx_entry *e) {
  e->next = NULL;
  if (c->rx_tail != NULL)
    c->rx_tail->next = e;
  else
    c->rx_head = e;
  c->rx_tail = e;
  c->rx_count++;
}

static void rx_push_error(struct wsc_client *c, int err, uint32_t cmd,
                          const char *why) {
  struct rx_entry *e = calloc(1, sizeof(*e));

  if (e == NULL)
    return; /* the test times out instead; nothing better to do */
  mim_packet_init(&e->pkt);
  e->err = err;
  e->cmd = cmd;
  snprintf(e->why, sizeof(e->why), "%s", why);
  rx_push(c, e);
}

static void rx_free_all(struct wsc_client *c) {
  struct rx_entry *e = c->rx_head, *n;

  for (; e != NULL; e = n) {
    n = e->next;
    mim_packet_finish(&e->pkt);
    free(e);
  }
  c->rx_head = c->rx_tail = NULL;
  c->rx_count = 0;
}

static void tx_free_all(struct wsc_client *c) {
  struct tx_entry *t = c->tx_head, *n;

  for (; t != NULL; t = n) {
    n = t->next;
    free(t);
  }
  c->tx_head = c->tx_tail = NULL;
}

/* ---- receiving ---- */

/* One whole websocket message arrived: split it into frames and queue the
 * decoded packets. */
static void deliver_message(struct wsc_client *c) {
  size_t off = 0;
  unsigned nframes = 0;
  char why[160];

  if (!c->msg_binary) {
    rx_push_error(c, -EPROTO, 0, "the server sent a text message");
    return;
  }
  if (c->msg_overflow) {
    rx_push_error(c, -EPROTO, 0, "message larger than the client's limit");
    return;
  }
  if (c->msg_len == 0) {
    rx_push_error(c, -EPROTO, 0, "empty binary message");
    return;
  }
  while (off < c->msg_len) {
    struct mim_frame f;
    struct rx_entry *e;
    size_t used = 0;
    int r;

    if (nframes == 1 && !c->batch) {
      snprintf(why, sizeof(why),
               "%zu extra bytes after the frame in one message, "
               "without MIM_CAP_BATCH",
               c->msg_len - off);
      rx_push_error(c, -EPROTO, 0, why);
      return;
    }
    r = mim_frame_decode(c->msg + off, c->msg_len - off, WSC_MAX_BODY, &f,
                         &used);
    if (r != 0) {
      snprintf(why, sizeof(why), "undecodable frame at offset %zu (%d)", off,
               r);
      rx_push_error(c, -EBADMSG, 0, why);
      return;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL)
      return;
    mim_packet_init(&e->pkt);
    e->cmd = f.header.cmd;
    if (f.header.version != MIM_PROTOCOL_VERSION) {
      e->err = -EPROTO;
      snprintf(e->why, sizeof(e->why), "frame version %u", f.header.version);
    } else if ((r = mim_packet_decode(&e->pkt, f.header.cmd, f.body,
                                      f.header.body_len)) != 0) {
      e->err = -EBADMSG;
      snprintf(e->why, sizeof(e->why),
               "cmd %u body of %u bytes does not decode (%d)", f.header.cmd,
               f.header.body_len, r);
    }
    rx_push(c, e);
    off += used;
    nframes++;
  }
}

static void on_receive(struct wsc_client *c, struct lws *wsi, const void *in,
                       size_t len) {
  if (!c->in_msg) {
    c->in_msg = true;
    c->msg_len = 0;
    c->msg_overflow = false;
    c->msg_binary = lws_frame_is_binary(wsi) != 0;
  }
  if (!c->msg_overflow && len > 0) {
    if (c->msg_len + len > WSC_MAX_MESSAGE) {
      c->msg_overflow = true;
    } else {
      if (c->msg_len + len > c->msg_cap) {
        size_t cap = c->msg_cap ? c->msg_cap : 4096;
        uint8_t *m;

        while (cap < c->msg_len + len)
          cap *= 2;
        m = realloc(c->msg, cap);
        if (m == NULL) {
          c->msg_overflow = true;
          goto check_end;
        }
        c->msg = m;
        c->msg_cap = cap;
      }
      memcpy(c->msg + c->msg_len, in, len);
      c->msg_len += len;
    }
  }
check_end:
  if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
    c->in_msg = false;
    deliver_message(c);
  }
}

/* ---- the lws callback ---- */

/* lws may still call back for a wsi after we stopped caring (it closes
 * asynchronously); a detached wsi has no client. */
static void detach(struct wsc_client *c, struct lws *wsi) {
  lws_set_opaque_user_data(wsi, NULL);
  if (c->wsi == wsi)
    c->wsi = NULL;
}

static int on_writeable(struct wsc_client *c, struct lws *wsi) {
  struct tx_entry *t = c->tx_head;

  if (t != NULL) {
    int n;

    c->tx_head = t->next;
    if (c->tx_head == NULL)
      c->tx_tail = NULL;
    n = lws_write(wsi, t->buf + LWS_PRE, t->len,
                  t->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
    free(t);
    if (n < 0)
      return -1;
    if (c->tx_head != NULL || c->closing)
      lws_callback_on_writable(wsi);
    return 0;
  }
  if (c->closing) {
    lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
    return -1;
  }
  return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len) {
  struct wsc_client *c = lws_get_opaque_user_data(wsi);

  (void)user;
  switch (reason) {
  case LWS_CALLBACK_CLIENT_ESTABLISHED:
    if (c != NULL) {
      c->state = WSC_OPEN;
      if (c->tx_head != NULL || c->closing)
        lws_callback_on_writable(wsi);
    }
    break;
  case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    if (c != NULL) {
      c->state = WSC_FAILED;
      if (in != NULL && len > 0)
        snprintf(c->error, sizeof(c->error), "%.*s", (int)len,
                 (const char *)in);
      else
        snprintf(c->error, sizeof(c->error), "%s",
                 in != NULL ? (const char *)in : "connection error");
      detach(c, wsi);
    }
    break;
  case LWS_CALLBACK_CLIENT_RECEIVE:
    if (c != NULL)
      on_receive(c, wsi, in, len);
    break;
  case LWS_CALLBACK_CLIENT_WRITEABLE:
    if (c == NULL)
      return -1;
    return on_writeable(c, wsi);
  case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    if (c != NULL) {
      const uint8_t *b = in;

      c->close_code = (b != NULL && len >= 2) ? (b[0] << 8 | b[1]) : 1005;
    }
    break;
  case LWS_CALLBACK_CLIENT_CLOSED:
    if (c != NULL) {
      c->state = WSC_CLOSED;
      if (c->close_code == 0)
        c->close_code = WSC_CLOSE_ABNORMAL;
      detach(c, wsi);
    }
    break;
  case LWS_CALLBACK_WSI_DESTROY:
    if (c != NULL) {
      if (c->state == WSC_CONNECTING) {
        c->state = WSC_FAILED;
        if (c->error[0] == '\0')
          snprintf(c->error, sizeof(c->error), "connection destroyed");
      } else if (c->state == WSC_OPEN) {
        c->state = WSC_CLOSED;
      }
      if (c->close_code == 0 && c->state == WSC_CLOSED)
        c->close_code = WSC_CLOSE_ABNORMAL;
      detach(c, wsi);
    }
    break;
  default:
    break;
  }
  return 0;
}

static const struct lws_protocols protocols[] = {
  {"mim-wsc", callback, 0, 0, 0, NULL, 0},
  {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- context ---- */

static void wake_cb(lws_sorted_usec_list_t *sul) { (void)sul; }

int wsc_ctx_create(struct wsc_ctx **out) {
  struct lws_context_creation_info info;
  struct wsc_ctx *ctx = calloc(1, sizeof(*ctx));
  const char *dbg = getenv("WSC_DEBUG");

  if (ctx == NULL)
    return -ENOMEM;
  lws_set_log_level(dbg != NULL && *dbg ? LLL_ERR | LLL_WARN | LLL_NOTICE
                                        : LLL_ERR,
                    NULL);
  memset(&info, 0, sizeof(info));
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = protocols;
  info.gid = -1;
  info.uid = -1;
  ctx->lws = lws_create_context(&info);
  if (ctx->lws == NULL) {
    free(ctx);
    return -EIO;
  }
  *out = ctx;
  return 0;
}

static void client_unlink(struct wsc_client *c) {
  if (c->prev != NULL)
    c->prev->next = c->next;
  else if (c->ctx->clients == c)
    c->ctx->clients = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

static void client_free(struct wsc_client *c) {
  client_unlink(c);
  rx_free_all(c);
  tx_free_all(c);
  free(c->msg);
  free(c);
}

/* Lets go of the wsi at once (no close handshake). */
static void kill_wsi(struct wsc_client *c) {
  struct lws *w = c->wsi;

  if (w == NULL)
    return;
  detach(c, w);
  lws_set_timeout(w, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_SYNC);
}

void wsc_ctx_destroy(struct wsc_ctx *ctx) {
  if (ctx == NULL)
    return;
  while (ctx->clients != NULL) {
    struct wsc_client *c = ctx->clients;

    if (c->wsi != NULL)
      detach(c, c->wsi);
    client_free(c);
  }
  lws_sul_cancel(&ctx->wake);
  lws_context_destroy(ctx->lws);
  free(ctx);
}

void wsc_ctx_service(struct wsc_ctx *ctx, int ms) {
  /* lws 4.1 sleeps until its next scheduled event, however long; a wake-up
   * timer bounds the wait. */
  if (ms < 1)
    ms = 1;
  lws_sul_schedule(ctx->lws, 0, &ctx->wake, wake_cb, (lws_usec_t)ms * 1000);
  lws_service(ctx->lws, 0);
}

static void service_until(struct wsc_ctx *ctx, int64_t deadline) {
  int64_t left = deadline - now_ms();

  wsc_ctx_service(ctx, (int)(left < WSC_SLICE_MS ? (left < 1 ? 1 : left)
                                                 : WSC_SLICE_MS));
}

/* ---- connecting and closing ---- */

int wsc_connect_timeout(struct wsc_ctx *ctx, int port, const char *path,
                        int timeout_ms, struct wsc_client **out) {
  struct lws_client_connect_info i;
  struct wsc_client *c = calloc(1, sizeof(*c));
  int64_t deadline = now_ms() + timeout_ms;

  *out = NULL;
  if (c == NULL)
    return -ENOMEM;
  c->ctx = ctx;
  c->state = WSC_CONNECTING;
  c->next = ctx->clients;
  if (ctx->clients != NULL)
    ctx->clients->prev = c;
  ctx->clients = c;

  memset(&i, 0, sizeof(i));
  i.context = ctx->lws;
  i.address = "127.0.0.1";
  i.port = port;
  i.path = path;
  i.host = "127.0.0.1";
  i.origin = "127.0.0.1";
  i.protocol = NULL; /* no Sec-WebSocket-Protocol, like the seed client */
  i.local_protocol_name = protocols[0].name;
  i.opaque_user_data = c;
  i.pwsi = &c->wsi;
  if (lws_client_connect_via_info(&i) == NULL) {
    snprintf(last_error, sizeof(last_error), "connect to 127.0.0.1:%d%s: %s",
             port, path, c->error[0] ? c->error : "lws refused to start");
    c->wsi = NULL;
    client_free(c);
    return -ECONNREFUSED;
  }
  while (c->state == WSC_CONNECTING && now_ms() < deadline)
    service_until(ctx, deadline);
  if (c->state == WSC_OPEN) {
    *out = c;
    return 0;
  }
  if (c->state == WSC_CONNECTING) {
    snprintf(last_error, sizeof(last_error),
             "connect to 127.0.0.1:%d%s: no upgrade within %d ms", port, path,
             timeout_ms);
    kill_wsi(c);
    client_free(c);
    return -ETIMEDOUT;
  }
  snprintf(last_error, sizeof(last_error), "connect to 127.0.0.1:%d%s: %s",
           port, path, c->error[0] ? c->error : "closed during the upgrade");
  kill_wsi(c);
  client_free(c);
  return -ECONNREFUSED;
}

int wsc_connect(struct wsc_ctx *ctx, int port, const char *path,
                struct wsc_client **out) {
  return wsc_connect_timeout(ctx, port, path, 5000, out);
}

void wsc_set_batch(struct wsc_client *c, bool batch) { c->batch = batch; }

bool wsc_is_open(const struct wsc_client *c) {
  return c->state == WSC_OPEN;
}

size_t wsc_pending(const struct wsc_client *c) { return c->rx_count; }

int wsc_wait_closed(struct wsc_client *c, int timeout_ms, int *close_code) {
  int64_t deadline = now_ms() + timeout_ms;

  while (c->state == WSC_OPEN || c->state == WSC_CONNECTING) {
    if (now_ms() >= deadline)
      return -ETIMEDOUT;
    service_until(c->ctx, deadline);
  }
  if (close_code != NULL)
    *close_code = c->close_code ? c->close_code : WSC_CLOSE_ABNORMAL;
  return 0;
}

void wsc_close(struct wsc_client *c) {
  int64_t deadline;

  if (c == NULL)
    return;
  if (c->wsi != NULL && c->state == WSC_OPEN) {
    c->closing = true;
    lws_callback_on_writable(c->wsi);
    deadline = now_ms() + WSC_CLOSE_TIMEOUT_MS;
    while (c->wsi != NULL && now_ms() < deadline)
      service_until(c->ctx, deadline);
  }
  kill_wsi(c);
  client_free(c);
}

void wsc_abort(struct wsc_client *c) {
  if (c == NULL)
    return;
  if (c->wsi != NULL) {
    int fd = (int)lws_get_socket_fd(c->wsi);

    if (fd >= 0)
      shutdown(fd, SHUT_RDWR);
  }
  kill_wsi(c);
  client_free(c);
}

/* ---- sending ---- */

static int enqueue(struct wsc_client *c, const void *bytes, size_t len,
                   bool binary, struct tx_entry **made) {
  struct tx_entry *t;

  if (c->state != WSC_OPEN || c->closing || c->wsi == NULL)
    return -ENOTCONN;
  t = malloc(sizeof(*t) + LWS_PRE + len);
  if (t == NULL)
    return -ENOMEM;
  t->next = NULL;
  t->len = len;
  t->binary = binary;
  if (len > 0)
    memcpy(t->buf + LWS_PRE, bytes, len);
  if (c->tx_tail != NULL)
    c->tx_tail->next = t;
  else
    c->tx_head = t;
  c->tx_tail = t;
  lws_callback_on_writable(c->wsi);
  if (made != NULL)
    *made = t;
  return 0;
}

static int flush(struct wsc_client *c) {
  int64_t deadline = now_ms() + WSC_SEND_TIMEOUT_MS;

  for (;;) {
    if (c->state != WSC_OPEN || c->wsi == NULL)
      return -EPIPE;
    if (c->tx_head == NULL && !lws_partial_buffered(c->wsi))
      return 0;
    if (now_ms() >= deadline)
      return -ETIMEDOUT;
    service_until(c->ctx, deadline);
  }
}

int wsc_queue_raw(struct wsc_client *c, const void *bytes, size_t len,
                  bool binary) {
  return enqueue(c, bytes, len, binary, NULL);
}

int wsc_send_raw(struct wsc_client *c, const void *bytes, size_t len,
                 bool binary) {
  int r = enqueue(c, bytes, len, binary, NULL);

  return r != 0 ? r : flush(c);
}

static int encode(const struct mim_packet *p, uint8_t **buf, size_t *len) {
  size_t need = mim_packet_encoded_size(p);
  int r;

  if (need == 0)
    return -EINVAL;
  *buf = malloc(need);
  if (*buf == NULL)
    return -ENOMEM;
  r = mim_packet_encode(p, *buf, need, len);
  if (r != 0) {
    free(*buf);
    return -EINVAL;
  }
  return 0;
}

int wsc_queue_packet(struct wsc_client *c, const struct mim_packet *p) {
  uint8_t *buf;
  size_t len;
  int r = encode(p, &buf, &len);

  if (r != 0)
    return r;
  if (p->cmd == MIM_CMD_AUTH_REQ && (p->caps & MIM_CAP_BATCH))
    c->batch = true;
  r = enqueue(c, buf, len, true, NULL);
  free(buf);
  return r;
}

int wsc_send_packet(struct wsc_client *c, const struct mim_packet *p) {
  int r = wsc_queue_packet(c, p);

  return r != 0 ? r : flush(c);
}

/* ---- taking received packets ---- */

int wsc_recv_match(struct wsc_client *c, int timeout_ms, wsc_match_fn match,
                   void *user, struct mim_packet *out) {
  int64_t deadline = now_ms() + timeout_ms;

  mim_packet_init(out);
  for (;;) {
    struct rx_entry *e, *prev = NULL;

    for (e = c->rx_head; e != NULL; prev = e, e = e->next) {
      if (e->err == 0 && match != NULL && !match(&e->pkt, user))
        continue;
      if (prev != NULL)
        prev->next = e->next;
      else
        c->rx_head = e->next;
      if (c->rx_tail == e)
        c->rx_tail = prev;
      c->rx_count--;
      if (e->err != 0) {
        int err = e->err;

        snprintf(last_error, sizeof(last_error), "%s", e->why);
        mim_packet_finish(&e->pkt);
        out->cmd = e->cmd;
        free(e);
        return err;
      }
      *out = e->pkt;
      free(e);
      return 0;
    }
    if (c->state != WSC_OPEN && c->state != WSC_CONNECTING)
      return -ENOTCONN;
    if (now_ms() >= deadline)
      return -ETIMEDOUT;
    service_until(c->ctx, deadline);
  }
}

int wsc_recv(struct wsc_client *c, int timeout_ms, struct mim_packet *out) {
  return wsc_recv_match(c, timeout_ms, NULL, NULL, out);
}

static bool match_cmd(const struct mim_packet *p, void *user) {
  return p->cmd == *(const uint32_t *)user;
}

int wsc_recv_cmd(struct wsc_client *c, uint32_t cmd, int timeout_ms,
                 struct mim_packet *out) {
  return wsc_recv_match(c, timeout_ms, match_cmd, &cmd, out);
}
