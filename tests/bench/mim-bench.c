/* mim-bench - load generator for the real gatewayd + logicd.
 *
 *   mim-bench c2c|group|idle|sync [options] --url ws://127.0.0.1:8080/ws
 *
 * This file: options, the coordinating parent (forks the workers, starts
 * them together, samples the daemons' CPU and memory from /proc, merges the
 * results) and the output (progress lines on stderr; a summary, --json or a
 * --tsv row at the end). The scenarios run in the workers
 * (mim-bench-run.c). See mim-bench.h for the overall shape and
 * `mim-bench --help` for the options. */
#include "mim-bench.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NS 1000000000.0
#define EXIT_VERIFY 1 /* ran, but the checks failed */
#define EXIT_RUN 2    /* could not run (options, connections, setup) */

static const char *const scenario_names[] = {"c2c", "group", "idle", "sync"};
static const char *const phase_names[] = {
    "connect", "setup", "ready", "warmup", "measure", "drain",
    "hold",    "sync",  "report", "done"};

static void usage(FILE *f) {
  fprintf(f,
"usage: mim-bench c2c|group|idle|sync [options]\n"
"\n"
"Drives a running gatewayd + logicd (logicd with --dev-auth: any token is\n"
"accepted) over websockets and checks what it measures.\n"
"\n"
"  c2c     P sender/receiver pairs; delivered msgs/s, send->push latency;\n"
"          every message arrives exactly once and in order\n"
"  group   G groups of S members, K senders each; deliveries/s, latency;\n"
"          every member receives every group message once\n"
"  idle    N authenticated connections held T s; connect+auth rate,\n"
"          gatewayd RSS per connection (--gateway-pid)\n"
"  sync    U users with M stored messages each connect and pull it all\n"
"\n"
"Target:\n"
"  --url URL             ws://HOST:PORT/PATH (default ws://127.0.0.1:8080/ws),\n"
"                        or tcp://HOST:PORT: gatewayd's raw TCP listener\n"
"  --gateway-url URL     another gateway; connections go round-robin over\n"
"                        --url and every --gateway-url (repeatable)\n"
"  --gateway-pid PID     gatewayd to sample (CPU, VmRSS) (repeatable)\n"
"  --logic-pid PID       logicd to sample (CPU, VmRSS)\n"
"Load:\n"
"  --pairs P             c2c pairs (100)\n"
"  --window W            unacknowledged sends per sender (16; 128 with --rate)\n"
"  --rate R              offered msgs/s in total; 0 = as fast as possible (0)\n"
"  --duration S          measured seconds (10); sync: time limit\n"
"  --warmup S            unmeasured seconds before (2)\n"
"  --drain S             time allowed for messages in flight at the end (10)\n"
"  --batch               announce MIM_CAP_BATCH, pack frames per message\n"
"  --ack-coalesce        with --batch: one cumulative ack per received message\n"
"                        (default: one ack per push, packed together)\n"
"  --groups G --members S --senders K   group scenario (1, 100, 4)\n"
"  --online N            group: only N members per group connect (default\n"
"                        all); the senders are among them; members are\n"
"                        added in requests of 1,000\n"
"  --large               group: announce MIM_CAP_LARGE and check read\n"
"                        diffusion: cmd 12 pushes with inbox_seq 0 and\n"
"                        consecutive conv_seq per connection (logicd's\n"
"                        group_large_min <= members, group_members_max >=\n"
"                        members)\n"
"  --conns N --hold T    idle scenario (1000, 10)\n"
"  --users U --messages M --pull-limit L   sync scenario (100, 100, 500)\n"
"  --size B              message content bytes (64)\n"
"Processes and connections:\n"
"  --processes N         worker processes, each with a share (1)\n"
"  --concurrency C       connects in flight per process (256)\n"
"  --connect-timeout S   (60)   --setup-timeout S (120)\n"
"  --rx-buffer B         lws's websocket client's receive buffer per\n"
"                        connection (8192; idle 1024); above 64 KiB also\n"
"                        the read size of raw sockets (own client, tcp://)\n"
"  --uid-prefix X        uids are X-s0, X-r0, ... (default: unique per run)\n"
"  --device D            device id (bench)\n"
"  --ws-raw              ws:// URLs: mim-bench's own websocket client on a\n"
"                        raw socket, frames parsed in bulk (the default)\n"
"  --ws-lws              ws:// URLs: libwebsockets' client instead (parses\n"
"                        incoming frames byte by byte: slower receiving)\n"
"  --tx-lws              with --ws-lws: let lws frame each websocket message\n"
"                        (slower)\n"
"  --no-libev            lws's poll() loop instead of libev\n"
"  --source-addrs N      bind connections to 127.0.1.1..N (default 16 when\n"
"                        every target is 127.x, else 0 = no bind)\n"
"Output:\n"
"  --json                one JSON object on stdout instead of the summary\n"
"  --tsv FILE            append one tab-separated summary row to FILE\n"
"  --label TEXT          name of the run in the row / JSON\n"
"  --quiet               no progress lines\n"
"\n"
"Exit status: 0 all checks passed; 1 a check failed (lost, duplicate,\n"
"out-of-order or unanswered messages, replies out of request order,\n"
"connections that failed or did not log in); 2 could not run. Retryable\n"
"errors (BUSY, RATE_LIMITED) are retried with backoff and reported.\n");
}

/* ---- options ---- */

static int parse_url(const char *s, struct bench_url *u) {
  const char *p = s;
  /* tcp://: gatewayd's raw TCP listener (tcp_listen), the same frames on a
   * byte stream */
  u->tcp = strncmp(p, "tcp://", 6) == 0;
  if (!u->tcp && strncmp(p, "ws://", 5) != 0) {
    fprintf(stderr, "mim-bench: only ws:// and tcp:// URLs are supported: "
                    "%s\n", s);
    return -1;
  }
  p += u->tcp ? 6 : 5;
  const char *slash = strchr(p, '/');
  size_t hlen = slash ? (size_t)(slash - p) : strlen(p);
  char hp[sizeof u->host];
  if (hlen == 0 || hlen >= sizeof hp) {
    fprintf(stderr, "mim-bench: bad URL %s\n", s);
    return -1;
  }
  memcpy(hp, p, hlen);
  hp[hlen] = '\0';
  char *colon = strrchr(hp, ':');
  u->port = 80;
  if (colon != NULL) {
    *colon = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port <= 0 || port > 65535) {
      fprintf(stderr, "mim-bench: bad port in %s\n", s);
      return -1;
    }
    u->port = (int)port;
  }
  snprintf(u->host, sizeof u->host, "%s", hp);
  snprintf(u->path, sizeof u->path, "%s", slash ? slash : "/ws");
  snprintf(u->hosthdr, sizeof u->hosthdr, "%s:%d", u->host, u->port);
  return 0;
}

static bool parse_num(const char *name, const char *s, double lo, double hi,
                      double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end != '\0' || !(v >= lo && v <= hi)) {
    fprintf(stderr, "mim-bench: --%s wants a number in [%g, %g]: %s\n", name,
            lo, hi, s);
    return false;
  }
  *out = v;
  return true;
}

enum {
  O_URL = 256, O_GWURL, O_PAIRS, O_WINDOW, O_RATE, O_DURATION, O_WARMUP,
  O_DRAIN, O_BATCH, O_ACKC, O_TXLWS, O_WSRAW, O_WSLWS, O_GROUPS, O_MEMBERS, O_SENDERS, O_CONNS,
  O_HOLD, O_USERS, O_MESSAGES, O_PULL, O_JSON, O_TSV, O_QUIET, O_PROCS,
  O_GWPID, O_LOGICPID, O_PREFIX, O_DEVICE, O_LABEL, O_SIZE, O_CONC,
  O_CTIMEOUT, O_STIMEOUT, O_RXBUF, O_NOLIBEV, O_SRCADDRS, O_HELP,
  O_ONLINE, O_LARGE,
};

static const struct option long_opts[] = {
    {"url", required_argument, NULL, O_URL},
    {"gateway-url", required_argument, NULL, O_GWURL},
    {"pairs", required_argument, NULL, O_PAIRS},
    {"window", required_argument, NULL, O_WINDOW},
    {"rate", required_argument, NULL, O_RATE},
    {"duration", required_argument, NULL, O_DURATION},
    {"warmup", required_argument, NULL, O_WARMUP},
    {"drain", required_argument, NULL, O_DRAIN},
    {"batch", no_argument, NULL, O_BATCH},
    {"ack-coalesce", no_argument, NULL, O_ACKC},
    {"tx-lws", no_argument, NULL, O_TXLWS},
    {"ws-raw", no_argument, NULL, O_WSRAW},
    {"ws-lws", no_argument, NULL, O_WSLWS},
    {"groups", required_argument, NULL, O_GROUPS},
    {"members", required_argument, NULL, O_MEMBERS},
    {"senders", required_argument, NULL, O_SENDERS},
    {"online", required_argument, NULL, O_ONLINE},
    {"large", no_argument, NULL, O_LARGE},
    {"conns", required_argument, NULL, O_CONNS},
    {"hold", required_argument, NULL, O_HOLD},
    {"users", required_argument, NULL, O_USERS},
    {"messages", required_argument, NULL, O_MESSAGES},
    {"pull-limit", required_argument, NULL, O_PULL},
    {"json", no_argument, NULL, O_JSON},
    {"tsv", required_argument, NULL, O_TSV},
    {"quiet", no_argument, NULL, O_QUIET},
    {"processes", required_argument, NULL, O_PROCS},
    {"gateway-pid", required_argument, NULL, O_GWPID},
    {"logic-pid", required_argument, NULL, O_LOGICPID},
    {"uid-prefix", required_argument, NULL, O_PREFIX},
    {"device", required_argument, NULL, O_DEVICE},
    {"label", required_argument, NULL, O_LABEL},
    {"size", required_argument, NULL, O_SIZE},
    {"concurrency", required_argument, NULL, O_CONC},
    {"connect-timeout", required_argument, NULL, O_CTIMEOUT},
    {"setup-timeout", required_argument, NULL, O_STIMEOUT},
    {"rx-buffer", required_argument, NULL, O_RXBUF},
    {"no-libev", no_argument, NULL, O_NOLIBEV},
    {"source-addrs", required_argument, NULL, O_SRCADDRS},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

static const char *tsv_file;

static void base36(char *out, size_t cap, uint64_t v) {
  char tmp[32];
  size_t n = 0;
  do {
    tmp[n++] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
    v /= 36;
  } while (v > 0 && n < sizeof tmp);
  size_t i = 0;
  for (; i < n && i + 1 < cap; i++)
    out[i] = tmp[n - 1 - i];
  out[i] = '\0';
}

/* Returns 0, 1 (help printed) or -1. */
static int parse_opts(struct bench_opts *o, int argc, char **argv) {
  bool have_url = false, window_set = false, rxbuf_set = false;
  double v;
  struct bench_url extra[BENCH_MAX_URLS];
  int nextra = 0;

  memset(o, 0, sizeof *o);
  o->pairs = 100;
  o->window = 16;
  o->duration = 10;
  o->warmup = 2;
  o->drain = 10;
  o->groups = 1;
  o->members = 100;
  o->senders = 4;
  o->conns = 1000;
  o->hold = 10;
  o->users = 100;
  o->messages = 100;
  o->pull_limit = 500;
  o->processes = 1;
  o->size = 64;
  o->concurrency = 256;
  o->connect_timeout = 60;
  o->setup_timeout = 120;
  o->rx_buffer = 8192;
  o->ws_client = WS_RAW; /* lws's client with --ws-lws */
  o->src_addrs = UINT32_MAX; /* auto */
  snprintf(o->device, sizeof o->device, "bench");

  if (argc < 2) {
    usage(stderr);
    return -1;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(stdout);
    return 1;
  }
  int sc = -1;
  for (int i = 0; i < 4; i++)
    if (strcmp(argv[1], scenario_names[i]) == 0)
      sc = i;
  if (sc < 0) {
    fprintf(stderr, "mim-bench: unknown scenario '%s' (c2c, group, idle, "
                    "sync)\n", argv[1]);
    return -1;
  }
  o->sc = (enum scenario)sc;
  optind = 2;
  int c;
  while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
    switch (c) {
    case O_URL:
      if (parse_url(optarg, &o->urls[0]) != 0)
        return -1;
      have_url = true;
      break;
    case O_GWURL:
      if (nextra >= BENCH_MAX_URLS - 1) {
        fprintf(stderr, "mim-bench: too many --gateway-url\n");
        return -1;
      }
      if (parse_url(optarg, &extra[nextra++]) != 0)
        return -1;
      break;
#define NUM(opt, name, lo, hi, field, type)                                   \
  case opt:                                                                    \
    if (!parse_num(name, optarg, lo, hi, &v))                                  \
      return -1;                                                               \
    o->field = (type)v;                                                        \
    break;
      NUM(O_PAIRS, "pairs", 1, 1e6, pairs, uint32_t)
      NUM(O_RATE, "rate", 0, 1e8, rate, double)
      NUM(O_DURATION, "duration", 0.1, 86400, duration, double)
      NUM(O_WARMUP, "warmup", 0, 3600, warmup, double)
      NUM(O_DRAIN, "drain", 0.1, 3600, drain, double)
      NUM(O_GROUPS, "groups", 1, 1e5, groups, uint32_t)
      NUM(O_MEMBERS, "members", 2, 1e5, members, uint32_t)
      NUM(O_SENDERS, "senders", 1, 1e5, senders, uint32_t)
      NUM(O_ONLINE, "online", 2, 1e5, online, uint32_t)
      NUM(O_CONNS, "conns", 1, 1e7, conns, uint32_t)
      NUM(O_HOLD, "hold", 0, 86400, hold, double)
      NUM(O_USERS, "users", 1, 1e6, users, uint32_t)
      NUM(O_MESSAGES, "messages", 1, 1e7, messages, uint32_t)
      NUM(O_PULL, "pull-limit", 1, 100000, pull_limit, uint32_t)
      NUM(O_PROCS, "processes", 1, BENCH_MAX_PROCS, processes, int)
      NUM(O_LOGICPID, "logic-pid", 1, 1e9, logic_pid, int)
      NUM(O_SIZE, "size", 1, 30000, size, uint32_t)
      NUM(O_CONC, "concurrency", 1, 100000, concurrency, uint32_t)
      NUM(O_CTIMEOUT, "connect-timeout", 1, 3600, connect_timeout, double)
      NUM(O_STIMEOUT, "setup-timeout", 1, 3600, setup_timeout, double)
      NUM(O_SRCADDRS, "source-addrs", 0, 2500, src_addrs, uint32_t)
#undef NUM
    case O_WINDOW:
      if (!parse_num("window", optarg, 1, 65536, &v))
        return -1;
      o->window = (uint32_t)v;
      window_set = true;
      break;
    case O_RXBUF:
      if (!parse_num("rx-buffer", optarg, 128, 1 << 20, &v))
        return -1;
      o->rx_buffer = (uint32_t)v;
      rxbuf_set = true;
      break;
    case O_GWPID:
      if (o->ngw_pids >= BENCH_MAX_PIDS ||
          !parse_num("gateway-pid", optarg, 1, 1e9, &v))
        return -1;
      o->gw_pids[o->ngw_pids++] = (int)v;
      break;
    case O_BATCH: o->batch = true; break;
    case O_LARGE: o->large = true; break;
    case O_ACKC: o->ack_coalesce = true; break;
    case O_TXLWS: o->tx_lws = true; break;
    case O_WSRAW: o->ws_client = WS_RAW; break;
    case O_WSLWS: o->ws_client = WS_LWS; break;
    case O_JSON: o->json = true; break;
    case O_TSV: tsv_file = optarg; break;
    case O_QUIET: o->quiet = true; break;
    case O_NOLIBEV: o->no_libev = true; break;
    case O_PREFIX:
      if (strlen(optarg) == 0 || strlen(optarg) > 40 || strpbrk(optarg, " \t")) {
        fprintf(stderr, "mim-bench: --uid-prefix wants 1..40 bytes, no "
                        "spaces\n");
        return -1;
      }
      snprintf(o->prefix, sizeof o->prefix, "%s", optarg);
      break;
    case O_DEVICE:
      snprintf(o->device, sizeof o->device, "%s", optarg);
      break;
    case O_LABEL:
      snprintf(o->label, sizeof o->label, "%s", optarg);
      break;
    case O_HELP:
    case 'h':
      usage(stdout);
      return 1;
    default:
      usage(stderr);
      return -1;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "mim-bench: unexpected argument '%s'\n", argv[optind]);
    return -1;
  }
  if (!have_url)
    parse_url("ws://127.0.0.1:8080/ws", &o->urls[0]);
  o->nurls = 1;
  for (int i = 0; i < nextra; i++)
    o->urls[o->nurls++] = extra[i];
  if (!window_set && o->rate > 0)
    o->window = 128;
  if (!rxbuf_set && o->sc == SC_IDLE)
    o->rx_buffer = 1024;
  if (o->src_addrs == UINT32_MAX) {
    /* several loopback source addresses when every target is loopback:
     * one address's ephemeral ports, shared with everything else on the
     * machine and with TIME_WAIT leftovers of earlier runs, make connect()
     * search for a free port (66% of the generator's CPU at 19,000
     * connections) and finally fail */
    bool loop = true;
    for (int i = 0; i < o->nurls; i++)
      loop = loop && strncmp(o->urls[i].host, "127.", 4) == 0;
    o->src_addrs = loop ? 16 : 0;
  }
  if (o->sc == SC_GROUP) {
    if (o->online == 0)
      o->online = o->members;
    if (o->online > o->members) {
      fprintf(stderr, "mim-bench: --online is larger than --members\n");
      return -1;
    }
    if (o->senders > o->online) {
      fprintf(stderr, "mim-bench: --senders is larger than --%s\n",
              o->online < o->members ? "online" : "members");
      return -1;
    }
    if ((uint32_t)o->processes > o->groups) {
      fprintf(stderr, "mim-bench: a group is never split over processes: "
                      "using %u process(es)\n", o->groups);
      o->processes = (int)o->groups;
    }
  }
  uint32_t units = o->sc == SC_C2C   ? o->pairs
                   : o->sc == SC_IDLE ? o->conns
                   : o->sc == SC_SYNC ? o->users
                                      : o->groups;
  if ((uint32_t)o->processes > units)
    o->processes = (int)units;
  if (o->prefix[0] == '\0') {
    char a[16], b[16];
    base36(a, sizeof a, (uint64_t)time(NULL));
    base36(b, sizeof b, (uint64_t)getpid());
    snprintf(o->prefix, sizeof o->prefix, "mb%s%s", a, b);
  }
  if (o->label[0] == '\0')
    snprintf(o->label, sizeof o->label, "%s%s-%s", scenario_names[o->sc],
             o->large ? "-large" : "", o->batch ? "batch" : "seed");
  return 0;
}

/* Connections one worker opens at most. */
static uint64_t conns_per_worker(const struct bench_opts *o) {
  uint64_t n = (uint64_t)o->processes;
  switch (o->sc) {
  case SC_C2C: return 2 * ((o->pairs + n - 1) / n);
  case SC_GROUP: return ((o->groups + n - 1) / n) * o->online;
  case SC_IDLE: return (o->conns + n - 1) / n;
  case SC_SYNC: return 2 * ((o->users + n - 1) / n);
  }
  return 0;
}

static int check_fd_limit(const struct bench_opts *o) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  uint64_t need = conns_per_worker(o) + 64;
  if (rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur) {
    fprintf(stderr,
            "mim-bench: %" PRIu64 " connections per process do not fit the "
            "open-file limit %llu: use --processes %" PRIu64 " or more\n",
            need - 64, (unsigned long long)rl.rlim_cur,
            (conns_per_worker(o) * (uint64_t)o->processes) /
                    ((uint64_t)rl.rlim_cur - 64) + 1);
    return -1;
  }
  return 0;
}

/* ---- the parent ---- */

struct wstate {
  pid_t pid;
  int up, down;
  bool ready, have_result, failed, eof;
  struct progress prog;  /* the latest */
  struct progress shown; /* the one the last progress line used */
  struct result *res;
  uint8_t *buf;
  size_t have, cap;
};

struct sample {        /* one daemon, from /proc */
  int pid;
  int64_t cpu0, cpu1;  /* ns at the window's start and end */
  int64_t rss0, rss_ready, rss_end; /* KiB */
};

struct parent {
  const struct bench_opts *o;
  struct wstate ws[BENCH_MAX_PROCS];
  int n;
  struct sample gw[BENCH_MAX_PIDS];
  struct sample logic;
  int64_t t0, t_go, t_cpu0, t_cpu1;
  bool go_sent, cpu0_done, cpu1_done, finish_sent, failed;
  char fail_msg[512];
  int64_t t_last_print;
  struct result total;
};

static void sample_cpu(struct parent *P, bool end) {
  int64_t now = now_ns();
  for (int i = 0; i < P->o->ngw_pids; i++) {
    int64_t v = proc_cpu_ns(P->gw[i].pid);
    *(end ? &P->gw[i].cpu1 : &P->gw[i].cpu0) = v;
  }
  if (P->logic.pid > 0)
    *(end ? &P->logic.cpu1 : &P->logic.cpu0) = proc_cpu_ns(P->logic.pid);
  *(end ? &P->t_cpu1 : &P->t_cpu0) = now;
  *(end ? &P->cpu1_done : &P->cpu0_done) = true;
}

enum rss_when { RSS_BEFORE, RSS_READY, RSS_END };

static void sample_rss(struct parent *P, enum rss_when when) {
  for (int i = 0; i < P->o->ngw_pids; i++) {
    int64_t v = proc_rss_kb(P->gw[i].pid);
    if (when == RSS_BEFORE) P->gw[i].rss0 = v;
    else if (when == RSS_READY) P->gw[i].rss_ready = v;
    else P->gw[i].rss_end = v;
  }
  if (P->logic.pid > 0) {
    int64_t v = proc_rss_kb(P->logic.pid);
    if (when == RSS_BEFORE) P->logic.rss0 = v;
    else if (when == RSS_READY) P->logic.rss_ready = v;
    else P->logic.rss_end = v;
  }
}

static void send_down(struct wstate *s, uint32_t type, const void *body,
                      uint32_t len) {
  uint8_t buf[sizeof(struct rec_hdr) + 16];
  struct rec_hdr h = {type, len};
  if (s->eof || len > 16)
    return;
  memcpy(buf, &h, sizeof h);
  if (len > 0)
    memcpy(buf + sizeof h, body, len);
  /* one small write: atomic on a pipe; a dead worker gives EPIPE */
  ssize_t n = write(s->down, buf, sizeof h + len);
  (void)n;
}

static void broadcast(struct parent *P, uint32_t type, const void *body,
                      uint32_t len) {
  for (int i = 0; i < P->n; i++)
    send_down(&P->ws[i], type, body, len);
}

static void fail_run(struct parent *P, const char *msg) {
  if (!P->failed)
    snprintf(P->fail_msg, sizeof P->fail_msg, "%s", msg);
  P->failed = true;
  broadcast(P, REC_ABORT, NULL, 0);
}

static void handle_rec(struct parent *P, struct wstate *s, uint32_t type,
                       const uint8_t *body, uint32_t len) {
  switch (type) {
  case REC_READY:
    s->ready = true;
    break;
  case REC_PROGRESS:
    if (len == sizeof s->prog)
      memcpy(&s->prog, body, len);
    break;
  case REC_RESULT:
    if (len == sizeof *s->res) {
      memcpy(s->res, body, len);
      s->have_result = true;
    }
    break;
  case REC_FAIL: {
    char msg[600];
    snprintf(msg, sizeof msg, "worker %d: %.*s", (int)(s - P->ws), (int)len,
             (const char *)body);
    s->failed = true;
    fail_run(P, msg);
    break;
  }
  default:
    break;
  }
}

static void read_worker(struct parent *P, struct wstate *s) {
  if (s->have == s->cap)
    return; /* cannot happen: a record never exceeds the buffer */
  ssize_t n = read(s->up, s->buf + s->have, s->cap - s->have);
  if (n < 0 && errno == EINTR)
    return;
  if (n <= 0) {
    s->eof = true;
    return;
  }
  s->have += (size_t)n;
  size_t off = 0;
  /* bounded by the bytes read */
  while (s->have - off >= sizeof(struct rec_hdr)) {
    struct rec_hdr h;
    memcpy(&h, s->buf + off, sizeof h);
    if (h.len > s->cap - sizeof h) {
      s->eof = true;
      fail_run(P, "garbled record from a worker");
      return;
    }
    if (s->have - off < sizeof h + h.len)
      break;
    handle_rec(P, s, h.type, s->buf + off + sizeof h, h.len);
    off += sizeof h + h.len;
  }
  memmove(s->buf, s->buf + off, s->have - off);
  s->have -= off;
}

static void fmt_rate(char *out, size_t cap, double v) {
  if (v >= 1e6)
    snprintf(out, cap, "%.2fM", v / 1e6);
  else if (v >= 1e4)
    snprintf(out, cap, "%.1fk", v / 1e3);
  else
    snprintf(out, cap, "%.0f", v);
}

/* Rates come from the workers' own timestamps: each worker's counter
 * growth over its time between the records, summed. */
static double rate_of(const struct parent *P, size_t field) {
  double v = 0;
  for (int i = 0; i < P->n; i++) {
    const struct wstate *s = &P->ws[i];
    double dt = (double)(s->prog.t - s->shown.t) / NS;
    uint64_t a, b;
    memcpy(&a, (const uint8_t *)&s->prog + field, sizeof a);
    memcpy(&b, (const uint8_t *)&s->shown + field, sizeof b);
    if (dt > 0 && a >= b)
      v += (double)(a - b) / dt;
  }
  return v;
}

/* Prints a line once every worker has sent a record since the last one. */
static void print_progress(struct parent *P, int64_t now) {
  const struct bench_opts *o = P->o;
  struct progress t;
  uint64_t p99 = 0;
  uint32_t phase = PH_DONE;
  memset(&t, 0, sizeof t);
  for (int i = 0; i < P->n; i++)
    if (!P->ws[i].eof && P->ws[i].prog.t <= P->ws[i].shown.t)
      return;
  for (int i = 0; i < P->n; i++) {
    const struct progress *p = &P->ws[i].prog;
    t.conns_ok += p->conns_ok;
    t.conns_failed += p->conns_failed;
    t.closed += p->closed;
    t.inflight += p->inflight;
    t.errors += p->errors;
    t.pulled += p->pulled;
    if (p->ival_p99_ns > p99)
      p99 = p->ival_p99_ns;
    if (p->phase < phase)
      phase = p->phase;
  }
  char a[32], b[32];
  fprintf(stderr, "[%6.1fs] %-7s conns %" PRIu64 "/%" PRIu64,
          (double)(now - P->t0) / NS,
          phase < sizeof phase_names / sizeof *phase_names ? phase_names[phase]
                                                           : "?",
          t.conns_ok, P->total.conns_target);
  if (t.conns_failed || t.closed)
    fprintf(stderr, " (failed %" PRIu64 ", closed %" PRIu64 ")",
            t.conns_failed, t.closed);
  switch (o->sc) {
  case SC_C2C:
  case SC_GROUP:
    fmt_rate(a, sizeof a, rate_of(P, offsetof(struct progress, sent)));
    fmt_rate(b, sizeof b, rate_of(P, offsetof(struct progress, delivered)));
    fprintf(stderr, "  sent %s/s  %s %s/s  in flight %" PRIu64
                    "  p99 %.2f ms  errors %" PRIu64,
            a, o->sc == SC_C2C ? "delivered" : "deliveries", b, t.inflight,
            (double)p99 / 1e6, t.errors);
    break;
  case SC_IDLE:
    fmt_rate(a, sizeof a, rate_of(P, offsetof(struct progress, conns_ok)));
    fprintf(stderr, "  +%s conns/s", a);
    break;
  case SC_SYNC:
    fmt_rate(a, sizeof a, rate_of(P, offsetof(struct progress, replied)));
    fmt_rate(b, sizeof b, rate_of(P, offsetof(struct progress, pulled)));
    fprintf(stderr, "  prefill %s msg/s  pulled %s msg/s (%" PRIu64 ")", a, b,
            t.pulled);
    break;
  }
  fputc('\n', stderr);
  for (int i = 0; i < P->n; i++)
    P->ws[i].shown = P->ws[i].prog;
  P->t_last_print = now;
}

static void merge_results(struct parent *P) {
  struct result *t = &P->total;
  uint64_t target = t->conns_target;
  memset(t, 0, sizeof *t);
  size_t nwords = offsetof(struct result, lat_push) / sizeof(uint64_t);
  for (int i = 0; i < P->n; i++) {
    const struct result *r = P->ws[i].res;
    if (!P->ws[i].have_result)
      continue;
    uint64_t *dst = (uint64_t *)(void *)t;
    const uint64_t *src = (const uint64_t *)(const void *)r;
    /* times are merged below; summing them here is overwritten */
    for (size_t k = 0; k < nwords; k++)
      dst[k] += src[k];
    hist_merge(&t->lat_push, &r->lat_push);
    hist_merge(&t->lat_reply, &r->lat_reply);
    hist_merge(&t->lat_conn, &r->lat_conn);
  }
#define MIN_T(f)                                                               \
  do {                                                                         \
    t->f = 0;                                                                  \
    for (int i = 0; i < P->n; i++)                                             \
      if (P->ws[i].have_result && P->ws[i].res->f != 0 &&                      \
          (t->f == 0 || P->ws[i].res->f < t->f))                               \
        t->f = P->ws[i].res->f;                                                \
  } while (0)
#define MAX_T(f)                                                               \
  do {                                                                         \
    t->f = 0;                                                                  \
    for (int i = 0; i < P->n; i++)                                             \
      if (P->ws[i].have_result && P->ws[i].res->f > t->f)                      \
        t->f = P->ws[i].res->f;                                                \
  } while (0)
  MIN_T(t_conn_first);
  MAX_T(t_conn_last);
  MIN_T(t_sync_start);
  MAX_T(t_sync_end);
  MIN_T(t_prefill_start);
  MAX_T(t_prefill_end);
  MIN_T(t_win_start);
  MAX_T(t_win_end);
  MIN_T(t_setup_start);
  MAX_T(t_setup_end);
  MAX_T(drain_ns);
#undef MIN_T
#undef MAX_T
  if (t->conns_target == 0)
    t->conns_target = target;
}

static uint64_t total_errors(const struct result *r) {
  uint64_t n = 0;
  for (int i = 0; i < BENCH_ERR_SLOTS; i++)
    n += r->errors[i];
  return n;
}

/* Whether the run passed its checks; `why` says what failed. */
static bool verdict(const struct bench_opts *o, const struct result *r,
                    char *why, size_t cap) {
  char *p = why;
  size_t left = cap;
  *p = '\0';
#define BAD(cond, ...)                                                         \
  do {                                                                         \
    if (cond) {                                                                \
      int k_ = snprintf(p, left, __VA_ARGS__);                                 \
      if (k_ > 0 && (size_t)k_ < left) {                                       \
        p += k_;                                                               \
        left -= (size_t)k_;                                                    \
      }                                                                        \
    }                                                                          \
  } while (0)
  BAD(r->lost, "lost=%" PRIu64 " ", r->lost);
  BAD(r->dup, "dup=%" PRIu64 " ", r->dup);
  BAD(r->ooo, "ooo=%" PRIu64 " ", r->ooo);
  BAD(r->extra, "extra=%" PRIu64 " ", r->extra);
  BAD(r->unanswered, "unanswered=%" PRIu64 " ", r->unanswered);
  BAD(r->misrouted, "misrouted=%" PRIu64 " ", r->misrouted);
  BAD(r->reply_order, "reply_order=%" PRIu64 " ", r->reply_order);
  BAD(r->send_failed, "send_failed=%" PRIu64 " ", r->send_failed);
  BAD(r->proto_errors, "proto=%" PRIu64 " ", r->proto_errors);
  BAD(r->conns_failed + r->auth_failed, "conn_failed=%" PRIu64 " ",
      r->conns_failed + r->auth_failed);
  BAD(r->conns_ok < r->conns_target, "not_logged_in=%" PRIu64 " ",
      r->conns_target - r->conns_ok);
  BAD(r->closed_unexpected, "closed=%" PRIu64 " ", r->closed_unexpected);
  BAD(r->kicked, "kicked=%" PRIu64 " ", r->kicked);
  BAD(r->batch_refused, "batch_refused=%" PRIu64 " ", r->batch_refused);
  if (o->sc == SC_SYNC) {
    BAD(r->sync_bad, "sync_bad=%" PRIu64 " ", r->sync_bad);
    BAD(r->inbox_gaps, "inbox_gaps=%" PRIu64 " ", r->inbox_gaps);
    BAD(r->sync_users_done < o->users, "users_done=%" PRIu64 " ",
        r->sync_users_done);
  }
  if (o->sc == SC_GROUP && o->large) {
    BAD(r->large_refused, "large_refused=%" PRIu64 " ", r->large_refused);
    BAD(r->conv_gaps, "conv_gaps=%" PRIu64 " ", r->conv_gaps);
    BAD(r->conv_dup, "conv_dup=%" PRIu64 " ", r->conv_dup);
    BAD(r->not_large, "not_large=%" PRIu64 " ", r->not_large);
  }
  if (o->sc == SC_C2C || o->sc == SC_GROUP)
    BAD(r->expected == 0, "nothing_delivered ");
#undef BAD
  if (p > why && p[-1] == ' ')
    p[-1] = '\0';
  return why[0] == '\0';
}

/* ---- output ---- */

struct summary {
  double window_s;
  double value;       /* the headline rate */
  const char *unit;
  const struct hist *lat;
  const char *lat_name;
  double gen_cpu, gw_cpu, logic_cpu; /* % of one core; <0 unknown */
  double rss_per_conn_kb;            /* idle; <0 unknown */
  bool ok;
  char why[256];
};

static double pct(int64_t cpu0, int64_t cpu1, int64_t dt) {
  if (cpu0 < 0 || cpu1 < 0 || dt <= 0)
    return -1;
  return 100.0 * (double)(cpu1 - cpu0) / (double)dt;
}

static void summarize(struct parent *P, struct summary *s) {
  const struct bench_opts *o = P->o;
  const struct result *r = &P->total;
  memset(s, 0, sizeof *s);
  s->window_s = (double)(r->t_win_end - r->t_win_start) / NS;
  if (o->sc == SC_C2C || o->sc == SC_GROUP)
    s->window_s = o->duration;
  if (s->window_s <= 0)
    s->window_s = 1e-9;
  switch (o->sc) {
  case SC_C2C:
  case SC_GROUP:
    s->value = (double)r->delivered_in_window / s->window_s;
    s->unit = o->sc == SC_C2C ? "msg/s" : "deliveries/s";
    s->lat = &r->lat_push;
    s->lat_name = "send->push";
    break;
  case SC_IDLE: {
    double dt = (double)(r->t_conn_last - r->t_conn_first) / NS;
    s->value = dt > 0 ? (double)r->conns_ok / dt : 0;
    s->unit = "conns/s";
    s->lat = &r->lat_conn;
    s->lat_name = "connect+auth";
    break;
  }
  case SC_SYNC: {
    double dt = (double)(r->t_sync_end - r->t_sync_start) / NS;
    s->value = dt > 0 ? (double)r->pulled / dt : 0;
    s->unit = "msg/s pulled";
    s->lat = &r->lat_reply;
    s->lat_name = "pull page";
    break;
  }
  }
  int64_t dt = P->t_cpu1 - P->t_cpu0;
  s->gen_cpu = 100.0 * (double)r->cpu_ns / (s->window_s * NS);
  s->gw_cpu = -1;
  if (o->ngw_pids > 0 && P->cpu0_done && P->cpu1_done) {
    s->gw_cpu = 0;
    for (int i = 0; i < o->ngw_pids; i++) {
      double v = pct(P->gw[i].cpu0, P->gw[i].cpu1, dt);
      if (v < 0) {
        s->gw_cpu = -1;
        break;
      }
      s->gw_cpu += v;
    }
  }
  s->logic_cpu = P->logic.pid > 0 && P->cpu0_done && P->cpu1_done
                     ? pct(P->logic.cpu0, P->logic.cpu1, dt)
                     : -1;
  s->rss_per_conn_kb = -1;
  if (o->sc == SC_IDLE && o->ngw_pids > 0 && r->conns_ok > 0) {
    int64_t d = 0;
    for (int i = 0; i < o->ngw_pids; i++) {
      if (P->gw[i].rss0 < 0 || P->gw[i].rss_ready < 0) {
        d = -1;
        break;
      }
      d += P->gw[i].rss_ready - P->gw[i].rss0;
    }
    if (d >= 0)
      s->rss_per_conn_kb = (double)d / (double)r->conns_ok;
  }
  s->ok = verdict(o, r, s->why, sizeof s->why);
}

static double ms(uint64_t ns) { return (double)ns / 1e6; }

static void print_hist_line(const char *name, const struct hist *h) {
  if (h->count == 0) {
    printf("  %-15s (no samples)\n", name);
    return;
  }
  printf("  %-15s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms"
         "  (n=%" PRIu64 ", mean %.3f)\n",
         name, ms(hist_quantile(h, 0.5)), ms(hist_quantile(h, 0.9)),
         ms(hist_quantile(h, 0.99)), ms(hist_quantile(h, 0.999)), ms(h->max),
         h->count, (double)h->sum_us / 1e3 / (double)h->count);
}

static void cpu_text(char *out, size_t cap, double v) {
  if (v < 0)
    snprintf(out, cap, "-");
  else
    snprintf(out, cap, "%.0f%%", v);
}

static void describe(const struct bench_opts *o, char *out, size_t cap) {
  switch (o->sc) {
  case SC_C2C:
    if (o->rate > 0)
      snprintf(out, cap, "%u pairs, window %u, offered %.0f msg/s, %.0f s",
               o->pairs, o->window, o->rate, o->duration);
    else
      snprintf(out, cap, "%u pairs, window %u, max rate, %.0f s", o->pairs,
               o->window, o->duration);
    break;
  case SC_GROUP: {
    char on[48] = "";
    if (o->online < o->members)
      snprintf(on, sizeof on, " (%u online)", o->online);
    snprintf(out, cap, "%u group(s) x %u members%s, %u senders each, window "
             "%u%s%s, %.0f s", o->groups, o->members, on, o->senders,
             o->window, o->rate > 0 ? ", fixed rate" : "",
             o->large ? ", large (read diffusion)" : "", o->duration);
    break;
  }
  case SC_IDLE:
    snprintf(out, cap, "%u connections over %d gateway(s), held %.0f s",
             o->conns, o->nurls, o->hold);
    break;
  case SC_SYNC:
    snprintf(out, cap, "%u users x %u messages, pages of %u", o->users,
             o->messages, o->pull_limit);
    break;
  }
}

/* The websocket client the ws:// URLs used: "raw", "lws", or "none" when
 * every URL is tcp://. */
static const char *ws_client_name(const struct bench_opts *o) {
  bool ws = false;
  for (int i = 0; i < o->nurls; i++)
    ws = ws || !o->urls[i].tcp;
  if (!ws)
    return "none";
  return o->ws_client == WS_LWS ? "lws" : "raw";
}

static void print_summary(struct parent *P, const struct summary *s) {
  const struct bench_opts *o = P->o;
  const struct result *r = &P->total;
  char d[256], g[16], w[16], l[16];
  describe(o, d, sizeof d);
  printf("\nmim-bench %s (%s framing%s): %s; %d process(es), %s loop, "
         "websocket client %s\n",
         scenario_names[o->sc], o->batch ? "MIM_CAP_BATCH" : "seed",
         o->batch && o->ack_coalesce ? ", coalesced acks" : "", d,
         o->processes, r->used_libev == (uint64_t)o->processes ? "libev" : "poll",
         ws_client_name(o));
  switch (o->sc) {
  case SC_C2C:
  case SC_GROUP:
    printf("  %-15s %.0f %s  (%" PRIu64 " in %.1f s; sends %.0f/s%s)\n",
           o->sc == SC_C2C ? "delivered" : "deliveries", s->value, s->unit,
           r->delivered_in_window, s->window_s,
           (double)r->sent_in_window / s->window_s,
           o->rate > 0 ? ", offered" : "");
    if (o->rate > 0)
      printf("  %-15s %.0f msg/s offered, %.0f msg/s sent\n", "rate",
             o->rate, (double)r->sent_in_window / s->window_s);
    print_hist_line("send->push", &r->lat_push);
    print_hist_line("send->reply", &r->lat_reply);
    if (o->sc == SC_GROUP && r->t_setup_end > r->t_setup_start)
      printf("  %-15s %" PRIu64 " create/add requests for %" PRIu64
             " members in %.2f s\n", "group setup", r->group_reqs,
             (uint64_t)o->groups * o->members,
             (double)(r->t_setup_end - r->t_setup_start) / NS);
    if (o->sc == SC_GROUP && o->large)
      printf("  %-15s conv_seq holes %" PRIu64 " (+%" PRIu64 " a sender's "
             "own), not above the last %" PRIu64 ", not read diffusion %"
             PRIu64 ", MIM_CAP_LARGE refused %" PRIu64 ", notices %" PRIu64
             "\n", "timeline", r->conv_gaps, r->own_gaps, r->conv_dup,
             r->not_large, r->large_refused, r->notices);
    if (P->logic.pid > 0)
      printf("  %-15s pid %d: VmRSS %.1f MiB before, %.1f MiB ready, %.1f "
             "MiB at the end\n", "logicd", P->logic.pid,
             (double)P->logic.rss0 / 1024, (double)P->logic.rss_ready / 1024,
             (double)P->logic.rss_end / 1024);
    break;
  case SC_IDLE:
    printf("  %-15s %" PRIu64 " of %" PRIu64 " authenticated at %.0f conns/s\n",
           "connections", r->conns_ok, r->conns_target, s->value);
    print_hist_line("connect+auth", &r->lat_conn);
    for (int i = 0; i < o->ngw_pids; i++)
      printf("  %-15s pid %d: VmRSS %.1f MiB before, %.1f MiB with the "
             "connections, %.1f MiB after the hold\n", "gatewayd",
             P->gw[i].pid, (double)P->gw[i].rss0 / 1024,
             (double)P->gw[i].rss_ready / 1024, (double)P->gw[i].rss_end / 1024);
    if (s->rss_per_conn_kb >= 0)
      printf("  %-15s %.2f KiB per connection (gatewayd VmRSS growth / "
             "connections)\n", "memory", s->rss_per_conn_kb);
    break;
  case SC_SYNC:
    printf("  %-15s %.0f msg/s  (%" PRIu64 " messages, %" PRIu64
           " pages, %" PRIu64 "/%u users in %.2f s, connect+auth included)\n",
           "pulled", s->value, r->pulled, r->pull_pages, r->sync_users_done,
           o->users, s->window_s);
    if (r->t_prefill_end > r->t_prefill_start)
      printf("  %-15s %.0f msg/s stored (%" PRIu64 " messages)\n", "prefill",
             (double)r->prefill_msgs /
                 ((double)(r->t_prefill_end - r->t_prefill_start) / NS),
             r->prefill_msgs);
    print_hist_line("pull page", &r->lat_reply);
    print_hist_line("connect+auth", &r->lat_conn);
    break;
  }
  printf("  %-15s %s: expected %" PRIu64 ", lost %" PRIu64 ", duplicate %" PRIu64
         ", out of order %" PRIu64 ", unanswered %" PRIu64 ", errors %" PRIu64
         ", inbox gaps %" PRIu64 "%s%s\n",
         "checks", s->ok ? "OK" : "FAILED", r->expected, r->lost, r->dup,
         r->ooo, r->unanswered, total_errors(r), r->inbox_gaps,
         s->ok ? "" : " -- ", s->ok ? "" : s->why);
  if (r->retried > 0)
    printf("  %-15s %" PRIu64 " sends repeated after retryable errors (with "
           "backoff); %" PRIu64 " of them arrived after later messages\n",
           "retries", r->retried, r->ooo_retried);
  if (total_errors(r) > 0) {
    printf("  %-15s", "error codes");
    for (int i = 0; i < BENCH_ERR_SLOTS; i++)
      if (r->errors[i])
        printf(" %d:%" PRIu64, i ? 1000 + i : 0, r->errors[i]);
    printf("\n");
  }
  printf("  %-15s in %.2f frames/msg (%" PRIu64 " msgs), out %.2f frames/msg "
         "(%" PRIu64 " msgs); acks sent %" PRIu64 "\n", "websocket",
         r->ws_in ? (double)r->frames_in / (double)r->ws_in : 0, r->ws_in,
         r->ws_out ? (double)r->frames_out / (double)r->ws_out : 0, r->ws_out,
         r->acks_sent);
  cpu_text(g, sizeof g, s->gen_cpu);
  cpu_text(w, sizeof w, s->gw_cpu);
  cpu_text(l, sizeof l, s->logic_cpu);
  printf("  %-15s mim-bench %s, gatewayd %s, logicd %s (%% of one core over "
         "the %s)\n", "CPU", g, w, l,
         o->sc == SC_IDLE ? "connecting" : o->sc == SC_SYNC ? "sync" : "window");
  printf("\n  %-14s %-6s %7s %12s %-13s %8s %8s %8s %8s %8s  %s\n", "run",
         "frames", "conns", "rate", "unit", "p50 ms", "p90 ms", "p99 ms",
         "p99.9 ms", "max ms", "checks");
  printf("  %-14s %-6s %7" PRIu64 " %12.0f %-13s %8.3f %8.3f %8.3f %8.3f %8.3f"
         "  %s\n",
         o->label, o->batch ? "batch" : "seed", r->conns_target, s->value,
         s->unit, ms(hist_quantile(s->lat, 0.5)), ms(hist_quantile(s->lat, 0.9)),
         ms(hist_quantile(s->lat, 0.99)), ms(hist_quantile(s->lat, 0.999)),
         ms(s->lat->max), s->ok ? "ok" : "FAILED");
}

static void json_hist(FILE *f, const char *name, const struct hist *h) {
  fprintf(f, "\"%s\":{\"n\":%" PRIu64 ",\"p50_ms\":%.4f,\"p90_ms\":%.4f,"
             "\"p99_ms\":%.4f,\"p999_ms\":%.4f,\"max_ms\":%.4f,\"mean_ms\":%.4f}",
          name, h->count, ms(hist_quantile(h, 0.5)), ms(hist_quantile(h, 0.9)),
          ms(hist_quantile(h, 0.99)), ms(hist_quantile(h, 0.999)), ms(h->max),
          h->count ? (double)h->sum_us / 1e3 / (double)h->count : 0.0);
}

/* "name":v then `sep`; a negative v (unknown) is null */
static void json_num(FILE *f, const char *name, double v, const char *sep) {
  if (v < 0)
    fprintf(f, "\"%s\":null%s", name, sep);
  else
    fprintf(f, "\"%s\":%.2f%s", name, v, sep);
}

static void print_json(struct parent *P, const struct summary *s) {
  const struct bench_opts *o = P->o;
  const struct result *r = &P->total;
  FILE *f = stdout;
  fprintf(f, "{\"label\":\"%s\",\"scenario\":\"%s\",\"framing\":\"%s\","
             "\"ack_coalesce\":%s,\"processes\":%d,\"gateways\":%d,"
             "\"loop\":\"%s\",\"ws_client\":\"%s\",",
          o->label, scenario_names[o->sc], o->batch ? "batch" : "seed",
          o->ack_coalesce ? "true" : "false", o->processes, o->nurls,
          r->used_libev == (uint64_t)o->processes ? "libev" : "poll",
          ws_client_name(o));
  fprintf(f, "\"params\":{\"pairs\":%u,\"window\":%u,\"rate\":%.0f,"
             "\"duration_s\":%.2f,\"warmup_s\":%.2f,\"groups\":%u,"
             "\"members\":%u,\"senders\":%u,\"conns\":%u,\"hold_s\":%.1f,"
             "\"users\":%u,\"messages\":%u,\"pull_limit\":%u,\"size\":%u,"
             "\"online\":%u,\"large\":%s},",
          o->pairs, o->window, o->rate, o->duration, o->warmup, o->groups,
          o->members, o->senders, o->conns, o->hold, o->users, o->messages,
          o->pull_limit, o->size, o->online, o->large ? "true" : "false");
  fprintf(f, "\"value\":%.1f,\"unit\":\"%s\",\"window_s\":%.3f,",
          s->value, s->unit, s->window_s);
  fprintf(f, "\"ok\":%s,\"failed_checks\":\"%s\",", s->ok ? "true" : "false",
          s->why);
  fprintf(f, "\"conns\":{\"target\":%" PRIu64 ",\"ok\":%" PRIu64
             ",\"failed\":%" PRIu64 ",\"auth_failed\":%" PRIu64
             ",\"retries\":%" PRIu64 ",\"closed_unexpected\":%" PRIu64
             ",\"kicked\":%" PRIu64 "},",
          r->conns_target, r->conns_ok, r->conns_failed, r->auth_failed,
          r->conn_retries, r->closed_unexpected, r->kicked);
  fprintf(f, "\"messages\":{\"sent\":%" PRIu64 ",\"sent_in_window\":%" PRIu64
             ",\"replied_ok\":%" PRIu64 ",\"send_failed\":%" PRIu64
             ",\"retried\":%" PRIu64 ",\"delivered\":%" PRIu64
             ",\"delivered_in_window\":%" PRIu64 ",\"acks_sent\":%" PRIu64
             ",\"other_pushes\":%" PRIu64 ",\"pulled\":%" PRIu64
             ",\"pull_pages\":%" PRIu64 ",\"prefill\":%" PRIu64 "},",
          r->sent, r->sent_in_window, r->replied_ok, r->send_failed,
          r->retried, r->delivered, r->delivered_in_window, r->acks_sent,
          r->other_pushes, r->pulled, r->pull_pages, r->prefill_msgs);
  fprintf(f, "\"checks\":{\"expected\":%" PRIu64 ",\"lost\":%" PRIu64
             ",\"duplicate\":%" PRIu64 ",\"out_of_order\":%" PRIu64
             ",\"extra\":%" PRIu64 ",\"out_of_order_retried\":%" PRIu64
             ",\"unanswered\":%" PRIu64
             ",\"misrouted\":%" PRIu64 ",\"reply_order\":%" PRIu64
             ",\"inbox_gaps\":%" PRIu64
             ",\"protocol_errors\":%" PRIu64 ",\"errors\":%" PRIu64
             ",\"drain_ms\":%.1f,\"conv_gaps\":%" PRIu64
             ",\"own_gaps\":%" PRIu64 ",\"conv_dup\":%" PRIu64
             ",\"not_large\":%" PRIu64 ",\"large_refused\":%" PRIu64 "},",
          r->expected, r->lost, r->dup, r->ooo, r->extra, r->ooo_retried,
          r->unanswered, r->misrouted, r->reply_order, r->inbox_gaps,
          r->proto_errors, total_errors(r), (double)r->drain_ns / 1e6,
          r->conv_gaps, r->own_gaps, r->conv_dup, r->not_large,
          r->large_refused);
  fprintf(f, "\"websocket\":{\"msgs_in\":%" PRIu64 ",\"frames_in\":%" PRIu64
             ",\"msgs_out\":%" PRIu64 ",\"frames_out\":%" PRIu64 "},",
          r->ws_in, r->frames_in, r->ws_out, r->frames_out);
  fprintf(f, "\"latency\":{");
  json_hist(f, "send_push", &r->lat_push);
  fputc(',', f);
  json_hist(f, "reply", &r->lat_reply);
  fputc(',', f);
  json_hist(f, "connect_auth", &r->lat_conn);
  fprintf(f, "},\"cpu_pct\":{");
  json_num(f, "mim_bench", s->gen_cpu, ",");
  json_num(f, "gatewayd", s->gw_cpu, ",");
  json_num(f, "logicd", s->logic_cpu, "},");
  fprintf(f, "\"gatewayd_rss_kb\":[");
  for (int i = 0; i < o->ngw_pids; i++)
    fprintf(f, "%s{\"pid\":%d,\"before\":%" PRId64 ",\"ready\":%" PRId64
               ",\"end\":%" PRId64 "}",
            i ? "," : "", P->gw[i].pid, P->gw[i].rss0, P->gw[i].rss_ready,
            P->gw[i].rss_end);
  fprintf(f, "],");
  fprintf(f, "\"logicd_rss_kb\":{\"pid\":%d,\"before\":%" PRId64
             ",\"ready\":%" PRId64 ",\"end\":%" PRId64 "},",
          P->logic.pid, P->logic.rss0, P->logic.rss_ready, P->logic.rss_end);
  fprintf(f, "\"group_setup\":{\"requests\":%" PRIu64 ",\"s\":%.3f},",
          r->group_reqs,
          r->t_setup_end > r->t_setup_start
              ? (double)(r->t_setup_end - r->t_setup_start) / NS
              : 0.0);
  json_num(f, "rss_per_conn_kb", s->rss_per_conn_kb, ",");
  fprintf(f, "\"connect_rate\":%.1f}\n",
          r->t_conn_last > r->t_conn_first
              ? (double)r->conns_ok /
                    ((double)(r->t_conn_last - r->t_conn_first) / NS)
              : 0.0);
}

static void append_tsv(struct parent *P, const struct summary *s) {
  const struct bench_opts *o = P->o;
  const struct result *r = &P->total;
  FILE *f = fopen(tsv_file, "a");
  if (f == NULL) {
    fprintf(stderr, "mim-bench: cannot open %s: %s\n", tsv_file,
            strerror(errno));
    return;
  }
  char g[16], w[16], l[16], notes[256];
  cpu_text(g, sizeof g, s->gen_cpu);
  cpu_text(w, sizeof w, s->gw_cpu);
  cpu_text(l, sizeof l, s->logic_cpu);
  notes[0] = '\0';
  if (o->sc == SC_IDLE && s->rss_per_conn_kb >= 0)
    snprintf(notes, sizeof notes, "gatewayd +%.2f KiB/conn", s->rss_per_conn_kb);
  else if (o->sc == SC_SYNC && r->t_prefill_end > r->t_prefill_start)
    snprintf(notes, sizeof notes, "prefill %.0f msg/s",
             (double)r->prefill_msgs /
                 ((double)(r->t_prefill_end - r->t_prefill_start) / NS));
  else if (o->rate > 0)
    snprintf(notes, sizeof notes, "offered %.0f msg/s", o->rate);
  else if (o->sc == SC_GROUP || o->sc == SC_C2C)
    snprintf(notes, sizeof notes, "sends %.0f/s",
             (double)r->sent_in_window / s->window_s);
  if (o->sc == SC_GROUP && (o->large || o->online < o->members)) {
    size_t n = strlen(notes);
    snprintf(notes + n, sizeof notes - n, "%s%u of %u online%s; setup %.1f s",
             n ? "; " : "", o->online, o->members,
             o->large ? ", large" : "",
             r->t_setup_end > r->t_setup_start
                 ? (double)(r->t_setup_end - r->t_setup_start) / NS
                 : 0.0);
  }
  if (strcmp(ws_client_name(o), "lws") == 0) {
    /* the slower client: say so next to its figures */
    size_t n = strlen(notes);
    snprintf(notes + n, sizeof notes - n, "%slws client", n ? "; " : "");
  }
  if (total_errors(r) > 0) {
    size_t n = strlen(notes);
    /* sync: the sends (and their errors) are the prefill's */
    snprintf(notes + n, sizeof notes - n, "%s%s", n ? "; " : "",
             o->sc == SC_SYNC ? "prefill errors" : "errors");
    for (int i = 0; i < BENCH_ERR_SLOTS; i++) {
      n = strlen(notes);
      if (r->errors[i] && i > 0)
        snprintf(notes + n, sizeof notes - n, " %d x%" PRIu64, 1000 + i,
                 r->errors[i]);
      else if (r->errors[i])
        snprintf(notes + n, sizeof notes - n, " other x%" PRIu64,
                 r->errors[i]);
    }
  }
  fprintf(f, "%s\t%s\t%s\t%" PRIu64 "\t%.0f\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f"
             "\t%s\t%s\t%s\t%s\t%s\n",
          o->label, scenario_names[o->sc], o->batch ? "batch" : "seed",
          r->conns_target, s->value, s->unit, ms(hist_quantile(s->lat, 0.5)),
          ms(hist_quantile(s->lat, 0.9)), ms(hist_quantile(s->lat, 0.99)),
          ms(hist_quantile(s->lat, 0.999)), ms(s->lat->max),
          s->ok ? "ok" : s->why, g, w, l, notes);
  fclose(f);
}

/* ---- running ---- */

static double run_budget_s(const struct bench_opts *o) {
  return o->connect_timeout + o->setup_timeout + o->warmup + o->duration +
         o->drain + o->hold + 90;
}

static int spawn(struct parent *P) {
  const struct bench_opts *o = P->o;
  for (int i = 0; i < P->n; i++) {
    struct wstate *s = &P->ws[i];
    int up[2], down[2];
    if (pipe(up) != 0 || pipe(down) != 0) {
      perror("mim-bench: pipe");
      return -1;
    }
    s->cap = sizeof(struct rec_hdr) + sizeof(struct result) + 4096;
    s->buf = malloc(s->cap);
    s->res = calloc(1, sizeof *s->res);
    if (s->buf == NULL || s->res == NULL)
      return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
      perror("mim-bench: fork");
      return -1;
    }
    if (pid == 0) {
      close(up[0]);
      close(down[1]);
      for (int j = 0; j < i; j++) {
        close(P->ws[j].up);
        close(P->ws[j].down);
      }
      _exit(worker_main(o, i, P->n, up[1], down[0]));
    }
    close(up[1]);
    close(down[0]);
    s->pid = pid;
    s->up = up[0];
    s->down = down[1];
  }
  return 0;
}

static bool all(const struct parent *P, bool (*pred)(const struct wstate *)) {
  for (int i = 0; i < P->n; i++)
    if (!pred(&P->ws[i]))
      return false;
  return true;
}

static bool is_ready(const struct wstate *s) { return s->ready; }
static bool has_result(const struct wstate *s) { return s->have_result; }
static bool is_eof(const struct wstate *s) { return s->eof; }

/* The coordinator loop: bounded by the run budget. */
static void coordinate(struct parent *P) {
  const struct bench_opts *o = P->o;
  int64_t deadline = P->t0 + (int64_t)(run_budget_s(o) * NS);
  int64_t finish_deadline = 0;

  while (!all(P, is_eof)) {
    int64_t now = now_ns();
    if (now > deadline || (finish_deadline && now > finish_deadline)) {
      if (!P->failed && !P->finish_sent)
        fail_run(P, "the run exceeded its time budget");
      for (int i = 0; i < P->n; i++)
        if (!P->ws[i].eof) {
          kill(P->ws[i].pid, SIGKILL);
          P->ws[i].eof = true;
        }
      break;
    }
    /* start everyone together once all are ready */
    if (!P->go_sent && !P->failed && all(P, is_ready)) {
      sample_rss(P, RSS_READY);
      if (o->sc == SC_IDLE)
        sample_cpu(P, true);
      P->t_go = now + 20 * 1000000;
      broadcast(P, REC_GO, &P->t_go, sizeof P->t_go);
      P->go_sent = true;
    }
    if (P->go_sent && (o->sc == SC_C2C || o->sc == SC_GROUP)) {
      int64_t m0 = P->t_go + (int64_t)(o->warmup * NS);
      int64_t m1 = m0 + (int64_t)(o->duration * NS);
      if (!P->cpu0_done && now >= m0)
        sample_cpu(P, false);
      if (!P->cpu1_done && now >= m1)
        sample_cpu(P, true);
    }
    if (P->go_sent && o->sc == SC_SYNC && !P->cpu0_done && now >= P->t_go)
      sample_cpu(P, false);
    if (!P->finish_sent && !P->failed && all(P, has_result)) {
      sample_rss(P, RSS_END);
      if (o->sc == SC_SYNC || !P->cpu1_done)
        sample_cpu(P, true);
      broadcast(P, REC_FINISH, NULL, 0);
      P->finish_sent = true;
      finish_deadline = now + 30 * (int64_t)NS;
    }
    if (P->failed && !finish_deadline)
      finish_deadline = now + 10 * (int64_t)NS;
    for (int i = 0; i < P->n && !P->failed && !P->finish_sent; i++)
      if (P->ws[i].eof && !P->ws[i].have_result) {
        char msg[64];
        snprintf(msg, sizeof msg, "worker %d exited unexpectedly", i);
        fail_run(P, msg);
      }
    if (!o->quiet && !P->failed && !P->finish_sent &&
        now - P->t_last_print >= (int64_t)NS / 2)
      print_progress(P, now);

    struct pollfd pfd[BENCH_MAX_PROCS];
    int map[BENCH_MAX_PROCS], np = 0;
    for (int i = 0; i < P->n; i++)
      if (!P->ws[i].eof) {
        pfd[np].fd = P->ws[i].up;
        pfd[np].events = POLLIN;
        map[np++] = i;
      }
    int r = poll(pfd, (nfds_t)np, 5);
    if (r < 0 && errno != EINTR)
      break;
    for (int k = 0; r > 0 && k < np; k++)
      if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))
        read_worker(P, &P->ws[map[k]]);
  }
  for (int i = 0; i < P->n; i++) {
    int st;
    waitpid(P->ws[i].pid, &st, 0);
    close(P->ws[i].up);
    close(P->ws[i].down);
  }
}

int main(int argc, char **argv) {
  static struct bench_opts o;
  static struct parent P;
  int r = parse_opts(&o, argc, argv);
  if (r != 0)
    return r > 0 ? 0 : EXIT_RUN;
  if (check_fd_limit(&o) != 0)
    return EXIT_RUN;
  signal(SIGPIPE, SIG_IGN);

  P.o = &o;
  P.n = o.processes;
  P.t0 = now_ns();
  P.t_last_print = P.t0;
  for (int i = 0; i < o.ngw_pids; i++)
    P.gw[i].pid = o.gw_pids[i];
  P.logic.pid = o.logic_pid;
  sample_rss(&P, RSS_BEFORE);
  if (o.sc == SC_IDLE)
    sample_cpu(&P, false);
  switch (o.sc) {
  case SC_C2C: P.total.conns_target = 2ull * o.pairs; break;
  case SC_GROUP: P.total.conns_target = (uint64_t)o.groups * o.online; break;
  case SC_IDLE: P.total.conns_target = o.conns; break;
  case SC_SYNC: P.total.conns_target = 2ull * o.users; break;
  }
  if (!o.quiet) {
    char d[256];
    describe(&o, d, sizeof d);
    fprintf(stderr, "mim-bench %s (%s): %s; uids %s-*; %d process(es) -> %s",
            scenario_names[o.sc], o.batch ? "batch" : "seed", d, o.prefix,
            o.processes, o.urls[0].hosthdr);
    for (int i = 1; i < o.nurls; i++)
      fprintf(stderr, ", %s", o.urls[i].hosthdr);
    fputc('\n', stderr);
  }
  if (spawn(&P) != 0) {
    fail_run(&P, "cannot start the workers");
    for (int i = 0; i < P.n; i++)
      if (P.ws[i].pid > 0)
        kill(P.ws[i].pid, SIGKILL);
    return EXIT_RUN;
  }
  coordinate(&P);
  if (P.failed) {
    fprintf(stderr, "mim-bench: run failed: %s\n", P.fail_msg);
    return EXIT_RUN;
  }
  merge_results(&P);
  struct summary s;
  summarize(&P, &s);
  if (o.json)
    print_json(&P, &s);
  else
    print_summary(&P, &s);
  if (tsv_file != NULL)
    append_tsv(&P, &s);
  for (int i = 0; i < P.n; i++) {
    free(P.ws[i].buf);
    free(P.ws[i].res);
  }
  return s.ok ? 0 : EXIT_VERIFY;
}
