/* Fuzz target: the logic fed with random event sequences over a real LMDB
 * environment (one temporary directory per process, emptied and reopened
 * every RESET_EVERY inputs so that it stays small).
 *
 * Input: one mode byte, then events until the bytes run out:
 *
 *   mode     bit 0: dev_auth (else a secret, and tokens in the input must
 *            verify); bit 1: small limits (pending requests, pull pages,
 *            content, batch size, rate) so that the bounds are reached
 *   event    one byte `op`: kind = op % 8, arg = op / 8 (0..31)
 *     0-2    a client packet on connection `arg % 8` (gateway 1 + c / 4,
 *            conn_id 1 + c % 4): cmd byte (% 64), length, body
 *     3      that connection closed
 *     4      arg even: mim_logic_flush(); odd: take a batch if none is out,
 *            else commit the one out and hand it back (so that packets
 *            arrive while a batch is out, as with logicd's writer thread)
 *     5      drain the effects
 *     6      time passes: arg * 100 ms, then mim_logic_tick()
 *     7      arg % 4 = 0: gateway 1 + arg / 4 % 2 down; 1: up;
 *            2: an admin request (cmd, length, body); 3: a restored session
 *            on connection arg / 4 for uid/device picked by the next byte
 *   length   one byte n: n < 250 is the length; else (n - 249) * 256 plus
 *            the next byte (up to 1791), cut to the bytes left
 *
 * At the end the batch out is committed, every write flushed and every
 * effect drained; then the logic is destroyed (ASan finds leaks).
 *
 * Invariants checked on every effect: a known kind; a body that decodes as
 * its cmd; DELIVER and KICK only to a gateway that exists and connections
 * the input named on it; a reply (a *_RSP or ERROR) to exactly one
 * connection, never more replies on a connection than packets it sent; a
 * KICK carries a Kick body; an ADMIN_REPLY answers a request that was made,
 * once, and every admin request has its reply by the end. API results: the
 * documented error codes only (a restored session may be refused
 * with any error). MIM_FUZZ_VERBOSE=1 prints every effect. */
#include "fuzz.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mim/auth.h>
#include <mim/codec.h>
#include <mim/logic.h>
#include <mim/session.h>
#include <mim/store.h>
#include <mim/lmdb.h>

#define N_GATEWAYS 2
#define N_CONNS 8 /* 4 per gateway */
#define RESET_EVERY 2000
#define START_MS INT64_C(1700000000000)
#define MAX_ADMIN 256

static const uint8_t secret[] = "fuzz-logic-secret-0123456789";
#define SECRET_LEN (sizeof(secret) - 1)

static const char *const uids[] = {"alice", "bob", "carol", "dave"};
static const char *const devices[] = {"phone", "laptop", MIM_DEFAULT_DEVICE};

static char dir[64];
static struct mim_backend *backend;
static unsigned long inputs;

/* ---- the LMDB environment ---- */

static int rm_entry(const char *p, const struct stat *sb, int flag,
                    struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

static void close_store(void) {
  mim_backend_destroy(backend);
  backend = NULL;
  if (dir[0] != '\0')
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void open_store(void) {
  struct mim_lmdb_config cfg;
  if (dir[0] == '\0') {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/mim-fuzz-logic-XXXXXX",
             tmp != NULL && strlen(tmp) < 32 ? tmp : "/tmp");
    check(mkdtemp(dir) != NULL);
    atexit(close_store);
  } else {
    check(mkdir(dir, 0700) == 0 || errno == EEXIST);
  }
  mim_lmdb_config_init(&cfg);
  cfg.path = dir;
  cfg.map_size = 8u << 20;
  cfg.map_size_max = 64u << 20;
  cfg.no_sync = true; /* durability is not what is fuzzed here */
  check(mim_lmdb_open(&backend, &cfg) == 0);
}

/* ---- the run ---- */

struct run {
  struct mim_logic *logic;
  int64_t now;
  bool gw_up[N_GATEWAYS + 1];
  unsigned long sent[N_CONNS];    /* packets each connection sent */
  unsigned long replies[N_CONNS]; /* replies it got */
  uint8_t named[N_GATEWAYS + 1];  /* bit i: conn_id 1 + i was used there */
  uint64_t admin_next;            /* req_ids 1..admin_next-1 were made */
  uint8_t admin_replies[MAX_ADMIN];
  struct mim_write_batch *out;    /* the batch taken, not yet done */
};

static int64_t fake_now(void *user) { return ((struct run *)user)->now; }

static struct mim_conn_ref conn_of(unsigned c) {
  c %= N_CONNS;
  return (struct mim_conn_ref){.gateway = 1 + c / 4, .conn_id = 1 + c % 4};
}

static bool is_reply(uint32_t cmd) {
  switch (cmd) {
  case MIM_CMD_HEARTBEAT_RSP: case MIM_CMD_AUTH_RSP: case MIM_CMD_LOGOUT_RSP:
  case MIM_CMD_C2C_SEND_RSP: case MIM_CMD_C2G_SEND_RSP: case MIM_CMD_PULL_RSP:
  case MIM_CMD_ERROR: case MIM_CMD_GROUP_CREATE_RSP: case MIM_CMD_GROUP_ADD_RSP:
  case MIM_CMD_GROUP_REMOVE_RSP: case MIM_CMD_GROUP_LIST_RSP:
  case MIM_CMD_HISTORY_RSP:
    return true;
  default:
    return false;
  }
}

/* The body of an effect is a well-formed packet of its cmd. */
static void check_body(uint32_t cmd, const uint8_t *body, size_t len) {
  struct mim_packet p;
  mim_packet_init(&p);
  check(mim_cmd_known(cmd));
  check(body != NULL || len == 0);
  check(mim_packet_decode(&p, cmd, body, len) == 0);
  /* the sender's authenticated uid; or the server's group notice, whose
   * content is the notice format (docs/protocol.md §5.3) */
  if (cmd == MIM_CMD_C2G_PUSH && p.type == MIM_MSG_SYSTEM)
    check(p.from[0] == '\0' &&
          strncmp(p.content, "{\"v\":1,\"group\":", 15) == 0 &&
          strlen(p.content) < MIM_GROUP_NOTICE_MAX);
  else if (cmd == MIM_CMD_C2C_PUSH || cmd == MIM_CMD_C2G_PUSH)
    check(mim_id_valid(p.from));
  mim_packet_finish(&p);
}

static void check_effect(struct run *r, const struct mim_effect *e) {
  switch (e->kind) {
  case MIM_EFFECT_DELIVER:
    check(e->gateway >= 1 && e->gateway <= N_GATEWAYS);
    check(e->n_targets >= 1 && e->targets != NULL);
    check_body(e->cmd, e->body, e->body_len);
    for (size_t i = 0; i < e->n_targets; i++) {
      uint64_t id = e->targets[i].conn_id;
      check(id >= 1 && id <= 4 && (r->named[e->gateway] >> (id - 1) & 1));
    }
    if (is_reply(e->cmd)) {
      check(e->n_targets == 1);
      unsigned c = (e->gateway - 1) * 4 + (unsigned)(e->targets[0].conn_id - 1);
      r->replies[c]++;
      check(r->replies[c] <= r->sent[c]);
    }
    break;
  case MIM_EFFECT_KICK:
    check(e->gateway >= 1 && e->gateway <= N_GATEWAYS);
    check(e->conn_id >= 1 && e->conn_id <= 4 &&
          (r->named[e->gateway] >> (e->conn_id - 1) & 1));
    check(e->cmd == MIM_CMD_KICK);
    check_body(e->cmd, e->body, e->body_len);
    break;
  case MIM_EFFECT_SESSION:
    /* who a connection is: only ever a real login's (uid, device) with a
     * whole ticket, or "" (logged out) */
    check(e->gateway >= 1 && e->gateway <= N_GATEWAYS);
    check(e->conn_id >= 1 && e->conn_id <= 4 &&
          (r->named[e->gateway] >> (e->conn_id - 1) & 1));
    check(e->uid != NULL && e->device != NULL);
    if (e->uid[0] != '\0')
      check(mim_id_valid(e->uid) && mim_id_valid(e->device) &&
            e->ticket_len == MIM_TICKET_LEN && e->ticket != NULL);
    else
      check(e->ticket_len == 0);
    break;
  case MIM_EFFECT_ADMIN_REPLY:
    check(e->req_id >= 1 && e->req_id < r->admin_next);
    check(++r->admin_replies[e->req_id % MAX_ADMIN] == 1);
    check_body(e->cmd, e->body, e->body_len);
    break;
  default:
    check(false);
  }
}

static void drain(struct run *r) {
  static int verbose = -1;
  struct mim_effect e;
  int rc;
  if (verbose < 0)
    verbose = getenv("MIM_FUZZ_VERBOSE") != NULL;
  while ((rc = mim_logic_next_effect(r->logic, &e)) == 0) {
    if (verbose)
      fprintf(stderr, "effect %d gw %u cmd %u len %zu targets %zu conn %llu "
                      "req %llu\n", (int)e.kind, e.gateway, e.cmd, e.body_len,
              e.n_targets,
              (unsigned long long)(e.n_targets ? e.targets[0].conn_id
                                               : e.conn_id),
              (unsigned long long)e.req_id);
    check_effect(r, &e);
  }
  check(rc == -EAGAIN);
}

/* Commits the batch that is out and hands it back. */
static void finish_batch(struct run *r) {
  int rc = mim_backend_commit(backend, r->out);
  (void)rc; /* a failed commit is reported through the batch's outcomes */
  check(mim_logic_batch_done(r->logic, r->out) == 0);
  r->out = NULL;
}

struct input {
  const uint8_t *p;
  size_t left;
};

static unsigned take(struct input *in) {
  if (in->left == 0)
    return 0;
  in->left--;
  return *in->p++;
}

static size_t take_len(struct input *in) {
  size_t n = take(in);
  if (n >= 250)
    n = (n - 249) * 256 + take(in);
  return n < in->left ? n : in->left;
}

static void event(struct run *r, struct input *in) {
  unsigned op = take(in), kind = op % 8, arg = op / 8;
  struct mim_conn_ref conn = conn_of(arg);
  int rc;

  switch (kind) {
  case 0: case 1: case 2: {
    uint32_t cmd = take(in) % 64;
    size_t len = take_len(in);
    const uint8_t *body = in->p;
    in->p += len;
    in->left -= len;
    r->named[conn.gateway] |= (uint8_t)(1u << (conn.conn_id - 1));
    rc = mim_logic_receive(r->logic, conn, cmd, body, len);
    check(rc == 0 || rc == -ENOMEM || (rc == -ENOENT && !r->gw_up[conn.gateway]));
    if (rc == 0)
      r->sent[arg % N_CONNS]++;
    break;
  }
  case 3:
    check(mim_logic_conn_closed(r->logic, conn) == 0);
    break;
  case 4:
    if (arg % 2 == 0) {
      if (r->out != NULL)
        finish_batch(r);
      mim_logic_flush(r->logic);
    } else if (r->out != NULL) {
      finish_batch(r);
    } else {
      rc = mim_logic_take_batch(r->logic, &r->out);
      check(rc == 0 || rc == -EAGAIN);
      check((rc == 0) == (r->out != NULL));
    }
    break;
  case 5:
    drain(r);
    break;
  case 6:
    r->now += (int64_t)arg * 100;
    mim_logic_tick(r->logic);
    check(mim_logic_next_timeout(r->logic) >= -1);
    break;
  case 7: {
    uint32_t gw = 1 + arg / 4 % 2;
    switch (arg % 4) {
    case 0:
      rc = mim_logic_gateway_down(r->logic, gw);
      check(rc == (r->gw_up[gw] ? 0 : -ENOENT));
      r->gw_up[gw] = false;
      break;
    case 1:
      rc = mim_logic_gateway_up(r->logic, gw, gw == 1 ? "gw-1" : "gw-2");
      check(rc == (r->gw_up[gw] ? -EEXIST : 0) || rc == -ENOMEM);
      if (rc == 0)
        r->gw_up[gw] = true;
      break;
    case 2: {
      uint32_t cmd = take(in) % 64;
      size_t len = take_len(in);
      const uint8_t *body = in->p;
      in->p += len;
      in->left -= len;
      if (r->admin_next >= MAX_ADMIN)
        break;
      rc = mim_logic_admin(r->logic, r->admin_next++, cmd, body, len);
      check(rc == 0 || rc == -ENOMEM);
      break;
    }
    case 3: {
      unsigned who = take(in);
      struct mim_conn_ref c = conn_of(arg / 4);
      r->named[c.gateway] |= (uint8_t)(1u << (c.conn_id - 1));
      /* the ticket comes from the input: almost never one the logic
       * granted, which is the point (a forged SESSIONS) */
      size_t tlen = take_len(in);
      const uint8_t *ticket = in->p;
      in->p += tlen;
      in->left -= tlen;
      rc = mim_logic_session_restore(r->logic, c, uids[who % 4],
                                     devices[who / 4 % 3], who / 16 % 2,
                                     ticket, tlen);
      /* a restore may be refused for many reasons (a connection that is
       * already someone, a gateway that is gone, a bad ticket): any error,
       * no crash */
      check(rc <= 0 && (r->gw_up[c.gateway] || rc == -ENOENT));
      break;
    }
    }
    break;
  }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct run r;
  struct mim_logic_config cfg;
  struct input in = {data, size};
  unsigned mode;

  if (size == 0)
    return 0;
  if (backend == NULL || inputs % RESET_EVERY == 0) {
    close_store();
    open_store();
  }
  inputs++;

  memset(&r, 0, sizeof r);
  r.now = START_MS;
  r.admin_next = 1;
  mode = take(&in);
  mim_logic_config_init(&cfg);
  cfg.backend = backend;
  cfg.now_ms = fake_now;
  cfg.clock_user = &r;
  cfg.dev_auth = mode & 1;
  if (!cfg.dev_auth) {
    cfg.secret = secret;
    cfg.secret_len = SECRET_LEN;
  }
  if (mode & 2) {
    cfg.pull_limit_default = 2;
    cfg.pull_limit_max = 3;
    cfg.content_max = 64;
    cfg.batch_max_ops = 4;
    cfg.conn_pending_max = 4;
    cfg.rate_per_sec = 2;
    cfg.rate_burst = 3;
    cfg.inflight_push_max = 2;
    cfg.cursor_flush_ms = 0;
  }
  check(mim_logic_create(&r.logic, &cfg) == 0);
  for (uint32_t gw = 1; gw <= N_GATEWAYS; gw++) {
    check(mim_logic_gateway_up(r.logic, gw, gw == 1 ? "gw-1" : "gw-2") == 0);
    r.gw_up[gw] = true;
  }

  while (in.left > 0)
    event(&r, &in);

  if (r.out != NULL)
    finish_batch(&r);
  /* reads run while effects are drained and may queue writes of their own
   * (cursors), so settle in rounds; a logic that never settles is a bug */
  for (int round = 0;
       round < 64 && (round == 0 || mim_logic_has_writes(r.logic)); round++) {
    mim_logic_flush(r.logic);
    drain(&r);
  }
  check(!mim_logic_has_writes(r.logic));
  /* every operator request was answered (by now, all writes committed) */
  for (uint64_t id = 1; id < r.admin_next; id++)
    check(r.admin_replies[id % MAX_ADMIN] == 1);
  mim_logic_destroy(r.logic);
  return 0;
}

/* ---- seeds: conversations as a client would hold them ---- */

struct seedbuf {
  uint8_t *p;
  size_t len, cap;
  bool ok;
};

static void put(struct seedbuf *s, unsigned byte) {
  if (s->len < s->cap)
    s->p[s->len++] = (uint8_t)byte;
  else
    s->ok = false;
}

static void put_len(struct seedbuf *s, size_t n) {
  if (n < 250) {
    put(s, (unsigned)n);
  } else {
    put(s, (unsigned)(249 + n / 256));
    put(s, (unsigned)(n % 256));
  }
}

/* An event of kind `kind` on connection `c` with packet `p` (kinds 0 and 7
 * with an admin request carry a packet). */
static void put_packet(struct seedbuf *s, unsigned op, const struct mim_packet *p) {
  uint8_t body[1024];
  size_t len = 0;
  put(s, op);
  put(s, p->cmd);
  if (mim_packet_encode_body(p, body, sizeof body, &len) != 0)
    s->ok = false;
  put_len(s, len);
  for (size_t i = 0; i < len; i++)
    put(s, body[i]);
}

static void send_on(struct seedbuf *s, unsigned conn, const struct mim_packet *p) {
  put_packet(s, 0 + 8 * conn, p);
}

static void admin(struct seedbuf *s, const struct mim_packet *p) {
  put_packet(s, 7 + 8 * 2, p);
}

static void auth(struct seedbuf *s, unsigned conn, const char *uid,
                 const char *device, bool dev_auth) {
  char token[MIM_TOKEN_MAX] = "any";
  struct mim_packet p;
  mim_packet_init(&p);
  if (!dev_auth &&
      mim_token_sign(secret, SECRET_LEN, uid, device, START_MS / 1000 + 86400,
                     token, sizeof token) != 0)
    s->ok = false;
  p.cmd = MIM_CMD_AUTH_REQ;
  p.seq = 1;
  p.uid = uid;
  p.device = device;
  p.token = token;
  p.caps = MIM_CAP_BATCH | MIM_CAP_READ;
  send_on(s, conn, &p);
}

#define FLUSH 4
#define TAKE_OR_DONE (4 + 8)
#define DRAIN 5

size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap) {
  static const char *const members[] = {"bob", "carol"};
  struct seedbuf s = {buf, 0, cap, true};
  struct mim_packet p;
  bool dev = i % 2 == 1;

  if (i >= 16)
    return 0;
  /* each scenario with and without dev_auth, default and small limits */
  put(&s, (dev ? 1u : 0u) | (i / 2 % 2 ? 2u : 0u));
  auth(&s, 0, "alice", "phone", dev);
  auth(&s, 4, "bob", "laptop", dev);
  switch (i / 4) {
  case 0: /* c2c: send, push, ack, pull, history, logout */
    mim_packet_init(&p);
    p.cmd = MIM_CMD_C2C_SEND_REQ;
    p.seq = 2;
    p.to = "bob";
    p.content = "hello";
    p.client_msg_id = "m1";
    send_on(&s, 0, &p);
    send_on(&s, 0, &p); /* a retry: deduplicated */
    put(&s, FLUSH);
    put(&s, DRAIN);
    mim_packet_init(&p);
    p.cmd = MIM_CMD_C2C_PUSH_ACK;
    p.msg_id = 1;
    p.inbox_seq = 1;
    send_on(&s, 4, &p);
    mim_packet_init(&p);
    p.cmd = MIM_CMD_PULL_REQ;
    p.seq = 3;
    p.has_after_seq = true;
    p.limit = 10;
    send_on(&s, 4, &p);
    mim_packet_init(&p);
    p.cmd = MIM_CMD_HISTORY_REQ;
    p.seq = 4;
    p.peer = "bob";
    p.limit = 10;
    send_on(&s, 0, &p);
    mim_packet_init(&p);
    p.cmd = MIM_CMD_MARK_READ_REQ; /* bob read it: alice gets a receipt */
    p.seq = 6;
    p.peer = "alice";
    p.conv_seq = 1;
    send_on(&s, 4, &p);
    put(&s, FLUSH);
    mim_packet_init(&p);
    p.cmd = MIM_CMD_CONV_LIST_REQ;
    p.seq = 7;
    p.limit = 10;
    send_on(&s, 4, &p);
    mim_packet_init(&p);
    p.cmd = MIM_CMD_MSG_CHANGE_REQ; /* alice edits, then recalls it */
    p.seq = 8;
    p.msg_id = 1;
    p.type = MIM_CHANGE_EDIT;
    p.peer = "bob";
    p.content = "edited";
    send_on(&s, 0, &p);
    mim_packet_init(&p);
    p.cmd = MIM_CMD_MSG_CHANGE_REQ;
    p.seq = 9;
    p.msg_id = 1;
    p.type = MIM_CHANGE_RECALL;
    p.peer = "bob";
    send_on(&s, 0, &p);
    put(&s, FLUSH);
    mim_packet_init(&p);
    p.cmd = MIM_CMD_LOGOUT_REQ;
    p.seq = 5;
    send_on(&s, 0, &p);
    break;
  case 1: /* groups: create, send, list, add, remove; operator push */
    mim_packet_init(&p);
    p.cmd = MIM_CMD_GROUP_CREATE_REQ;
    p.seq = 2;
    p.group = "g1";
    p.members = members;
    p.n_members = 2;
    send_on(&s, 0, &p);
    put(&s, FLUSH);
    mim_packet_init(&p);
    p.cmd = MIM_CMD_C2G_SEND_REQ;
    p.seq = 3;
    p.group = "g1";
    p.content = "to all";
    send_on(&s, 0, &p);
    mim_packet_init(&p);
    p.cmd = MIM_CMD_GROUP_LIST_REQ;
    p.seq = 4;
    p.group = "g1";
    send_on(&s, 4, &p);
    mim_packet_init(&p);
    p.cmd = MIM_CMD_READ_BY_REQ;
    p.seq = 8;
    p.group = "g1";
    p.conv_seq = 2;
    p.limit = 5;
    send_on(&s, 4, &p);
    mim_packet_init(&p);
    p.cmd = MIM_CMD_GROUP_REMOVE_REQ;
    p.seq = 5;
    p.group = "g1";
    p.members = members + 1;
    p.n_members = 1;
    send_on(&s, 0, &p);
    mim_packet_init(&p);
    p.cmd = MIM_CMD_SERVER_PUSH;
    p.to = "bob";
    p.content = "notice";
    admin(&s, &p);
    mim_packet_init(&p);
    p.cmd = MIM_CMD_PULL_REQ;
    p.uid = "bob";
    admin(&s, &p);
    /* a send on a user's behalf (the HTTP API's), then its retry */
    mim_packet_init(&p);
    p.cmd = MIM_CMD_C2C_SEND_REQ;
    p.from = "alice";
    p.to = "bob";
    p.content = "for alice";
    p.client_msg_id = "op-1";
    admin(&s, &p);
    admin(&s, &p);
    put(&s, DRAIN);
    break;
  case 2: /* pipelined while a batch is out; a second login; a restart */
    put(&s, TAKE_OR_DONE);
    mim_packet_init(&p);
    p.cmd = MIM_CMD_C2C_SEND_REQ;
    p.to = "alice";
    p.content = "x";
    for (unsigned k = 0; k < 6; k++) {
      p.seq = 10 + k;
      send_on(&s, 4, &p);
    }
    mim_packet_init(&p);
    p.cmd = MIM_CMD_HEARTBEAT_REQ;
    send_on(&s, 4, &p);
    auth(&s, 1, "alice", "phone", dev); /* kicks connection 0 */
    put(&s, TAKE_OR_DONE);
    put(&s, 6 + 8 * 20); /* 2 s later */
    put(&s, 7 + 8 * 0);  /* gateway 1 down */
    put(&s, 7 + 8 * 1);  /* and up */
    put(&s, 7 + 8 * (3 + 4 * 2)); /* a restored session on connection 2 */
    put(&s, 0);
    put(&s, DRAIN);
    break;
  case 3: /* closes, garbage, a client sending server commands */
    put(&s, 0 + 8 * 4);
    put(&s, MIM_CMD_C2C_PUSH);
    put(&s, 3);
    put(&s, 0x0a);
    put(&s, 0x05);
    put(&s, 0xff);
    put(&s, 3 + 8 * 0); /* alice's connection closes */
    mim_packet_init(&p);
    p.cmd = MIM_CMD_C2C_SEND_REQ;
    p.seq = 7;
    p.to = "alice";
    p.content = "while away";
    send_on(&s, 4, &p);
    put(&s, FLUSH);
    auth(&s, 0, "alice", "phone", dev);
    put(&s, FLUSH);
    put(&s, DRAIN);
    break;
  }
  return s.ok ? s.len : 1; /* 0 would end the seeds */
}
