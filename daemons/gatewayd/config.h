/* gatewayd configuration: the option table ([gateway] section of the INI
 * file, overridden by --flags) and the values derived from it. */
#ifndef GATEWAYD_CONFIG_H
#define GATEWAYD_CONFIG_H

#include <mim/common.h>
#include <stdbool.h>
#include <stdint.h>

struct gw_config {
  /* as read (strings malloc'd, freed by gw_config_free) */
  char *id;     /* gateway_id sent in HELLO */
  char *listen; /* HOST:PORT of the websocket listener */
  char *path;   /* websocket path, "/ws" */
  char *logic;  /* HOST:PORT or unix:/path of logicd */
  char *rpc_secret;
  char *tls_cert;
  char *tls_key;
  char *log_level;
  char *metrics_listen; /* HOST:PORT of /metrics + /readyz; "" = off */
  int64_t max_frame; /* largest client frame body, bytes */
  int64_t auth_timeout_ms;
  int64_t ping_interval_s;
  int64_t idle_timeout_s;
  int64_t send_queue_bytes; /* per-connection send queue bound */
  int64_t send_message_max; /* largest websocket message to a client */
  /* the front door (front.c, docs/operations.md) */
  int64_t auth_max_body;       /* frame body before login / of AuthRequest */
  int64_t rate_requests_per_s; /* 0: no request limit */
  int64_t rate_requests_burst;
  int64_t rate_bytes_per_s; /* 0: no byte limit */
  int64_t rate_bytes_burst;
  int64_t rate_strikes;     /* RATE_LIMITED answers per window, then kick */
  int64_t max_conns;        /* 0: only the open-file limit */
  int64_t max_conns_per_ip; /* 0: no cap */
  int64_t handshake_timeout_s;
  int64_t fd_reserve; /* descriptors kept from clients */
  int64_t logic_ping_s;     /* PING logicd after this much silence */
  int64_t logic_timeout_s;  /* drop the link after this much silence */
  char *tcp_listen; /* HOST:PORT of the raw TCP listener; "" = none */
  bool tcp_tls;     /* TLS on it when tls_cert/tls_key are set */
  /* the HTTP gateway (http_gw.c, docs/protocol.md "HTTP and SSE") */
  bool http_gateway;        /* serve /http/v1/ on the public port */
  bool web_page;            /* serve the web chat page at / */
  int64_t http_max_body;    /* largest POST body, bytes */
  bool http_query_token;    /* GET /http/v1/events may carry ?token= */
  int64_t sse_ping_s;       /* SSE comment heartbeat interval */
  int64_t http_rate_per_s;  /* HTTP requests per address per second; 0: off */
  int64_t http_rate_burst;

  /* derived by gw_config_load */
  char *listen_host; /* NULL = every interface */
  int listen_port;
  char *logic_host; /* NULL when logic_unix is set */
  int logic_port;
  char *logic_unix;
  enum mim_log_level level;
  bool tls;
  char *tcp_host; /* NULL = every interface */
  int tcp_port;   /* 0: no TCP listener */
  bool tcp_tls_on; /* tcp_tls and tls */
  /* the command line it was loaded from (borrowed: main's), for reloads */
  int argc;
  char **argv;
};

/* Fills `cfg` from defaults, --config FILE and flags, then checks and
 * derives. Returns 0 to run, 1 when --help/--version was printed (exit 0),
 * -1 after printing an error to stderr (exit 2). `cfg` must be zeroed; call
 * gw_config_free() in every case. */
int gw_config_load(struct gw_config *cfg, int argc, char **argv);

void gw_config_free(struct gw_config *cfg);

#endif
