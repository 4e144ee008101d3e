/* The front door: who may open a connection, how long it may take to
 * become a websocket, and how fast it may talk once it is one.
 *
 *  - Caps: sockets per client address (IPv4 address, IPv6 /64) and in
 *    total, counted from accept() to close, so that connections still in
 *    their HTTP upgrade count too.
 *  - Open files: clients never take the last fd_reserve descriptors, so the
 *    link to logicd can always be made again (a restarted logicd must find
 *    its gateways, however many clients wait).
 *  - Upgrade deadline: a socket that has not completed the websocket
 *    upgrade within handshake_timeout_s is closed (slowloris). Every socket
 *    gets the same deadline, so they form a list sorted by deadline and one
 *    timer serves them all, as for the auth deadline in clients.c.
 *  - Rate limits: a token bucket of requests and one of bytes per
 *    connection (gw_rate_*).
 *
 * A socket refused here is closed right after accept(), before lws spends
 * anything on it: the client sees the connection closed without a reply. */
#include "front.h"

#include "gateway.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <log.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

enum refusal { R_PER_IP, R_TOTAL, R_FDS, R__COUNT };

static const char *const refusal_text[R__COUNT] = {
    "max_conns_per_ip reached",
    "max_conns reached",
    "open-file limit (fd_reserve kept for the logicd link)",
};

/* Refusals are logged at most this often, with their counts. */
#define REFUSAL_LOG_S 10

/* ---- the address table ---- */

static uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

#define SIPROUND                                                               \
  do {                                                                         \
    v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);                 \
    v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                    \
    v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                    \
    v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);                 \
  } while (0)

/* SipHash-1-3 of the two words of a key: clients choose their addresses
 * (an IPv6 host a whole /64 of them), so the table is keyed with a random
 * secret, as libmim's session table is. */
static uint64_t hash_key(const struct front *f, const struct ipkey *k) {
  uint64_t v0 = f->k0 ^ UINT64_C(0x736f6d6570736575);
  uint64_t v1 = f->k1 ^ UINT64_C(0x646f72616e646f6d);
  uint64_t v2 = f->k0 ^ UINT64_C(0x6c7967656e657261);
  uint64_t v3 = f->k1 ^ UINT64_C(0x7465646279746573);
  const uint64_t m[2] = {k->hi, k->lo};
  for (int i = 0; i < 2; i++) {
    v3 ^= m[i];
    SIPROUND;
    v0 ^= m[i];
  }
  uint64_t b = (uint64_t)16 << 56;
  v3 ^= b;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

static bool key_eq(const struct ipkey *a, const struct ipkey *b) {
  return a->hi == b->hi && a->lo == b->lo;
}

static size_t home_of(const struct front *f, const struct ipkey *k) {
  return (size_t)hash_key(f, k) & (f->ips_cap - 1);
}

/* The slot of `k`, or SIZE_MAX. */
static size_t ip_find(const struct front *f, const struct ipkey *k) {
  if (f->ips_cap == 0)
    return SIZE_MAX;
  for (size_t i = home_of(f, k);; i = (i + 1) & (f->ips_cap - 1)) {
    if (f->ips[i].n == 0)
      return SIZE_MAX;
    if (key_eq(&f->ips[i].key, k))
      return i;
  }
}

static int ip_resize(struct front *f, size_t cap) {
  struct ipslot *old = f->ips;
  size_t old_cap = f->ips_cap;
  struct ipslot *slots = calloc(cap, sizeof *slots);
  if (slots == NULL)
    return -ENOMEM;
  f->ips = slots;
  f->ips_cap = cap;
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i].n == 0)
      continue;
    size_t j = home_of(f, &old[i].key);
    while (slots[j].n != 0)
      j = (j + 1) & (cap - 1);
    slots[j] = old[i];
  }
  free(old);
  return 0;
}

static uint32_t ip_count(const struct front *f, const struct ipkey *k) {
  size_t i = ip_find(f, k);
  return i == SIZE_MAX ? 0 : f->ips[i].n;
}

static int ip_inc(struct front *f, const struct ipkey *k) {
  size_t i = ip_find(f, k);
  if (i != SIZE_MAX) {
    f->ips[i].n++;
    return 0;
  }
  if ((f->ips_count + 1) * 2 > f->ips_cap) {
    int rc = ip_resize(f, f->ips_cap ? f->ips_cap * 2 : 64);
    if (rc < 0)
      return rc;
  }
  i = home_of(f, k);
  while (f->ips[i].n != 0)
    i = (i + 1) & (f->ips_cap - 1);
  f->ips[i].key = *k;
  f->ips[i].n = 1;
  f->ips_count++;
  return 0;
}

static void ip_dec(struct front *f, const struct ipkey *k) {
  size_t i = ip_find(f, k);
  if (i == SIZE_MAX || --f->ips[i].n > 0)
    return;
  /* the last socket of this address: backward-shift deletion (see
   * conntab.c), so that lookups need no tombstones */
  size_t mask = f->ips_cap - 1;
  for (size_t j = (i + 1) & mask; f->ips[j].n != 0; j = (j + 1) & mask) {
    size_t home = home_of(f, &f->ips[j].key);
    if (((j - home) & mask) >= ((j - i) & mask)) {
      f->ips[i] = f->ips[j];
      i = j;
    }
  }
  memset(&f->ips[i], 0, sizeof f->ips[i]);
  f->ips_count--;
  if (f->ips_cap > 1024 && f->ips_count * 8 < f->ips_cap)
    (void)ip_resize(f, f->ips_cap / 2);
}

/* The key of a peer address: IPv4 (also IPv4-mapped IPv6) per address,
 * IPv6 per /64. */
static struct ipkey key_of(const struct sockaddr_storage *ss) {
  struct ipkey k = {0, 0};
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    k.hi = 4;
    k.lo = ntohl(in->sin_addr.s_addr);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    const uint8_t *a = in6->sin6_addr.s6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      k.hi = 4;
      k.lo = (uint64_t)a[12] << 24 | (uint64_t)a[13] << 16 |
             (uint64_t)a[14] << 8 | a[15];
    } else {
      k.hi = 6;
      for (int i = 0; i < 8; i++)
        k.lo = k.lo << 8 | a[i];
    }
  } else {
    k.hi = 1; /* unix sockets and the like: one bucket */
  }
  return k;
}

/* ---- start, stop ---- */

/* Descriptors open now (stdio, logs, the listener, lws's and libev's
 * own). */
static long count_open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL)
    return 16; /* no /proc: a guess, the reserve absorbs the error */
  long n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n - 1; /* the directory's own descriptor */
}

int gw_front_start(struct gw *gw) {
  struct front *f = &gw->front;
  f->stash_fd = -1;
  uint64_t k[2];
  if (getrandom(k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k) {
    /* early boot without entropy: the clock is a weak key, but the table
     * still works */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    k[0] = (uint64_t)ts.tv_nsec * UINT64_C(0x9E3779B97F4A7C15);
    k[1] = (uint64_t)ts.tv_sec ^ (uint64_t)getpid();
  }
  f->k0 = k[0];
  f->k1 = k[1];
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    f->fd_limit = (long)rl.rlim_cur;
  f->fd_base = count_open_fds();
  if (f->fd_limit > 0) {
    long room = f->fd_limit - f->fd_base - 1 - gw->cfg->fd_reserve;
    mimd_info("open-file limit %ld: room for %ld client connection(s) "
              "(%ld open, fd_reserve %lld)",
              f->fd_limit, room > 0 ? room : 0, f->fd_base,
              (long long)gw->cfg->fd_reserve);
    if (room < 1)
      mimd_warn("the open-file limit leaves no room for clients: raise it "
                "(ulimit -n) or lower fd_reserve");
  }
  return 0;
}

void gw_front_finish(struct gw *gw) {
  struct front *f = &gw->front;
  free(f->ips);
  f->ips = NULL;
  f->ips_cap = f->ips_count = 0;
}

/* ---- admission ---- */

static void log_refusals(struct gw *gw, bool force) {
  struct front *f = &gw->front;
  lws_usec_t now = lws_now_usecs();
  if (!force && now - f->refused_logged < (lws_usec_t)REFUSAL_LOG_S * 1000000)
    return;
  for (int r = 0; r < R__COUNT; r++) {
    if (f->refused[r] == 0)
      continue;
    mimd_warn("refused %llu connection(s): %s (%zu open)",
              (unsigned long long)f->refused[r], refusal_text[r], f->n_socks);
    f->refused[r] = 0;
  }
  f->refused_logged = now;
}

static bool refuse(struct gw *gw, enum refusal r) {
  gw->front.refused[r]++;
  log_refusals(gw, false);
  return false;
}

bool gw_front_admit(struct gw *gw, const struct lws_filter_network_conn_args *a) {
  struct front *f = &gw->front;
  const struct gw_config *cfg = gw->cfg;
  if (a == NULL)
    return true;
  if (f->fd_limit > 0) {
    /* this socket, the logicd link and the reserve must fit; accept()
     * hands out the lowest free descriptor, so a high one means the table
     * is full whatever the count says (descriptors lws opened itself) */
    long after = f->fd_base + (long)f->n_socks + 1 + 1;
    long keep = (long)cfg->fd_reserve;
    if (after + keep > f->fd_limit || (long)a->accept_fd >= f->fd_limit - keep / 2)
      return refuse(gw, R_FDS);
  }
  if (cfg->max_conns > 0 && f->n_socks >= (size_t)cfg->max_conns)
    return refuse(gw, R_TOTAL);
  struct ipkey k = key_of(&a->cli_addr);
  if (cfg->max_conns_per_ip > 0 &&
      ip_count(f, &k) >= (uint64_t)cfg->max_conns_per_ip)
    return refuse(gw, R_PER_IP);
  f->stash_fd = a->accept_fd;
  f->stash_key = k;
  return true;
}

static void hs_unlink(struct front *f, struct gw_sock *s) {
  if (!s->in_hs)
    return;
  if (s->prev)
    s->prev->next = s->next;
  else
    f->hs_head = s->next;
  if (s->next)
    s->next->prev = s->prev;
  else
    f->hs_tail = s->prev;
  s->prev = s->next = NULL;
  s->in_hs = false;
}

static void hs_arm(struct gw *gw) {
  struct front *f = &gw->front;
  if (f->hs_head == NULL || gw->state == GW_DONE)
    return;
  lws_usec_t wait = f->hs_head->deadline - lws_now_usecs();
  mimd_timer_set(&f->handshake, wait > 0 ? wait : 1);
}

int gw_front_accepted(struct gw *gw, struct lws *wsi) {
  struct front *f = &gw->front;
  struct gw_sock *s = lws_get_opaque_user_data(wsi);
  if (s != NULL && s->wsi == wsi)
    return 0; /* counted already */
  s = calloc(1, sizeof *s);
  if (s == NULL)
    return -1;
  s->wsi = wsi;
  int fd = (int)lws_get_socket_fd(wsi);
  if (fd >= 0 && fd == f->stash_fd) {
    s->key = f->stash_key;
  } else {
    /* not the socket gw_front_admit() saw: ask the kernel */
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (fd >= 0)
      (void)getpeername(fd, (struct sockaddr *)&ss, &sl);
    s->key = key_of(&ss);
  }
  f->stash_fd = -1;
  if (ip_inc(f, &s->key) < 0) {
    free(s);
    return -1;
  }
  f->n_socks++;
  lws_set_opaque_user_data(wsi, s);
  s->deadline =
      lws_now_usecs() + (lws_usec_t)gw->cfg->handshake_timeout_s * 1000000;
  s->prev = f->hs_tail;
  if (f->hs_tail)
    f->hs_tail->next = s;
  else
    f->hs_head = s;
  f->hs_tail = s;
  s->in_hs = true;
  if (f->hs_head == s)
    hs_arm(gw);
  return 0;
}

static struct gw_sock *sock_of(struct lws *wsi) {
  struct gw_sock *s = lws_get_opaque_user_data(wsi);
  return s != NULL && s->wsi == wsi ? s : NULL;
}

void gw_front_upgraded(struct gw *gw, struct lws *wsi) {
  struct gw_sock *s = sock_of(wsi);
  if (s != NULL)
    hs_unlink(&gw->front, s);
}

void gw_front_destroyed(struct gw *gw, struct lws *wsi) {
  struct front *f = &gw->front;
  struct gw_sock *s = sock_of(wsi);
  if (s == NULL)
    return;
  lws_set_opaque_user_data(wsi, NULL);
  hs_unlink(f, s);
  ip_dec(f, &s->key);
  f->n_socks--;
  free(s);
  /* a storm of refusals that has stopped still gets its count logged */
  if (f->refused[R_PER_IP] | f->refused[R_TOTAL] | f->refused[R_FDS])
    log_refusals(gw, false);
}

void gw_front_handshake_timer(void *arg) {
  struct gw *gw = arg;
  struct front *f = &gw->front;
  lws_usec_t now = lws_now_usecs();
  unsigned n = 0;
  while (f->hs_head && f->hs_head->deadline <= now) {
    struct gw_sock *s = f->hs_head;
    hs_unlink(f, s);
    /* closed on lws's next service, not from inside this timer */
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    n++;
  }
  if (n > 0)
    mimd_debug("closed %u connection(s) that did not complete the websocket "
               "upgrade within %lld s",
               n, (long long)gw->cfg->handshake_timeout_s);
  hs_arm(gw);
}

/* ---- rate limits ---- */

void gw_rate_init(struct gw *gw, struct client *c) {
  c->rq_tokens = (double)gw->cfg->rate_requests_burst;
  c->rb_tokens = (double)gw->cfg->rate_bytes_burst;
  c->rate_us = lws_now_usecs();
  c->strikes = 0;
  c->strike_since = c->rate_us;
}

static void refill(struct gw *gw, struct client *c) {
  const struct gw_config *cfg = gw->cfg;
  lws_usec_t now = lws_now_usecs();
  double dt = (double)(now - c->rate_us) / 1e6;
  c->rate_us = now;
  if (dt <= 0)
    return;
  c->rq_tokens += dt * (double)cfg->rate_requests_per_s;
  if (c->rq_tokens > (double)cfg->rate_requests_burst)
    c->rq_tokens = (double)cfg->rate_requests_burst;
  c->rb_tokens += dt * (double)cfg->rate_bytes_per_s;
  if (c->rb_tokens > (double)cfg->rate_bytes_burst)
    c->rb_tokens = (double)cfg->rate_bytes_burst;
}

/* What one received websocket piece costs at least, in bytes: the work of
 * a piece (an lws callback, a reassembly step) does not shrink with its
 * size, so a client sending 1-byte messages must not get millions of them
 * a second for the price of a few bytes each. */
#define GW_RX_PIECE_COST 64

void gw_rate_bytes(struct gw *gw, struct client *c, size_t len) {
  if (gw->cfg->rate_bytes_per_s <= 0)
    return;
  refill(gw, c);
  /* bytes cannot be refused once read: the bucket goes into debt, and the
   * frames that complete while it is in debt are refused */
  c->rb_tokens -= (double)(len < GW_RX_PIECE_COST ? GW_RX_PIECE_COST : len);
}

int gw_rate_take(struct gw *gw, struct client *c) {
  const struct gw_config *cfg = gw->cfg;
  bool by_req = cfg->rate_requests_per_s > 0;
  bool by_bytes = cfg->rate_bytes_per_s > 0;
  if (!by_req && !by_bytes)
    return 0;
  refill(gw, c);
  bool ok = (!by_req || c->rq_tokens >= 1.0) && (!by_bytes || c->rb_tokens >= 0);
  if (ok) {
    if (by_req)
      c->rq_tokens -= 1.0;
    return 0;
  }
  lws_usec_t now = lws_now_usecs();
  if (now - c->strike_since >= (lws_usec_t)GW_STRIKE_WINDOW_S * 1000000) {
    c->strike_since = now;
    c->strikes = 0;
  }
  if (++c->strikes > (uint32_t)cfg->rate_strikes)
    return -ECONNABORTED;
  return -MIM_ERR_RATE_LIMITED;
}
