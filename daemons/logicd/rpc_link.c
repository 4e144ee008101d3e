#include "rpc_link.h"
#include <mim/rpc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes handed to lws_write() per writable callback: large enough to keep
 * a fast peer busy, small enough that a partial write (which lws buffers by
 * copying) stays cheap. */
#define WRITE_CHUNK (64 * 1024)

/* How long a closing link may take to drain its queue. */
#define CLOSE_FLUSH_S 5

int link_create(struct link **out, struct lws *wsi, size_t out_max) {
  struct link *k = calloc(1, sizeof *k);
  if (k == NULL)
    return -ENOMEM;
  int rc = mim_stream_decoder_create(&k->dec, RPC_MAX_BODY);
  if (rc < 0) {
    free(k);
    return rc;
  }
  k->wsi = wsi;
  k->out_max = out_max;
  k->out = (struct mimd_outq){0};
  if (lws_get_peer_simple(wsi, k->peer, sizeof k->peer) == NULL ||
      k->peer[0] == '\0')
    snprintf(k->peer, sizeof k->peer, "local");
  *out = k;
  return 0;
}

void link_destroy(struct link *k) {
  if (k == NULL)
    return;
  mim_stream_decoder_destroy(k->dec);
  mimd_outq_finish(&k->out);
  free(k);
}

const char *link_name(const struct link *k) {
  static char buf[MIM_ID_MAX + 80];
  if (k->id[0] != '\0')
    snprintf(buf, sizeof buf, "%s (%s)", k->id, k->peer);
  else
    snprintf(buf, sizeof buf, "link from %s", k->peer);
  return buf;
}

int link_send(struct link *k, const struct mim_rpc *r) {
  size_t need = mim_rpc_encoded_size(r);
  if (need == 0)
    return -EINVAL;
  if (mimd_outq_len(&k->out) + need > k->out_max)
    return -ENOBUFS;
  uint8_t *dst = mimd_outq_reserve(&k->out, need);
  if (dst == NULL)
    return -ENOMEM;
  size_t len = 0;
  int rc = mim_rpc_encode(r, dst, need, &len);
  if (rc < 0)
    return rc;
  mimd_outq_commit(&k->out, len);
  lws_callback_on_writable(k->wsi);
  return 0;
}

void link_close_soon(struct link *k) {
  if (k->closing)
    return;
  k->closing = true;
  lws_rx_flow_control(k->wsi, 0);
  lws_set_timeout(k->wsi, PENDING_TIMEOUT_CLOSE_SEND, CLOSE_FLUSH_S);
  lws_callback_on_writable(k->wsi);
}

void link_kill(struct link *k) {
  k->closing = true;
  mimd_outq_finish(&k->out);
  lws_set_timeout(k->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
  /* an asynchronous kill is an lws timer; waking the loop makes sure it is
   * looked at now even when we were called from outside an lws callback */
  lws_cancel_service(lws_get_context(k->wsi));
}

int link_on_writable(struct link *k) {
  size_t len;
  uint8_t *p = mimd_outq_peek(&k->out, &len);
  if (p == NULL)
    return k->closing ? -1 : 0;
  size_t n = len < WRITE_CHUNK ? len : WRITE_CHUNK;
  /* LWS_PRE bytes of headroom precede p (outq keeps them) */
  int w = lws_write(k->wsi, p, n, LWS_WRITE_RAW);
  if (w < 0)
    return -1; /* the peer is gone */
  /* lws 4.1 buffers a partial raw write itself and reports it whole; take
   * the count at its word anyway, should a version report short writes */
  mimd_outq_consume(&k->out, (size_t)w < n ? (size_t)w : n);
  if (mimd_outq_len(&k->out) > 0 || k->closing)
    lws_callback_on_writable(k->wsi);
  return 0;
}
