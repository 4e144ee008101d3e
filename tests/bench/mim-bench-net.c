/* mim-bench: the libwebsockets client side of a worker.
 *
 * Receiving: lws parses the websocket framing and hands over payload pieces
 * of at most rx_buffer bytes; whole frames inside a piece are decoded in
 * place, a frame split across pieces is reassembled in c->rx.
 *
 * Sending: packets are encoded (mim_packet_encode) onto c->tx as they are
 * produced. In the WRITEABLE callback everything queued is wrapped into
 * websocket messages - one per frame for seed clients, as many frames per
 * message as fit in BATCH_MAX for MIM_CAP_BATCH clients - masked, and
 * handed to lws in ONE lws_write(LWS_WRITE_HTTP), which lws passes to the
 * socket as raw bytes. The gateway sees exactly the messages a client doing
 * one lws_write(LWS_WRITE_BINARY) per message would send, but the generator
 * makes one send() per wakeup instead of one send() plus one read of
 * /dev/urandom (lws's mask) per message: the generator must not be the
 * bottleneck. --tx-lws selects lws's own framing instead.
 *
 * A tcp:// URL connects to gatewayd's raw TCP listener instead (an lws raw
 * client socket): the frames go back to back, every queued frame in one
 * send() (up to WRITE_MAX), and what arrives is one endless stream, split
 * into frames by the same reassembly; each read counts as one received
 * message (coalesced acks go out per read). */
#include "mim-bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef BENCH_HAVE_LIBEV
#include <ev.h>
#endif

#define MAX_FRAME_BODY (16u * 1024 * 1024) /* bounds c->rx */
#define TX_MAX (16u * 1024 * 1024)         /* bounds c->tx */
#define BATCH_MAX (64u * 1024)             /* bytes of frames per message */
#define WRITE_MAX (256u * 1024)            /* framed bytes per lws_write */
#define WS_HDR_MAX 14                      /* 2 + 8 length + 4 mask */

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len);

static struct lws_protocols protocols[2];

/* No validity timer on client connections: lws 4.1 keeps its timers in one
 * sorted list with O(n) insertion, and its default policy gives every
 * connection a 300 s timer, which makes opening N connections O(N^2) (38%
 * of the generator's CPU at 9,000 connections). The gateway pings us; lws
 * answers with pongs either way. */
static const lws_retry_bo_t no_validity = {0};

int net_init(struct worker *w) {
  const struct bench_opts *o = w->o;
  struct lws_context_creation_info info;

  lws_set_log_level(getenv("MIM_BENCH_LWS_DEBUG") ? LLL_ERR | LLL_WARN |
                                                        LLL_NOTICE
                                                  : LLL_ERR,
                    NULL);
  memset(protocols, 0, sizeof protocols);
  protocols[0].name = "mim-bench";
  protocols[0].callback = callback;
  protocols[0].rx_buffer_size = o->rx_buffer;
  protocols[0].tx_packet_size = WRITE_MAX + WS_HDR_MAX * 64;
  protocols[0].user = w;

  memset(&info, 0, sizeof info);
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = protocols;
  info.gid = -1;
  info.uid = -1;
  info.user = w;
  info.pt_serv_buf_size = 64 * 1024;
  if (info.pt_serv_buf_size < o->rx_buffer + LWS_PRE)
    info.pt_serv_buf_size = o->rx_buffer + LWS_PRE;
  info.timeout_secs = 20;
  info.connect_timeout_secs = 15;

#ifdef BENCH_HAVE_LIBEV
  void *foreign[1];
  if (!o->no_libev) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (loop != NULL) {
      foreign[0] = loop;
      info.foreign_loops = foreign;
      info.options |= LWS_SERVER_OPTION_LIBEV;
      w->ctx = lws_create_context(&info);
      if (w->ctx != NULL) {
        w->evloop = loop;
        w->res.used_libev = 1;
      } else {
        ev_loop_destroy(loop);
        info.foreign_loops = NULL;
        info.options &= ~(uint64_t)LWS_SERVER_OPTION_LIBEV;
      }
    }
  }
#endif
  if (w->ctx == NULL)
    w->ctx = lws_create_context(&info);
  if (w->ctx == NULL)
    return -EIO;

  w->scratch_cap = LWS_PRE + WRITE_MAX + 2 * (BATCH_MAX + 16) +
                   WS_HDR_MAX * (WRITE_MAX / MIM_HEADER_SIZE + 2);
  w->scratch = malloc(w->scratch_cap);
  return w->scratch ? 0 : -ENOMEM;
}

void net_run_once(struct worker *w) {
#ifdef BENCH_HAVE_LIBEV
  if (w->evloop != NULL) {
    ev_run((struct ev_loop *)w->evloop, EVRUN_ONCE);
    return;
  }
#endif
  lws_service(w->ctx, 0);
}

void net_destroy(struct worker *w) {
  for (uint32_t i = 0; i < w->nconns; i++) {
    struct bconn *c = &w->conns[i];
    if (c->wsi != NULL) {
      lws_set_opaque_user_data(c->wsi, NULL);
      c->wsi = NULL;
    }
  }
  if (w->ctx != NULL)
    lws_context_destroy(w->ctx);
  w->ctx = NULL;
#ifdef BENCH_HAVE_LIBEV
  if (w->evloop != NULL)
    ev_loop_destroy((struct ev_loop *)w->evloop);
  w->evloop = NULL;
#endif
  free(w->scratch);
  w->scratch = NULL;
}

int net_connect(struct worker *w, struct bconn *c) {
  const struct bench_url *u = &w->o->urls[c->url];
  struct lws_client_connect_info ci;

  memset(&ci, 0, sizeof ci);
  ci.context = w->ctx;
  ci.address = u->host;
  ci.port = u->port;
  ci.path = u->path;
  ci.host = u->hosthdr;
  ci.origin = u->hosthdr;
  ci.local_protocol_name = "mim-bench";
  ci.opaque_user_data = c;
  ci.retry_and_idle_policy = &no_validity;
  char src[32];
  if (w->o->src_addrs > 0) {
    /* loopback only: 127.0.1.1, 127.0.1.2, ... each with its own ports */
    uint32_t k = c->id % w->o->src_addrs;
    snprintf(src, sizeof src, "127.0.%u.%u", 1 + k / 250, 1 + k % 250);
    ci.iface = src;
  }
  c->tcp = u->tcp;
  if (u->tcp) {
    /* lws's raw client role, bound to our protocol by name */
    ci.method = "RAW";
    ci.path = NULL;
    ci.origin = NULL;
  }
  c->state = CS_CONNECTING;
  c->t_start = now_ns();
  c->wsi = NULL;
  c->tx_len = 0;
  c->rx_len = 0;
  c->in_msg = false;
  c->wr_pending = false;
  c->batch = false;
  struct lws *wsi = lws_client_connect_via_info(&ci);
  if (wsi == NULL) {
    /* lws may have reported the failure through the callback already */
    if (c->state == CS_CONNECTING)
      on_conn_error(w, c, "lws_client_connect_via_info failed");
    return -ECONNREFUSED;
  }
  if (c->state == CS_CONNECTING)
    c->wsi = wsi;
  return 0;
}

void net_drop(struct bconn *c) {
  struct lws *wsi = c->wsi;
  if (wsi == NULL)
    return;
  lws_set_opaque_user_data(wsi, NULL);
  c->wsi = NULL;
  lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
}

static void request_write(struct bconn *c) {
  if (!c->wr_pending && c->wsi != NULL) {
    c->wr_pending = true;
    lws_callback_on_writable(c->wsi);
  }
}

int net_queue(struct bconn *c, const struct mim_packet *p) {
  if (c->wsi == NULL || c->state == CS_CLOSED || c->state == CS_FAILED)
    return -ENOTCONN;
  /* bounded: the first try fails only when the buffer is too small, the
   * second has the room the first asked for */
  for (int attempt = 0; attempt < 2; attempt++) {
    size_t room = c->tx_cap - c->tx_len, len = 0;
    int r = room > MIM_HEADER_SIZE
                ? mim_packet_encode(p, c->tx + c->tx_len, room, &len)
                : -ENOBUFS;
    if (r == 0) {
      c->tx_len += (uint32_t)len;
      request_write(c);
      return 0;
    }
    if (r != -ENOBUFS)
      return r;
    size_t need = c->tx_len + (len > 0 ? len : 256) + 256;
    if (need > TX_MAX)
      return -ENOBUFS;
    size_t cap = c->tx_cap ? c->tx_cap : 1024;
    while (cap < need)
      cap *= 2;
    uint8_t *nb = realloc(c->tx, cap);
    if (nb == NULL)
      return -ENOMEM;
    c->tx = nb;
    c->tx_cap = (uint32_t)cap;
  }
  return -ENOBUFS;
}

/* ---- sending ---- */

static uint32_t xorshift(uint32_t *s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x ? x : 0x9e3779b9u;
}

/* Writes one masked client websocket message (binary, FIN) holding
 * `payload` into `out`; returns its size. */
static size_t ws_frame(struct worker *w, uint8_t *out, const uint8_t *payload,
                       size_t len) {
  size_t h = 0;
  out[h++] = 0x82;
  if (len < 126) {
    out[h++] = (uint8_t)(0x80 | len);
  } else if (len < 65536) {
    out[h++] = 0x80 | 126;
    out[h++] = (uint8_t)(len >> 8);
    out[h++] = (uint8_t)len;
  } else {
    out[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  uint32_t key = xorshift(&w->rng);
  uint8_t mask[4];
  memcpy(mask, &key, 4);
  memcpy(out + h, mask, 4);
  h += 4;
  uint8_t *dst = out + h;
  size_t i = 0;
  uint64_t m8;
  uint8_t mm[8] = {mask[0], mask[1], mask[2], mask[3],
                   mask[0], mask[1], mask[2], mask[3]};
  memcpy(&m8, mm, 8);
  for (; i + 8 <= len; i += 8) {
    uint64_t v;
    memcpy(&v, payload + i, 8);
    v ^= m8;
    memcpy(dst + i, &v, 8);
  }
  for (; i < len; i++)
    dst[i] = payload[i] ^ mask[i & 3];
  return h + len;
}

static uint32_t frame_size(const uint8_t *f) {
  return MIM_HEADER_SIZE + ((uint32_t)f[8] << 24 | (uint32_t)f[9] << 16 |
                            (uint32_t)f[10] << 8 | (uint32_t)f[11]);
}

/* The next websocket message starting at tx offset `off`: its byte length
 * and frame count. */
static uint32_t next_message(const struct bconn *c, uint32_t off,
                             uint32_t *nframes) {
  uint32_t len = 0, n = 0;
  while (off + len < c->tx_len) {
    uint32_t f = frame_size(c->tx + off + len);
    if (n > 0 && (!c->batch || len + f > BATCH_MAX))
      break;
    len += f;
    n++;
  }
  *nframes = n;
  return len;
}

/* A raw TCP stream: the queued frames as they are, up to WRITE_MAX whole
 * frames (at least one) per lws_write. */
static int on_writeable_stream(struct bconn *c, struct lws *wsi) {
  struct worker *w = c->w;
  uint32_t off = 0;
  while (off < c->tx_len) {
    uint32_t f = frame_size(c->tx + off);
    if (off > 0 && off + f > WRITE_MAX)
      break;
    off += f;
    w->res.frames_out++;
  }
  /* a raw write needs no headroom: straight from the queue */
  if (lws_write(wsi, c->tx, off, LWS_WRITE_RAW) < (int)off)
    return -1;
  w->res.ws_out++;
  if (off < c->tx_len)
    memmove(c->tx, c->tx + off, c->tx_len - off);
  c->tx_len -= off;
  if (c->tx_len > 0)
    request_write(c);
  return 0;
}

static int on_writeable(struct bconn *c, struct lws *wsi) {
  struct worker *w = c->w;
  uint8_t *out = w->scratch + LWS_PRE;
  size_t olen = 0;
  uint32_t off = 0;

  c->wr_pending = false;
  if (c->tx_len == 0)
    return 0;
  if (c->tcp)
    return on_writeable_stream(c, wsi);
  /* bounded: each pass consumes at least one frame of tx */
  while (off < c->tx_len) {
    uint32_t nf = 0, mlen = next_message(c, off, &nf);
    if (olen > 0 && olen + WS_HDR_MAX + mlen > WRITE_MAX)
      break;
    if (w->o->tx_lws) {
      /* lws frames and masks it: one lws_write per message */
      memcpy(out, c->tx + off, mlen);
      if (lws_write(wsi, out, mlen, LWS_WRITE_BINARY) < (int)mlen)
        return -1;
    } else {
      olen += ws_frame(w, out + olen, c->tx + off, mlen);
    }
    off += mlen;
    w->res.ws_out++;
    w->res.frames_out += nf;
  }
  if (olen > 0 && lws_write(wsi, out, olen, LWS_WRITE_HTTP) < (int)olen)
    return -1;
  if (off < c->tx_len)
    memmove(c->tx, c->tx + off, c->tx_len - off);
  c->tx_len -= off;
  if (c->tx_len > 0)
    request_write(c);
  return 0;
}

/* ---- receiving ---- */

static void proto_error(struct bconn *c, const char *why) {
  struct worker *w = c->w;
  if (w->res.proto_errors++ < 5)
    fprintf(stderr, "mim-bench[%d]: %s: %s\n", w->idx, c->uid, why);
}

static void handle_frame(struct bconn *c, const uint8_t *f, uint32_t len,
                         int64_t now) {
  struct worker *w = c->w;
  struct mim_header h;
  mim_header_decode(f, &h);
  c->msg_frames++;
  w->res.frames_in++;
  if (h.version != MIM_PROTOCOL_VERSION) {
    proto_error(c, "frame with a version other than 0");
    return;
  }
  int r = mim_packet_decode(&w->pkt, h.cmd, f + MIM_HEADER_SIZE,
                            len - MIM_HEADER_SIZE);
  if (r != 0) {
    char why[96];
    snprintf(why, sizeof why, "cmd %u does not decode (%d)", h.cmd, r);
    proto_error(c, why);
    return;
  }
  on_packet(w, c, &w->pkt, now);
}

/* Takes bytes of a frame split across pieces into c->rx. Returns bytes
 * used, or -1 on a bad header. */
static long take_partial(struct bconn *c, const uint8_t *in, size_t len,
                         int64_t now) {
  size_t used = 0;
  if (c->rx_len < MIM_HEADER_SIZE) {
    size_t n = MIM_HEADER_SIZE - c->rx_len;
    if (n > len)
      n = len;
    memcpy(c->rx + c->rx_len, in, n);
    c->rx_len += (uint32_t)n;
    used = n;
    if (c->rx_len < MIM_HEADER_SIZE)
      return (long)used;
  }
  uint32_t total = frame_size(c->rx);
  if (total - MIM_HEADER_SIZE > MAX_FRAME_BODY)
    return -1;
  if (total > c->rx_cap) {
    uint8_t *nb = realloc(c->rx, total);
    if (nb == NULL)
      return -1;
    c->rx = nb;
    c->rx_cap = total;
  }
  size_t n = total - c->rx_len;
  if (n > len - used)
    n = len - used;
  memcpy(c->rx + c->rx_len, in + used, n);
  c->rx_len += (uint32_t)n;
  used += n;
  if (c->rx_len == total) {
    c->rx_len = 0;
    handle_frame(c, c->rx, total, now);
  }
  return (long)used;
}

static int on_receive(struct bconn *c, struct lws *wsi, const uint8_t *in,
                      size_t len) {
  struct worker *w = c->w;
  int64_t now = now_ns();
  size_t off = 0;

  if (!c->in_msg) {
    c->in_msg = true;
    c->msg_frames = 0;
    w->res.ws_in++;
    if (!c->tcp && !lws_frame_is_binary(wsi))
      proto_error(c, "text message from the server");
  }
  if (c->rx_len > 0) {
    long n = take_partial(c, in, len, now);
    if (n < 0) {
      proto_error(c, "oversized frame");
      return -1;
    }
    off = (size_t)n;
  }
  /* bounded: every pass consumes a whole frame or ends the loop */
  while (off < len && c->rx_len == 0) {
    struct mim_frame f;
    size_t used = 0;
    int r = mim_frame_decode(in + off, len - off, MAX_FRAME_BODY, &f, &used);
    if (r == -EAGAIN) {
      if (c->rx_cap < MIM_HEADER_SIZE) {
        uint8_t *nb = realloc(c->rx, 4096);
        if (nb == NULL)
          return -1;
        c->rx = nb;
        c->rx_cap = 4096;
      }
      long n = take_partial(c, in + off, len - off, now);
      if (n < 0) {
        proto_error(c, "oversized frame");
        return -1;
      }
      off += (size_t)n;
      break;
    }
    if (r != 0) {
      proto_error(c, "oversized frame");
      return -1;
    }
    handle_frame(c, in + off, (uint32_t)used, now);
    off += used;
    if (c->wsi == NULL)
      return -1; /* the handler dropped the connection */
  }
  if (c->tcp) {
    /* a stream: a frame may continue in the next read */
    c->in_msg = false;
    on_message_end(w, c);
  } else if (lws_is_final_fragment(wsi) &&
             lws_remaining_packet_payload(wsi) == 0) {
    c->in_msg = false;
    if (c->rx_len > 0) {
      proto_error(c, "a frame spans two websocket messages");
      c->rx_len = 0;
    }
    if (!c->batch && c->msg_frames != 1)
      proto_error(c, "a message without exactly one frame, no MIM_CAP_BATCH");
    on_message_end(w, c);
  }
  return c->wsi == NULL ? -1 : 0;
}

/* ---- the callback ---- */

static void detach(struct bconn *c, struct lws *wsi) {
  lws_set_opaque_user_data(wsi, NULL);
  if (c->wsi == wsi || c->wsi == NULL)
    c->wsi = NULL;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len) {
  struct bconn *c = lws_get_opaque_user_data(wsi);
  char why[160];

  (void)user;
  switch (reason) {
  case LWS_CALLBACK_RAW_CONNECTED:
  case LWS_CALLBACK_CLIENT_ESTABLISHED:
    if (c == NULL)
      return -1;
    c->wsi = wsi;
    c->state = CS_AUTHING;
    on_conn_open(c->w, c);
    break;
  case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    if (c != NULL) {
      if (in != NULL && len > 0)
        snprintf(why, sizeof why, "%.*s", (int)len, (const char *)in);
      else
        snprintf(why, sizeof why, "%s",
                 in != NULL ? (const char *)in : "connection error");
      detach(c, wsi);
      if (c->state == CS_CONNECTING)
        on_conn_error(c->w, c, why);
    }
    break;
  case LWS_CALLBACK_RAW_RX:
  case LWS_CALLBACK_CLIENT_RECEIVE:
    if (c == NULL)
      return -1;
    return on_receive(c, wsi, in, len);
  case LWS_CALLBACK_RAW_WRITEABLE:
  case LWS_CALLBACK_CLIENT_WRITEABLE:
    if (c == NULL)
      return -1;
    return on_writeable(c, wsi);
  case LWS_CALLBACK_RAW_CLOSE:
  case LWS_CALLBACK_CLIENT_CLOSED:
  case LWS_CALLBACK_WSI_DESTROY:
    if (c != NULL) {
      detach(c, wsi);
      if (c->state == CS_CONNECTING)
        on_conn_error(c->w, c, "closed while connecting");
      else if (c->state == CS_AUTHING || c->state == CS_READY)
        on_conn_closed(c->w, c);
    }
    break;
  default:
    break;
  }
  return 0;
}
