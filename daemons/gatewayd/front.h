/* front.c: who may connect and for how long: connection caps, open-file
 * headroom, upgrade deadline, per-connection rate limits. Depends on
 * client.h and <timer.h>. */
#ifndef GATEWAYD_FRONT_H
#define GATEWAYD_FRONT_H

#include "client.h"
#include <timer.h>

struct gw;

/* Connections from one address: IPv4 per address, IPv6 per /64 (one host
 * is usually given a whole /64). */
struct ipkey {
  uint64_t hi, lo;
};

struct ipslot {
  struct ipkey key;
  uint32_t n; /* sockets open from it; 0 marks an empty slot */
};

/* An accepted socket, from accept() to close, websocket or not yet: what
 * the connection caps and the upgrade deadline count. Hangs off the wsi as
 * its opaque user data. */
struct gw_sock {
  struct lws *wsi;
  struct ipkey key;
  struct gw_sock *prev, *next; /* the upgrade deadline list */
  bool in_hs;
  lws_usec_t deadline;
};

struct front {
  struct ipslot *ips; /* open addressing, a power of two slots */
  size_t ips_cap, ips_count;
  uint64_t k0, k1; /* hash key: addresses are chosen by clients */
  size_t n_socks;  /* accepted sockets open */
  struct gw_sock *hs_head, *hs_tail;
  struct mimd_timer handshake;
  long fd_limit; /* RLIMIT_NOFILE at start (0: unknown) */
  long fd_base;  /* descriptors open before any client */
  /* what the last accept() got: its peer, picked up when lws adopts it */
  int stash_fd;
  struct ipkey stash_key;
  /* refusals since the last log line, by reason */
  uint64_t refused[4];
  lws_usec_t refused_logged;
};



/* Reads the open-file limit and what is open; before any client. Errors:
 * -ENOMEM. */
int gw_front_start(struct gw *gw);
/* Frees the address table; after lws_context_destroy() (which closes every
 * socket through gw_front_destroyed()). The timer is cancelled before. */
void gw_front_finish(struct gw *gw);
/* LWS_CALLBACK_FILTER_NETWORK_CONNECTION: whether to keep a socket just
 * accepted (`a` borrowed): the caps per address and in total, and the
 * descriptors kept free for the logicd link. */
bool gw_front_admit(struct gw *gw, const struct lws_filter_network_conn_args *a);
/* LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED: counts the socket and starts
 * its upgrade deadline. Returns -1 (lws closes it) when out of memory. */
int gw_front_accepted(struct gw *gw, struct lws *wsi);
/* The websocket upgrade completed: no upgrade deadline any more. */
void gw_front_upgraded(struct gw *gw, struct lws *wsi);
/* LWS_CALLBACK_WSI_DESTROY: uncounts the socket, if it was one of ours. */
void gw_front_destroyed(struct gw *gw, struct lws *wsi);
/* The upgrade deadline timer fired. */
void gw_front_handshake_timer(void *gw);

/* RATE_LIMITED answers are counted over windows of this many seconds; more
 * than rate_strikes in one window close the connection. */
#define GW_STRIKE_WINDOW_S 10

/* Fills both buckets of a new connection. */
void gw_rate_init(struct gw *gw, struct client *c);
/* `len` bytes arrived from `c`. */
void gw_rate_bytes(struct gw *gw, struct client *c, size_t len);
/* Takes a request token. Returns 0, -MIM_ERR_RATE_LIMITED (answer it so),
 * or -ECONNABORTED: rate_strikes refusals within the strike window, the
 * caller kicks the connection. */
int gw_rate_take(struct gw *gw, struct client *c);

#endif
