/* The HTTP server of httpd.h: one lws vhost, per-connection state kept in
 * the wsi's opaque user data (it lives as long as the socket, across
 * keep-alive requests), one request at a time per connection. */
#include "httpd.h"

#include "log.h"
#include "timer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARGS_MAX 64
#define QUERY_MAX 4096
#define HEADER_MAX 1024
#define CHUNK (16 * 1024)      /* body bytes written per writable callback */
#define HEADERS_ROOM 2048
#define SWEEP_US (250 * LWS_US_PER_MS) /* deadlines are checked this often */

struct hconn;

struct mimd_http_req {
  struct hconn *conn; /* NULL once the connection went */
  char method[8];
  char *path;
  uint8_t *body;
  size_t body_len, expect;
  char auth[HEADER_MAX + 1];
  char ctype[HEADER_MAX + 1];
  char peer[64];
  char *args[ARGS_MAX];
  size_t nargs;
  lws_usec_t deadline;
  bool dispatched;
};

struct hconn {
  struct mimd_httpd *h;
  struct hconn *prev, *next; /* every open connection */
  struct lws *wsi;
  /* what the connection is doing must be done by then: its request
   * arriving (or the next one, when idle), its answer coming, or being
   * written */
  lws_usec_t deadline;
  bool kill;                 /* close at the next writable callback */
  bool body_done;            /* the request's BODY_COMPLETION came */
  struct mimd_http_req *req; /* being received, or awaiting its answer */
  /* the answer being written */
  bool answering, headers_sent, close_after;
  int status;
  const char *ctype;
  char extra[256];
  char *out;
  size_t out_len, out_off;
};

struct mimd_httpd {
  struct lws_vhost *vh;
  struct mimd_httpd_config cfg;
  struct lws_protocols protocols[2];
  struct hconn *conns;
  struct mimd_timer sweep;
  bool sweep_armed, stopped;
  size_t n_conns;
  size_t n_writing;    /* connections with an answer going out */
  uint64_t refused;
  char *name, *host;
};

static void req_free(struct mimd_http_req *r) {
  if (r == NULL)
    return;
  free(r->path);
  free(r->body);
  for (size_t i = 0; i < r->nargs; i++)
    free(r->args[i]);
  free(r);
}

static void set_deadline(struct hconn *c) {
  c->deadline = lws_now_usecs() + (lws_usec_t)c->h->cfg.timeout_s *
                                      LWS_US_PER_SEC;
}

/* ---- answers ---- */

static void answer(struct mimd_http_req *r, int status, const char *ctype,
                   char *body, size_t len, const char *extra, bool close) {
  struct hconn *c = r->conn;
  if (c == NULL || c->answering) {
    free(body);
    if (c != NULL)
      c->req = NULL;
    req_free(r);
    return;
  }
  c->req = NULL;
  req_free(r);
  c->answering = true;
  c->h->n_writing++;
  c->headers_sent = false;
  c->close_after = close;
  c->status = status;
  c->ctype = ctype != NULL ? ctype : "application/octet-stream";
  snprintf(c->extra, sizeof c->extra, "%s", extra != NULL ? extra : "");
  c->out = body;
  c->out_len = body != NULL ? len : 0;
  c->out_off = 0;
  set_deadline(c); /* a reader too slow to take it is cut off */
  lws_callback_on_writable(c->wsi);
}

void mimd_http_reply(struct mimd_http_req *r, int status,
                     const char *content_type, char *body, size_t len,
                     const char *extra_header) {
  answer(r, status, content_type, body, len, extra_header, false);
}

void mimd_http_reply_close(struct mimd_http_req *r, int status,
                           const char *content_type, char *body, size_t len,
                           const char *extra_header) {
  answer(r, status, content_type, body, len, extra_header, true);
}

/* An answer of the server's own (no handler involved). */
static void own_answer(struct hconn *c, int status, const char *extra,
                       bool close) {
  struct mimd_httpd *h = c->h;
  size_t len = 0;
  char *body = h->cfg.error_body != NULL
                   ? h->cfg.error_body(h->cfg.user, status, &len)
                   : NULL;
  answer(c->req, status, h->cfg.error_content_type, body, len, extra, close);
}

static int add_extra(struct lws *wsi, const char *extra, unsigned char **p,
                     unsigned char *end) {
  const char *colon = strchr(extra, ':');
  if (colon == NULL)
    return 0;
  char name[128];
  size_t n = (size_t)(colon - extra) + 1;
  if (n >= sizeof name)
    return 0;
  memcpy(name, extra, n);
  name[n] = '\0';
  const char *v = colon + 1;
  while (*v == ' ')
    v++;
  return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                     (const unsigned char *)v,
                                     (int)strlen(v), p, end);
}

/* Writes the headers, then the body in CHUNK pieces, one write per
 * writable callback. Returns -1 to close. */
static int on_writable(struct hconn *c) {
  if (c->kill)
    return -1;
  if (!c->answering)
    return 0;
  struct lws *wsi = c->wsi;
  if (!c->headers_sent) {
    unsigned char buf[LWS_PRE + HEADERS_ROOM];
    unsigned char *start = buf + LWS_PRE, *p = start,
                  *end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers(wsi, (unsigned int)c->status, c->ctype,
                                    c->out_len, &p, end))
      return -1;
    if (c->extra[0] != '\0' && add_extra(wsi, c->extra, &p, end))
      return -1;
    if (c->close_after &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
                                    (const unsigned char *)"close", 5, &p,
                                    end))
      return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
      return -1;
    c->headers_sent = true;
    if (c->out_len > 0) {
      lws_callback_on_writable(wsi);
      return 0;
    }
  } else if (c->out_off < c->out_len) {
    static unsigned char buf[LWS_PRE + CHUNK]; /* loop thread only */
    size_t n = c->out_len - c->out_off;
    if (n > CHUNK)
      n = CHUNK;
    memcpy(buf + LWS_PRE, c->out + c->out_off, n);
    c->out_off += n;
    bool last = c->out_off == c->out_len;
    if (lws_write(wsi, buf + LWS_PRE, n,
                  last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
      return -1;
    if (!last) {
      lws_callback_on_writable(wsi);
      return 0;
    }
  }
  /* the whole answer is out */
  free(c->out);
  c->out = NULL;
  c->answering = false;
  c->h->n_writing--;
  if (c->h->cfg.written != NULL)
    c->h->cfg.written(c->h->cfg.user);
  if (c->close_after)
    return -1;
  /* keep-alive: the next request must come within timeout_s */
  set_deadline(c);
  return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---- routing ---- */

/* Matches `path` against `pattern` segment by segment; `*` takes one
 * non-empty segment, copied into `params` (each at most 511 bytes). */
static bool match(const char *pattern, const char *path,
                  char params[][512], size_t *n) {
  *n = 0;
  const char *a = pattern, *b = path;
  while (*a != '\0' && *b != '\0') {
    if (*a != '/' || *b != '/')
      return false;
    a++;
    b++;
    const char *ae = strchr(a, '/'), *be = strchr(b, '/');
    size_t al = ae ? (size_t)(ae - a) : strlen(a);
    size_t bl = be ? (size_t)(be - b) : strlen(b);
    if (al == 1 && a[0] == '*') {
      if (bl == 0 || bl >= 512 || *n >= MIMD_HTTP_PARAMS_MAX)
        return false;
      memcpy(params[*n], b, bl);
      params[*n][bl] = '\0';
      (*n)++;
    } else if (al != bl || memcmp(a, b, al) != 0) {
      return false;
    }
    a += al;
    b += bl;
  }
  return *a == '\0' && *b == '\0';
}

static void dispatch(struct hconn *c) {
  struct mimd_httpd *h = c->h;
  struct mimd_http_req *r = c->req;
  char params[MIMD_HTTP_PARAMS_MAX][512];
  const char *pp[MIMD_HTTP_PARAMS_MAX];
  size_t n = 0;
  bool path_known = false;
  char allow[128] = "Allow: ";
  r->dispatched = true;
  /* the answer has as long again as the request had to arrive */
  set_deadline(c);
  for (size_t i = 0; i < h->cfg.n_routes; i++) {
    const struct mimd_http_route *rt = &h->cfg.routes[i];
    if (!match(rt->pattern, r->path, params, &n))
      continue;
    if (strcmp(rt->method, r->method) != 0) {
      if (strlen(allow) + strlen(rt->method) + 3 < sizeof allow) {
        if (path_known)
          strcat(allow, ", ");
        strcat(allow, rt->method);
      }
      path_known = true;
      continue;
    }
    for (size_t k = 0; k < n; k++)
      pp[k] = params[k];
    rt->handler(h->cfg.user, r, pp, n);
    return;
  }
  own_answer(c, path_known ? 405 : 404, path_known ? allow : NULL, false);
}

/* ---- requests ---- */

static const char *method_of(struct lws *wsi) {
  static const struct {
    enum lws_token_indexes tok;
    const char *name;
  } m[] = {
      {WSI_TOKEN_GET_URI, "GET"},       {WSI_TOKEN_POST_URI, "POST"},
      {WSI_TOKEN_PUT_URI, "PUT"},       {WSI_TOKEN_PATCH_URI, "PATCH"},
      {WSI_TOKEN_DELETE_URI, "DELETE"}, {WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
      {WSI_TOKEN_HEAD_URI, "HEAD"},
  };
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
    if (lws_hdr_total_length(wsi, m[i].tok) > 0)
      return m[i].name;
  return "";
}

static void copy_header(struct lws *wsi, enum lws_token_indexes tok,
                        char *dst, size_t cap) {
  dst[0] = '\0';
  int n = lws_hdr_total_length(wsi, tok);
  if (n <= 0 || (size_t)n >= cap)
    return;
  if (lws_hdr_copy(wsi, dst, (int)cap, tok) < 0)
    dst[0] = '\0';
}

/* Reads the query arguments. Returns false when there are too many or they
 * are too long (414). */
static bool read_args(struct lws *wsi, struct mimd_http_req *r) {
  int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
  if (total <= 0)
    return true;
  if (total > QUERY_MAX)
    return false;
  char buf[QUERY_MAX + 1];
  for (int i = 0;; i++) {
    int n = lws_hdr_copy_fragment(wsi, buf, sizeof buf,
                                  WSI_TOKEN_HTTP_URI_ARGS, i);
    if (n < 0)
      break;
    if (r->nargs == ARGS_MAX)
      return false;
    if ((r->args[r->nargs] = strdup(buf)) == NULL)
      return false;
    r->nargs++;
  }
  return true;
}

static int on_http(struct hconn *c, const char *uri) {
  struct mimd_httpd *h = c->h;
  struct lws *wsi = c->wsi;
  if (c->req != NULL || c->answering)
    return -1; /* one request at a time: lws does not pipeline h1 */
  struct mimd_http_req *r = calloc(1, sizeof *r);
  if (r == NULL)
    return -1;
  c->body_done = false;
  r->conn = c;
  c->req = r;
  snprintf(r->method, sizeof r->method, "%s", method_of(wsi));
  r->path = strdup(uri != NULL ? uri : "/");
  if (r->path == NULL)
    return -1;
  copy_header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, r->auth, sizeof r->auth);
  copy_header(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, r->ctype, sizeof r->ctype);
  lws_get_peer_simple(wsi, r->peer, sizeof r->peer);
  /* the headers came within the deadline; the body has as long again */
  set_deadline(c);
  r->deadline = c->deadline;
  if (!read_args(wsi, r)) {
    own_answer(c, 414, NULL, true);
    return 0;
  }
  char cl[32];
  copy_header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, cl, sizeof cl);
  bool chunked = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
  if (chunked) {
    /* lws does not decode chunked bodies. With a Content-Length as well,
     * reading by it would take the rest of the chunks for the next request
     * where a proxy in front goes by Transfer-Encoding (which wins, RFC
     * 9112 section 6.3): request smuggling. Refused, and closed. */
    own_answer(c, cl[0] == '\0' ? 411 : 400, NULL, true);
    return 0;
  }
  if (cl[0] == '\0') {
    dispatch(c);
    return 0;
  }
  char *end;
  errno = 0;
  unsigned long long want = strtoull(cl, &end, 10);
  if (errno != 0 || *end != '\0' || cl[0] == '-') {
    own_answer(c, 400, NULL, true);
    return 0;
  }
  if (want > h->cfg.body_max) {
    /* refused before a byte of it is read; the connection closes since
     * the body would otherwise be read as the next request */
    own_answer(c, 413, NULL, true);
    return 0;
  }
  if (want == 0) {
    dispatch(c);
    return 0;
  }
  r->expect = (size_t)want;
  r->body = malloc(r->expect + 1);
  if (r->body == NULL)
    return -1;
  return 0;
}

static int on_body(struct hconn *c, const void *in, size_t len) {
  struct mimd_http_req *r = c->req;
  if (r == NULL || r->dispatched || r->body == NULL)
    return 0;
  if (lws_now_usecs() > r->deadline) {
    own_answer(c, 408, NULL, true); /* a body dripping in past the deadline */
    return 0;
  }
  if (len > r->expect - r->body_len) {
    own_answer(c, 413, NULL, true);
    return 0;
  }
  memcpy(r->body + r->body_len, in, len);
  r->body_len += len;
  return 0;
}

static int on_body_done(struct hconn *c) {
  struct mimd_http_req *r = c->req;
  /* lws 4.1 calls BODY_COMPLETION again and again, inside one service
   * call, when more bytes follow a request body in its buffer (requests
   * pipelined with bodies) until the answer is written; an answer that
   * waits for a commit never is, and logicd's whole loop spun there for
   * good (no RPC, no signals). A second completion of one request closes
   * the connection: clients that pipeline bodies lose the answers due on
   * it (docs/http-api.md: one request at a time per connection). */
  if (c->body_done) {
    mimd_debug("%s: a request pipelined with a body: closing", c->h->name);
    return -1;
  }
  c->body_done = true;
  if (r == NULL || r->dispatched)
    return 0;
  if (r->body != NULL)
    r->body[r->body_len] = '\0';
  dispatch(c);
  return 0;
}

/* ---- connections ---- */

/* Closes the connections past their deadline: a request still arriving
 * gets 408 (then has one more period to take it), anything else is cut. */
static void sweep(void *arg) {
  struct mimd_httpd *h = arg;
  h->sweep_armed = false;
  if (h->stopped)
    return;
  lws_usec_t now = lws_now_usecs();
  for (struct hconn *c = h->conns; c != NULL; c = c->next) {
    if (c->kill || now < c->deadline)
      continue;
    if (c->req != NULL && !c->req->dispatched && !c->answering) {
      mimd_debug("%s: %s: request not complete in %d s", h->name,
                 c->req->peer, h->cfg.timeout_s);
      own_answer(c, 408, NULL, true);
      continue;
    }
    /* idle, or its answer is late or not taken: closed on lws's next
     * service (a connection still in its headers never gets a writable
     * callback), or at its writable callback, whichever comes first */
    c->kill = true;
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    lws_callback_on_writable(c->wsi);
  }
  if (h->conns != NULL) {
    h->sweep_armed = true;
    mimd_timer_set(&h->sweep, SWEEP_US);
  }
}

static void conn_gone(struct hconn *c) {
  struct mimd_httpd *h = c->h;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    h->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  if (c->req != NULL) {
    if (c->req->dispatched)
      c->req->conn = NULL; /* its handler answers later, into the void */
    else
      req_free(c->req);
  }
  free(c->out);
  if (c->answering)
    h->n_writing--;
  h->n_conns--;
  free(c);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len) {
  struct lws_vhost *vh = lws_get_vhost(wsi);
  struct mimd_httpd *h = vh != NULL ? lws_get_vhost_user(vh) : NULL;
  struct hconn *c = lws_get_opaque_user_data(wsi);
  if (h == NULL)
    return 0;
  switch (reason) {
  case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
    if (h->cfg.conns_max > 0 && h->n_conns >= h->cfg.conns_max) {
      if (h->refused++ == 0)
        mimd_warn("%s: %zu connections open: refusing more", h->name,
                  h->n_conns);
      return 1;
    }
    return 0;
  case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
    if (c != NULL)
      return 0;
    c = calloc(1, sizeof *c);
    if (c == NULL)
      return -1;
    c->h = h;
    c->wsi = wsi;
    set_deadline(c); /* for its first request */
    c->next = h->conns;
    if (h->conns != NULL)
      h->conns->prev = c;
    h->conns = c;
    h->n_conns++;
    if (!h->sweep_armed && !h->stopped) {
      h->sweep_armed = true;
      mimd_timer_set(&h->sweep, SWEEP_US);
    }
    if (h->refused > 0 && h->n_conns < h->cfg.conns_max) {
      mimd_info("%s: %llu connection(s) refused at the cap", h->name,
                (unsigned long long)h->refused);
      h->refused = 0;
    }
    lws_set_opaque_user_data(wsi, c);
    return 0;
  case LWS_CALLBACK_WSI_DESTROY:
    if (c != NULL && c->wsi == wsi) {
      lws_set_opaque_user_data(wsi, NULL);
      conn_gone(c);
    }
    return 0;
  case LWS_CALLBACK_HTTP:
    return c != NULL ? on_http(c, in) : -1;
  case LWS_CALLBACK_HTTP_BODY:
    return c != NULL ? on_body(c, in, len) : -1;
  case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    return c != NULL ? on_body_done(c) : -1;
  case LWS_CALLBACK_HTTP_WRITEABLE:
    return c != NULL ? on_writable(c) : -1;
  case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
    return 1; /* no websockets here */
  default:
    (void)user;
    return 0;
  }
}

/* ---- lifecycle ---- */

int mimd_httpd_create(struct mimd_httpd **out, struct lws_context *ctx,
                      const struct mimd_httpd_config *cfg) {
  if (cfg->host == NULL || cfg->timeout_s <= 0 || cfg->routes == NULL)
    return -EINVAL;
  struct mimd_httpd *h = calloc(1, sizeof *h);
  if (h == NULL)
    return -ENOMEM;
  h->cfg = *cfg;
  h->name = strdup(cfg->name != NULL ? cfg->name : "http");
  h->host = strdup(cfg->host);
  if (h->name == NULL || h->host == NULL) {
    free(h->name);
    free(h->host);
    free(h);
    return -ENOMEM;
  }
  h->cfg.name = h->name;
  h->cfg.host = h->host;
  h->protocols[0] = (struct lws_protocols){
      .name = "mimd-http", .callback = callback, .rx_buffer_size = 0};
  struct lws_context_creation_info vi;
  memset(&vi, 0, sizeof vi);
  vi.vhost_name = h->name;
  vi.protocols = h->protocols;
  vi.user = h;
  vi.iface = h->host;
  vi.port = cfg->port;
  vi.keepalive_timeout = cfg->timeout_s;
  vi.options = LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
  if (strchr(h->host, ':') == NULL)
    vi.options |= LWS_SERVER_OPTION_DISABLE_IPV6; /* an IPv4 address */
  mimd_timer_init(&h->sweep, sweep, h);
  mimd_timer_bind(&h->sweep, ctx, cfg->ev_loop);
  h->vh = lws_create_vhost(ctx, &vi);
  if (h->vh == NULL) {
    free(h->name);
    free(h->host);
    free(h);
    return -EADDRINUSE;
  }
  *out = h;
  return 0;
}

void mimd_httpd_stop(struct mimd_httpd *h) {
  if (h == NULL || h->stopped)
    return;
  h->stopped = true;
  mimd_timer_cancel(&h->sweep);
}

void mimd_httpd_destroy(struct mimd_httpd *h) {
  if (h == NULL)
    return;
  /* the vhost and its connections go with the context */
  free(h->name);
  free(h->host);
  free(h);
}

int mimd_httpd_port(const struct mimd_httpd *h) {
  return lws_get_vhost_listen_port(h->vh);
}

size_t mimd_httpd_conns(const struct mimd_httpd *h) { return h->n_conns; }

size_t mimd_httpd_writing(const struct mimd_httpd *h) { return h->n_writing; }

const char *mimd_http_req_method(const struct mimd_http_req *r) {
  return r->method;
}
const char *mimd_http_req_path(const struct mimd_http_req *r) {
  return r->path;
}
const uint8_t *mimd_http_req_body(const struct mimd_http_req *r,
                                  size_t *len) {
  static const uint8_t empty[1];
  *len = r->body_len;
  return r->body != NULL ? r->body : empty;
}
const char *mimd_http_req_authorization(const struct mimd_http_req *r) {
  return r->auth;
}
const char *mimd_http_req_content_type(const struct mimd_http_req *r) {
  return r->ctype;
}
const char *mimd_http_req_peer(const struct mimd_http_req *r) {
  return r->peer;
}
size_t mimd_http_req_nargs(const struct mimd_http_req *r) { return r->nargs; }
const char *mimd_http_req_arg(const struct mimd_http_req *r, size_t i) {
  return i < r->nargs ? r->args[i] : NULL;
}

/* ---- outside a server ---- */

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
