/* A small HTTP/1.1 server on a vhost of a daemon's existing lws context:
 * a route table (method + path pattern -> handler), request bodies read up
 * to a bound, a few request headers kept, replies written in pieces when
 * lws says the socket is writable, keep-alive, a cap on concurrent
 * connections and a deadline per request.
 *
 * A handler gets the request and must answer it exactly once with
 * mimd_http_reply(), at once or later (after a commit): the loop is never
 * blocked. A connection that closes before its answer leaves the request
 * alive until the answer comes, which is then dropped.
 *
 * Everything runs on the loop thread of the lws context. Generic: logicd's
 * HTTP API and gatewayd's operators' listener (`metrics_listen`) use it;
 * nothing in it knows about libmim. */
#ifndef MIMD_HTTPD_H
#define MIMD_HTTPD_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mimd_httpd;
struct mimd_http_req;

/* Path parameters of a matched route: the segments its `*` stood for. */
#define MIMD_HTTP_PARAMS_MAX 4

/* `params` are the path segments the pattern's `*`s matched (borrowed for
 * the call, n_params of them). `r` is borrowed until mimd_http_reply(). */
typedef void (*mimd_http_handler)(void *user, struct mimd_http_req *r,
                                  const char *const *params, size_t n_params);

struct mimd_http_route {
  const char *method;  /* "GET", "POST", "DELETE", "PUT", "PATCH" */
  /* "/api/v1/groups/ * /members" without the spaces: literal segments,
   * and `*` for one non-empty segment */
  const char *pattern;
  mimd_http_handler handler;
};

struct mimd_httpd_config {
  const char *name;       /* vhost name, for lws's logs */
  const char *host;       /* address to bind ("127.0.0.1", "::1", ...) */
  int port;               /* 0 = any free port (mimd_httpd_port()) */
  const struct mimd_http_route *routes; /* borrowed; must outlive the server */
  size_t n_routes;
  void *user;             /* handed to every handler */
  size_t body_max;        /* request body bytes; more: 413 and close */
  size_t conns_max;       /* concurrent connections, each counted from
                             accept to close (idle ones too); more are
                             refused at accept (0 = no cap) */
  int timeout_s;          /* a request must have arrived whole, and an idle
                             keep-alive connection is closed, within this;
                             a request waiting for its answer is closed
                             after as long again */
  /* The body of an answer the server gives itself (404 no route, 405 no
   * such method on the path, 408 deadline, 411, 413, 414): malloc'd with
   * `*len`, or NULL for none; with `error_content_type`. May be NULL. */
  char *(*error_body)(void *user, int status, size_t *len);
  const char *error_content_type;
  /* The daemon's libev loop when lws runs on it, NULL on lws's poll()
   * loop: the deadlines run on a timer of the daemon's loop (timer.h says
   * why not lws's own timeouts). */
  void *ev_loop;
  /* Called (may be NULL) each time an answer has been written whole. */
  void (*written)(void *user);
};

/* Creates the listening vhost on `ctx` (borrowed; must outlive the
 * server). Errors: -ENOMEM; -EADDRINUSE the address cannot be bound;
 * -EINVAL a bad config. */
int mimd_httpd_create(struct mimd_httpd **out, struct lws_context *ctx,
                      const struct mimd_httpd_config *cfg);

/* Stops the deadline timer: call before the lws context (and its loop) is
 * destroyed. Connections stay until the context goes. NULL is a no-op. */
void mimd_httpd_stop(struct mimd_httpd *h);

/* Frees the server, after the lws context was destroyed (its connections'
 * last callbacks use it). Requests still waiting for an answer are freed
 * when answered. NULL is a no-op. */
void mimd_httpd_destroy(struct mimd_httpd *h);

/* The bound TCP port. */
int mimd_httpd_port(const struct mimd_httpd *h);

/* Connections open now. */
size_t mimd_httpd_conns(const struct mimd_httpd *h);

/* Answers being written now (a daemon that stops lets them go out). */
size_t mimd_httpd_writing(const struct mimd_httpd *h);

/* ---- a request (valid until mimd_http_reply()) ---- */

const char *mimd_http_req_method(const struct mimd_http_req *r);
const char *mimd_http_req_path(const struct mimd_http_req *r);

/* The body: `*len` bytes, NUL-terminated for convenience (not counted). */
const uint8_t *mimd_http_req_body(const struct mimd_http_req *r, size_t *len);

/* The Authorization and Content-Type headers ("" when absent or longer
 * than 1 KiB; a too long Authorization is never a valid one). */
const char *mimd_http_req_authorization(const struct mimd_http_req *r);
const char *mimd_http_req_content_type(const struct mimd_http_req *r);

/* The peer's address, for logs and per-client limits. */
const char *mimd_http_req_peer(const struct mimd_http_req *r);

/* Query arguments as lws decoded them, "name=value" each, in order:
 * how many there are and the i-th. At most 64 are kept; a request with
 * more, or with a query longer than 4 KiB, is answered 414 by the server
 * before any handler runs. */
size_t mimd_http_req_nargs(const struct mimd_http_req *r);
const char *mimd_http_req_arg(const struct mimd_http_req *r, size_t i);

/* Answers `r` with `status` and `body` (`len` bytes, malloc'd: ownership
 * passes here in every case; NULL with len 0 for no body) of
 * `content_type` (static or borrowed for the call). `extra_header` (NULL
 * or "Name: value", borrowed for the call) is added. Frees `r`: it must
 * not be used after. If the connection has gone, the answer is dropped. */
void mimd_http_reply(struct mimd_http_req *r, int status,
                     const char *content_type, char *body, size_t len,
                     const char *extra_header);

/* The same, and the connection closes after the answer (no keep-alive). */
void mimd_http_reply_close(struct mimd_http_req *r, int status,
                           const char *content_type, char *body, size_t len,
                           const char *extra_header);

/* ---- outside a server ---- */

/* Whether the request on `wsi` announces a body (a Content-Length other
 * than 0, or any Transfer-Encoding). A GET-only port closes such a request
 * at once (its callback returns -1): answered while its body is unread,
 * lws 4.1 spins in its service call, calling BODY_COMPLETION without end
 * when more bytes follow the body, and the daemon's loop hangs. */
bool mimd_http_has_body(struct lws *wsi);

/* Answers a plain HTTP request on a vhost that is not an httpd (a
 * websocket port's LWS_CALLBACK_HTTP, such as gatewayd's public /healthz)
 * with `status` and a short text/plain `body` (static, at most 128 bytes),
 * not cached, written whole from the callback. Returns what that callback
 * should return: 0, or -1 to close (a write failed or `body` too long). */
int mimd_http_reply_static(struct lws *wsi, unsigned status,
                           const char *body);

#endif
