/* The client side of writing: a bounded queue of frames per connection,
 * packets the gateway makes itself (errors, kicks, heartbeat replies), and
 * closing after the queue has drained. lws_write() is only called from
 * gw_writeable(), i.e. in the WRITEABLE callback of the connection's
 * transport. Only framing (websocket messages, or frames back to back on a
 * TCP stream) and the end (close frame, or FIN) depend on the transport. */
#include "tx.h"

#include "gateway.h"
#include "gwmetrics.h"

#include <log.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#if defined(LWS_WITH_TLS) && !defined(LWS_WITH_MBEDTLS)
#include <openssl/ssl.h>
#endif


/* Coalesced websocket messages for MIM_CAP_BATCH clients stop growing here:
 * big enough to amortise the per-message cost, small enough not to delay
 * the first frame behind a long copy. */
#define BATCH_MAX (64 * 1024)

/* What a queued frame costs: its bytes plus the node and headroom, so that
 * a flood of tiny frames is bounded too. */
static size_t node_cost(const struct qnode *n) {
  return sizeof *n + LWS_PRE + n->len;
}

int64_t gw_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct qnode *gw_qnode_new(size_t frame_len) {
  struct qnode *n = malloc(sizeof *n + LWS_PRE + frame_len);
  if (n == NULL)
    return NULL;
  n->next = NULL;
  n->len = frame_len;
  n->batchable = false;
  return n;
}

static void append(struct client *c, struct qnode *n) {
  if (n->len >= MIM_HEADER_SIZE) {
    struct mim_header h;
    mim_header_decode(n->data + LWS_PRE, &h);
    mimd_counter_inc(gw_m_packets_out, gw_m_cmd(h.cmd));
  }
  n->batchable = c->authed && (c->caps & MIM_CAP_BATCH);
  c->q_bytes += node_cost(n);
  if (c->q_tail) {
    /* a WRITEABLE is already due: gw_writeable() asks for the next one
     * while frames remain */
    c->q_tail->next = n;
    c->q_tail = n;
    return;
  }
  c->q_head = c->q_tail = n;
  lws_callback_on_writable(c->wsi);
}

void gw_queue_free(struct client *c) {
  struct qnode *n = c->q_head;
  while (n) {
    struct qnode *next = n->next;
    free(n);
    n = next;
  }
  c->q_head = c->q_tail = NULL;
  c->q_bytes = 0;
}

/* The client does not read fast enough: whatever it has not taken is
 * dropped (pushes stay in the inbox and come back with a pull), and it is
 * told why before the close. */
static void drop_slow(struct gw *gw, struct client *c) {
  mimd_info("conn %llu: send queue over %lld bytes: slow consumer, closing",
            (unsigned long long)c->id, (long long)gw->cfg->send_queue_bytes);
  gw_queue_free(c);
  gw_send_kick(gw, c, MIM_KICK_SLOW, "slow consumer");
  gw_close(gw, c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "slow consumer");
}

void gw_queue(struct gw *gw, struct client *c, struct qnode *n) {
  if (c->closing) {
    free(n);
    return;
  }
  if (c->take != NULL) {
    c->take(gw, c, n); /* SSE / HTTP: translated, bounded there */
    return;
  }
  /* An empty queue takes any one frame, however big (a pull reply may
   * exceed the bound on its own); a backlog may not grow past the bound. */
  if (c->q_head != NULL &&
      c->q_bytes + node_cost(n) > (size_t)gw->cfg->send_queue_bytes) {
    free(n);
    drop_slow(gw, c);
    return;
  }
  append(c, n);
}

int gw_send_packet(struct gw *gw, struct client *c, const struct mim_packet *p,
                   bool force) {
  size_t size = mim_packet_encoded_size(p);
  if (size == 0)
    return -EINVAL;
  struct qnode *n = gw_qnode_new(size);
  if (n == NULL)
    return -ENOMEM;
  int rc = mim_packet_encode(p, n->data + LWS_PRE, size, &n->len);
  if (rc < 0) {
    mimd_error("conn %llu: cannot encode %s: %s", (unsigned long long)c->id,
               mim_cmd_name(p->cmd), mim_strerror(rc));
    free(n);
    return rc;
  }
  if (force && c->take != NULL)
    c->take(gw, c, n);
  else if (force)
    append(c, n);
  else
    gw_queue(gw, c, n);
  return 0;
}

int gw_send_error(struct gw *gw, struct client *c, int err, int64_t seq,
                  uint32_t cmd, const char *msg) {
  struct mim_packet e;
  mim_error_packet_init(&e, err, cmd, seq);
  if (msg)
    e.text = msg;
  e.ts = gw_now_ms();
  return gw_send_packet(gw, c, &e, false);
}

void gw_close(struct gw *gw, struct client *c, uint16_t code,
              const char *reason) {
  (void)gw;
  if (c->closing)
    return;
  c->closing = true;
  c->close_code = code;
  c->close_reason = reason;
  lws_callback_on_writable(c->wsi);
  /* a peer that stops reading must not keep the connection forever */
  lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, GW_CLOSE_GRACE_S);
}

void gw_close_with_error(struct gw *gw, struct client *c, int err, uint32_t cmd,
                         uint16_t code, const char *reason) {
  if (c->closing)
    return;
  /* the Error must go out even if the queue is full: it explains the
   * close; queue_force bypasses the bound for this one small packet */
  struct mim_packet e;
  mim_error_packet_init(&e, err, cmd, 0);
  e.text = reason;
  e.ts = gw_now_ms();
  (void)gw_send_packet(gw, c, &e, true);
  gw_close(gw, c, code, reason);
}

/* One send() takes up to this much of the queue: every queued websocket
 * message that fits goes out in one system call, since the system call,
 * not the copy, is what a busy connection costs the most. */
#define WRITE_MAX (64 * 1024)

/* The header of an unmasked, final, binary websocket frame of `n` payload
 * bytes (RFC 6455 5.2) into `p`; its length. */
static size_t ws_header(uint8_t *p, size_t n) {
  p[0] = 0x82;
  if (n < 126) {
    p[1] = (uint8_t)n;
    return 2;
  }
  if (n <= 0xffff) {
    p[1] = 126;
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    return 4;
  }
  p[1] = 127;
  for (int i = 0; i < 8; i++)
    p[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
  return 10;
}

static size_t ws_header_len(size_t n) {
  return n < 126 ? 2 : n <= 0xffff ? 4 : 10;
}

/* The websocket message that starts at `n`: the frame alone, or for
 * MIM_CAP_BATCH clients the run of batchable frames up to BATCH_MAX. Its
 * node count in *count; returns its payload bytes. */
static size_t message_at(const struct qnode *n, size_t *count) {
  size_t total = n->len;
  *count = 1;
  if (n->batchable) {
    for (const struct qnode *m = n->next; m && m->batchable; m = m->next) {
      if (total + m->len > BATCH_MAX)
        break;
      total += m->len;
      (*count)++;
    }
  }
  return total;
}

static void drop_head(struct client *c, size_t count) {
  for (size_t i = 0; i < count; i++) {
    struct qnode *next = c->q_head->next;
    c->q_bytes -= node_cost(c->q_head);
    free(c->q_head);
    c->q_head = next;
  }
  if (c->q_head == NULL)
    c->q_tail = NULL;
}

/* Writes the head of the queue in one send(): as many whole websocket
 * messages as fit in WRITE_MAX (always the first), each framed here and
 * written raw, since lws_write() frames exactly one message per call. A
 * lone frame is written straight from its node. */
static int write_head(struct client *c) {
  size_t nodes = 0, bytes = 0;
  const struct qnode *n = c->q_head;
  while (n != NULL) {
    size_t count, len = message_at(n, &count);
    size_t add = ws_header_len(len) + len;
    if (nodes > 0 && bytes + add > WRITE_MAX)
      break;
    bytes += add;
    nodes += count;
    for (size_t i = 0; i < count; i++)
      n = n->next;
  }
  uint8_t *buf = nodes > 1 ? malloc(LWS_PRE + bytes) : NULL;
  if (buf == NULL) {
    /* one frame (or no memory to gather): the head alone, framed by lws */
    size_t want = c->q_head->len;
    int w = lws_write(c->wsi, c->q_head->data + LWS_PRE, want,
                      LWS_WRITE_BINARY);
    drop_head(c, 1);
    /* lws buffers what the socket did not take and reports the whole
     * length; less means the connection failed */
    return w < 0 || (size_t)w < want ? -1 : 0;
  }
  uint8_t *p = buf + LWS_PRE;
  for (size_t done = 0; done < nodes;) {
    size_t count, len = message_at(c->q_head, &count);
    p += ws_header(p, len);
    for (size_t i = 0; i < count; i++) {
      memcpy(p, c->q_head->data + LWS_PRE, c->q_head->len);
      p += c->q_head->len;
      drop_head(c, 1);
    }
    done += count;
  }
  int w = lws_write(c->wsi, buf + LWS_PRE, bytes, LWS_WRITE_RAW);
  free(buf);
  return w < 0 || (size_t)w < bytes ? -1 : 0;
}

/* A stream has no messages: the queued frames go out back to back, as many
 * as fit in WRITE_MAX (always the first) in one send(), whatever the
 * client's capabilities (a stream reader takes frames as they come). */
static int write_stream(struct client *c) {
  size_t nodes = 0, bytes = 0;
  for (const struct qnode *n = c->q_head; n != NULL; n = n->next) {
    if (nodes > 0 && bytes + n->len > WRITE_MAX)
      break;
    bytes += n->len;
    nodes++;
  }
  uint8_t *buf = nodes > 1 ? malloc(LWS_PRE + bytes) : NULL;
  if (buf == NULL) {
    /* one frame (or no memory to gather): the head alone */
    size_t want = c->q_head->len;
    int w = lws_write(c->wsi, c->q_head->data + LWS_PRE, want, LWS_WRITE_RAW);
    drop_head(c, 1);
    return w < 0 || (size_t)w < want ? -1 : 0;
  }
  uint8_t *p = buf + LWS_PRE;
  for (size_t i = 0; i < nodes; i++) {
    memcpy(p, c->q_head->data + LWS_PRE, c->q_head->len);
    p += c->q_head->len;
    drop_head(c, 1);
  }
  int w = lws_write(c->wsi, buf + LWS_PRE, bytes, LWS_WRITE_RAW);
  free(buf);
  return w < 0 || (size_t)w < bytes ? -1 : 0;
}

/* The end of a stream: a FIN after the last packet (over TLS a
 * close_notify first); lws closes when the peer ends its side too, or the
 * close grace runs out. Closing the socket at once would make the kernel
 * answer what the client sends meanwhile with a reset, which can destroy
 * the Kick or Error before the client has read it. */
static void stream_shutdown(struct client *c) {
#if defined(LWS_WITH_TLS) && !defined(LWS_WITH_MBEDTLS)
  SSL *ssl = lws_is_ssl(c->wsi) ? lws_get_ssl(c->wsi) : NULL;
  if (ssl != NULL)
    (void)SSL_shutdown(ssl); /* non-blocking: sends close_notify if it fits */
#endif
  int fd = (int)lws_get_socket_fd(c->wsi);
  if (fd >= 0)
    (void)shutdown(fd, SHUT_WR);
}

/* The keep-alive ping (idle.c). Its payload is not empty: lws reports only
 * pongs with a payload to the protocol callback. */
static int write_ping(struct client *c) {
  static const char payload[] = "mim";
  uint8_t buf[LWS_PRE + sizeof payload];
  memcpy(buf + LWS_PRE, payload, sizeof payload - 1);
  c->ping_due = false;
  int w = lws_write(c->wsi, buf + LWS_PRE, sizeof payload - 1, LWS_WRITE_PING);
  if (w < (int)(sizeof payload - 1))
    return -1;
  if (c->q_head != NULL)
    lws_callback_on_writable(c->wsi);
  return 0;
}

int gw_writeable(struct gw *gw, struct client *c) {
  (void)gw;
  /* a stream has no pings: its client keeps it alive with heartbeats */
  if (c->transport != GW_T_WS)
    c->ping_due = false;
  if (c->ping_due && !c->closing) {
    if (write_ping(c) < 0) {
      mimd_debug("conn %llu: write failed", (unsigned long long)c->id);
      return -1;
    }
    return 0;
  }
  if (c->q_head != NULL) {
    int rc = c->transport == GW_T_TCP ? write_stream(c) : write_head(c);
    if (rc < 0) {
      mimd_debug("conn %llu: write failed", (unsigned long long)c->id);
      return -1;
    }
    /* one write per WRITEABLE callback, as lws wants; ask for the next */
    if (c->q_head != NULL || c->closing)
      lws_callback_on_writable(c->wsi);
    return 0;
  }
  if (c->closing && !c->close_sent && c->transport == GW_T_TCP) {
    c->close_sent = true;
    stream_shutdown(c);
    return 0;
  }
  if (c->closing && !c->close_sent) {
    /* lws sends the close frame and then waits for the peer's; a second
     * -1 (from a writeable request still pending) would cut that short */
    c->close_sent = true;
    const char *r = c->close_reason ? c->close_reason : "";
    lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
                     (unsigned char *)(uintptr_t)r, strlen(r));
    return -1;
  }
  return 0;
}

void gw_send_kick(struct gw *gw, struct client *c, int32_t reason,
                  const char *text) {
  struct mim_packet k;
  mim_packet_init(&k);
  k.cmd = MIM_CMD_KICK;
  k.reason = reason;
  mimd_counter_inc(gw_m_kicks, gw_m_kick(reason));
  k.text = text;
  k.uid = c->uid;
  k.ts = gw_now_ms();
  (void)gw_send_packet(gw, c, &k, true);
}
