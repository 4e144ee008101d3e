/* The operators' HTTP listener: /metrics, /readyz, /healthz (metrics_http.h).
 *
 * Small replies (health, errors) are written whole from the HTTP callback,
 * as lws_return_http_status() does; the metrics body, which grows with
 * the number of series, goes out from the WRITEABLE callback in chunks. */
#include "metrics_http.h"

#include "addr.h"
#include "metrics.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of the metrics body written per WRITEABLE callback. */
#define CHUNK (16 * 1024)

struct mh_conn {
  char *body; /* the rendered metrics, malloc'd */
  size_t len, off;
};

bool mimd_http_has_body(struct lws *wsi) {
  char cl[32];
  if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
    return true;
  int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
  if (n <= 0)
    return false;
  if ((size_t)n >= sizeof cl ||
      lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) < 0)
    return true;
  return strspn(cl, "0") != strlen(cl); /* anything but zeros */
}

int mimd_http_reply_static(struct lws *wsi, unsigned status,
                           const char *body) {
  size_t n = strlen(body);
  uint8_t buf[LWS_PRE + 512];
  uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
  if (n > 128)
    return -1;
  if (lws_add_http_common_headers(wsi, status, "text/plain; charset=utf-8",
                                  (lws_filepos_t)n, &p, end) ||
      lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                   (const unsigned char *)"no-store", 8, &p,
                                   end) ||
      lws_finalize_write_http_header(wsi, start, &p, end))
    return -1;
  /* the body right behind the headers: a few bytes, as lws's own status
   * pages do */
  memcpy(start, body, n);
  if (lws_write(wsi, start, n, LWS_WRITE_HTTP_FINAL) != (int)n)
    return -1;
  return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int serve_metrics(struct lws *wsi, struct mh_conn *c) {
  free(c->body);
  c->body = mimd_metrics_render(&c->len);
  c->off = 0;
  if (c->body == NULL)
    return mimd_http_reply_static(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
                                  "out of memory\n");
  uint8_t buf[LWS_PRE + 512];
  uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
  if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK,
                                  MIMD_METRICS_CONTENT_TYPE,
                                  (lws_filepos_t)c->len, &p, end) ||
      lws_finalize_write_http_header(wsi, start, &p, end))
    return -1;
  lws_callback_on_writable(wsi);
  return 0;
}

static int write_chunk(struct lws *wsi, struct mh_conn *c) {
  if (c->body == NULL)
    return 0;
  uint8_t buf[LWS_PRE + CHUNK];
  size_t n = c->len - c->off;
  if (n > CHUNK)
    n = CHUNK;
  bool last = c->off + n == c->len;
  memcpy(buf + LWS_PRE, c->body + c->off, n);
  if (lws_write(wsi, buf + LWS_PRE, n,
                last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
    return -1;
  c->off += n;
  if (!last) {
    lws_callback_on_writable(wsi);
    return 0;
  }
  free(c->body);
  c->body = NULL;
  return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int on_request(struct lws *wsi, struct mimd_metrics_http *h,
                      struct mh_conn *c, const char *path) {
  lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT,
                  MIMD_METRICS_HTTP_TIMEOUT_S);
  bool known = strcmp(path, "/metrics") == 0 ||
               strcmp(path, "/readyz") == 0 || strcmp(path, "/healthz") == 0;
  if (!known)
    return mimd_http_reply_static(wsi, HTTP_STATUS_NOT_FOUND, "not found\n");
  if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
    return mimd_http_reply_static(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED,
                                  "method not allowed\n");
  if (strcmp(path, "/healthz") == 0)
    return mimd_http_reply_static(wsi, HTTP_STATUS_OK, "ok\n");
  if (strcmp(path, "/readyz") == 0) {
    bool ready = h->ready == NULL || h->ready(h->user);
    return mimd_http_reply_static(
        wsi, ready ? HTTP_STATUS_OK : HTTP_STATUS_SERVICE_UNAVAILABLE,
        ready ? "ready\n" : "not ready\n");
  }
  return serve_metrics(wsi, c);
}

static int mh_cb(struct lws *wsi, enum lws_callback_reasons reason,
                 void *user, void *in, size_t len) {
  (void)len;
  struct mimd_metrics_http *h = lws_get_vhost_user(lws_get_vhost(wsi));
  struct mh_conn *c = user;
  switch (reason) {
  case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
    /* an operator's scraper needs one or two; a flood of sockets (idle
     * or keep-alive) must not take the daemon's descriptors */
    return h != NULL && h->conns >= MIMD_METRICS_HTTP_CONNS;
  case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
    /* counted from accept to close; the mark tells WSI_DESTROY */
    if (h != NULL) {
      h->conns++;
      lws_set_opaque_user_data(wsi, h);
    }
    return 0;
  case LWS_CALLBACK_WSI_DESTROY:
    if (h != NULL && lws_get_opaque_user_data(wsi) == h) {
      lws_set_opaque_user_data(wsi, NULL);
      if (h->conns > 0)
        h->conns--;
    }
    return 0;
  case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
  case LWS_CALLBACK_ESTABLISHED:
    /* plain HTTP only: lws would otherwise upgrade a websocket handshake
     * to this vhost's protocol, and such a socket has no request timeout,
     * so 64 of them would hold the port shut for good */
    return -1;
  case LWS_CALLBACK_HTTP:
    if (h == NULL || c == NULL || mimd_http_has_body(wsi))
      return -1;
    return on_request(wsi, h, c, in ? (const char *)in : "");
  case LWS_CALLBACK_HTTP_WRITEABLE:
    return c ? write_chunk(wsi, c) : -1;
  case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
  case LWS_CALLBACK_CLOSED_HTTP:
    if (c != NULL) {
      free(c->body);
      c->body = NULL;
    }
    return 0;
  default:
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  }
}

int mimd_metrics_http_start(struct mimd_metrics_http *h,
                            struct lws_context *context, const char *addr,
                            bool (*ready)(void *user), void *user) {
  char *host = NULL;
  int port = 0;
  if (mimd_parse_addr(addr, &host, &port, NULL) < 0)
    return -EINVAL;
  memset(h, 0, sizeof *h);
  h->ready = ready;
  h->user = user;
  snprintf(h->iface, sizeof h->iface, "%s", host);
  bool v6 = strchr(host, ':') != NULL;
  free(host);
  h->protocols[0].name = "mim-metrics";
  h->protocols[0].callback = mh_cb;
  h->protocols[0].per_session_data_size = sizeof(struct mh_conn);
  struct lws_context_creation_info vi;
  memset(&vi, 0, sizeof vi);
  vi.vhost_name = "metrics";
  vi.protocols = h->protocols;
  vi.user = h;
  vi.port = port;
  vi.iface = h->iface[0] ? h->iface : NULL;
  vi.timeout_secs = MIMD_METRICS_HTTP_TIMEOUT_S;
  vi.keepalive_timeout = MIMD_METRICS_HTTP_TIMEOUT_S;
  vi.options = LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
  if (!v6)
    vi.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
  h->vhost = lws_create_vhost(context, &vi);
  return h->vhost ? 0 : -EADDRINUSE;
}

int mimd_metrics_http_port(const struct mimd_metrics_http *h) {
  return h->vhost ? lws_get_vhost_listen_port(h->vhost) : -1;
}
