/* mim-bench - load generator for gatewayd + logicd (shared declarations).
 *
 * Process model: the parent parses the options, forks --processes workers
 * and coordinates them through two pipes each (worker -> parent: READY,
 * PROGRESS, RESULT, FAIL records; parent -> worker: GO, FINISH, ABORT). Each
 * worker owns one libwebsockets client context on a libev loop (lws's own
 * poll loop when libev is unavailable) with its share of the connections,
 * runs the scenario and sends back counters and latency histograms, which
 * the parent merges and prints.
 *
 * Files: mim-bench.c (options, coordinator, output), mim-bench-run.c (the
 * scenarios, in a worker), mim-bench-net.c (connect, websocket framing in
 * and out by our own client or lws's, or frames on a raw TCP stream), mim-bench-stats.c (histogram, bitmap, clock, /proc).
 */
#ifndef MIM_BENCH_H
#define MIM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libwebsockets.h>
#include <mim/codec.h>

/* ---- options ---- */

enum scenario { SC_C2C, SC_GROUP, SC_IDLE, SC_SYNC };

#define BENCH_MAX_URLS 64
#define BENCH_MAX_PIDS 64
#define BENCH_MAX_PROCS 64

struct bench_url {
  char host[128];
  int port;
  char path[128];
  char hosthdr[160]; /* "host:port" for the Host and Origin headers */
  bool tcp;          /* tcp://: gatewayd's raw TCP listener, no websocket */
};

/* Which websocket client a ws:// URL uses. */
enum ws_client {
  WS_RAW, /* mim-bench's own: a raw socket, frames parsed in bulk */
  WS_LWS, /* libwebsockets' client (parses incoming frames byte by byte) */
};

struct bench_opts {
  enum scenario sc;
  struct bench_url urls[BENCH_MAX_URLS];
  int nurls;
  uint32_t pairs;
  uint32_t window;
  double rate;          /* msgs/s offered in total; 0 = as fast as possible */
  double duration;      /* s measured (c2c, group); time limit (sync) */
  double warmup;        /* s */
  double drain;         /* s allowed for messages in flight at the end */
  bool batch;           /* announce MIM_CAP_BATCH, pack frames */
  bool ack_coalesce;    /* batch: one cumulative ack per received message */
  bool tx_lws;          /* one lws_write per websocket message (WS_LWS) */
  enum ws_client ws_client;
  uint32_t groups, members, senders;
  uint32_t online;      /* group: members connected per group (<= members) */
  bool large;           /* group: announce MIM_CAP_LARGE, expect read
                         * diffusion (cmd 12, inbox_seq 0, conv_seq) */
  uint32_t conns;
  double hold;
  uint32_t users, messages, pull_limit;
  bool json, tsv, quiet;
  int processes;
  int gw_pids[BENCH_MAX_PIDS];
  int ngw_pids;
  int logic_pid;
  char prefix[48];
  char device[32];
  char label[64];
  uint32_t size;        /* content bytes */
  uint32_t concurrency; /* connects in flight per worker */
  double connect_timeout, setup_timeout;
  uint32_t rx_buffer;
  uint32_t src_addrs;   /* loopback source addresses to spread over; 0 = 1 */
  bool no_libev;
};

/* ---- statistics ---- */

/* Log-linear histogram of nanosecond values (HdrHistogram layout): exact
 * below 256, then 128 sub-buckets per power of two (<= 0.8% error), up to
 * 2^40 ns (~18 min); larger values land in the last bucket. */
#define HIST_SUB_BITS 7
#define HIST_BINS (35 * 128)

struct hist {
  uint64_t count;
  uint64_t max;
  uint64_t min;
  uint64_t sum_us; /* sum in microseconds, for the mean */
  uint64_t bins[HIST_BINS];
};

void hist_reset(struct hist *h);
void hist_add(struct hist *h, uint64_t ns);
void hist_merge(struct hist *dst, const struct hist *src);
/* The value (ns) at quantile q (0..1); 0 when empty. */
uint64_t hist_quantile(const struct hist *h, double q);

/* A growable bitmap (bit i = sequence number i seen). */
struct bitmap {
  uint64_t *w;
  uint32_t nwords;
};

bool bm_test(const struct bitmap *b, uint64_t i);
/* Sets bit i, growing the map. Errors: -ENOMEM, -ERANGE (i >= 2^32). */
int bm_set(struct bitmap *b, uint64_t i);
void bm_free(struct bitmap *b);
/* Counts bits set in `a` and not in `b` below `n`. */
uint64_t bm_count_andnot(const struct bitmap *a, const struct bitmap *b,
                         uint64_t n);

int64_t now_ns(void); /* CLOCK_MONOTONIC */
uint64_t cpu_self_ns(void); /* user + system time of this process */
/* user + system CPU of `pid` in ns, or -1. */
int64_t proc_cpu_ns(int pid);
/* VmRSS of `pid` in KiB, or -1. */
int64_t proc_rss_kb(int pid);

/* ---- records between workers and the parent ---- */

enum rec_type {
  REC_READY = 1,    /* worker -> parent: connected and set up */
  REC_PROGRESS = 2, /* worker -> parent: struct progress */
  REC_RESULT = 3,   /* worker -> parent: struct result */
  REC_FAIL = 4,     /* worker -> parent: text */
  REC_GO = 10,      /* parent -> worker: int64 start time (monotonic ns) */
  REC_FINISH = 11,  /* parent -> worker: close everything and exit */
  REC_ABORT = 12,
};

struct rec_hdr {
  uint32_t type;
  uint32_t len;
};

enum phase {
  PH_CONNECT,
  PH_SETUP,
  PH_WAIT_GO,
  PH_WARMUP,
  PH_MEASURE,
  PH_DRAIN,
  PH_HOLD,
  PH_SYNC,
  PH_REPORTED,
  PH_DONE,
};

struct progress {
  uint32_t phase;
  uint32_t pad_;
  int64_t t;            /* when it was taken (monotonic ns) */
  uint64_t conns_ok, conns_failed, closed;
  uint64_t sent, replied, delivered, inflight, errors, pulled;
  uint64_t ival_p99_ns; /* p99 of push latency over the last interval */
};

/* Counters of one worker; merged by summing (times: min / max). */
#define BENCH_ERR_SLOTS 32 /* error code - 1000; slot 0 = other codes */

struct result {
  uint64_t workers;
  uint64_t conns_target, conns_ok, conns_failed, auth_failed, conn_retries;
  int64_t t_conn_first, t_conn_last; /* monotonic ns; 0 = none */
  uint64_t closed_unexpected, kicked, proto_errors, batch_refused;
  uint64_t sent, sent_in_window, replied_ok, send_failed, retried;
  uint64_t unanswered;
  uint64_t delivered, delivered_in_window, distinct, other_pushes;
  uint64_t misrouted;
  uint64_t expected, lost, dup, ooo, extra, inbox_gaps;
  uint64_t ooo_retried;     /* late because they were sent again */
  uint64_t reply_order;     /* replies not in request order */
  uint64_t acks_sent;
  uint64_t pulled, pull_pages, sync_users_done, sync_bad;
  int64_t t_sync_start, t_sync_end;
  uint64_t prefill_msgs;
  int64_t t_prefill_start, t_prefill_end;
  uint64_t groups_ready;
  uint64_t group_reqs;      /* group create/add requests answered */
  int64_t t_setup_start, t_setup_end; /* group setup (monotonic ns) */
  /* --large: read-diffusion pushes, checked per receiving connection */
  uint64_t large_refused;   /* MIM_CAP_LARGE not granted */
  uint64_t conv_gaps;       /* conv_seq positions skipped (not own) */
  uint64_t own_gaps;        /* skipped on a sender: its own messages */
  uint64_t conv_dup;        /* conv_seq not above the last one seen */
  uint64_t not_large;       /* a bench message pushed with an inbox_seq,
                             * or without conv_seq */
  uint64_t notices;         /* group notices in the timeline (type 2) */
  uint64_t errors[BENCH_ERR_SLOTS];
  uint64_t ws_in, frames_in, ws_out, frames_out;
  uint64_t cpu_ns;          /* this worker's CPU over the window */
  int64_t t_win_start, t_win_end;
  uint64_t drain_ns;        /* time the drain took */
  uint64_t timed_out;       /* a phase hit its time limit */
  uint64_t used_libev;
  struct hist lat_push;     /* send -> push (c2c, group) */
  struct hist lat_reply;    /* send -> send reply; pull request -> reply */
  struct hist lat_conn;     /* connect start -> authenticated */
};

/* ---- a worker ---- */

enum conn_state {
  CS_IDLE,       /* not started (or waiting to retry) */
  CS_CONNECTING,
  CS_AUTHING,
  CS_READY,
  CS_CLOSED,
  CS_FAILED,
};

enum conn_kind { CK_SENDER, CK_RECEIVER, CK_MEMBER, CK_IDLE, CK_FILLER, CK_USER };

struct worker;

struct bconn {
  struct worker *w;
  struct lws *wsi;
  uint32_t id;           /* index in w->conns */
  uint8_t state;         /* enum conn_state */
  uint8_t kind;          /* enum conn_kind */
  bool batch;            /* MIM_CAP_BATCH granted */
  bool large;            /* MIM_CAP_LARGE granted */
  bool wr_pending;       /* a WRITEABLE callback was requested */
  bool in_msg;           /* inside a received websocket message */
  bool tcp;              /* on a raw TCP stream (a tcp:// URL) */
  bool wsraw;            /* our own websocket client on a raw socket */
  uint8_t tries;
  uint16_t url;
  uint32_t role;         /* index into the scenario's role array */
  uint32_t sender;       /* group member: its sender slot, or UINT32_MAX */
  uint32_t msg_frames;   /* frames in the message being received */
  int64_t req_seq;       /* last request seq used */
  int64_t t_start;       /* connect started */
  uint64_t ack_max;      /* coalesced ack pending (inbox_seq), 0 = none */
  uint32_t ack_cmd;
  /* frames queued for sending, not yet websocket-framed */
  uint8_t *tx;
  uint32_t tx_len, tx_cap;
  struct wsraw *ws;      /* wsraw: handshake and frame parser state, kept
                          * across reconnects, freed by net_destroy */
  /* a frame split across receive callbacks */
  uint8_t *rx;
  uint32_t rx_len, rx_cap;
  char uid[80];
};

struct track {          /* what one receiver saw from one sender */
  struct bitmap seen;
  uint64_t hi;          /* highest sequence seen + 1 */
};

struct sender {
  uint32_t conn;
  uint32_t sid;         /* c2c: global pair; group: sender slot in group */
  uint32_t group;       /* group: local group index */
  const char *to;       /* receiver uid or group id */
  uint64_t next_seq;
  uint64_t inflight, ok, failed;
  uint64_t limit;       /* filler: messages to send; 0 = unbounded */
  int64_t *ring;        /* send time by seq & ring_mask */
  int64_t *tsring;      /* the timestamp in the content, by seq & ring_mask */
  uint32_t ring_mask;
  uint64_t *fifo;       /* seqs sent and not answered, in sending order */
  uint32_t fifo_head, fifo_len; /* a ring of ring_mask + 1 entries */
  struct bitmap okmap;
  uint64_t *retry;      /* seqs to send again (retryable errors) */
  uint32_t nretry, retry_cap;
  int64_t t_retry;      /* paused until then after a retryable error */
  int64_t backoff;      /* ns; doubles per error, reset by a success */
  struct bitmap retried; /* seqs sent more than once (order exempt) */
  int64_t t_next;       /* rate mode: intended time of next_seq */
  int64_t interval;     /* rate mode: ns between messages */
};

struct receiver {
  uint32_t conn;
  uint32_t group;       /* group: local group index */
  struct track *tracks; /* c2c and sync: 1; group: one per sender */
  uint32_t ntracks;
  uint32_t first_sid;   /* c2c: the global pair index */
  const char *from;     /* c2c: the expected sender uid */
  uint64_t last_inbox;  /* highest inbox_seq seen */
  /* --large: the group timeline as this connection saw it */
  uint64_t conv_last;   /* last conv_seq pushed (0 = none yet) */
  uint64_t conv_gaps;   /* positions skipped after the first */
  /* sync */
  uint64_t pulled;
  int64_t t_pull;
  bool done;
};

struct group {
  char id[96];
  uint32_t first_conn;  /* conn index of member 0 (the creator) */
  uint32_t added;       /* members handed to create/add so far */
  bool ready;
  const char **uids;    /* member uids 1..S-1 for the requests */
  char *offline_uids;   /* --online: storage of the uids with no conn */
};

struct worker {
  const struct bench_opts *o;
  int idx, nworkers;
  int up_fd, down_fd;
  pid_t ppid;
  struct lws_context *ctx;
  void *evloop;         /* struct ev_loop *, when libev is used */
  lws_sorted_usec_list_t tick_sul;
  int64_t tick_us;
  enum phase phase;
  int64_t t_phase;      /* when the current phase began */
  int64_t t_go, t_meas_start, t_meas_end, t_drain_end, t_last_progress;
  uint64_t cpu_start;
  bool stop;            /* leave the loop */
  bool fatal;
  /* connections */
  struct bconn *conns;
  uint32_t nconns;
  uint32_t conn_lo, conn_hi, conn_next; /* the range being connected */
  uint32_t connecting, settled;
  uint32_t *redial;     /* conns waiting to reconnect (after c->t_start) */
  uint32_t nredial;
  /* scenario */
  uint32_t glo, ghi;    /* this worker's slice (pairs, groups, conns, users) */
  struct sender *senders;
  uint32_t nsenders;
  struct receiver *receivers;
  uint32_t nreceivers;
  struct group *groups;
  uint32_t ngroups;
  uint32_t groups_ready;
  uint64_t expect_deliveries; /* ok replies x fanout */
  uint64_t inflight_total;
  uint32_t users_done;
  char *content;        /* scratch for message text */
  uint8_t *scratch;     /* LWS_PRE + websocket-framed output */
  size_t scratch_cap;
  uint32_t rng;
  struct mim_packet pkt; /* decode scratch */
  struct result res;
  struct hist ival;     /* push latency over the current progress interval */
};

/* mim-bench-run.c */
int worker_main(const struct bench_opts *o, int idx, int nworkers, int up_fd,
                int down_fd);
void on_conn_open(struct worker *w, struct bconn *c);
void on_conn_error(struct worker *w, struct bconn *c, const char *why);
void on_conn_closed(struct worker *w, struct bconn *c);
void on_packet(struct worker *w, struct bconn *c, const struct mim_packet *p,
               int64_t now);
void on_message_end(struct worker *w, struct bconn *c);
void fail_worker(struct worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* mim-bench-net.c */
int net_init(struct worker *w);
void net_run_once(struct worker *w);
void net_destroy(struct worker *w);
int net_connect(struct worker *w, struct bconn *c);
/* Encodes `p` (borrowed) onto c's send queue; sent at the next WRITEABLE:
 * one websocket message per frame, or with MIM_CAP_BATCH everything queued
 * since the last write in one message. Errors: -ENOTCONN, -ENOBUFS, codec
 * errors. */
int net_queue(struct bconn *c, const struct mim_packet *p);
/* Closes c's connection (no close handshake). */
void net_drop(struct bconn *c);

#endif
