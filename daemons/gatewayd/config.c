/* gatewayd's option table and the checks the table cannot express. */
#include "config.h"

/* daemons/common/config.h, spelled out: this directory has its own config.h */
#include "../common/addr.h"
#include "../common/config.h"
#include <log.h>
#include <mim/codec.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S "gateway"
#define OPT(key, type, field, def, help)                                       \
  MIMD_OPT(S, key, type, struct gw_config, field, def, help)

static const struct mimd_option options[] = {
    OPT("id", MIMD_STR, id, "gw1",
        "gateway id sent to logicd (unique per gateway)"),
    OPT("listen", MIMD_STR, listen, "127.0.0.1:8080",
        "websocket listener HOST:PORT (0.0.0.0:8080 serves other hosts)"),
    OPT("path", MIMD_STR, path, "/ws", "websocket path"),
    OPT("logic", MIMD_STR, logic, "127.0.0.1:8090",
        "logicd RPC address, HOST:PORT or unix:/path"),
    OPT("rpc_secret", MIMD_STR, rpc_secret, "",
        "shared secret sent in HELLO (logicd's rpc_secret)"),
    OPT("logic_ping_s", MIMD_INT, logic_ping_s, "5",
        "PING logicd after this many seconds without a frame from it"),
    OPT("logic_timeout_s", MIMD_INT, logic_timeout_s, "20",
        "drop and reconnect the logicd link after this many silent seconds"),
    OPT("max_frame", MIMD_INT, max_frame, "65536",
        "largest client frame body in bytes"),
    OPT("auth_timeout_ms", MIMD_INT, auth_timeout_ms, "5000",
        "close connections not authenticated by then"),
    OPT("ping_interval_s", MIMD_INT, ping_interval_s, "30",
        "websocket ping after this many silent seconds"),
    OPT("idle_timeout_s", MIMD_INT, idle_timeout_s, "120",
        "close after this many seconds without traffic or pong"),
    OPT("send_queue_bytes", MIMD_INT, send_queue_bytes, "1048576",
        "per-connection send queue bound; over it the client is dropped"),
    OPT("send_message_max", MIMD_INT, send_message_max, "1048576",
        "largest websocket message (and frame) sent to a client; a larger "
        "reply is answered TOO_LARGE"),
    OPT("auth_max_body", MIMD_INT, auth_max_body, "4096",
        "largest frame body before login, and of any AuthRequest"),
    OPT("rate_requests_per_s", MIMD_INT, rate_requests_per_s, "200",
        "frames per second per connection, sustained (0: no limit)"),
    OPT("rate_requests_burst", MIMD_INT, rate_requests_burst, "1000",
        "frames per connection in a burst"),
    OPT("rate_bytes_per_s", MIMD_INT, rate_bytes_per_s, "2097152",
        "bytes per second per connection, sustained (0: no limit)"),
    OPT("rate_bytes_burst", MIMD_INT, rate_bytes_burst, "8388608",
        "bytes per connection in a burst (>= max_frame + 14)"),
    OPT("rate_strikes", MIMD_INT, rate_strikes, "100",
        "RATE_LIMITED answers within 10 s before Kick SLOW and close"),
    OPT("max_conns", MIMD_INT, max_conns, "0",
        "open connections in total (0: only the open-file limit)"),
    OPT("max_conns_per_ip", MIMD_INT, max_conns_per_ip, "1024",
        "open connections per IPv4 address or IPv6 /64 (0: no limit)"),
    OPT("handshake_timeout_s", MIMD_INT, handshake_timeout_s, "10",
        "close a connection not upgraded to a websocket by then"),
    OPT("fd_reserve", MIMD_INT, fd_reserve, "64",
        "descriptors clients never take (room for the logicd link)"),
    OPT("http_gateway", MIMD_BOOL, http_gateway, "true",
        "serve the HTTP gateway (POST /http/v1/<command>, SSE "
        "/http/v1/events) on the listener"),
    OPT("web_page", MIMD_BOOL, web_page, "true",
        "serve the web chat page at / (docs/web.md)"),
    OPT("http_max_body", MIMD_INT, http_max_body, "65536",
        "largest JSON body of a POST in bytes (more: 413)"),
    OPT("http_query_token", MIMD_BOOL, http_query_token, "true",
        "accept the token as ?token= on /http/v1/events (EventSource "
        "cannot set headers; URLs end up in logs)"),
    OPT("sse_ping_s", MIMD_INT, sse_ping_s, "15",
        "seconds between SSE heartbeat comments (at most half idle_timeout_s is used)"),
    OPT("http_rate_per_s", MIMD_INT, http_rate_per_s, "50",
        "HTTP requests (POSTs and stream opens) per client address "
        "(IPv6: /64) per second, sustained (0: no limit)"),
    OPT("http_rate_burst", MIMD_INT, http_rate_burst, "200",
        "HTTP requests per client address in a burst"),
    OPT("tls_cert", MIMD_STR, tls_cert, NULL,
        "PEM certificate: serve wss:// (with tls_key)"),
    OPT("tls_key", MIMD_STR, tls_key, NULL, "PEM private key"),
    OPT("tcp_listen", MIMD_STR, tcp_listen, "",
        "raw TCP listener HOST:PORT (the same frames on a byte stream); "
        "empty: none"),
    OPT("tcp_tls", MIMD_BOOL, tcp_tls, "true",
        "TLS on the TCP listener when tls_cert/tls_key are set (false: plain "
        "TCP, e.g. behind a TLS-terminating proxy)"),
    OPT("log_level", MIMD_STR, log_level, "info", "error, warn, info, debug"),
    OPT("metrics_listen", MIMD_STR, metrics_listen, "",
        "HOST:PORT serving GET /metrics and /readyz for operators (empty: "
        "off)"),
};

#define N_OPTIONS (sizeof options / sizeof options[0])

/* Reports a value outside [lo, hi]; returns -1 for the caller to pass on. */
static int range(const char *key, int64_t v, int64_t lo, int64_t hi) {
  if (v >= lo && v <= hi)
    return 0;
  fprintf(stderr, "gatewayd: %s = %lld is out of range [%lld, %lld]\n", key,
          (long long)v, (long long)lo, (long long)hi);
  return -1;
}

/* A setting that others' ranges depend on, kept inside its own range, so
 * that an out-of-range value is reported once and never overflows the
 * arithmetic of the ranges built on it. */
static int64_t within(int64_t v, int64_t lo, int64_t hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

static int check_numbers(const struct gw_config *c) {
  int bad = 0;
  int64_t max_frame = within(c->max_frame, 16, 8 << 20);
  int64_t ping_s = within(c->ping_interval_s, 1, 65534);
  int64_t logic_ping_s = within(c->logic_ping_s, 1, 3600);
  /* a REQUEST carries the body plus a few bytes of framing and must stay
   * under the 16 MiB RPC body limit of logicd (docs/rpc.md) */
  bad |= range("max_frame", c->max_frame, 16, 8 << 20);
  bad |= range("auth_timeout_ms", c->auth_timeout_ms, 100, 3600 * 1000);
  /* lws keeps both in uint16_t seconds and needs hangup > ping */
  bad |= range("ping_interval_s", c->ping_interval_s, 1, 65534);
  /* 65530: lws's own hangup, the backstop, comes 5 s later (gateway.c) */
  bad |=
      range("idle_timeout_s", c->idle_timeout_s, ping_s + 1, 65530);
  bad |= range("send_queue_bytes", c->send_queue_bytes, 4096, (int64_t)1 << 30);
  /* batching coalesces frames up to 64 KiB per message (tx.c) */
  bad |= range("send_message_max", c->send_message_max, 65536,
               (int64_t)1 << 30);
  bad |= range("auth_max_body", c->auth_max_body, 64, max_frame);
  bad |= range("rate_requests_per_s", c->rate_requests_per_s, 0, 1000000);
  bad |= range("rate_requests_burst", c->rate_requests_burst, 1, 1000000);
  bad |= range("rate_bytes_per_s", c->rate_bytes_per_s, 0, (int64_t)1 << 34);
  /* a frame of max_frame (+ its header and websocket framing) must be able
   * to pass a full bucket */
  bad |= range("rate_bytes_burst", c->rate_bytes_burst,
               c->rate_bytes_per_s > 0 ? max_frame + 14 : 0,
               (int64_t)1 << 34);
  bad |= range("rate_strikes", c->rate_strikes, 1, 1000000);
  bad |= range("max_conns", c->max_conns, 0, 100000000);
  bad |= range("max_conns_per_ip", c->max_conns_per_ip, 0, 100000000);
  bad |= range("handshake_timeout_s", c->handshake_timeout_s, 1, 3600);
  bad |= range("fd_reserve", c->fd_reserve, 8, 100000);
  bad |= range("http_max_body", c->http_max_body, 64, 8 << 20);
  bad |= range("http_rate_per_s", c->http_rate_per_s, 0, 10000000);
  bad |= range("http_rate_burst", c->http_rate_burst, 1, 10000000);
  bad |= range("sse_ping_s", c->sse_ping_s, 1, 3600);
  /* a live logicd answers a PING well within the timeout */
  bad |= range("logic_ping_s", c->logic_ping_s, 1, 3600);
  bad |= range("logic_timeout_s", c->logic_timeout_s, logic_ping_s * 2,
               86400);
  return bad ? -1 : 0;
}

static int derive(struct gw_config *c) {
  int lvl = mimd_log_level_parse(c->log_level);
  if (lvl < 0) {
    fprintf(stderr, "gatewayd: unknown log_level '%s'\n", c->log_level);
    return -1;
  }
  c->level = (enum mim_log_level)lvl;
  if (c->id[0] == '\0' || strlen(c->id) > MIM_ID_MAX) {
    fprintf(stderr, "gatewayd: id must be 1..%d bytes\n", MIM_ID_MAX);
    return -1;
  }
  if (strcmp(c->id, "mimctl") == 0) {
    /* the name operator links give; logicd refuses it from a gateway */
    fprintf(stderr, "gatewayd: id \"mimctl\" is reserved for the operator "
                    "tool\n");
    return -1;
  }
  if (c->path[0] != '/') {
    fprintf(stderr, "gatewayd: path must start with '/': %s\n", c->path);
    return -1;
  }
  if (mimd_parse_addr(c->listen, &c->listen_host, &c->listen_port, NULL) < 0) {
    fprintf(stderr, "gatewayd: bad listen address '%s'\n", c->listen);
    return -1;
  }
  /* lws binds every interface when given no interface; "0.0.0.0", "*" and
   * "::" are the ways operators spell that */
  if (strcmp(c->listen_host, "0.0.0.0") == 0 ||
      strcmp(c->listen_host, "*") == 0 || strcmp(c->listen_host, "::") == 0) {
    free(c->listen_host);
    c->listen_host = NULL;
  }
  if (mimd_parse_addr(c->logic, &c->logic_host, &c->logic_port,
                      &c->logic_unix) < 0 ||
      (c->logic_unix == NULL && c->logic_port == 0)) {
    fprintf(stderr, "gatewayd: bad logic address '%s'\n", c->logic);
    return -1;
  }
  if (c->tcp_listen && c->tcp_listen[0]) {
    if (mimd_parse_addr(c->tcp_listen, &c->tcp_host, &c->tcp_port, NULL) < 0 ||
        c->tcp_port == 0) {
      fprintf(stderr, "gatewayd: bad tcp_listen address '%s'\n",
              c->tcp_listen);
      return -1;
    }
    if (strcmp(c->tcp_host, "0.0.0.0") == 0 || strcmp(c->tcp_host, "*") == 0 ||
        strcmp(c->tcp_host, "::") == 0) {
      free(c->tcp_host);
      c->tcp_host = NULL;
    }
  }
  bool cert = c->tls_cert && c->tls_cert[0];
  bool key = c->tls_key && c->tls_key[0];
  if (cert != key) {
    fprintf(stderr, "gatewayd: tls_cert and tls_key go together\n");
    return -1;
  }
  c->tls = cert;
  c->tcp_tls_on = c->tls && c->tcp_tls;
  if (c->metrics_listen && c->metrics_listen[0]) {
    char *h = NULL;
    int port = 0;
    if (mimd_parse_addr(c->metrics_listen, &h, &port, NULL) < 0) {
      fprintf(stderr, "gatewayd: bad metrics_listen address '%s'\n",
              c->metrics_listen);
      return -1;
    }
    free(h);
  }
  return 0;
}

int gw_config_load(struct gw_config *cfg, int argc, char **argv) {
  int rc = mimd_config_load(cfg, options, N_OPTIONS, argc, argv, "gatewayd",
                            "libmim websocket gateway: clients <-> logicd");
  if (rc != 0)
    return rc;
  if (check_numbers(cfg) < 0 || derive(cfg) < 0)
    return -1;
  cfg->argc = argc;
  cfg->argv = argv;
  return 0;
}

void gw_config_free(struct gw_config *cfg) {
  mimd_config_free(cfg, options, N_OPTIONS);
  free(cfg->listen_host);
  free(cfg->logic_host);
  free(cfg->logic_unix);
  free(cfg->tcp_host);
  cfg->tcp_host = NULL;
  cfg->listen_host = cfg->logic_host = cfg->logic_unix = NULL;
}
