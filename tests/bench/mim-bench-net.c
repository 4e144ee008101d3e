/* mim-bench: the client side of a worker, on libwebsockets' loop.
 *
 * ws:// URLs use mim-bench's own websocket client by default (--ws-raw):
 * an lws raw client socket on which the upgrade request, the 101 check and
 * the websocket framing are ours; each read is split into websocket frames
 * by their headers, and binary payload goes to the reassembly below in
 * place. --ws-lws uses lws's websocket client instead: lws parses the
 * framing (byte by byte) and hands over payload pieces of at most
 * rx_buffer bytes. Either way whole frames inside a piece are decoded in
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
 * bottleneck. --tx-lws selects lws's own framing instead (--ws-lws only).
 * The own client writes the same masked messages on its raw socket.
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
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#ifdef BENCH_HAVE_LIBEV
#include <ev.h>
#endif

#define MAX_FRAME_BODY (16u * 1024 * 1024) /* bounds c->rx */
#define TX_MAX (16u * 1024 * 1024)         /* bounds c->tx */
#define BATCH_MAX (64u * 1024)             /* bytes of frames per message */
#define WRITE_MAX (256u * 1024)            /* framed bytes per lws_write */
#define WS_HDR_MAX 14                      /* 2 + 8 length + 4 mask */
#define HS_MAX 4096                        /* bounds the 101 response */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* The websocket state of a connection on mim-bench's own client (wsraw). */
struct wsraw {
  char key[32];          /* Sec-WebSocket-Key sent (base64 of 16 bytes) */
  char accept[32];       /* the Sec-WebSocket-Accept it must come back with */
  char *hs;              /* the response headers so far; NULL once up */
  uint32_t hs_len;
  bool req_sent;         /* the upgrade request went out */
  bool up;               /* 101 checked: frames from here on */
  bool in_frame;         /* header parsed, payload (ws->left) follows */
  bool fin;
  uint8_t op;            /* opcode of the frame being received */
  uint8_t msg_op;        /* data message in progress (1, 2), 0 = none */
  uint8_t hdr_len;       /* bytes of a header split across reads */
  uint8_t ctl_len;
  uint8_t pong_len;
  bool pong_pending;     /* answer a ping at the next WRITEABLE */
  uint64_t left;         /* payload bytes of the frame still to come */
  uint8_t hdr[WS_HDR_MAX];
  uint8_t ctl[125];      /* a control frame's payload */
  uint8_t pong[125];
};

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len);

static struct lws_protocols protocols[2];

static void request_write(struct bconn *c);
static size_t ws_frame(struct worker *w, uint8_t *out, const uint8_t *payload,
                       size_t len);
static void proto_error(struct bconn *c, const char *why);
static void rx_begin(struct bconn *c);
static int rx_payload(struct bconn *c, const uint8_t *in, size_t len,
                      int64_t now);
static int rx_end(struct bconn *c);

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
    if (c->ws != NULL)
      free(c->ws->hs);
    free(c->ws);
    c->ws = NULL;
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

/* ---- wsraw: mim-bench's own websocket client on a raw socket ----
 *
 * lws 4.1's client parses incoming websocket frames byte by byte (65% of
 * the generator's CPU receiving ~1M pushes/s); here a read is split into
 * frames by their headers and each binary payload piece goes to the same
 * reassembly as lws's pieces, in place. The upgrade request and the 101
 * check are ours too (RFC 6455 4.1): what gatewayd's lws server sees is an
 * ordinary websocket client. */

static void b64(const uint8_t *in, int n, char *out) {
  EVP_EncodeBlock((unsigned char *)out, in, n);
}

/* Resets c's websocket state for a new connection: a fresh key and the
 * accept value it implies. Errors: -ENOMEM, -EIO (no random bytes). */
static int ws_start(struct bconn *c) {
  if (c->ws == NULL) {
    c->ws = malloc(sizeof *c->ws);
    if (c->ws == NULL)
      return -ENOMEM;
  } else {
    free(c->ws->hs);
  }
  struct wsraw *ws = c->ws;
  memset(ws, 0, sizeof *ws);
  ws->hs = malloc(HS_MAX);
  if (ws->hs == NULL)
    return -ENOMEM;
  uint8_t nonce[16];
  if (RAND_bytes(nonce, sizeof nonce) != 1)
    return -EIO;
  b64(nonce, sizeof nonce, ws->key);
  char cat[sizeof ws->key + sizeof WS_GUID];
  snprintf(cat, sizeof cat, "%s%s", ws->key, WS_GUID);
  uint8_t md[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)cat, strlen(cat), md);
  b64(md, sizeof md, ws->accept);
  return 0;
}

/* Writes the upgrade request into `out` (room for 1024 bytes); returns its
 * length. The subprotocol is gatewayd's ("mim"). */
static size_t ws_request(const struct bench_url *u, const struct wsraw *ws,
                         char *out, size_t cap) {
  int n = snprintf(out, cap,
                   "GET %s HTTP/1.1\r\n"
                   "Host: %s\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Protocol: mim\r\n"
                   "Origin: http://%s\r\n"
                   "\r\n",
                   u->path, u->hosthdr, ws->key, u->hosthdr);
  return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

/* The value of header `name` in the response `hs` (NUL-terminated) into
 * `out`, or false. */
static bool hs_header(const char *hs, const char *name, char *out,
                      size_t cap) {
  size_t nl = strlen(name);
  for (const char *l = strstr(hs, "\r\n"); l != NULL;
       l = strstr(l, "\r\n")) {
    l += 2;
    if (strncasecmp(l, name, nl) != 0 || l[nl] != ':')
      continue;
    const char *v = l + nl + 1;
    while (*v == ' ' || *v == '\t')
      v++;
    const char *e = strstr(v, "\r\n");
    if (e == NULL)
      return false;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
      e--;
    if ((size_t)(e - v) >= cap)
      return false;
    memcpy(out, v, (size_t)(e - v));
    out[e - v] = '\0';
    return true;
  }
  return false;
}

/* Takes response bytes until the end of the headers and checks them.
 * Returns the bytes of `in` used (the rest are frames), or -1 with `why`
 * set. */
static long ws_handshake(struct bconn *c, const uint8_t *in, size_t len,
                         char *why, size_t whycap) {
  struct wsraw *ws = c->ws;
  /* bounded by HS_MAX: the headers must fit */
  size_t n = len;
  if (n > HS_MAX - 1 - ws->hs_len)
    n = HS_MAX - 1 - ws->hs_len;
  size_t before = ws->hs_len;
  memcpy(ws->hs + ws->hs_len, in, n);
  ws->hs_len += (uint32_t)n;
  ws->hs[ws->hs_len] = '\0';
  char *end = strstr(ws->hs, "\r\n\r\n");
  if (end == NULL) {
    if (ws->hs_len >= HS_MAX - 1) {
      snprintf(why, whycap, "upgrade response headers too long");
      return -1;
    }
    return (long)n;
  }
  size_t hlen = (size_t)(end - ws->hs) + 4;
  end[2] = '\0'; /* keep the last header's CRLF for hs_header */
  char v[96];
  if (strncmp(ws->hs, "HTTP/1.1 101", 12) != 0) {
    char *eol = strstr(ws->hs, "\r\n");
    snprintf(why, whycap, "upgrade refused: %.*s",
             eol ? (int)(eol - ws->hs) : 40, ws->hs);
    return -1;
  }
  if (!hs_header(ws->hs, "Sec-WebSocket-Accept", v, sizeof v) ||
      strcmp(v, ws->accept) != 0) {
    snprintf(why, whycap, "bad or missing Sec-WebSocket-Accept");
    return -1;
  }
  if (!hs_header(ws->hs, "Upgrade", v, sizeof v) ||
      strcasecmp(v, "websocket") != 0) {
    snprintf(why, whycap, "101 without Upgrade: websocket");
    return -1;
  }
  free(ws->hs);
  ws->hs = NULL;
  ws->up = true;
  return (long)(hlen - before);
}

/* A control frame or the last piece of a data frame arrived. Returns -1 to
 * close the connection. */
static int ws_frame_end(struct bconn *c) {
  struct wsraw *ws = c->ws;
  switch (ws->op) {
  case 0x0:
  case 0x1:
  case 0x2:
    if (ws->fin) {
      ws->msg_op = 0;
      return rx_end(c);
    }
    return 0;
  case 0x9: /* ping: the gateway's keepalive; answered with a pong */
    memcpy(ws->pong, ws->ctl, ws->ctl_len);
    ws->pong_len = ws->ctl_len;
    ws->pong_pending = true;
    request_write(c);
    return 0;
  case 0xa:
    return 0;
  default: /* 0x8 close: the server is closing; so are we */
    return -1;
  }
}

/* Parses a frame header at `h` (`avail` bytes). Returns its size, 0 when
 * more bytes are needed, -1 when it is bad. */
static int ws_header(struct bconn *c, const uint8_t *h, size_t avail) {
  struct wsraw *ws = c->ws;
  if (avail < 2)
    return 0;
  size_t need = 2;
  uint64_t plen = h[1] & 0x7f;
  if (plen == 126)
    need += 2;
  else if (plen == 127)
    need += 8;
  if (h[1] & 0x80)
    need += 4; /* a masked server frame: refused below */
  if (avail < need)
    return 0;
  if (h[1] & 0x80) {
    proto_error(c, "masked websocket frame from the server");
    return -1;
  }
  if (h[0] & 0x70) {
    proto_error(c, "websocket frame with RSV bits (no extension agreed)");
    return -1;
  }
  if (plen == 126) {
    plen = (uint64_t)h[2] << 8 | h[3];
  } else if (plen == 127) {
    plen = 0;
    for (int i = 0; i < 8; i++)
      plen = plen << 8 | h[2 + i];
  }
  uint8_t op = h[0] & 0x0f;
  bool fin = (h[0] & 0x80) != 0;
  if (op >= 0x8) {
    if (!fin || plen > 125 || (op != 0x8 && op != 0x9 && op != 0xa)) {
      proto_error(c, "bad websocket control frame");
      return -1;
    }
  } else if (op == 0x0) {
    if (ws->msg_op == 0) {
      proto_error(c, "websocket continuation outside a message");
      return -1;
    }
  } else if (op == 0x1 || op == 0x2) {
    if (ws->msg_op != 0) {
      proto_error(c, "websocket message inside a fragmented message");
      return -1;
    }
    ws->msg_op = op;
    rx_begin(c);
    if (op == 0x1)
      proto_error(c, "text message from the server");
  } else {
    proto_error(c, "websocket frame with an unknown opcode");
    return -1;
  }
  if (plen >> 63) {
    /* the payload itself is streamed, never buffered: no bound but this */
    proto_error(c, "websocket frame length with the top bit set");
    return -1;
  }
  ws->op = op;
  ws->fin = fin;
  ws->left = plen;
  ws->ctl_len = 0;
  ws->in_frame = true;
  return (int)need;
}

/* Bytes read on a wsraw connection. Returns -1 to close it. */
static int ws_receive(struct bconn *c, const uint8_t *in, size_t len) {
  struct worker *w = c->w;
  struct wsraw *ws = c->ws;
  size_t off = 0;

  if (!ws->up) {
    char why[160];
    long n = ws_handshake(c, in, len, why, sizeof why);
    if (n < 0) {
      struct lws *wsi = c->wsi;
      c->wsi = NULL;
      lws_set_opaque_user_data(wsi, NULL);
      on_conn_error(w, c, why);
      return -1;
    }
    off = (size_t)n;
    if (!ws->up)
      return 0;
    c->state = CS_AUTHING;
    on_conn_open(w, c);
    if (c->wsi == NULL)
      return -1;
  }
  int64_t now = now_ns();
  /* bounded: every pass consumes a header or payload bytes, or ends */
  for (;;) {
    if (!ws->in_frame) {
      if (off == len)
        break;
      int h;
      if (ws->hdr_len == 0) {
        h = ws_header(c, in + off, len - off);
        if (h > 0) {
          off += (size_t)h;
        } else if (h == 0) {
          /* a header split across reads: keep its start */
          ws->hdr_len = (uint8_t)(len - off);
          memcpy(ws->hdr, in + off, len - off);
          break;
        }
      } else {
        /* complete the kept start, one byte at a time (at most 13) */
        h = 0;
        while (off < len && h == 0 && ws->hdr_len < WS_HDR_MAX) {
          ws->hdr[ws->hdr_len++] = in[off++];
          h = ws_header(c, ws->hdr, ws->hdr_len);
        }
        if (h > 0)
          ws->hdr_len = 0;
        else if (h == 0)
          break; /* off == len */
      }
      if (h < 0)
        return -1;
    }
    size_t n = len - off;
    if (n > ws->left)
      n = (size_t)ws->left;
    if (n > 0) {
      if (ws->op < 0x8) {
        if (rx_payload(c, in + off, n, now) != 0)
          return -1;
      } else {
        memcpy(ws->ctl + ws->ctl_len, in + off, n);
        ws->ctl_len += (uint8_t)n;
      }
      off += n;
      ws->left -= n;
    }
    if (ws->left > 0)
      break; /* off == len: the frame continues in the next read */
    ws->in_frame = false;
    if (ws_frame_end(c) != 0)
      return -1;
  }
  return c->wsi == NULL ? -1 : 0;
}

/* Writes a masked control frame (payload <= 125 bytes) into `out`. */
static size_t ws_control(struct worker *w, uint8_t *out, uint8_t op,
                         const uint8_t *payload, size_t len) {
  size_t n = ws_frame(w, out, payload, len);
  out[0] = (uint8_t)(0x80 | op);
  return n;
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
  c->wsraw = !u->tcp && w->o->ws_client == WS_RAW;
  if (c->wsraw && ws_start(c) != 0) {
    c->state = CS_CONNECTING;
    c->t_start = now_ns();
    on_conn_error(w, c, "out of memory");
    return -ENOMEM;
  }
  if (u->tcp || c->wsraw) {
    /* lws's raw client role, bound to our protocol by name; wsraw speaks
     * websocket on it itself */
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

/* wsraw: the upgrade request first, then a pending pong and the queued
 * frames as masked websocket messages, in one raw write. */
static int on_writeable_wsraw(struct bconn *c, struct lws *wsi) {
  struct worker *w = c->w;
  struct wsraw *ws = c->ws;
  uint8_t *out = w->scratch + LWS_PRE;
  size_t olen = 0;
  uint32_t off = 0;

  if (!ws->req_sent) {
    size_t n = ws_request(&w->o->urls[c->url], ws, (char *)out, 1024);
    if (n == 0 || lws_write(wsi, out, n, LWS_WRITE_RAW) < (int)n)
      return -1;
    ws->req_sent = true;
    return 0;
  }
  if (!ws->up)
    return 0;
  if (ws->pong_pending) {
    olen += ws_control(w, out, 0xa, ws->pong, ws->pong_len);
    ws->pong_pending = false;
  }
  /* bounded: each pass consumes at least one frame of tx */
  while (off < c->tx_len) {
    uint32_t nf = 0, mlen = next_message(c, off, &nf);
    if (olen > 0 && olen + WS_HDR_MAX + mlen > WRITE_MAX)
      break;
    olen += ws_frame(w, out + olen, c->tx + off, mlen);
    off += mlen;
    w->res.ws_out++;
    w->res.frames_out += nf;
  }
  if (olen > 0 && lws_write(wsi, out, olen, LWS_WRITE_RAW) < (int)olen)
    return -1;
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
  if (c->wsraw)
    return on_writeable_wsraw(c, wsi);
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

/* A websocket message (or, on a raw TCP stream, a read) begins. */
static void rx_begin(struct bconn *c) {
  c->in_msg = true;
  c->msg_frames = 0;
  c->w->res.ws_in++;
}

/* Payload bytes of the current message: whole frames are decoded in
 * place, a frame split across pieces is reassembled in c->rx. Returns -1
 * on a bad frame or when a handler dropped the connection. */
static int rx_payload(struct bconn *c, const uint8_t *in, size_t len,
                      int64_t now) {
  size_t off = 0;

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
  return c->wsi == NULL ? -1 : 0;
}

/* The current websocket message is complete. */
static int rx_end(struct bconn *c) {
  c->in_msg = false;
  if (c->rx_len > 0) {
    proto_error(c, "a frame spans two websocket messages");
    c->rx_len = 0;
  }
  if (!c->batch && c->msg_frames != 1)
    proto_error(c, "a message without exactly one frame, no MIM_CAP_BATCH");
  on_message_end(c->w, c);
  return c->wsi == NULL ? -1 : 0;
}

static int on_receive(struct bconn *c, struct lws *wsi, const uint8_t *in,
                      size_t len) {
  int64_t now = now_ns();

  if (!c->in_msg) {
    rx_begin(c);
    if (!c->tcp && !lws_frame_is_binary(wsi))
      proto_error(c, "text message from the server");
  }
  if (rx_payload(c, in, len, now) != 0)
    return -1;
  if (c->tcp) {
    /* a stream: a frame may continue in the next read */
    c->in_msg = false;
    on_message_end(c->w, c);
  } else if (lws_is_final_fragment(wsi) &&
             lws_remaining_packet_payload(wsi) == 0) {
    return rx_end(c);
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
    if (c->wsraw) {
      /* connected: the upgrade request next; logged in after the 101 */
      request_write(c);
      break;
    }
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
    if (c->wsraw)
      return ws_receive(c, in, len);
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
