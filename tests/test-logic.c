/* The message logic, end to end through the library: real LMDB files in a
 * temporary directory, a fake clock, and a fake gateway that records every
 * effect (the packets decoded back, as a client would see them). */
#include "util/internal.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mim/mim.h>
#include <mim/lmdb.h>
#include <mim/backend.h>

#define GW 1
#define GW2 2
#define MAX_SEEN 4096

static const uint8_t SECRET[] = "0123456789abcdef-test-secret";

/* One packet as a connection received it. */
struct seen {
  uint32_t gateway;
  uint64_t conn;
  uint32_t cmd;   /* SEEN_SESSION for a session effect */
  bool kick;
  struct mim_packet p;
  /* SEEN_SESSION: what the gateway is told */
  char uid[MIM_ID_MAX + 1], device[MIM_ID_MAX + 1];
  uint32_t caps;
  uint8_t ticket[MIM_TICKET_LEN];
  size_t ticket_len;
};

/* Not a client command: marks the logic's MIM_EFFECT_SESSION in `seen`. */
#define SEEN_SESSION 0xffffu

struct fx {
  char *dir;
  struct mim_backend *be;
  struct mim_logic *l;
  int64_t now;
  struct seen seen[MAX_SEEN];
  size_t n_seen;
  bool dev_auth;
  bool fail_commits; /* the wrapping backend fails every commit */
  uint32_t large_min; /* the store's group_large_min; 0: its default */
  size_t read_max;    /* the store's read_bytes_max; 0: its default */
  uint32_t batch_max; /* the logic's batch_max_ops; 0: its default */
};

/* ---- a backend wrapper that can fail commits (fault injection) ---- */

static struct mim_backend_ops wrapped_ops;
static const struct mim_backend_ops *real_ops;
static struct fx *current_fx;

static int failing_commit(void *impl, struct mim_write_batch *b) {
  if (current_fx->fail_commits) {
    mim_write_batch_set_status(b, -MIM_ERR_STORE);
    return -MIM_ERR_STORE;
  }
  return real_ops->commit(impl, b);
}

static void open_logic(struct fx *f) {
  struct mim_logic_config cfg;
  mim_logic_config_init(&cfg);
  cfg.backend = f->be;
  cfg.secret = SECRET;
  cfg.secret_len = sizeof SECRET - 1;
  cfg.dev_auth = f->dev_auth;
  cfg.now_ms = tu_fake_now;
  cfg.clock_user = &f->now;
  if (f->batch_max > 0)
    cfg.batch_max_ops = f->batch_max;
  assert_int_equal(mim_logic_create(&f->l, &cfg), 0);
  assert_int_equal(mim_logic_gateway_up(f->l, GW, "gw-1"), 0);
  assert_int_equal(mim_logic_gateway_up(f->l, GW2, "gw-2"), 0);
}

static void open_store(struct fx *f) {
  struct mim_lmdb_config sc;
  mim_lmdb_config_init(&sc);
  sc.path = f->dir;
  sc.no_sync = true; /* unit tests: durability is the store tests' job */
  if (f->large_min > 0)
    sc.group_large_min = f->large_min;
  if (f->read_max > 0)
    sc.read_bytes_max = f->read_max;
  assert_int_equal(mim_lmdb_open(&f->be, &sc), 0);
  real_ops = f->be->ops;
  wrapped_ops = *real_ops;
  wrapped_ops.commit = failing_commit;
  f->be->ops = &wrapped_ops;
}

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->dir = tu_mkdtemp();
  f->now = 1700000000000;
  f->dev_auth = true;
  current_fx = f;
  open_store(f);
  open_logic(f);
  *state = f;
  return 0;
}

static void clear_seen(struct fx *f) {
  for (size_t i = 0; i < f->n_seen; i++)
    mim_packet_finish(&f->seen[i].p);
  f->n_seen = 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  clear_seen(f);
  mim_logic_destroy(f->l);
  f->be->ops = real_ops;
  mim_backend_destroy(f->be);
  tu_rmdir_free(f->dir);
  free(f);
  return 0;
}

/* Commits pending writes and records every effect, decoding each delivered
 * packet the way the gateway would send it (inbox_seq appended). */
static void collect(struct fx *f);

static void pump(struct fx *f) {
  mim_logic_flush(f->l);
  collect(f);
}

/* Records every effect queued so far (see pump). */
static void collect(struct fx *f) {
  struct mim_effect e;
  while (mim_logic_next_effect(f->l, &e) == 0) {
    if (e.kind == MIM_EFFECT_KICK) {
      assert_true(f->n_seen < MAX_SEEN);
      struct seen *s = &f->seen[f->n_seen++];
      s->gateway = e.gateway;
      s->conn = e.conn_id;
      s->cmd = MIM_CMD_KICK;
      s->kick = true;
      mim_packet_init(&s->p);
      assert_int_equal(mim_packet_decode(&s->p, e.cmd, e.body, e.body_len), 0);
      continue;
    }
    if (e.kind == MIM_EFFECT_SESSION) {
      assert_true(f->n_seen < MAX_SEEN);
      struct seen *s = &f->seen[f->n_seen++];
      memset(s, 0, sizeof *s);
      s->gateway = e.gateway;
      s->conn = e.conn_id;
      s->cmd = SEEN_SESSION;
      mim_packet_init(&s->p);
      assert_true(strlen(e.uid) <= MIM_ID_MAX);
      assert_true(strlen(e.device) <= MIM_ID_MAX);
      strcpy(s->uid, e.uid);
      strcpy(s->device, e.device);
      s->caps = e.caps;
      assert_true(e.ticket_len <= sizeof s->ticket);
      if (e.ticket_len > 0)
        memcpy(s->ticket, e.ticket, e.ticket_len);
      s->ticket_len = e.ticket_len;
      continue;
    }
    if (e.kind != MIM_EFFECT_DELIVER)
      continue;
    for (size_t i = 0; i < e.n_targets; i++) {
      uint8_t frame[70000];
      size_t len;
      assert_int_equal(mim_frame_encode_with_field(
                           frame, sizeof frame, e.cmd, e.body, e.body_len,
                           e.seq_field, e.targets[i].inbox_seq, &len),
                       0);
      assert_true(f->n_seen < MAX_SEEN);
      struct seen *s = &f->seen[f->n_seen++];
      s->gateway = e.gateway;
      s->conn = e.targets[i].conn_id;
      s->cmd = e.cmd;
      s->kick = false;
      mim_packet_init(&s->p);
      assert_int_equal(mim_packet_decode(&s->p, e.cmd, frame + MIM_HEADER_SIZE,
                                         len - MIM_HEADER_SIZE),
                       0);
    }
  }
}

static void feed_on(struct fx *f, uint32_t gw, uint64_t conn,
                    const struct mim_packet *p) {
  uint8_t body[70000];
  size_t len;
  assert_int_equal(mim_packet_encode_body(p, body, sizeof body, &len), 0);
  assert_int_equal(
      mim_logic_receive(f->l, (struct mim_conn_ref){gw, conn}, p->cmd, body, len),
      0);
}

static void feed(struct fx *f, uint64_t conn, const struct mim_packet *p) {
  feed_on(f, GW, conn, p);
}

/* The n-th (0-based) packet of `cmd` received by `conn`, or NULL. */
static struct mim_packet *got(struct fx *f, uint64_t conn, uint32_t cmd,
                              size_t n) {
  for (size_t i = 0; i < f->n_seen; i++)
    if (f->seen[i].conn == conn && f->seen[i].cmd == cmd && n-- == 0)
      return &f->seen[i].p;
  return NULL;
}

static size_t count(struct fx *f, uint64_t conn, uint32_t cmd) {
  size_t n = 0;
  for (size_t i = 0; i < f->n_seen; i++)
    if (f->seen[i].conn == conn && f->seen[i].cmd == cmd)
      n++;
  return n;
}

/* Logs `conn` in as (uid, device) and checks the reply. */
static struct mim_packet *login_dev(struct fx *f, uint64_t conn,
                                    const char *uid, const char *device) {
  struct mim_packet a;
  mim_packet_init(&a);
  a.cmd = MIM_CMD_AUTH_REQ;
  a.uid = uid;
  a.device = device;
  a.token = "token";
  a.seq = 1;
  feed(f, conn, &a);
  pump(f);
  struct mim_packet *r = got(f, conn, MIM_CMD_AUTH_RSP, count(f, conn, MIM_CMD_AUTH_RSP) - 1);
  assert_non_null(r);
  return r;
}

static void login(struct fx *f, uint64_t conn, const char *uid) {
  struct mim_packet *r = login_dev(f, conn, uid, NULL);
  assert_int_equal(r->status, 0);
}

/* The last session effect `conn` of `gw` got, or NULL. */
static struct seen *session_on(struct fx *f, uint32_t gw, uint64_t conn) {
  for (size_t i = f->n_seen; i-- > 0;)
    if (f->seen[i].cmd == SEEN_SESSION && f->seen[i].gateway == gw &&
        f->seen[i].conn == conn)
      return &f->seen[i];
  return NULL;
}

/* Re-registers a session as the gateway would, with the ticket it got. */
static int restore_seen(struct fx *f, uint32_t gw, uint64_t conn,
                        const struct seen *s) {
  assert_non_null(s);
  return mim_logic_session_restore(f->l, (struct mim_conn_ref){gw, conn},
                                   s->uid, s->device, s->caps, s->ticket,
                                   s->ticket_len);
}

static void c2c(struct fx *f, uint64_t conn, const char *to, const char *text,
                const char *cmid, int64_t seq) {
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_C2C_SEND_REQ;
  s.to = to;
  s.content = text;
  s.client_msg_id = cmid;
  s.seq = seq;
  feed(f, conn, &s);
}

static void c2g(struct fx *f, uint64_t conn, const char *group,
                const char *text, int64_t seq) {
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_C2G_SEND_REQ;
  s.group = group;
  s.content = text;
  s.seq = seq;
  feed(f, conn, &s);
}

static void pull_after(struct fx *f, uint64_t conn, uint64_t after,
                       int32_t limit, int64_t seq) {
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_PULL_REQ;
  s.after_seq = after;
  s.has_after_seq = true;
  s.limit = limit;
  s.seq = seq;
  feed(f, conn, &s);
}

static void pull_seed(struct fx *f, uint64_t conn, int32_t limit) {
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_PULL_REQ;
  s.limit = limit;
  feed(f, conn, &s);
}

static void group_req(struct fx *f, uint64_t conn, uint32_t cmd,
                      const char *group, const char *const *members, size_t n,
                      int64_t seq) {
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = cmd;
  s.group = group;
  s.members = members;
  s.n_members = n;
  s.seq = seq;
  feed(f, conn, &s);
}

static struct mim_packet *last_error(struct fx *f, uint64_t conn) {
  size_t n = count(f, conn, MIM_CMD_ERROR);
  return n ? got(f, conn, MIM_CMD_ERROR, n - 1) : NULL;
}

/* ---- authentication ---- */

static void request_before_auth_is_rejected(void **state) {
  struct fx *f = *state;
  c2c(f, 10, "bob", "hi", NULL, 7);
  pump(f);
  struct mim_packet *e = last_error(f, 10);
  assert_non_null(e);
  assert_int_equal(e->status, MIM_ERR_UNAUTHENTICATED);
  assert_int_equal(e->seq, 7);
  assert_int_equal(e->failed_cmd, MIM_CMD_C2C_SEND_REQ);
  assert_false(e->retryable);
  /* nothing was stored for anyone */
  login(f, 11, "bob");
  pull_after(f, 11, 0, 10, 2);
  pump(f);
  assert_int_equal(got(f, 11, MIM_CMD_PULL_RSP, 0)->n_items, 0);
}

static void dev_auth_accepts_the_seed_token(void **state) {
  struct fx *f = *state;
  struct mim_packet *r = login_dev(f, 10, "alice", NULL);
  assert_int_equal(r->status, 0);
  assert_int_equal(r->seq, 1);
  const struct mim_sessions *s = mim_logic_sessions(f->l);
  struct mim_route route;
  assert_int_equal(mim_sessions_lookup(s, (struct mim_conn_ref){GW, 10}, &route), 0);
  assert_string_equal(route.device, MIM_DEFAULT_DEVICE);
}

static void production_auth_checks_tokens(void **state) {
  struct fx *f = *state;
  mim_logic_destroy(f->l);
  f->dev_auth = false;
  open_logic(f);
  char tok[MIM_TOKEN_MAX];
  int64_t now_s = f->now / 1000;
  assert_int_equal(mim_token_sign(SECRET, sizeof SECRET - 1, "alice", "phone",
                                  now_s + 60, tok, sizeof tok), 0);
  struct mim_packet a;
  mim_packet_init(&a);
  a.cmd = MIM_CMD_AUTH_REQ;
  a.uid = "alice";
  a.device = "phone";
  a.token = "token"; /* the seed's literal: refused outside dev mode */
  feed(f, 10, &a);
  a.uid = "mallory"; /* alice's token for another uid */
  a.token = tok;
  feed(f, 11, &a);
  a.uid = "alice";
  feed(f, 12, &a);
  pump(f);
  assert_int_equal(got(f, 10, MIM_CMD_AUTH_RSP, 0)->status,
                   MIM_ERR_TOKEN_INVALID);
  assert_int_equal(got(f, 11, MIM_CMD_AUTH_RSP, 0)->status,
                   MIM_ERR_TOKEN_INVALID);
  assert_int_equal(got(f, 12, MIM_CMD_AUTH_RSP, 0)->status, 0);
  /* the refused connections stay unauthenticated */
  c2c(f, 11, "alice", "x", NULL, 3);
  pump(f);
  assert_int_equal(last_error(f, 11)->status, MIM_ERR_UNAUTHENTICATED);
  /* expiry */
  f->now += 61 * 1000;
  feed(f, 13, &a);
  pump(f);
  assert_int_equal(got(f, 13, MIM_CMD_AUTH_RSP, 0)->status,
                   MIM_ERR_TOKEN_EXPIRED);
}

static void second_auth_on_a_connection_is_refused(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  struct mim_packet *r = login_dev(f, 10, "bob", NULL);
  assert_int_equal(r->status, MIM_ERR_ALREADY_AUTHENTICATED);
  struct mim_route route;
  assert_int_equal(mim_sessions_lookup(mim_logic_sessions(f->l),
                                       (struct mim_conn_ref){GW, 10}, &route), 0);
  assert_string_equal(route.uid, "alice");
}

static void invalid_uid_is_refused(void **state) {
  struct fx *f = *state;
  struct mim_packet *r = login_dev(f, 10, "", NULL);
  assert_int_equal(r->status, MIM_ERR_MALFORMED);
  r = login_dev(f, 11, "has space", NULL);
  assert_int_equal(r->status, MIM_ERR_MALFORMED);
}

static void logout_ends_the_session(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  struct mim_packet o;
  mim_packet_init(&o);
  o.cmd = MIM_CMD_LOGOUT_REQ;
  o.seq = 5;
  feed(f, 10, &o);
  c2c(f, 10, "bob", "after logout", NULL, 6);
  pump(f);
  assert_int_equal(got(f, 10, MIM_CMD_LOGOUT_RSP, 0)->seq, 5);
  assert_int_equal(last_error(f, 10)->status, MIM_ERR_UNAUTHENTICATED);
  assert_int_equal(mim_sessions_count(mim_logic_sessions(f->l)), 0);
}

/* ---- one-to-one ---- */

static void c2c_online_reply_after_commit_and_push(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  login(f, 20, "bob");
  c2c(f, 10, "bob", "hello bob", "m1", 42);
  /* nothing goes out before the commit */
  struct mim_effect e;
  assert_int_equal(mim_logic_next_effect(f->l, &e), -EAGAIN);
  assert_true(mim_logic_has_writes(f->l));
  pump(f);
  struct mim_packet *r = got(f, 10, MIM_CMD_C2C_SEND_RSP, 0);
  assert_non_null(r);
  assert_int_equal(r->seq, 42);
  assert_true(r->msg_id > 0);
  assert_int_equal(r->inbox_seq, 1);
  assert_int_equal(r->ts, f->now);
  struct mim_packet *push = got(f, 20, MIM_CMD_C2C_PUSH, 0);
  assert_non_null(push);
  assert_string_equal(push->from, "alice");
  assert_string_equal(push->to, "bob");
  assert_string_equal(push->content, "hello bob");
  assert_int_equal(push->msg_id, r->msg_id);
  assert_int_equal(push->inbox_seq, 1);
  assert_int_equal(push->seq, 0);
  assert_string_equal(push->client_msg_id, "m1");
  /* the sending connection gets its reply, not a push */
  assert_int_equal(count(f, 10, MIM_CMD_C2C_PUSH), 0);
}

static void forged_from_is_overridden(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  login(f, 20, "bob");
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_C2C_SEND_REQ;
  s.from = "ceo";
  s.to = "bob";
  s.content = "wire the money";
  feed(f, 10, &s);
  pump(f);
  assert_string_equal(got(f, 20, MIM_CMD_C2C_PUSH, 0)->from, "alice");
  pull_after(f, 20, 0, 10, 1);
  pump(f);
  assert_string_equal(got(f, 20, MIM_CMD_PULL_RSP, 0)->items[0].from, "alice");
}

static void c2c_offline_is_pulled_in_order_once(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  char text[32];
  for (int i = 0; i < 5; i++) {
    snprintf(text, sizeof text, "msg %d", i);
    c2c(f, 10, "bob", text, NULL, i + 1);
  }
  pump(f);
  assert_int_equal(count(f, 10, MIM_CMD_C2C_SEND_RSP), 5);
  struct mim_packet *a = login_dev(f, 20, "bob", NULL);
  assert_int_equal(a->last_inbox_seq, 5);
  assert_int_equal(a->ack_seq, 0);
  pull_after(f, 20, 0, 100, 9);
  pump(f);
  struct mim_packet *r = got(f, 20, MIM_CMD_PULL_RSP, 0);
  assert_int_equal(r->seq, 9);
  assert_int_equal(r->n_items, 5);
  assert_false(r->has_more);
  for (size_t i = 0; i < 5; i++) {
    snprintf(text, sizeof text, "msg %zu", i);
    assert_string_equal(r->items[i].content, text);
    assert_int_equal(r->items[i].inbox_seq, i + 1);
    assert_string_equal(r->items[i].from, "alice");
  }
  /* once: pulling after what it has returns nothing */
  pull_after(f, 20, 5, 100, 10);
  pump(f);
  assert_int_equal(got(f, 20, MIM_CMD_PULL_RSP, 1)->n_items, 0);
}

static void pull_pages_with_has_more(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  for (int i = 0; i < 5; i++)
    c2c(f, 10, "bob", "x", NULL, i + 1);
  pump(f);
  login(f, 20, "bob");
  pull_after(f, 20, 0, 2, 1);
  pump(f);
  struct mim_packet *p1 = got(f, 20, MIM_CMD_PULL_RSP, 0);
  assert_int_equal(p1->n_items, 2);
  assert_true(p1->has_more);
  assert_int_equal(p1->items[1].inbox_seq, 2);
  pull_after(f, 20, 2, 2, 2);
  pull_after(f, 20, 4, 2, 3);
  pump(f);
  struct mim_packet *p2 = got(f, 20, MIM_CMD_PULL_RSP, 1);
  struct mim_packet *p3 = got(f, 20, MIM_CMD_PULL_RSP, 2);
  assert_int_equal(p2->items[0].inbox_seq, 3);
  assert_true(p2->has_more);
  assert_int_equal(p3->n_items, 1);
  assert_int_equal(p3->items[0].inbox_seq, 5);
  assert_false(p3->has_more);
  assert_int_equal(p3->last_inbox_seq, 5);
}

static void pull_after_n_acknowledges_n(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  for (int i = 0; i < 4; i++)
    c2c(f, 10, "bob", "x", NULL, i + 1);
  pump(f);
  login(f, 20, "bob");
  pull_after(f, 20, 3, 10, 1);
  pump(f);
  assert_int_equal(got(f, 20, MIM_CMD_PULL_RSP, 0)->n_items, 1);
  /* the cursor is durable: a later login of the device reports it */
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 20});
  pump(f);
  struct mim_packet *a = login_dev(f, 21, "bob", NULL);
  assert_int_equal(a->ack_seq, 3);
  assert_int_equal(a->last_inbox_seq, 4);
}

static void ack_by_inbox_seq_moves_only_this_device(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  login_dev(f, 20, "bob", "phone");
  login_dev(f, 21, "bob", "laptop");
  for (int i = 0; i < 3; i++)
    c2c(f, 10, "bob", "x", NULL, i + 1);
  pump(f);
  assert_int_equal(count(f, 20, MIM_CMD_C2C_PUSH), 3);
  assert_int_equal(count(f, 21, MIM_CMD_C2C_PUSH), 3);
  struct mim_packet ack;
  mim_packet_init(&ack);
  ack.cmd = MIM_CMD_C2C_PUSH_ACK;
  ack.inbox_seq = 2;
  feed(f, 20, &ack);
  ack.inbox_seq = 999; /* beyond what exists: clamped, never past the inbox */
  feed(f, 21, &ack);
  pump(f);
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 20});
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 21});
  pump(f);
  assert_int_equal(login_dev(f, 30, "bob", "phone")->ack_seq, 2);
  assert_int_equal(login_dev(f, 31, "bob", "laptop")->ack_seq, 3);
  assert_int_equal(login_dev(f, 32, "bob", "tablet")->ack_seq, 0);
}

static void seed_ack_by_msg_id_advances_contiguously(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  login(f, 20, "bob");
  for (int i = 0; i < 3; i++)
    c2c(f, 10, "bob", "x", NULL, 0);
  pump(f);
  uint64_t id[3];
  for (size_t i = 0; i < 3; i++)
    id[i] = got(f, 20, MIM_CMD_C2C_PUSH, i)->msg_id;
  struct mim_packet ack;
  mim_packet_init(&ack);
  ack.cmd = MIM_CMD_C2C_PUSH_ACK;
  ack.msg_id = id[1]; /* a gap: seq 1 not acked yet */
  feed(f, 20, &ack);
  pump(f);
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 20});
  pump(f);
  assert_int_equal(login_dev(f, 21, "bob", NULL)->ack_seq, 0);
  /* a fresh connection pulls 1..3; pulling again acknowledges them */
  pull_seed(f, 21, 10);
  pull_seed(f, 21, 10);
  pump(f);
  assert_int_equal(got(f, 21, MIM_CMD_PULL_RSP, 0)->n_items, 3);
  assert_int_equal(got(f, 21, MIM_CMD_PULL_RSP, 1)->n_items, 0);
  /* then a push acked by msg_id continues the cursor without a gap */
  c2c(f, 10, "bob", "y", NULL, 0);
  pump(f);
  struct mim_packet *p = got(f, 21, MIM_CMD_C2C_PUSH, 0);
  assert_int_equal(p->inbox_seq, 4);
  ack.msg_id = p->msg_id;
  feed(f, 21, &ack);
  pump(f);
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 21});
  pump(f);
  assert_int_equal(login_dev(f, 22, "bob", NULL)->ack_seq, 4);
}

static void relogin_reports_acks_not_yet_committed(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  login_dev(f, 20, "bob", "phone");
  for (int i = 0; i < 3; i++)
    c2c(f, 10, "bob", "x", NULL, i + 1);
  pump(f);
  struct mim_packet ack;
  mim_packet_init(&ack);
  ack.cmd = MIM_CMD_C2C_PUSH_ACK;
  ack.inbox_seq = 2;
  feed(f, 20, &ack);
  /* a duplicate login before the ack's cursor write commits */
  struct mim_packet *a = login_dev(f, 21, "bob", "phone");
  assert_int_equal(a->ack_seq, 2);
  ack.inbox_seq = 3;
  feed(f, 21, &ack);
  /* a close and a new login in the same turn of the loop */
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 21});
  a = login_dev(f, 22, "bob", "phone");
  assert_int_equal(a->ack_seq, 3);
  pull_seed(f, 22, 10); /* from the cursor: nothing it acknowledged */
  pump(f);
  assert_int_equal(got(f, 22, MIM_CMD_PULL_RSP, 0)->n_items, 0);
}

/* Takes the next batch by hand and counts its cursor and message ops;
 * commits it and hands it back. */
static void take_one(struct fx *f, size_t *cursors, size_t *messages) {
  struct mim_write_batch *b;
  assert_int_equal(mim_logic_take_batch(f->l, &b), 0);
  *cursors = *messages = 0;
  for (size_t i = 0; i < mim_write_batch_count(b); i++) {
    struct mim_write_op op;
    assert_int_equal(mim_write_batch_op(b, i, &op), 0);
    *cursors += op.kind == MIM_OP_CURSOR;
    *messages += op.kind == MIM_OP_MESSAGE;
  }
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  assert_int_equal(mim_logic_batch_done(f->l, b), 0);
}

static void ack_inbox_seq(struct fx *f, uint64_t conn, uint64_t seq) {
  struct mim_packet ack;
  mim_packet_init(&ack);
  ack.cmd = MIM_CMD_C2C_PUSH_ACK;
  ack.inbox_seq = seq;
  feed(f, conn, &ack);
}

static void cursors_ride_with_messages_at_most_once_per_interval(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  login(f, 20, "bob");
  c2c(f, 10, "bob", "1", NULL, 1);
  pump(f);
  size_t cursors, messages;
  /* an ack with nothing else to write is written at once */
  ack_inbox_seq(f, 20, 1);
  take_one(f, &cursors, &messages);
  assert_int_equal(cursors, 1);
  /* within the interval, a batch of messages leaves the next ack behind */
  c2c(f, 10, "bob", "2", NULL, 2);
  pump(f);
  ack_inbox_seq(f, 20, 2);
  c2c(f, 10, "bob", "3", NULL, 3);
  f->now += 199;
  take_one(f, &cursors, &messages);
  assert_int_equal(messages, 1);
  assert_int_equal(cursors, 0);
  /* once the interval is over the next batch takes it along, with
   * alice's (her own sends count as delivered to her device) */
  c2c(f, 10, "bob", "4", NULL, 4);
  f->now += 1;
  take_one(f, &cursors, &messages);
  assert_int_equal(messages, 1);
  assert_int_equal(cursors, 2);
  /* a closing connection's ack is written with the very next batch;
   * alice's, moved by message 5, waits for the interval */
  ack_inbox_seq(f, 20, 4);
  c2c(f, 10, "bob", "5", NULL, 5);
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 20});
  take_one(f, &cursors, &messages);
  assert_int_equal(cursors, 1);
  pump(f);
  assert_int_equal(login_dev(f, 21, "bob", NULL)->ack_seq, 4);
}

static void seed_pull_twice_returns_new_messages_only(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  c2c(f, 10, "bob", "one", NULL, 0);
  c2c(f, 10, "bob", "two", NULL, 0);
  pump(f);
  login(f, 20, "bob");
  pull_seed(f, 20, 10);
  pump(f);
  struct mim_packet *r1 = got(f, 20, MIM_CMD_PULL_RSP, 0);
  assert_int_equal(r1->n_items, 2);
  assert_string_equal(r1->items[0].content, "one");
  pull_seed(f, 20, 10);
  pump(f);
  assert_int_equal(got(f, 20, MIM_CMD_PULL_RSP, 1)->n_items, 0);
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 20});
  pump(f);
  login(f, 21, "bob");
  c2c(f, 10, "bob", "three", NULL, 0);
  pump(f);
  pull_seed(f, 21, 10);
  pump(f);
  struct mim_packet *r3 = got(f, 21, MIM_CMD_PULL_RSP, 0);
  assert_int_equal(r3->n_items, 1);
  assert_string_equal(r3->items[0].content, "three");
}

static void seed_pull_after_msg_id_makes_progress(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  for (int i = 0; i < 5; i++)
    c2c(f, 10, "bob", "x", NULL, i + 1);
  pump(f);
  uint64_t third = got(f, 10, MIM_CMD_C2C_SEND_RSP, 2)->msg_id;
  login(f, 20, "bob");
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_PULL_REQ;
  s.msg_id = third; /* seed: "after this msg_id" */
  s.limit = 2;
  /* page 1 (seq 1-2) is all at or before it: empty, but the next page
   * must move on rather than read the same entries forever */
  for (int i = 0; i < 3; i++)
    feed(f, 20, &s);
  pump(f);
  assert_int_equal(got(f, 20, MIM_CMD_PULL_RSP, 0)->n_items, 0);
  assert_true(got(f, 20, MIM_CMD_PULL_RSP, 0)->has_more);
  struct mim_packet *p2 = got(f, 20, MIM_CMD_PULL_RSP, 1);
  assert_int_equal(p2->n_items, 1);
  assert_int_equal(p2->items[0].inbox_seq, 4);
  struct mim_packet *p3 = got(f, 20, MIM_CMD_PULL_RSP, 2);
  assert_int_equal(p3->n_items, 1);
  assert_int_equal(p3->items[0].inbox_seq, 5);
}

static void another_users_inbox_is_never_readable(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  c2c(f, 10, "bob", "secret for bob", NULL, 1);
  pump(f);
  login(f, 30, "mallory");
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_PULL_REQ;
  s.uid = "bob";
  s.limit = 10;
  feed(f, 30, &s);
  struct mim_packet h;
  mim_packet_init(&h);
  h.cmd = MIM_CMD_HISTORY_REQ;
  h.peer = "alice";
  h.seq = 2;
  feed(f, 30, &h);
  pump(f);
  assert_int_equal(got(f, 30, MIM_CMD_PULL_RSP, 0)->n_items, 0);
  assert_int_equal(got(f, 30, MIM_CMD_HISTORY_RSP, 0)->n_items, 0);
}

static void own_sends_count_as_delivered(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  c2c(f, 10, "bob", "a", NULL, 1);
  c2c(f, 10, "bob", "b", NULL, 2);
  pump(f);
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 10});
  pump(f);
  struct mim_packet *a = login_dev(f, 11, "alice", NULL);
  assert_int_equal(a->last_inbox_seq, 2);
  assert_int_equal(a->ack_seq, 2);
}

static void send_to_self_is_one_inbox_entry(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  c2c(f, 10, "alice", "note to self", NULL, 1);
  pump(f);
  assert_int_equal(got(f, 10, MIM_CMD_C2C_SEND_RSP, 0)->inbox_seq, 1);
  pull_after(f, 10, 0, 10, 2);
  pump(f);
  assert_int_equal(got(f, 10, MIM_CMD_PULL_RSP, 0)->n_items, 1);
}

/* ---- devices and sessions ---- */

static void sender_other_devices_get_the_push(void **state) {
  struct fx *f = *state;
  login_dev(f, 10, "alice", "phone");
  login_dev(f, 11, "alice", "laptop");
  login(f, 20, "bob");
  c2c(f, 10, "bob", "sync me", NULL, 1);
  pump(f);
  struct mim_packet *p = got(f, 11, MIM_CMD_C2C_PUSH, 0);
  assert_non_null(p);
  assert_string_equal(p->from, "alice");
  assert_string_equal(p->to, "bob");
  assert_int_equal(p->inbox_seq, got(f, 10, MIM_CMD_C2C_SEND_RSP, 0)->inbox_seq);
  assert_int_equal(count(f, 10, MIM_CMD_C2C_PUSH), 0);
  assert_int_equal(count(f, 20, MIM_CMD_C2C_PUSH), 1);
}

static void duplicate_login_kicks_the_first(void **state) {
  struct fx *f = *state;
  login_dev(f, 10, "alice", "phone");
  login_dev(f, 11, "alice", "laptop");
  login_dev(f, 12, "alice", "phone"); /* same device again */
  size_t kicks = 0;
  for (size_t i = 0; i < f->n_seen; i++)
    if (f->seen[i].kick) {
      kicks++;
      assert_int_equal(f->seen[i].conn, 10);
      assert_int_equal(f->seen[i].p.reason, MIM_KICK_OTHER_LOGIN);
    }
  assert_int_equal(kicks, 1);
  /* the kicked connection is no longer authenticated */
  c2c(f, 10, "bob", "x", NULL, 4);
  pump(f);
  assert_int_equal(last_error(f, 10)->status, MIM_ERR_UNAUTHENTICATED);
  /* its late close does not remove the newer route */
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 10});
  login(f, 20, "bob");
  c2c(f, 20, "alice", "still there?", NULL, 1);
  pump(f);
  assert_int_equal(count(f, 12, MIM_CMD_C2C_PUSH), 1);
  assert_int_equal(count(f, 11, MIM_CMD_C2C_PUSH), 1);
  assert_int_equal(count(f, 10, MIM_CMD_C2C_PUSH), 0);
}

static void gateway_down_drops_its_routes_not_messages(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  struct mim_packet a;
  mim_packet_init(&a);
  a.cmd = MIM_CMD_AUTH_REQ;
  a.uid = "bob";
  a.token = "t";
  feed_on(f, GW2, 20, &a);
  pump(f);
  assert_int_equal(mim_sessions_count(mim_logic_sessions(f->l)), 2);
  struct seen bob = *session_on(f, GW2, 20);
  assert_int_equal(mim_logic_gateway_down(f->l, GW2), 0);
  assert_int_equal(mim_sessions_count(mim_logic_sessions(f->l)), 1);
  c2c(f, 10, "bob", "while away", NULL, 1);
  pump(f);
  assert_int_equal(count(f, 20, MIM_CMD_C2C_PUSH), 0);
  assert_int_equal(mim_logic_receive(f->l, (struct mim_conn_ref){GW2, 20},
                                     MIM_CMD_HEARTBEAT_REQ, NULL, 0), -ENOENT);
  /* it comes back and its client re-registers: the message waits */
  assert_int_equal(mim_logic_gateway_up(f->l, GW2, "gw-2"), 0);
  assert_int_equal(restore_seen(f, GW2, 20, &bob), 0);
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_PULL_REQ;
  p.has_after_seq = true;
  feed_on(f, GW2, 20, &p);
  pump(f);
  assert_int_equal(got(f, 20, MIM_CMD_PULL_RSP, 0)->n_items, 1);
}

static void restored_sessions_receive_after_logic_restart(void **state) {
  struct fx *f = *state;
  struct mim_packet a;
  mim_packet_init(&a);
  a.cmd = MIM_CMD_AUTH_REQ;
  a.uid = "bob";
  a.token = "t";
  feed_on(f, GW2, 21, &a); /* an older login of bob, replaced below */
  pump(f);
  struct seen bob21 = *session_on(f, GW2, 21);
  login(f, 10, "alice");
  login(f, 20, "bob");
  pump(f);
  struct seen alice = *session_on(f, GW, 10), bob = *session_on(f, GW, 20);
  /* logicd restarts on the same store; the gateway re-registers */
  mim_logic_destroy(f->l);
  clear_seen(f);
  open_logic(f);
  assert_int_equal(restore_seen(f, GW, 10, &alice), 0);
  assert_int_equal(restore_seen(f, GW, 20, &bob), 0);
  /* a stale duplicate of bob's session is kicked, bob's route stays */
  assert_int_equal(restore_seen(f, GW2, 21, &bob21), 0);
  c2c(f, 10, "bob", "after restart", NULL, 1);
  pump(f);
  assert_int_equal(count(f, 20, MIM_CMD_C2C_PUSH), 1);
  assert_int_equal(count(f, 21, MIM_CMD_KICK), 1);
  assert_int_equal(count(f, 21, MIM_CMD_C2C_PUSH), 0);
}

/* ---- groups ---- */

static void make_team(struct fx *f) {
  const char *m[] = {"bob", "carol"};
  login(f, 10, "alice");
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "team", m, 2, 100);
  pump(f);
  struct mim_packet *r = got(f, 10, MIM_CMD_GROUP_CREATE_RSP, 0);
  assert_non_null(r);
  assert_int_equal(r->seq, 100);
  assert_int_equal(r->n_members, 3); /* the creator joins what they create */
}

static void c2g_fans_out_to_members_and_sender_devices(void **state) {
  struct fx *f = *state;
  make_team(f);
  login_dev(f, 11, "alice", "laptop");
  login(f, 20, "bob");
  /* carol is offline */
  c2g(f, 10, "team", "hello team", 7);
  pump(f);
  struct mim_packet *r = got(f, 10, MIM_CMD_C2G_SEND_RSP, 0);
  assert_non_null(r);
  assert_int_equal(r->seq, 7);
  struct mim_packet *pb = got(f, 20, MIM_CMD_C2G_PUSH, 0);
  assert_non_null(pb);
  assert_string_equal(pb->group, "team");
  assert_string_equal(pb->from, "alice");
  assert_int_equal(pb->msg_id, r->msg_id);
  assert_non_null(got(f, 11, MIM_CMD_C2G_PUSH, 0));
  /* the sending connection's only group push is the creation notice */
  assert_int_equal(count(f, 10, MIM_CMD_C2G_PUSH), 1);
  assert_int_equal(got(f, 10, MIM_CMD_C2G_PUSH, 0)->type, MIM_MSG_SYSTEM);
  login(f, 30, "carol");
  pull_after(f, 30, 0, 10, 1);
  pump(f);
  struct mim_packet *pc = got(f, 30, MIM_CMD_PULL_RSP, 0);
  assert_int_equal(pc->n_items, 2); /* the creation notice, the message */
  assert_int_equal(pc->items[0].type, MIM_MSG_SYSTEM);
  assert_string_equal(pc->items[1].group, "team");
  assert_string_equal(pc->items[1].content, "hello team");
}

static void non_member_group_send_is_refused(void **state) {
  struct fx *f = *state;
  make_team(f);
  login(f, 40, "mallory");
  c2g(f, 40, "team", "let me in", 3);
  c2g(f, 40, "nowhere", "hello?", 4);
  pump(f);
  struct mim_packet *e1 = got(f, 40, MIM_CMD_ERROR, 0);
  struct mim_packet *e2 = got(f, 40, MIM_CMD_ERROR, 1);
  assert_int_equal(e1->status, MIM_ERR_NOT_MEMBER);
  assert_int_equal(e1->seq, 3);
  assert_false(e1->retryable);
  assert_int_equal(e2->status, MIM_ERR_NO_SUCH_GROUP);
  login(f, 20, "bob");
  pull_after(f, 20, 0, 10, 1);
  pump(f);
  /* only the group's creation notice: nothing of mallory's */
  struct mim_packet *pr = got(f, 20, MIM_CMD_PULL_RSP, 0);
  assert_int_equal(pr->n_items, 1);
  assert_int_equal(pr->items[0].type, MIM_MSG_SYSTEM);
}

static void late_joiner_does_not_see_earlier_history(void **state) {
  struct fx *f = *state;
  make_team(f);
  c2g(f, 10, "team", "before dave", 1);
  pump(f);
  const char *dave[] = {"dave"};
  group_req(f, 10, MIM_CMD_GROUP_ADD_REQ, "team", dave, 1, 2);
  pump(f);
  assert_non_null(got(f, 10, MIM_CMD_GROUP_ADD_RSP, 0));
  c2g(f, 10, "team", "after dave", 3);
  pump(f);
  login(f, 50, "dave");
  struct mim_packet h;
  mim_packet_init(&h);
  h.cmd = MIM_CMD_HISTORY_REQ;
  h.group = "team";
  h.limit = 10;
  feed(f, 50, &h);
  pull_after(f, 50, 0, 10, 2);
  pump(f);
  /* from the notice of dave's joining on, nothing before it */
  struct mim_packet *hr = got(f, 50, MIM_CMD_HISTORY_RSP, 0);
  assert_int_equal(hr->n_items, 2);
  assert_string_equal(hr->items[0].content, "after dave");
  assert_int_equal(hr->items[1].type, MIM_MSG_SYSTEM);
  struct mim_packet *pr = got(f, 50, MIM_CMD_PULL_RSP, 0);
  assert_int_equal(pr->n_items, 2);
  assert_int_equal(pr->items[0].type, MIM_MSG_SYSTEM);
  assert_string_equal(pr->items[1].content, "after dave");
}

static void group_management_rules(void **state) {
  struct fx *f = *state;
  make_team(f);
  login(f, 20, "bob");
  login(f, 40, "mallory");
  const char *alice[] = {"alice"};
  const char *bob[] = {"bob"};
  const char *mal[] = {"mallory"};
  group_req(f, 40, MIM_CMD_GROUP_ADD_REQ, "team", mal, 1, 1);   /* outsider */
  group_req(f, 20, MIM_CMD_GROUP_REMOVE_REQ, "team", alice, 1, 2); /* others */
  group_req(f, 20, MIM_CMD_GROUP_REMOVE_REQ, "team", bob, 1, 3);   /* leave */
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "team", NULL, 0, 4);  /* exists */
  pump(f);
  assert_int_equal(got(f, 40, MIM_CMD_ERROR, 0)->status, MIM_ERR_NOT_MEMBER);
  assert_int_equal(got(f, 20, MIM_CMD_ERROR, 0)->status, MIM_ERR_FORBIDDEN);
  struct mim_packet *left = got(f, 20, MIM_CMD_GROUP_REMOVE_RSP, 0);
  assert_int_equal(left->n_members, 1);
  assert_string_equal(left->members[0], "bob");
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 0)->status, MIM_ERR_GROUP_EXISTS);
  struct mim_packet l;
  mim_packet_init(&l);
  l.cmd = MIM_CMD_GROUP_LIST_REQ;
  l.group = "team";
  feed(f, 10, &l);
  feed(f, 20, &l); /* bob left: no longer allowed to look */
  pump(f);
  struct mim_packet *list = got(f, 10, MIM_CMD_GROUP_LIST_RSP, 0);
  assert_int_equal(list->n_members, 2);
  assert_int_equal(got(f, 20, MIM_CMD_ERROR, 1)->status, MIM_ERR_NOT_MEMBER);
}

static void logout_takes_effect_in_request_order(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  const char *none[] = {"bob"};
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "club", none, 1, 1);
  struct mim_packet l;
  mim_packet_init(&l);
  l.cmd = MIM_CMD_GROUP_LIST_REQ;
  l.group = "club";
  l.seq = 2;
  feed(f, 10, &l);
  struct mim_packet o;
  mim_packet_init(&o);
  o.cmd = MIM_CMD_LOGOUT_REQ;
  o.seq = 3;
  feed(f, 10, &o);
  c2c(f, 10, "bob", "after logout", NULL, 4); /* refused: it came after */
  pump(f);
  size_t base = 0;
  while (f->seen[base].cmd != MIM_CMD_GROUP_CREATE_RSP)
    base++;
  assert_int_equal(f->seen[base + 1].cmd, MIM_CMD_GROUP_LIST_RSP);
  assert_int_equal(f->seen[base + 1].p.n_members, 2); /* ran as alice */
  assert_int_equal(f->seen[base + 2].cmd, MIM_CMD_LOGOUT_RSP);
  assert_int_equal(f->seen[base + 2].p.seq, 3);
  /* the gateway hears "no longer authenticated" right after the reply */
  assert_int_equal(f->seen[base + 3].cmd, SEEN_SESSION);
  assert_string_equal(f->seen[base + 3].uid, "");
  assert_int_equal(f->seen[base + 4].cmd, MIM_CMD_ERROR);
  assert_int_equal(f->seen[base + 4].p.status, MIM_ERR_UNAUTHENTICATED);
  assert_int_equal(f->seen[base + 4].p.seq, 4);
  assert_int_equal(mim_sessions_count(mim_logic_sessions(f->l)), 0);
  /* and the connection may log in again afterwards */
  login(f, 10, "alice");
}

static void group_change_sees_the_connections_own_create(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  const char *bob[] = {"bob"};
  const char *carol[] = {"carol"};
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "fresh", bob, 1, 1);
  group_req(f, 10, MIM_CMD_GROUP_ADD_REQ, "fresh", carol, 1, 2); /* before
                                                         the create commits */
  pump(f);
  assert_int_equal(count(f, 10, MIM_CMD_ERROR), 0);
  struct mim_packet *r = got(f, 10, MIM_CMD_GROUP_ADD_RSP, 0);
  assert_non_null(r);
  assert_int_equal(r->seq, 2);
  assert_int_equal(r->n_members, 1);
  assert_string_equal(r->members[0], "carol");
}

static void admin_reads_history(void **state) {
  struct fx *f = *state;
  make_team(f);
  c2g(f, 10, "team", "for the record", 1);
  c2c(f, 10, "bob", "private", NULL, 2);
  pump(f);
  struct mim_packet h;
  mim_packet_init(&h);
  h.cmd = MIM_CMD_HISTORY_REQ;
  h.group = "team";
  uint8_t body[256];
  size_t len;
  assert_int_equal(mim_packet_encode_body(&h, body, sizeof body, &len), 0);
  assert_int_equal(mim_logic_admin(f->l, 5, h.cmd, body, len), 0);
  h.group = NULL;
  h.uid = "bob";
  h.peer = "alice";
  assert_int_equal(mim_packet_encode_body(&h, body, sizeof body, &len), 0);
  assert_int_equal(mim_logic_admin(f->l, 6, h.cmd, body, len), 0);
  struct mim_effect e;
  int seen = 0;
  while (mim_logic_next_effect(f->l, &e) == 0) {
    if (e.kind != MIM_EFFECT_ADMIN_REPLY)
      continue;
    assert_int_equal(e.cmd, MIM_CMD_HISTORY_RSP);
    struct mim_packet r;
    mim_packet_init(&r);
    assert_int_equal(mim_packet_decode(&r, e.cmd, e.body, e.body_len), 0);
    /* the group's history ends with its creation notice */
    assert_int_equal(r.n_items, e.req_id == 5 ? 2 : 1);
    assert_string_equal(r.items[0].content,
                        e.req_id == 5 ? "for the record" : "private");
    mim_packet_finish(&r);
    seen++;
  }
  assert_int_equal(seen, 2);
}

/* ---- dedup ---- */

static void retry_in_same_batch_shares_the_outcome(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  login(f, 20, "bob");
  c2c(f, 10, "bob", "once", "cm-1", 1);
  c2c(f, 10, "bob", "once", "cm-1", 2); /* before the first committed */
  pump(f);
  struct mim_packet *r1 = got(f, 10, MIM_CMD_C2C_SEND_RSP, 0);
  struct mim_packet *r2 = got(f, 10, MIM_CMD_C2C_SEND_RSP, 1);
  assert_int_equal(r1->seq, 1);
  assert_int_equal(r2->seq, 2);
  assert_int_equal(r1->msg_id, r2->msg_id);
  assert_int_equal(count(f, 20, MIM_CMD_C2C_PUSH), 1);
}

static void retry_after_commit_returns_the_original(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  login(f, 20, "bob");
  c2c(f, 10, "bob", "once", "cm-2", 1);
  pump(f);
  /* the reply was lost; the client reconnects and retries */
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 10});
  login(f, 11, "alice");
  c2c(f, 11, "bob", "once", "cm-2", 1);
  pump(f);
  assert_int_equal(got(f, 11, MIM_CMD_C2C_SEND_RSP, 0)->msg_id,
                   got(f, 10, MIM_CMD_C2C_SEND_RSP, 0)->msg_id);
  assert_int_equal(got(f, 11, MIM_CMD_C2C_SEND_RSP, 0)->inbox_seq, 1);
  assert_int_equal(count(f, 20, MIM_CMD_C2C_PUSH), 1);
  pull_after(f, 20, 0, 10, 5);
  pump(f);
  assert_int_equal(got(f, 20, MIM_CMD_PULL_RSP, 0)->n_items, 1);
}

static void retry_with_other_content_is_an_error(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  c2c(f, 10, "bob", "first", "cm-3", 1);
  c2c(f, 10, "bob", "changed", "cm-3", 2); /* in flight */
  pump(f);
  c2c(f, 10, "carol", "first", "cm-3", 3); /* committed, other target */
  pump(f);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 0)->status, MIM_ERR_DEDUP_CONFLICT);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 0)->seq, 2);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 1)->status, MIM_ERR_DEDUP_CONFLICT);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 1)->seq, 3);
}

static void c2c_typed(struct fx *f, uint64_t conn, const char *cmid,
                      uint32_t type, int64_t seq) {
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_C2C_SEND_REQ;
  s.to = "bob";
  s.content = "same";
  s.type = type;
  s.client_msg_id = cmid;
  s.seq = seq;
  feed(f, conn, &s);
}

/* One dedup rule at both moments: a retry whose type differs is a
 * conflict while the first send is in flight and after it committed; the
 * same message again is a duplicate. */
static void retry_with_other_type_is_an_error_at_both_moments(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  c2c_typed(f, 10, "cm-t", MIM_MSG_TEXT, 1);
  c2c_typed(f, 10, "cm-t", MIM_MSG_CUSTOM, 2); /* in flight */
  pump(f);
  c2c_typed(f, 10, "cm-t", MIM_MSG_CUSTOM, 3); /* committed */
  pump(f);
  c2c_typed(f, 10, "cm-t", MIM_MSG_TEXT, 4); /* the same message again */
  pump(f);
  assert_int_equal(count(f, 10, MIM_CMD_ERROR), 2);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 0)->status, MIM_ERR_DEDUP_CONFLICT);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 0)->seq, 2);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 1)->status, MIM_ERR_DEDUP_CONFLICT);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 1)->seq, 3);
  assert_int_equal(got(f, 10, MIM_CMD_C2C_SEND_RSP, 1)->msg_id,
                   got(f, 10, MIM_CMD_C2C_SEND_RSP, 0)->msg_id);
}

/* The rule both moments share (logic in flight, the store after commit):
 * every field a retry must repeat, payload included. */
static void dedup_rule_compares_every_field(void **state) {
  (void)state;
  static const uint8_t p1[] = {1, 2}, p2[] = {1, 3};
  struct mim_message_in a = {
      .type = MIM_MSG_TEXT, .conv_kind = MIM_CONV_C2C, .sender = "alice",
      .peer = "bob", .content = (const uint8_t *)"hi", .content_len = 2,
      .payload = p1, .payload_len = 2};
  struct mim_message_in b = a;
  assert_true(mim__message_same(&a, &b));
  b.sender_device = "other"; /* the same user's other device may retry */
  assert_true(mim__message_same(&a, &b));
  b = a;
  b.payload = p2;
  assert_false(mim__message_same(&a, &b));
  b.payload_len = 0;
  assert_false(mim__message_same(&a, &b));
  b = a;
  b.content = (const uint8_t *)"ho";
  assert_false(mim__message_same(&a, &b));
  b = a;
  b.peer = "carol";
  assert_false(mim__message_same(&a, &b));
  b = a;
  b.type = MIM_MSG_CUSTOM;
  assert_false(mim__message_same(&a, &b));
  b = a;
  b.conv_kind = MIM_CONV_GROUP;
  b.group = "g";
  assert_false(mim__message_same(&a, &b));
  a.payload = NULL; /* NULL bytes and strings are empty */
  a.payload_len = 0;
  a.group = NULL;
  b = a;
  b.payload = (const uint8_t *)"";
  b.group = "";
  assert_true(mim__message_same(&a, &b));
}

static void seed_sends_without_client_msg_id_are_never_merged(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  c2c(f, 10, "bob", "same", NULL, 0);
  c2c(f, 10, "bob", "same", NULL, 0);
  pump(f);
  assert_int_not_equal(got(f, 10, MIM_CMD_C2C_SEND_RSP, 0)->msg_id,
                       got(f, 10, MIM_CMD_C2C_SEND_RSP, 1)->msg_id);
}

/* ---- order, limits, errors ---- */

static void replies_leave_in_request_order(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  size_t before = f->n_seen;
  c2c(f, 10, "bob", "slow: needs a commit", NULL, 1);
  struct mim_packet hb;
  mim_packet_init(&hb);
  hb.cmd = MIM_CMD_HEARTBEAT_REQ;
  feed(f, 10, &hb); /* answerable at once, but must wait its turn */
  pull_after(f, 10, 0, 10, 3);
  pump(f);
  assert_int_equal(f->n_seen - before, 3);
  assert_int_equal(f->seen[before].cmd, MIM_CMD_C2C_SEND_RSP);
  assert_int_equal(f->seen[before + 1].cmd, MIM_CMD_HEARTBEAT_RSP);
  assert_int_equal(f->seen[before + 2].cmd, MIM_CMD_PULL_RSP);
  /* and the pull read its own write */
  assert_int_equal(f->seen[before + 2].p.n_items, 1);
}

static void malformed_and_unknown_requests_get_errors(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  struct mim_conn_ref c = {GW, 10};
  assert_int_equal(mim_logic_receive(f->l, c, MIM_CMD_C2C_SEND_REQ, garbage,
                                     sizeof garbage), 0);
  assert_int_equal(mim_logic_receive(f->l, c, 999, NULL, 0), 0);
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_C2C_PUSH; /* a server-to-client command */
  feed(f, 10, &s);
  c2c(f, 10, "", "no receiver", NULL, 4);
  pump(f);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 0)->status, MIM_ERR_MALFORMED);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 1)->status, MIM_ERR_UNKNOWN_CMD);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 1)->failed_cmd, 999);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 2)->status, MIM_ERR_UNKNOWN_CMD);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 3)->status, MIM_ERR_MALFORMED);
  /* the connection still works */
  c2c(f, 10, "bob", "fine", NULL, 5);
  pump(f);
  assert_int_equal(got(f, 10, MIM_CMD_C2C_SEND_RSP, 0)->seq, 5);
}

static void oversized_content_is_refused(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  char *big = malloc(40 * 1024);
  assert_non_null(big);
  memset(big, 'a', 40 * 1024 - 1);
  big[40 * 1024 - 1] = '\0';
  c2c(f, 10, "bob", big, NULL, 1);
  free(big);
  pump(f);
  assert_int_equal(last_error(f, 10)->status, MIM_ERR_TOO_LARGE);
}

static void flood_is_rate_limited_then_recovers(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  for (int i = 0; i < 450; i++) {
    c2c(f, 10, "bob", "spam", NULL, i + 1);
    if (i % 100 == 99)
      pump(f); /* keep under the pending-request bound */
  }
  pump(f);
  size_t ok = count(f, 10, MIM_CMD_C2C_SEND_RSP);
  size_t limited = count(f, 10, MIM_CMD_ERROR);
  assert_int_equal(ok, 400); /* the burst */
  assert_int_equal(limited, 50);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 0)->status, MIM_ERR_RATE_LIMITED);
  assert_true(got(f, 10, MIM_CMD_ERROR, 0)->retryable);
  f->now += 1000; /* a second later: 200 more tokens */
  c2c(f, 10, "bob", "later", NULL, 999);
  pump(f);
  assert_int_equal(count(f, 10, MIM_CMD_C2C_SEND_RSP), 401);
}

static void failed_commit_is_a_retryable_error_and_pushes_nothing(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  login(f, 20, "bob");
  f->fail_commits = true;
  c2c(f, 10, "bob", "lost?", "cm-f", 1);
  pump(f);
  struct mim_packet *e = last_error(f, 10);
  assert_non_null(e);
  assert_int_equal(e->status, MIM_ERR_STORE);
  assert_true(e->retryable);
  assert_int_equal(count(f, 20, MIM_CMD_C2C_PUSH), 0);
  /* the retry after the store recovers is stored exactly once */
  f->fail_commits = false;
  c2c(f, 10, "bob", "lost?", "cm-f", 2);
  pump(f);
  assert_non_null(got(f, 10, MIM_CMD_C2C_SEND_RSP, 0));
  assert_int_equal(count(f, 20, MIM_CMD_C2C_PUSH), 1);
}

static void closed_connection_loses_nothing_it_sent(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  c2c(f, 10, "bob", "sent then gone", NULL, 1);
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 10});
  pump(f); /* the write still commits; its reply has nowhere to go */
  assert_int_equal(count(f, 10, MIM_CMD_C2C_SEND_RSP), 0);
  login(f, 20, "bob");
  pull_after(f, 20, 0, 10, 1);
  pump(f);
  assert_int_equal(got(f, 20, MIM_CMD_PULL_RSP, 0)->n_items, 1);
}

/* ---- history, admin, the seed client ---- */

static void c2c_history_is_newest_first_for_both_sides(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  login(f, 20, "bob");
  c2c(f, 10, "bob", "1", NULL, 1);
  pump(f);
  c2c(f, 20, "alice", "2", NULL, 1);
  pump(f);
  c2c(f, 10, "bob", "3", NULL, 2);
  pump(f);
  struct mim_packet h;
  mim_packet_init(&h);
  h.cmd = MIM_CMD_HISTORY_REQ;
  h.peer = "alice";
  h.limit = 2;
  feed(f, 20, &h);
  pump(f);
  struct mim_packet *r = got(f, 20, MIM_CMD_HISTORY_RSP, 0);
  assert_int_equal(r->n_items, 2);
  assert_string_equal(r->items[0].content, "3");
  assert_string_equal(r->items[1].content, "2");
  assert_true(r->has_more);
  h.before_conv_seq = r->items[1].conv_seq;
  feed(f, 20, &h);
  pump(f);
  struct mim_packet *r2 = got(f, 20, MIM_CMD_HISTORY_RSP, 1);
  assert_int_equal(r2->n_items, 1);
  assert_string_equal(r2->items[0].content, "1");
}

static void admin_creates_groups_and_pushes(void **state) {
  struct fx *f = *state;
  login(f, 20, "bob");
  const char *m[] = {"bob", "carol"};
  struct mim_packet g;
  mim_packet_init(&g);
  g.cmd = MIM_CMD_GROUP_CREATE_REQ;
  g.group = "ops";
  g.members = m;
  g.n_members = 2;
  uint8_t body[1024];
  size_t len;
  assert_int_equal(mim_packet_encode_body(&g, body, sizeof body, &len), 0);
  assert_int_equal(mim_logic_admin(f->l, 77, g.cmd, body, len), 0);
  struct mim_packet sp;
  mim_packet_init(&sp);
  sp.cmd = MIM_CMD_SERVER_PUSH;
  sp.members = m;
  sp.n_members = 2;
  sp.content = "maintenance at 5";
  sp.payload = (const uint8_t *)"\x01\x02";
  sp.payload_len = 2;
  assert_int_equal(mim_packet_encode_body(&sp, body, sizeof body, &len), 0);
  assert_int_equal(mim_logic_admin(f->l, 78, sp.cmd, body, len), 0);
  mim_logic_flush(f->l);
  struct mim_effect e;
  bool saw77 = false, saw78 = false;
  size_t pushes = 0;
  while (mim_logic_next_effect(f->l, &e) == 0) {
    if (e.kind == MIM_EFFECT_ADMIN_REPLY && e.req_id == 77) {
      saw77 = true;
      assert_int_equal(e.cmd, MIM_CMD_GROUP_CREATE_RSP);
    } else if (e.kind == MIM_EFFECT_ADMIN_REPLY && e.req_id == 78) {
      saw78 = true;
      assert_int_equal(e.cmd, MIM_CMD_SERVER_PUSH_ACK);
    } else if (e.kind == MIM_EFFECT_DELIVER && e.cmd == MIM_CMD_SERVER_PUSH) {
      pushes += e.n_targets;
      assert_int_equal(e.targets[0].conn_id, 20);
    }
  }
  assert_true(saw77 && saw78);
  assert_int_equal(pushes, 1); /* carol is offline */
  login(f, 30, "carol");
  pull_after(f, 30, 0, 10, 1);
  pump(f);
  struct mim_packet *r = got(f, 30, MIM_CMD_PULL_RSP, 0);
  assert_int_equal(r->n_items, 2); /* the notice of "ops", then the push */
  assert_int_equal(r->items[0].type, MIM_MSG_SYSTEM);
  assert_string_equal(r->items[1].content, "maintenance at 5");
  assert_int_equal(r->items[1].type, MIM_MSG_PUSH);
  assert_int_equal(r->items[1].payload_len, 2);
  /* clients may not push as the server */
  sp.members = NULL;
  sp.n_members = 0;
  sp.to = "bob";
  feed(f, 30, &sp);
  pump(f);
  assert_int_equal(last_error(f, 30)->status, MIM_ERR_FORBIDDEN);
}

static void seed_client_exchange_works(void **state) {
  struct fx *f = *state;
  /* auth with the literal "token", uid from the URL, no device, seq 0 */
  struct mim_packet a;
  mim_packet_init(&a);
  a.cmd = MIM_CMD_AUTH_REQ;
  a.token = "token";
  a.uid = "1";
  a.ts = 1234;
  feed(f, 10, &a);
  a.uid = "2";
  feed(f, 20, &a);
  pump(f);
  assert_int_equal(got(f, 10, MIM_CMD_AUTH_RSP, 0)->status, 0);
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_C2C_SEND_REQ;
  s.from = "1";
  s.to = "2";
  s.content = "hi from the seed";
  s.ts = 1235;
  feed(f, 10, &s);
  pump(f);
  struct mim_packet *push = got(f, 20, MIM_CMD_C2C_PUSH, 0);
  assert_non_null(push);
  assert_true(got(f, 10, MIM_CMD_C2C_SEND_RSP, 0)->msg_id == push->msg_id);
  /* automatic ack by msg_id, then "pull offline" with limit 10 */
  struct mim_packet ack;
  mim_packet_init(&ack);
  ack.cmd = MIM_CMD_C2C_PUSH_ACK;
  ack.msg_id = push->msg_id;
  feed(f, 20, &ack);
  pull_seed(f, 20, 10);
  pump(f);
  assert_int_equal(got(f, 20, MIM_CMD_PULL_RSP, 0)->n_items, 0);
  assert_int_equal(count(f, 20, MIM_CMD_ERROR), 0);
}

/* ---- UTF-8 ---- */

static void text_that_is_not_utf8_is_refused(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  c2c(f, 10, "bob", "bad \xc3\x28", NULL, 3);
  pump(f);
  struct mim_packet *e = last_error(f, 10);
  assert_non_null(e);
  assert_int_equal(e->status, MIM_ERR_BAD_UTF8);
  assert_int_equal(e->seq, 3);
  assert_false(e->retryable);
  c2c(f, 10, "bob", "fine", "\xed\xbf\xbf", 4); /* surrogate cmid */
  pump(f);
  e = last_error(f, 10);
  assert_int_equal(e->status, MIM_ERR_BAD_UTF8);
  assert_int_equal(e->seq, 4);
  c2g(f, 10, "team", "\xf8\x88\x80\x80\x80", 5);
  pump(f);
  assert_int_equal(last_error(f, 10)->status, MIM_ERR_BAD_UTF8);
  assert_int_equal(count(f, 10, MIM_CMD_C2C_SEND_RSP), 0);

  /* operator pushes: content and from */
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_SERVER_PUSH;
  p.to = "bob";
  p.content = "\xc0\xaf";
  uint8_t body[256];
  size_t len;
  assert_int_equal(mim_packet_encode_body(&p, body, sizeof body, &len), 0);
  assert_int_equal(mim_logic_admin(f->l, 7, p.cmd, body, len), 0);
  p.content = "ok";
  p.from = "sys\xff";
  assert_int_equal(mim_packet_encode_body(&p, body, sizeof body, &len), 0);
  assert_int_equal(mim_logic_admin(f->l, 8, p.cmd, body, len), 0);
  struct mim_effect ef;
  int errors = 0;
  while (mim_logic_next_effect(f->l, &ef) == 0) {
    if (ef.kind != MIM_EFFECT_ADMIN_REPLY)
      continue;
    struct mim_packet r;
    mim_packet_init(&r);
    assert_int_equal(mim_packet_decode(&r, ef.cmd, ef.body, ef.body_len), 0);
    assert_int_equal(ef.cmd, MIM_CMD_ERROR);
    assert_int_equal(r.status, MIM_ERR_BAD_UTF8);
    mim_packet_finish(&r);
    errors++;
  }
  assert_int_equal(errors, 2);
  assert_false(mim_logic_has_writes(f->l));
}

/* ---- bounded work per request and per turn ---- */

/* Reopens the logic with small byte bounds, so a test fills them with a
 * few messages (the fake gateway's frames are 70 KB at most). */
static void reopen_bounded(struct fx *f, uint32_t reply_max, uint32_t turn) {
  mim_logic_destroy(f->l);
  struct mim_logic_config cfg;
  mim_logic_config_init(&cfg);
  cfg.backend = f->be;
  cfg.dev_auth = true;
  cfg.now_ms = tu_fake_now;
  cfg.clock_user = &f->now;
  cfg.content_max = 1000;
  cfg.reply_bytes_max = reply_max;
  cfg.read_turn_bytes = turn;
  cfg.rate_per_sec = 0;
  assert_int_equal(mim_logic_create(&f->l, &cfg), 0);
  assert_int_equal(mim_logic_gateway_up(f->l, GW, "gw-1"), 0);
  assert_int_equal(mim_logic_gateway_up(f->l, GW2, "gw-2"), 0);
}

static size_t body_size(const struct mim_packet *p) {
  static uint8_t buf[70000];
  size_t len;
  assert_int_equal(mim_packet_encode_body(p, buf, sizeof buf, &len), 0);
  return len;
}

static void send_big(struct fx *f, uint64_t conn, const char *to, int n) {
  char text[901];
  for (int i = 0; i < n; i++) {
    memset(text, 'a' + i % 26, 900);
    text[900] = '\0';
    c2c(f, conn, to, text, NULL, 100 + i);
  }
  pump(f);
}

static void pull_is_capped_in_bytes_with_has_more(void **state) {
  struct fx *f = *state;
  reopen_bounded(f, 8192, 0);
  login(f, 10, "alice");
  send_big(f, 10, "bob", 30);
  login(f, 20, "bob");
  /* asks for all 30 (27 KB): gets what fits 8 KiB, then pages on */
  uint64_t after = 0;
  size_t total = 0, pages = 0;
  for (;;) {
    pull_after(f, 20, after, 100, 1);
    pump(f);
    struct mim_packet *r = got(f, 20, MIM_CMD_PULL_RSP, pages++);
    assert_non_null(r);
    assert_true(r->n_items >= 1);
    assert_true(body_size(r) <= 8192);
    for (size_t i = 0; i < r->n_items; i++)
      assert_int_equal(r->items[i].inbox_seq, after + 1 + i);
    total += r->n_items;
    after = r->items[r->n_items - 1].inbox_seq;
    if (!r->has_more)
      break;
    assert_true(r->n_items < 30);
    assert_true(pages < 30);
  }
  assert_int_equal(total, 30);
  assert_true(pages >= 4); /* 30 x ~1 KB in 8 KiB pages */
  /* a seed pull (no after_seq) pages from where the last one stopped */
  login(f, 21, "carol");
  send_big(f, 21, "dave", 12);
  login(f, 22, "dave");
  pull_seed(f, 22, 100);
  pump(f);
  struct mim_packet *s1 = got(f, 22, MIM_CMD_PULL_RSP, 0);
  assert_true(s1->has_more);
  assert_true(body_size(s1) <= 8192);
  size_t first = s1->n_items;
  pull_seed(f, 22, 100);
  pump(f);
  struct mim_packet *s2 = got(f, 22, MIM_CMD_PULL_RSP, 1);
  assert_int_equal(s2->items[0].inbox_seq, first + 1);
  assert_int_equal(first + s2->n_items, 12);
  assert_false(s2->has_more);
}

static void history_and_admin_pull_are_capped_in_bytes(void **state) {
  struct fx *f = *state;
  reopen_bounded(f, 8192, 0);
  login(f, 10, "alice");
  send_big(f, 10, "bob", 20);
  struct mim_packet h;
  mim_packet_init(&h);
  h.cmd = MIM_CMD_HISTORY_REQ;
  h.peer = "bob";
  h.limit = 100;
  h.seq = 7;
  feed(f, 10, &h);
  pump(f);
  struct mim_packet *r = got(f, 10, MIM_CMD_HISTORY_RSP, 0);
  assert_non_null(r);
  assert_true(r->n_items >= 1 && r->n_items < 20);
  assert_true(r->has_more);
  assert_true(body_size(r) <= 8192);
  assert_int_equal(r->items[0].conv_seq, 20); /* newest first */
  /* the operator's reads obey the same cap */
  uint8_t body[256];
  size_t len;
  for (uint32_t cmd = MIM_CMD_PULL_REQ; cmd != 0;
       cmd = cmd == MIM_CMD_PULL_REQ ? MIM_CMD_HISTORY_REQ : 0) {
    struct mim_packet a;
    mim_packet_init(&a);
    a.cmd = cmd;
    a.uid = "bob";
    a.peer = cmd == MIM_CMD_HISTORY_REQ ? "alice" : NULL;
    a.limit = 100;
    assert_int_equal(mim_packet_encode_body(&a, body, sizeof body, &len), 0);
    assert_int_equal(mim_logic_admin(f->l, 9, cmd, body, len), 0);
    struct mim_effect e;
    bool seen = false;
    while (mim_logic_next_effect(f->l, &e) == 0) {
      if (e.kind != MIM_EFFECT_ADMIN_REPLY)
        continue;
      assert_true(e.body_len <= 8192);
      struct mim_packet p;
      mim_packet_init(&p);
      assert_int_equal(mim_packet_decode(&p, e.cmd, e.body, e.body_len), 0);
      assert_true(p.n_items >= 1 && p.n_items < 20);
      assert_true(p.has_more);
      mim_packet_finish(&p);
      seen = true;
    }
    assert_true(seen);
  }
}

static void reply_cap_must_hold_the_largest_message(void **state) {
  struct fx *f = *state;
  struct mim_logic_config cfg;
  mim_logic_config_init(&cfg);
  cfg.backend = f->be;
  cfg.dev_auth = true;
  cfg.content_max = 100000;
  cfg.reply_bytes_max = 64 * 1024;
  struct mim_logic *l = NULL;
  assert_int_equal(mim_logic_create(&l, &cfg), -EINVAL);
  cfg.reply_bytes_max = (uint32_t)mim_logic_reply_bytes_min(100000);
  assert_int_equal(mim_logic_create(&l, &cfg), 0);
  mim_logic_destroy(l);
  /* the defaults hold */
  mim_logic_config_init(&cfg);
  assert_true(cfg.reply_bytes_max >= mim_logic_reply_bytes_min(cfg.content_max));
  assert_true(cfg.reply_bytes_max <= 512 * 1024);
}

/* Drains effects without committing or ticking; counts PULL_RSPs per conn. */
static void drain(struct fx *f) {
  struct mim_effect e;
  while (mim_logic_next_effect(f->l, &e) == 0) {
    if (e.kind != MIM_EFFECT_DELIVER)
      continue;
    for (size_t i = 0; i < e.n_targets; i++) {
      assert_true(f->n_seen < MAX_SEEN);
      struct seen *s = &f->seen[f->n_seen++];
      s->gateway = e.gateway;
      s->conn = e.targets[i].conn_id;
      s->cmd = e.cmd;
      s->kick = false;
      mim_packet_init(&s->p);
      assert_int_equal(mim_packet_decode(&s->p, e.cmd, e.body, e.body_len), 0);
    }
  }
}

static void pipelined_reads_run_in_turns_round_robin(void **state) {
  struct fx *f = *state;
  /* ~8 KB replies, 20 KiB of them per turn */
  reopen_bounded(f, 8192, 20 * 1024);
  login(f, 10, "alice");
  send_big(f, 10, "bob", 30);
  login(f, 20, "bob");
  login(f, 30, "carol");
  clear_seen(f);
  for (int i = 0; i < 50; i++)
    pull_after(f, 20, 0, 100, 1000 + i); /* bob: 50 full pulls at once */
  pull_after(f, 30, 0, 100, 1);          /* carol: one, after all of them */
  drain(f);
  /* one turn: a few of bob's, and carol's right after bob's first */
  size_t bob = count(f, 20, MIM_CMD_PULL_RSP);
  assert_true(bob >= 1 && bob <= 4);
  assert_int_equal(count(f, 30, MIM_CMD_PULL_RSP), 1);
  assert_int_equal(mim_logic_next_timeout(f->l), 0); /* more next turn */
  for (int turn = 0; turn < 100 && count(f, 20, MIM_CMD_PULL_RSP) < 50;
       turn++) {
    size_t before = count(f, 20, MIM_CMD_PULL_RSP);
    mim_logic_tick(f->l);
    drain(f);
    size_t n = count(f, 20, MIM_CMD_PULL_RSP) - before;
    assert_true(n >= 1 && n <= 4);
  }
  assert_int_equal(count(f, 20, MIM_CMD_PULL_RSP), 50);
  for (size_t i = 0; i < 50; i++) /* in request order */
    assert_int_equal(got(f, 20, MIM_CMD_PULL_RSP, i)->seq, 1000 + (int64_t)i);
  assert_int_equal(mim_logic_next_timeout(f->l), -1);
}

static void paused_gateway_runs_no_reads_but_answers_writes(void **state) {
  struct fx *f = *state;
  reopen_bounded(f, 8192, 0);
  login(f, 10, "alice");
  send_big(f, 10, "bob", 3);
  login(f, 20, "bob");
  struct mim_packet a;
  mim_packet_init(&a);
  a.cmd = MIM_CMD_AUTH_REQ;
  a.uid = "carol";
  a.token = "token";
  feed_on(f, GW2, 30, &a);
  pump(f);
  clear_seen(f);
  assert_int_equal(mim_logic_gateway_pause(f->l, GW, true), 0);
  assert_int_equal(mim_logic_gateway_pause(f->l, 99, true), -ENOENT);
  pull_after(f, 20, 0, 100, 1);  /* bob on the paused gateway */
  c2c(f, 10, "carol", "hi", NULL, 2); /* alice, same gateway, writes */
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_PULL_REQ;
  p.has_after_seq = true;
  p.seq = 3;
  feed_on(f, GW2, 30, &p);        /* carol on the other gateway reads */
  pump(f);
  assert_int_equal(count(f, 20, MIM_CMD_PULL_RSP), 0);
  assert_int_equal(count(f, 10, MIM_CMD_C2C_SEND_RSP), 1);
  assert_int_equal(count(f, 30, MIM_CMD_C2C_PUSH), 1);
  assert_int_equal(count(f, 30, MIM_CMD_PULL_RSP), 1);
  assert_int_equal(mim_logic_next_timeout(f->l), -1); /* nothing to tick */
  assert_int_equal(mim_logic_gateway_pause(f->l, GW, false), 0);
  pump(f);
  assert_int_equal(count(f, 20, MIM_CMD_PULL_RSP), 1);
  assert_int_equal(got(f, 20, MIM_CMD_PULL_RSP, 0)->n_items, 3);
}

static void oversized_read_requests_are_refused(void **state) {
  struct fx *f = *state;
  login(f, 20, "bob");
  /* a pull padded with an unknown field to 5 KB: it would wait in the
   * queue at that size, so it is refused */
  uint8_t body[6000];
  size_t len;
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_PULL_REQ;
  p.seq = 9;
  assert_int_equal(mim_packet_encode_body(&p, body, sizeof body, &len), 0);
  size_t pad = 5000;
  body[len++] = (15 << 3) | 2; /* field 15 (unknown), length-delimited */
  body[len++] = (uint8_t)(0x80 | (pad & 0x7f));
  body[len++] = (uint8_t)(pad >> 7);
  memset(body + len, 'x', pad);
  len += pad;
  assert_int_equal(mim_logic_receive(f->l, (struct mim_conn_ref){GW, 20},
                                     MIM_CMD_PULL_REQ, body, len),
                   0);
  pump(f);
  assert_int_equal(count(f, 20, MIM_CMD_PULL_RSP), 0);
  struct mim_packet *e = last_error(f, 20);
  assert_non_null(e);
  assert_int_equal(e->status, mim_err_wire_code(-MIM_ERR_MALFORMED));
  pull_after(f, 20, 0, 10, 10); /* a normal one is answered */
  pump(f);
  assert_int_equal(count(f, 20, MIM_CMD_PULL_RSP), 1);
}

/* ---- group limits and the write budget ---- */

/* Reopens store and logic: the store's group_members_max (0: default) and
 * the logic's batch_max_ops. */
static void reopen_sized(struct fx *f, uint32_t group_max,
                         uint32_t batch_max_ops) {
  clear_seen(f);
  mim_logic_destroy(f->l);
  f->be->ops = real_ops;
  mim_backend_destroy(f->be);
  struct mim_lmdb_config sc;
  mim_lmdb_config_init(&sc);
  sc.path = f->dir;
  sc.no_sync = true;
  if (group_max > 0)
    sc.group_members_max = group_max;
  assert_int_equal(mim_lmdb_open(&f->be, &sc), 0);
  real_ops = f->be->ops;
  wrapped_ops = *real_ops;
  wrapped_ops.commit = failing_commit;
  f->be->ops = &wrapped_ops;
  struct mim_logic_config cfg;
  mim_logic_config_init(&cfg);
  cfg.backend = f->be;
  cfg.dev_auth = true;
  cfg.now_ms = tu_fake_now;
  cfg.clock_user = &f->now;
  cfg.batch_max_ops = batch_max_ops;
  assert_int_equal(mim_logic_create(&f->l, &cfg), 0);
  assert_int_equal(mim_logic_gateway_up(f->l, GW, "gw-1"), 0);
}

/* The admin reply to request `req_id` (flushing writes first): its cmd
 * and, for an Error, its status. */
static uint32_t admin_call(struct fx *f, uint64_t req_id,
                           const struct mim_packet *p, int32_t *status) {
  static uint8_t body[200000];
  size_t len;
  assert_int_equal(mim_packet_encode_body(p, body, sizeof body, &len), 0);
  assert_int_equal(mim_logic_admin(f->l, req_id, p->cmd, body, len), 0);
  mim_logic_flush(f->l);
  struct mim_effect e;
  uint32_t cmd = 0;
  *status = 0;
  while (mim_logic_next_effect(f->l, &e) == 0) {
    if (e.kind != MIM_EFFECT_ADMIN_REPLY || e.req_id != req_id)
      continue;
    cmd = e.cmd;
    if (e.cmd == MIM_CMD_ERROR) {
      struct mim_packet r;
      mim_packet_init(&r);
      assert_int_equal(mim_packet_decode(&r, e.cmd, e.body, e.body_len), 0);
      *status = r.status;
      mim_packet_finish(&r);
    }
  }
  return cmd;
}

static char many_names[1001][16];
static const char *many[1001];

static void make_many(void) {
  for (int i = 0; i < 1001; i++) {
    snprintf(many_names[i], sizeof many_names[i], "user%04d", i);
    many[i] = many_names[i];
  }
}

/* A request naming more than group_request_members_max members is refused
 * whoever sends it; a group never grows past the store's limit, through a
 * client or an operator. */
static void group_limits_hold_for_clients_and_operators(void **state) {
  struct fx *f = *state;
  make_many();
  login(f, 10, "alice");
  /* the creator joins: 1000 named + alice is still one request of 1000 */
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "huge", many, 1001, 1);
  pump(f);
  assert_int_equal(last_error(f, 10)->status, MIM_ERR_TOO_LARGE);
  assert_int_equal(last_error(f, 10)->seq, 1);
  struct mim_packet g;
  mim_packet_init(&g);
  g.cmd = MIM_CMD_GROUP_CREATE_REQ;
  g.group = "huge";
  g.members = many;
  g.n_members = 1001;
  int32_t st;
  assert_int_equal(admin_call(f, 1, &g, &st), MIM_CMD_ERROR);
  assert_int_equal(st, MIM_ERR_TOO_LARGE);
  struct mim_packet sp;
  mim_packet_init(&sp);
  sp.cmd = MIM_CMD_SERVER_PUSH;
  sp.members = many;
  sp.n_members = 1001;
  sp.content = "to too many";
  assert_int_equal(admin_call(f, 2, &sp, &st), MIM_CMD_ERROR);
  assert_int_equal(st, MIM_ERR_TOO_LARGE);
  g.n_members = 1000;
  assert_int_equal(admin_call(f, 3, &g, &st), MIM_CMD_GROUP_CREATE_RSP);

  /* a store limit of 3 members per group */
  reopen_sized(f, 3, 0);
  login(f, 10, "alice");
  const char *m[] = {"bob", "carol", "dave"};
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "t", m, 3, 2); /* 4 with alice */
  pump(f);
  assert_int_equal(last_error(f, 10)->status, MIM_ERR_GROUP_FULL);
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "t", m, 2, 3);
  pump(f);
  assert_non_null(got(f, 10, MIM_CMD_GROUP_CREATE_RSP, 0));
  group_req(f, 10, MIM_CMD_GROUP_ADD_REQ, "t", m + 2, 1, 4);
  pump(f);
  assert_int_equal(last_error(f, 10)->status, MIM_ERR_GROUP_FULL);
  assert_int_equal(last_error(f, 10)->seq, 4);
  g.cmd = MIM_CMD_GROUP_ADD_REQ;
  g.group = "t";
  g.members = m + 2;
  g.n_members = 1;
  assert_int_equal(admin_call(f, 4, &g, &st), MIM_CMD_ERROR);
  assert_int_equal(st, MIM_ERR_GROUP_FULL);
  assert_int_equal(f->be->ops->member_get(f->be->impl, "t", "dave", NULL),
                   -MIM_ERR_NOT_MEMBER);
}

/* Commits one batch by hand; returns how many group messages it held, or
 * -1 when there was none to take. Effects are recorded. */
static int commit_one(struct fx *f) {
  struct mim_write_batch *b;
  if (mim_logic_take_batch(f->l, &b) < 0)
    return -1;
  int groups = 0;
  for (size_t i = 0; i < mim_write_batch_count(b); i++) {
    struct mim_write_op op;
    assert_int_equal(mim_write_batch_op(b, i, &op), 0);
    if (op.kind == MIM_OP_MESSAGE &&
        op.message->conv_kind == MIM_CONV_GROUP)
      groups++;
  }
  mim_backend_commit(f->be, b);
  assert_int_equal(mim_logic_batch_done(f->l, b), 0);
  collect(f);
  return groups;
}

/* Alice and the 7 members of "big": 8 store writes per message to it. */
static void make_big(struct fx *f) {
  const char *m[] = {"m1", "m2", "m3", "m4", "m5", "m6", "m7"};
  login(f, 10, "alice");
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "big", m, 7, 1);
  pump(f);
  assert_non_null(got(f, 10, MIM_CMD_GROUP_CREATE_RSP, 0));
}

/* With a budget of 8 writes per batch, each message to "big" (8 writes)
 * fills a batch, and someone else's send waits at most one of them: the
 * connections with waiting writes take turns. Everything is acknowledged,
 * in request order. */
static void group_flood_shares_batches_with_others(void **state) {
  struct fx *f = *state;
  reopen_sized(f, 0, 8);
  make_big(f);
  login(f, 40, "dave");
  for (int i = 0; i < 5; i++)
    c2g(f, 10, "big", "flood", 200 + i);
  c2c(f, 40, "erin", "hi", NULL, 300);
  int batches = 0, dave_at = 0;
  for (int groups; (groups = commit_one(f)) >= 0;) {
    batches++;
    assert_true(groups <= 1); /* one message to 8 members fills a batch */
    if (dave_at == 0 && count(f, 40, MIM_CMD_C2C_SEND_RSP) == 1)
      dave_at = batches;
    assert_true(batches < 20);
  }
  print_message("dave's send was acknowledged after batch %d of %d\n",
                dave_at, batches);
  assert_true(dave_at >= 1 && dave_at <= 2); /* not behind the whole flood */
  assert_int_equal(count(f, 10, MIM_CMD_C2G_SEND_RSP), 5);
  for (int i = 0; i < 5; i++)
    assert_int_equal(got(f, 10, MIM_CMD_C2G_SEND_RSP, (size_t)i)->seq,
                     200 + i);
  assert_int_equal(count(f, 10, MIM_CMD_ERROR), 0);
  uint64_t last = 0;
  assert_int_equal(f->be->ops->inbox_last_seq(f->be->impl, "m7", &last), 0);
  assert_int_equal(last, 6); /* the creation notice and the 5 messages */
}

/* A message to more members than batch_max_ops still goes through: in a
 * batch of its own, after what was already gathering. */
static void oversized_group_message_gets_a_batch_alone(void **state) {
  struct fx *f = *state;
  reopen_sized(f, 0, 4);
  make_big(f);
  login(f, 40, "dave");
  c2c(f, 40, "erin", "first", NULL, 1);
  c2g(f, 10, "big", "to eight", 2);
  c2c(f, 40, "erin", "second", NULL, 3); /* fits beside the first */
  assert_int_equal(commit_one(f), 0);    /* dave's two */
  assert_int_equal(count(f, 40, MIM_CMD_C2C_SEND_RSP), 2);
  assert_int_equal(count(f, 10, MIM_CMD_C2G_SEND_RSP), 0);
  assert_int_equal(commit_one(f), 1);    /* then the big one, alone */
  assert_int_equal(count(f, 10, MIM_CMD_C2G_SEND_RSP), 1);
  assert_int_equal(count(f, 10, MIM_CMD_ERROR), 0);
  while (commit_one(f) >= 0)
    ;
  uint64_t last = 0;
  assert_int_equal(f->be->ops->inbox_last_seq(f->be->impl, "m3", &last), 0);
  assert_int_equal(last, 2); /* the creation notice and the message */
}

/* A connection that closes with writes still parked leaves nothing
 * behind: the other connections' writes go on. */
static void closing_with_parked_writes(void **state) {
  struct fx *f = *state;
  reopen_sized(f, 0, 8);
  make_big(f);
  login(f, 40, "dave");
  for (int i = 0; i < 4; i++)
    c2g(f, 10, "big", "flood", 200 + i);
  c2c(f, 40, "erin", "hi", NULL, 300);
  assert_int_equal(mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 10}),
                   0);
  pump(f);
  assert_int_equal(count(f, 40, MIM_CMD_C2C_SEND_RSP), 1);
  assert_false(mim_logic_has_writes(f->l));
}


/* Messages to a group that already has one in the gathering batch write
 * to the pages it dirtied: they count an eighth (here 3 for 8 members at 3
 * writes each), so a budget of 48 takes the first at 24 and eight more. */
static void repeats_to_one_group_share_a_batch(void **state) {
  struct fx *f = *state;
  reopen_sized(f, 0, 48);
  make_big(f);
  for (int i = 0; i < 12; i++)
    c2g(f, 10, "big", "chatty", 200 + i);
  assert_int_equal(commit_one(f), 9);
  assert_int_equal(commit_one(f), 3);
  assert_int_equal(count(f, 10, MIM_CMD_C2G_SEND_RSP), 12);
  for (int i = 0; i < 12; i++)
    assert_int_equal(got(f, 10, MIM_CMD_C2G_SEND_RSP, (size_t)i)->seq,
                     200 + i);
}

/* ---- who a connection is, session tickets, token expiry ---- */

static void use_production_auth(struct fx *f) {
  mim_logic_destroy(f->l);
  clear_seen(f);
  f->dev_auth = false;
  open_logic(f);
}

static void auth_with(struct fx *f, uint64_t conn, const char *uid,
                      int64_t expires_s, int64_t seq) {
  char tok[MIM_TOKEN_MAX];
  assert_int_equal(mim_token_sign(SECRET, sizeof SECRET - 1, uid, NULL,
                                  expires_s, tok, sizeof tok), 0);
  struct mim_packet a;
  mim_packet_init(&a);
  a.cmd = MIM_CMD_AUTH_REQ;
  a.uid = uid;
  a.token = tok;
  a.seq = seq;
  feed(f, conn, &a);
}

/* The gateway hears who a connection is right after its AuthResponse,
 * with a ticket that verifies for exactly that gateway, conn and user. */
static void session_effect_follows_auth_response(void **state) {
  struct fx *f = *state;
  use_production_auth(f);
  auth_with(f, 10, "alice", f->now / 1000 + 60, 1);
  pump(f);
  size_t i = 0;
  while (f->seen[i].cmd != MIM_CMD_AUTH_RSP)
    i++;
  assert_int_equal(f->seen[i].p.status, 0);
  struct seen *s = &f->seen[i + 1];
  assert_int_equal(s->cmd, SEEN_SESSION);
  assert_int_equal(s->conn, 10);
  assert_string_equal(s->uid, "alice");
  assert_string_equal(s->device, MIM_DEFAULT_DEVICE);
  assert_int_equal(s->ticket_len, MIM_TICKET_LEN);
  uint8_t key[MIM_TICKET_KEY_LEN];
  assert_int_equal(mim_ticket_key_derive(SECRET, sizeof SECRET - 1, key), 0);
  struct mim_ticket t = {.gateway_id = "gw-1", .conn_id = 10, .uid = "alice",
                         .device = MIM_DEFAULT_DEVICE, .caps = s->caps};
  assert_int_equal(mim_ticket_verify(key, sizeof key, s->ticket, s->ticket_len,
                                     &t, f->now / 1000), 0);
  assert_int_equal(t.expires_at, f->now / 1000 + 60); /* the token's */
  t.gateway_id = "gw-2";
  assert_int_equal(mim_ticket_verify(key, sizeof key, s->ticket, s->ticket_len,
                                     &t, f->now / 1000),
                   -MIM_ERR_TOKEN_INVALID);
}

/* The reported takeover, at the logic: a refused AuthRequest (BUSY, bad
 * token, malformed body) binds nobody; only mal's own logins do. */
static void refused_auth_binds_nobody(void **state) {
  struct fx *f = *state;
  use_production_auth(f);
  auth_with(f, 10, "mal", f->now / 1000 + 600, 1);
  pump(f);
  c2c(f, 10, "ally", "x", NULL, 2); /* waits for its commit: no pump */
  struct mim_packet hb;
  mim_packet_init(&hb);
  hb.cmd = MIM_CMD_HEARTBEAT_REQ;
  for (int i = 0; i < 254; i++)
    feed(f, 10, &hb);
  struct mim_packet o;
  mim_packet_init(&o);
  o.cmd = MIM_CMD_LOGOUT_REQ;
  o.seq = 3;
  feed(f, 10, &o);
  struct mim_packet a;
  mim_packet_init(&a);
  a.cmd = MIM_CMD_AUTH_REQ;
  a.uid = "vic";
  a.token = "v1.junk";
  a.seq = 4;
  feed(f, 10, &a); /* 256 replies waiting: BUSY */
  assert_int_equal(mim_logic_receive(f->l, (struct mim_conn_ref){GW, 10},
                                     MIM_CMD_AUTH_REQ,
                                     (const uint8_t *)"\x12\x7f", 2),
                   0); /* malformed */
  pump(f);
  assert_int_equal(last_error(f, 10)->status, MIM_ERR_MALFORMED);
  bool busy = false;
  for (size_t i = 0; i < f->n_seen; i++)
    if (f->seen[i].conn == 10 && f->seen[i].cmd == MIM_CMD_ERROR &&
        f->seen[i].p.seq == 4 && f->seen[i].p.status == MIM_ERR_BUSY)
      busy = true;
  assert_true(busy);
  auth_with(f, 10, "mal", f->now / 1000 + 600, 5); /* mal's own login */
  pump(f);
  /* what the gateway heard on conn 10: mal, unbound (the logout), mal */
  size_t n = 0;
  for (size_t i = 0; i < f->n_seen; i++) {
    if (f->seen[i].conn != 10 || f->seen[i].cmd != SEEN_SESSION)
      continue;
    const char *want[] = {"mal", "", "mal"};
    assert_true(n < 3);
    assert_string_equal(f->seen[i].uid, want[n]);
    n++;
  }
  assert_int_equal(n, 3);
}

/* SESSIONS restores only what verifies; a known connection is never
 * overwritten; refused ones are kicked so their clients log in again. */
static void restore_needs_the_right_ticket(void **state) {
  struct fx *f = *state;
  use_production_auth(f);
  auth_with(f, 10, "alice", f->now / 1000 + 600, 1);
  pump(f);
  struct seen alice = *session_on(f, GW, 10);
  mim_logic_destroy(f->l);
  clear_seen(f);
  open_logic(f);
  struct seen forged = alice;
  forged.ticket[20] ^= 1;
  assert_int_equal(restore_seen(f, GW, 10, &forged), -MIM_ERR_TOKEN_INVALID);
  struct seen other = alice;
  strcpy(other.uid, "bob");
  assert_int_equal(restore_seen(f, GW, 10, &other), -MIM_ERR_TOKEN_INVALID);
  assert_int_equal(restore_seen(f, GW, 11, &alice), -MIM_ERR_TOKEN_INVALID);
  assert_int_equal(restore_seen(f, GW2, 10, &alice), -MIM_ERR_TOKEN_INVALID);
  struct seen none = alice;
  none.ticket_len = 0;
  assert_int_equal(restore_seen(f, GW, 12, &none), -MIM_ERR_TOKEN_INVALID);
  pump(f);
  assert_int_equal(count(f, 11, MIM_CMD_KICK), 1);
  assert_int_equal(got(f, 11, MIM_CMD_KICK, 0)->reason,
                   MIM_KICK_TOKEN_EXPIRED);
  assert_int_equal(mim_sessions_count(mim_logic_sessions(f->l)), 0);
  /* the real one: restored once; a second claim on the conn is refused and
   * leaves it alone (no kick) */
  clear_seen(f);
  assert_int_equal(restore_seen(f, GW, 10, &alice), 0);
  assert_int_equal(restore_seen(f, GW, 10, &alice), -EEXIST);
  pump(f);
  assert_int_equal(count(f, 10, MIM_CMD_KICK), 0);
  assert_int_equal(mim_sessions_count(mim_logic_sessions(f->l)), 1);
  /* a conn that already sent a request is known too */
  feed(f, 13, &(struct mim_packet){.cmd = MIM_CMD_HEARTBEAT_REQ});
  auth_with(f, 99, "carol", f->now / 1000 + 600, 1);
  pump(f);
  struct seen carol = *session_on(f, GW, 99);
  assert_int_equal(restore_seen(f, GW, 13, &carol), -EEXIST);
}

/* A session whose token expires is kicked by the tick; next_timeout says
 * when; development sessions never expire. */
static void expired_session_is_kicked(void **state) {
  struct fx *f = *state;
  assert_int_equal(mim_logic_next_timeout(f->l), -1);
  login(f, 30, "devuser");
  assert_int_equal(mim_logic_next_timeout(f->l), -1); /* dev: never */
  use_production_auth(f);
  auth_with(f, 10, "alice", f->now / 1000 + 5, 1);
  auth_with(f, 11, "bob", f->now / 1000 + 60, 1);
  pump(f);
  assert_int_equal(mim_logic_next_timeout(f->l), 5000);
  f->now += 4999;
  mim_logic_tick(f->l);
  pump(f);
  assert_int_equal(count(f, 10, MIM_CMD_KICK), 0);
  f->now += 1;
  assert_int_equal(mim_logic_next_timeout(f->l), 0);
  mim_logic_tick(f->l);
  pump(f);
  assert_int_equal(count(f, 10, MIM_CMD_KICK), 1);
  assert_int_equal(got(f, 10, MIM_CMD_KICK, 0)->reason,
                   MIM_KICK_TOKEN_EXPIRED);
  assert_int_equal(count(f, 11, MIM_CMD_KICK), 0);
  assert_int_equal(mim_sessions_count(mim_logic_sessions(f->l)), 1);
  assert_int_equal(mim_logic_next_timeout(f->l), 55000);
  /* a token that expires at the end of time never does (no overflow) */
  auth_with(f, 12, "carol", INT64_MAX, 1);
  pump(f);
  assert_int_equal(count(f, 12, MIM_CMD_KICK), 0);
  assert_int_equal(got(f, 12, MIM_CMD_AUTH_RSP, 0)->status, 0);
  assert_int_equal(mim_logic_next_timeout(f->l), 55000);
  /* a request on an expired session, before any tick: kicked at once */
  f->now += 55000;
  pull_after(f, 11, 0, 10, 7);
  pump(f);
  assert_int_equal(count(f, 11, MIM_CMD_KICK), 1);
  assert_int_equal(last_error(f, 11)->status, MIM_ERR_UNAUTHENTICATED);
  mim_logic_tick(f->l);
  pump(f);
  assert_int_equal(count(f, 12, MIM_CMD_KICK), 0);
  assert_int_equal(mim_sessions_count(mim_logic_sessions(f->l)), 1);
}

/* A ticket whose token expired restores nothing. */
static void expired_ticket_not_restored(void **state) {
  struct fx *f = *state;
  use_production_auth(f);
  auth_with(f, 10, "alice", f->now / 1000 + 5, 1);
  pump(f);
  struct seen alice = *session_on(f, GW, 10);
  mim_logic_destroy(f->l);
  clear_seen(f);
  f->now += 5000;
  open_logic(f);
  assert_int_equal(restore_seen(f, GW, 10, &alice), -MIM_ERR_TOKEN_EXPIRED);
  pump(f);
  assert_int_equal(got(f, 10, MIM_CMD_KICK, 0)->reason,
                   MIM_KICK_TOKEN_EXPIRED);
  assert_int_equal(mim_sessions_count(mim_logic_sessions(f->l)), 0);
}

/* struct mim_logic_config.size: an older, smaller struct gets defaults for
 * the fields it lacks; an unknown larger size or none is refused. */
static void config_size_is_checked(void **state) {
  struct fx *f = *state;
  struct mim_logic *l = NULL;
  struct mim_logic_config cfg;
  mim_logic_config_init(&cfg);
  cfg.backend = f->be;
  cfg.dev_auth = true;
  cfg.size = sizeof cfg + 8;
  assert_int_equal(mim_logic_create(&l, &cfg), -EINVAL);
  cfg.size = 0;
  assert_int_equal(mim_logic_create(&l, &cfg), -EINVAL);
  cfg.size = offsetof(struct mim_logic_config, log);
  cfg.log = (mim_log_fn)(uintptr_t)1; /* beyond its size: never read */
  assert_int_equal(mim_logic_create(&l, &cfg), 0);
  mim_logic_destroy(l);
}

/* One id rule (mim_id_valid) at every entry point of the logic: a client
 * request, an operator request and an RPC session restore all refuse an
 * id with a space; the store's write batches do too (test-store). */
static void ids_follow_one_rule_at_every_entry_point(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  c2c(f, 10, "b b", "hi", NULL, 1);
  pump(f);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 0)->status, MIM_ERR_MALFORMED);

  const char *m[] = {"bob", "c c"};
  struct mim_packet g;
  mim_packet_init(&g);
  g.cmd = MIM_CMD_GROUP_CREATE_REQ;
  g.group = "ops";
  g.members = m;
  g.n_members = 2;
  uint8_t body[1024];
  size_t len;
  assert_int_equal(mim_packet_encode_body(&g, body, sizeof body, &len), 0);
  assert_int_equal(mim_logic_admin(f->l, 91, g.cmd, body, len), 0);
  mim_logic_flush(f->l);
  struct mim_effect e;
  bool saw = false;
  while (mim_logic_next_effect(f->l, &e) == 0)
    if (e.kind == MIM_EFFECT_ADMIN_REPLY && e.req_id == 91) {
      saw = true;
      assert_int_equal(e.cmd, MIM_CMD_ERROR);
    }
  assert_true(saw);

  assert_true(mim_logic_session_restore(f->l, (struct mim_conn_ref){GW, 30},
                                        "d d", "dev", 0, NULL, 0) < 0);
}

/* ---- issue 13: notices, a user's groups, leaving twice, Error.ts ---- */

static void admin_feed(struct fx *f, uint64_t req_id,
                       const struct mim_packet *p) {
  uint8_t body[4096];
  size_t len;
  assert_int_equal(mim_packet_encode_body(p, body, sizeof body, &len), 0);
  assert_int_equal(mim_logic_admin(f->l, req_id, p->cmd, body, len), 0);
}

/* Operators' group changes (mimctl, the HTTP API) notify like clients'. */
static void admin_group_changes_notify_members(void **state) {
  struct fx *f = *state;
  login(f, 20, "bob");
  login(f, 30, "carol");
  const char *m[] = {"bob", "carol", "dave"};
  struct mim_packet g;
  mim_packet_init(&g);
  g.cmd = MIM_CMD_GROUP_CREATE_REQ;
  g.group = "ops";
  g.members = m;
  g.n_members = 3;
  admin_feed(f, 1, &g);
  pump(f);
  for (uint64_t conn = 20; conn <= 30; conn += 10) {
    struct mim_packet *p = got(f, conn, MIM_CMD_C2G_PUSH, 0);
    assert_non_null(p);
    assert_int_equal(p->type, MIM_MSG_SYSTEM);
    assert_string_equal(p->group, "ops");
    assert_string_equal(p->from, "");
    assert_int_equal(p->inbox_seq, 1);
    assert_string_equal(p->content,
                        "{\"v\":1,\"group\":\"ops\",\"action\":\"create\","
                        "\"actor\":\"\",\"members\":[\"bob\",\"carol\","
                        "\"dave\"],\"count\":3}");
  }
  g.cmd = MIM_CMD_GROUP_REMOVE_REQ;
  g.members = &m[1];
  g.n_members = 1;
  admin_feed(f, 2, &g);
  pump(f);
  /* bob stays and carol is out: both learn it */
  for (uint64_t conn = 20; conn <= 30; conn += 10) {
    struct mim_packet *p = got(f, conn, MIM_CMD_C2G_PUSH, 1);
    assert_non_null(p);
    assert_non_null(strstr(p->content, "\"action\":\"remove\""));
    assert_non_null(strstr(p->content, "\"members\":[\"carol\"]"));
  }
  /* dave, offline, finds the creation in his inbox */
  login(f, 40, "dave");
  pull_after(f, 40, 0, 10, 1);
  pump(f);
  struct mim_packet *r = got(f, 40, MIM_CMD_PULL_RSP, 0);
  assert_int_equal(r->n_items, 2);
  assert_int_equal(r->items[0].type, MIM_MSG_SYSTEM);
  assert_non_null(strstr(r->items[1].content, "\"action\":\"remove\""));
}

static void leaving_twice_is_not_an_error(void **state) {
  struct fx *f = *state;
  make_team(f);
  login(f, 20, "bob");
  const char *bob[] = {"bob"};
  group_req(f, 20, MIM_CMD_GROUP_REMOVE_REQ, "team", bob, 1, 1);
  group_req(f, 20, MIM_CMD_GROUP_REMOVE_REQ, "team", bob, 1, 2);
  group_req(f, 20, MIM_CMD_GROUP_REMOVE_REQ, "nowhere", bob, 1, 3);
  const char *alice[] = {"alice"};
  group_req(f, 20, MIM_CMD_GROUP_REMOVE_REQ, "team", alice, 1, 4);
  pump(f);
  struct mim_packet *r1 = got(f, 20, MIM_CMD_GROUP_REMOVE_RSP, 0);
  struct mim_packet *r2 = got(f, 20, MIM_CMD_GROUP_REMOVE_RSP, 1);
  struct mim_packet *r3 = got(f, 20, MIM_CMD_GROUP_REMOVE_RSP, 2);
  assert_non_null(r3);
  assert_int_equal(r1->seq, 1);
  assert_int_equal(r1->n_members, 1);
  assert_int_equal(r2->seq, 2);
  assert_int_equal(r2->n_members, 0);
  assert_string_equal(r2->group, "team");
  assert_int_equal(r2->ts, f->now);
  assert_int_equal(r3->seq, 3);
  assert_int_equal(r3->n_members, 0);
  /* removing someone else is still not a non-member's business */
  struct mim_packet *e = last_error(f, 20);
  assert_int_equal(e->status, MIM_ERR_NOT_MEMBER);
  assert_int_equal(e->seq, 4);
  /* one leave notice, not two */
  assert_int_equal(count(f, 20, MIM_CMD_C2G_PUSH), 1);
}

static void client_and_operator_list_groups(void **state) {
  struct fx *f = *state;
  make_team(f);
  login(f, 20, "bob");
  const char *none[] = {NULL};
  group_req(f, 20, MIM_CMD_GROUP_CREATE_REQ, "bobs", none, 0, 1);
  struct mim_packet q;
  mim_packet_init(&q);
  q.cmd = MIM_CMD_GROUP_LIST_REQ;
  q.seq = 2;
  feed(f, 20, &q);
  q.seq = 3;
  q.limit = 1;
  feed(f, 20, &q);
  q.seq = 4;
  q.after_group = "team";
  feed(f, 20, &q);
  q.seq = 5;
  q.after_group = "bad id";
  feed(f, 20, &q);
  pump(f);
  struct mim_packet *all = got(f, 20, MIM_CMD_GROUP_LIST_RSP, 0);
  assert_int_equal(all->seq, 2);
  assert_int_equal(all->n_groups, 2);
  assert_string_equal(all->groups[0], "team");
  assert_string_equal(all->groups[1], "bobs");
  assert_false(all->has_more);
  assert_int_equal(all->ts, f->now);
  struct mim_packet *p1 = got(f, 20, MIM_CMD_GROUP_LIST_RSP, 1);
  assert_int_equal(p1->n_groups, 1);
  assert_true(p1->has_more);
  struct mim_packet *p2 = got(f, 20, MIM_CMD_GROUP_LIST_RSP, 2);
  assert_int_equal(p2->n_groups, 1);
  assert_string_equal(p2->groups[0], "bobs");
  assert_false(p2->has_more);
  assert_int_equal(last_error(f, 20)->status, MIM_ERR_MALFORMED);
  /* operators name the user in `members` */
  const char *who[] = {"carol"};
  q.after_group = NULL;
  q.limit = 0;
  q.members = who;
  q.n_members = 1;
  admin_feed(f, 9, &q);
  struct mim_effect e;
  bool seen = false;
  while (mim_logic_next_effect(f->l, &e) == 0) {
    if (e.kind != MIM_EFFECT_ADMIN_REPLY || e.req_id != 9)
      continue;
    struct mim_packet r;
    mim_packet_init(&r);
    assert_int_equal(mim_packet_decode(&r, e.cmd, e.body, e.body_len), 0);
    assert_int_equal(r.cmd, MIM_CMD_GROUP_LIST_RSP);
    assert_int_equal(r.n_groups, 1);
    assert_string_equal(r.groups[0], "team");
    mim_packet_finish(&r);
    seen = true;
  }
  assert_true(seen);
}

static void errors_carry_the_logic_time(void **state) {
  struct fx *f = *state;
  login(f, 10, "alice");
  f->now += 1234;
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_C2C_SEND_REQ;
  s.to = "bob";
  s.content = "x";
  s.type = 7;
  s.seq = 5;
  feed(f, 10, &s);
  group_req(f, 10, MIM_CMD_GROUP_LIST_REQ, "nowhere", NULL, 0, 6);
  pump(f);
  struct mim_packet *e1 = got(f, 10, MIM_CMD_ERROR, 0);
  struct mim_packet *e2 = got(f, 10, MIM_CMD_ERROR, 1);
  assert_non_null(e2);
  assert_int_equal(e1->status, MIM_ERR_FORBIDDEN);
  assert_int_equal(e1->ts, f->now);
  assert_int_equal(e2->status, MIM_ERR_NOT_MEMBER);
  assert_int_equal(e2->ts, f->now);
}

/* A group change's notice is one inbox write per member: it counts in the
 * batch budget like a group message (docs/architecture.md §3). */
static void group_notice_counts_in_the_batch_budget(void **state) {
  struct fx *f = *state;
  reopen_sized(f, 0, 8);
  make_big(f); /* alice and 7 members */
  login(f, 40, "dave");
  c2c(f, 40, "erin", "first", NULL, 1);
  const char *m8[] = {"m8"};
  group_req(f, 10, MIM_CMD_GROUP_ADD_REQ, "big", m8, 1, 2);
  struct mim_write_batch *b;
  assert_int_equal(mim_logic_take_batch(f->l, &b), 0);
  /* dave's send alone: the add (1 member + 8 inbox entries) does not fit */
  assert_int_equal(mim_write_batch_count(b), 1);
  mim_backend_commit(f->be, b);
  assert_int_equal(mim_logic_batch_done(f->l, b), 0);
  assert_int_equal(mim_logic_take_batch(f->l, &b), 0);
  struct mim_write_op op;
  assert_int_equal(mim_write_batch_op(b, 0, &op), 0);
  assert_int_equal(op.kind, MIM_OP_GROUP_ADD);
  assert_true(op.notice);
  assert_string_equal(op.actor, "alice");
  mim_backend_commit(f->be, b);
  assert_int_equal(mim_logic_batch_done(f->l, b), 0);
  collect(f);
  assert_non_null(got(f, 10, MIM_CMD_GROUP_ADD_RSP, 0));
}

/* ---- events for the application (mim_logic_set_event_cb) ---- */

struct rec_event {
  enum mim_event_kind kind;
  char who[MIM_ID_MAX + 1];   /* uid, or the group */
  uint64_t msg_id;
  size_t n_recipients, n_offline, n_members;
  char first_offline[MIM_ID_MAX + 1];
  enum mim_group_change change;
  bool large;
};

struct rec {
  struct rec_event ev[64];
  size_t n;
};

static void record_event(void *user, const struct mim_event *ev) {
  struct rec *r = user;
  assert_true(r->n < 64);
  struct rec_event *e = &r->ev[r->n++];
  memset(e, 0, sizeof *e);
  e->kind = ev->kind;
  const char *who = ev->kind == MIM_EVENT_GROUP_CHANGED ? ev->group : ev->uid;
  snprintf(e->who, sizeof e->who, "%s", who);
  e->msg_id = ev->msg_id;
  e->n_recipients = ev->n_recipients;
  e->n_offline = ev->n_offline;
  if (ev->n_offline > 0)
    snprintf(e->first_offline, sizeof e->first_offline, "%s", ev->offline[0]);
  e->n_members = ev->n_members;
  e->change = ev->change;
  e->large = ev->large;
  /* every string is set, even when not this kind's */
  assert_non_null(ev->from);
  assert_non_null(ev->to);
  assert_non_null(ev->group);
}

static size_t rec_count(const struct rec *r, enum mim_event_kind k) {
  size_t n = 0;
  for (size_t i = 0; i < r->n; i++)
    n += r->ev[i].kind == k;
  return n;
}

static void events_follow_commits_and_presence(void **state) {
  struct fx *f = *state;
  struct rec r = {.n = 0};
  mim_logic_set_event_cb(f->l, record_event, &r);
  login_dev(f, 10, "alice", "phone");
  login_dev(f, 11, "alice", "laptop"); /* a second device: no event */
  login(f, 20, "bob");
  assert_int_equal(r.n, 2);
  assert_int_equal(r.ev[0].kind, MIM_EVENT_USER_ONLINE);
  assert_string_equal(r.ev[0].who, "alice");
  assert_string_equal(r.ev[1].who, "bob");

  /* a message event only once its batch has committed */
  c2c(f, 10, "bob", "hi", "cm-e1", 2);
  struct mim_write_batch *b;
  assert_int_equal(mim_logic_take_batch(f->l, &b), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  assert_int_equal(rec_count(&r, MIM_EVENT_MESSAGE_CREATED), 0);
  assert_int_equal(mim_logic_batch_done(f->l, b), 0);
  collect(f);
  assert_int_equal(rec_count(&r, MIM_EVENT_MESSAGE_CREATED), 1);
  struct rec_event *m = &r.ev[r.n - 1];
  assert_int_equal(m->n_recipients, 1); /* bob; alice's copy is not one */
  assert_int_equal(m->n_offline, 0);
  assert_non_null(got(f, 10, MIM_CMD_C2C_SEND_RSP, 0));
  assert_int_equal(got(f, 10, MIM_CMD_C2C_SEND_RSP, 0)->msg_id, m->msg_id);

  /* bob's last (only) device goes: offline, and named as such */
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 20});
  assert_int_equal(r.ev[r.n - 1].kind, MIM_EVENT_USER_OFFLINE);
  assert_string_equal(r.ev[r.n - 1].who, "bob");
  c2c(f, 10, "bob", "there?", "cm-e2", 3);
  pump(f);
  m = &r.ev[r.n - 1];
  assert_int_equal(m->kind, MIM_EVENT_MESSAGE_CREATED);
  assert_int_equal(m->n_offline, 1);
  assert_string_equal(m->first_offline, "bob");

  /* a retry joins the original: no second event; a failed commit: none */
  size_t before = r.n;
  c2c(f, 10, "bob", "there?", "cm-e2", 4);
  pump(f);
  f->fail_commits = true;
  c2c(f, 10, "bob", "lost", "cm-e3", 5);
  pump(f);
  f->fail_commits = false;
  assert_int_equal(r.n, before);

  /* group changes, after their commit, with what actually changed */
  const char *team[] = {"bob", "carol"};
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "team", team, 2, 6);
  const char *again[] = {"carol"};
  group_req(f, 10, MIM_CMD_GROUP_ADD_REQ, "team", again, 1, 7);
  pump(f);
  assert_int_equal(rec_count(&r, MIM_EVENT_GROUP_CHANGED), 1);
  m = &r.ev[r.n - 1];
  assert_int_equal(m->change, MIM_GROUP_CREATED);
  assert_string_equal(m->who, "team");
  assert_int_equal(m->n_members, 3);

  /* one device of two closes: still online; the last: offline */
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 10});
  assert_int_equal(rec_count(&r, MIM_EVENT_USER_OFFLINE), 1);
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 11});
  assert_int_equal(rec_count(&r, MIM_EVENT_USER_OFFLINE), 2);
  assert_string_equal(r.ev[r.n - 1].who, "alice");
  mim_logic_set_event_cb(f->l, NULL, NULL);
}

/* ---- the operator path the HTTP API shares with mimctl ---- */

/* A push's admin reply lists every inbox it went to with its seq. */
static void admin_push_reply_lists_recipients(void **state) {
  struct fx *f = *state;
  const char *to[] = {"bob", "carol"};
  struct mim_packet sp;
  mim_packet_init(&sp);
  sp.cmd = MIM_CMD_SERVER_PUSH;
  sp.members = to;
  sp.n_members = 2;
  sp.content = "hi";
  uint8_t body[256];
  size_t len;
  assert_int_equal(mim_packet_encode_body(&sp, body, sizeof body, &len), 0);
  assert_int_equal(mim_logic_admin(f->l, 41, sp.cmd, body, len), 0);
  mim_logic_flush(f->l);
  struct mim_effect e;
  size_t found = 0;
  while (mim_logic_next_effect(f->l, &e) == 0) {
    if (e.kind != MIM_EFFECT_ADMIN_REPLY || e.req_id != 41)
      continue;
    assert_int_equal(e.cmd, MIM_CMD_SERVER_PUSH_ACK);
    assert_int_equal(e.n_recipients, 2);
    for (size_t i = 0; i < e.n_recipients; i++) {
      assert_true(strcmp(e.recipients[i].uid, "bob") == 0 ||
                  strcmp(e.recipients[i].uid, "carol") == 0);
      assert_int_equal(e.recipients[i].inbox_seq, 1);
    }
    found++;
  }
  assert_int_equal(found, 1);
}

/* admin_call() that also counts the pushes (C2C/C2G) to `conn`, and
 * checks they come from p->from. */
static uint32_t admin_call_pushes(struct fx *f, uint64_t req_id,
                                  const struct mim_packet *p, int32_t *status,
                                  uint64_t conn, size_t *pushes) {
  uint8_t body[4096];
  size_t len;
  assert_int_equal(mim_packet_encode_body(p, body, sizeof body, &len), 0);
  assert_int_equal(mim_logic_admin(f->l, req_id, p->cmd, body, len), 0);
  mim_logic_flush(f->l);
  struct mim_effect e;
  uint32_t cmd = 0;
  *status = 0;
  *pushes = 0;
  while (mim_logic_next_effect(f->l, &e) == 0) {
    if (e.kind == MIM_EFFECT_DELIVER &&
        (e.cmd == MIM_CMD_C2C_PUSH || e.cmd == MIM_CMD_C2G_PUSH)) {
      for (size_t i = 0; i < e.n_targets; i++)
        if (e.targets[i].conn_id == conn) {
          struct mim_packet q;
          mim_packet_init(&q);
          assert_int_equal(mim_packet_decode(&q, e.cmd, e.body, e.body_len),
                           0);
          assert_string_equal(q.from, p->from);
          mim_packet_finish(&q);
          (*pushes)++;
        }
    }
    if (e.kind != MIM_EFFECT_ADMIN_REPLY || e.req_id != req_id)
      continue;
    cmd = e.cmd;
    if (e.cmd == MIM_CMD_ERROR) {
      struct mim_packet r;
      mim_packet_init(&r);
      assert_int_equal(mim_packet_decode(&r, e.cmd, e.body, e.body_len), 0);
      *status = r.status;
      mim_packet_finish(&r);
    }
  }
  return cmd;
}

/* A send on a user's behalf: pushed to the receiver, deduplicated by
 * (from, client_msg_id), a conflicting retry refused, membership and the
 * content rules checked as for the user's own send. */
static void admin_sends_on_behalf_of_a_user(void **state) {
  struct fx *f = *state;
  login(f, 20, "bob");
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_C2C_SEND_REQ;
  p.from = "alice";
  p.to = "bob";
  p.content = "from the backend";
  p.client_msg_id = "b-1";
  int32_t st;
  size_t pushes = 0;
  assert_int_equal(admin_call_pushes(f, 51, &p, &st, 20, &pushes),
                   MIM_CMD_C2C_SEND_RSP);
  assert_int_equal(pushes, 1);
  /* the retry: the same reply, no second message */
  assert_int_equal(admin_call_pushes(f, 52, &p, &st, 20, &pushes),
                   MIM_CMD_C2C_SEND_RSP);
  assert_int_equal(pushes, 0);
  p.content = "something else";
  assert_int_equal(admin_call(f, 53, &p, &st), MIM_CMD_ERROR);
  assert_int_equal(st, MIM_ERR_DEDUP_CONFLICT);
  p.client_msg_id = NULL;
  p.type = MIM_MSG_SYSTEM;
  assert_int_equal(admin_call(f, 54, &p, &st), MIM_CMD_ERROR);
  assert_int_equal(st, MIM_ERR_FORBIDDEN);
  p.type = MIM_MSG_TEXT;
  p.from = "bad id";
  assert_int_equal(admin_call(f, 55, &p, &st), MIM_CMD_ERROR);
  assert_int_equal(st, MIM_ERR_MALFORMED);
  p.from = "";
  assert_int_equal(admin_call(f, 56, &p, &st), MIM_CMD_ERROR);
  assert_int_equal(st, MIM_ERR_MALFORMED);
  p.from = "alice";
  p.content = "\xc3\x28";
  /* the codec refuses it before the logic sees it: bad UTF-8 never gets
   * in through this path either */
  uint8_t body[256];
  size_t len;
  assert_int_equal(mim_packet_encode_body(&p, body, sizeof body, &len), 0);
  assert_int_equal(mim_logic_admin(f->l, 57, p.cmd, body, len), 0);
  /* a group the sender is not in */
  const char *m[] = {"bob", "carol"};
  struct mim_packet g;
  mim_packet_init(&g);
  g.cmd = MIM_CMD_GROUP_CREATE_REQ;
  g.group = "g1";
  g.members = m;
  g.n_members = 2;
  assert_int_equal(admin_call(f, 58, &g, &st), MIM_CMD_GROUP_CREATE_RSP);
  mim_packet_init(&p);
  p.cmd = MIM_CMD_C2G_SEND_REQ;
  p.from = "alice";
  p.group = "g1";
  p.content = "x";
  assert_int_equal(admin_call(f, 59, &p, &st), MIM_CMD_ERROR);
  assert_int_equal(st, MIM_ERR_NOT_MEMBER);
  p.from = "carol";
  assert_int_equal(admin_call_pushes(f, 60, &p, &st, 20, &pushes),
                   MIM_CMD_C2G_SEND_RSP);
  assert_int_equal(pushes, 1);
}

/* Kicking a user kicks every device's connection (reason ADMIN) and
 * unbinds them at once; other users stay. */
static void kick_user_kicks_every_device(void **state) {
  struct fx *f = *state;
  assert_int_equal(login_dev(f, 20, "bob", "phone")->status, 0);
  assert_int_equal(login_dev(f, 21, "bob", "laptop")->status, 0);
  login(f, 30, "carol");
  size_t n = 99;
  assert_int_equal(mim_logic_kick_user(f->l, "bad id", &n), -MIM_ERR_MALFORMED);
  assert_int_equal(mim_logic_kick_user(f->l, "bob", &n), 0);
  assert_int_equal(n, 2);
  size_t kicks = 0;
  struct mim_effect e;
  while (mim_logic_next_effect(f->l, &e) == 0)
    if (e.kind == MIM_EFFECT_KICK) {
      assert_true(e.conn_id == 20 || e.conn_id == 21);
      assert_int_equal(e.reason, MIM_KICK_ADMIN);
      kicks++;
    }
  assert_int_equal(kicks, 2);
  const struct mim_sessions *ss = mim_logic_sessions(f->l);
  assert_int_equal(mim_sessions_foreach_device(ss, "bob", NULL, NULL), 0);
  assert_int_equal(mim_sessions_foreach_device(ss, "carol", NULL, NULL), 1);
  assert_int_equal(mim_logic_kick_user(f->l, "bob", &n), 0);
  assert_int_equal(n, 0);
}

/* review3: a page of one's groups is bounded by the documented 500 even
 * when an operator raised pull_limit_max (docs/protocol.md §10 and §12):
 * the page's bytes are what the RPC queue and send_message_max budgets
 * count on, and a user can belong to any number of groups. */
static void groups_page_is_bounded_by_500(void **state) {
  struct fx *f = *state;
  enum { N = 600 };
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  const char *bob[] = {"bob"};
  for (int i = 0; i < N; i++) {
    char g[32];
    snprintf(g, sizeof g, "g%04d", i);
    size_t idx;
    assert_int_equal(mim_write_batch_add_group(b, MIM_OP_GROUP_CREATE, g, bob,
                                               1, f->now, &idx),
                     0);
  }
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  mim_write_batch_destroy(b);
  /* a logic whose operator raised the pull limit */
  mim_logic_destroy(f->l);
  struct mim_logic_config cfg;
  mim_logic_config_init(&cfg);
  cfg.backend = f->be;
  cfg.dev_auth = true;
  cfg.now_ms = tu_fake_now;
  cfg.clock_user = &f->now;
  cfg.pull_limit_max = 100000;
  cfg.pull_limit_default = 100000;
  assert_int_equal(mim_logic_create(&f->l, &cfg), 0);
  assert_int_equal(mim_logic_gateway_up(f->l, GW, "gw-1"), 0);
  login(f, 20, "bob");
  struct mim_packet q;
  mim_packet_init(&q);
  q.cmd = MIM_CMD_GROUP_LIST_REQ;
  q.seq = 2;
  q.limit = 100000;
  feed(f, 20, &q);
  q.seq = 3;
  q.limit = 0; /* the default is clamped too */
  feed(f, 20, &q);
  pump(f);
  struct mim_packet *r = got(f, 20, MIM_CMD_GROUP_LIST_RSP, 0);
  assert_non_null(r);
  assert_int_equal(r->n_groups, 500);
  assert_true(r->has_more);
  r = got(f, 20, MIM_CMD_GROUP_LIST_RSP, 1);
  assert_non_null(r);
  assert_true(r->n_groups <= 500);
  assert_true(r->has_more);
}

/* A login with `caps` (token "token", development auth). */
static struct mim_packet *login_caps(struct fx *f, uint64_t conn,
                                     const char *uid, const char *device,
                                     uint32_t caps) {
  struct mim_packet a;
  mim_packet_init(&a);
  a.cmd = MIM_CMD_AUTH_REQ;
  a.uid = uid;
  a.device = device;
  a.token = "token";
  a.caps = caps;
  a.seq = 1;
  feed(f, conn, &a);
  pump(f);
  struct mim_packet *r =
      got(f, conn, MIM_CMD_AUTH_RSP, count(f, conn, MIM_CMD_AUTH_RSP) - 1);
  assert_non_null(r);
  assert_int_equal(r->status, 0);
  return r;
}

/* A transient session (the HTTP gateway's POSTs) kicks nobody, gets no
 * pushes, and its acks still move the device's cursor. */
static void transient_session_kicks_nobody_and_gets_no_pushes(void **state) {
  struct fx *f = *state;
  login_dev(f, 10, "bob", "phone");
  login(f, 20, "alice");
  c2c(f, 20, "bob", "x", NULL, 1);
  pump(f);
  struct mim_packet *a = login_caps(f, 11, "bob", "phone", MIM_CAP_TRANSIENT);
  assert_int_equal(a->caps, MIM_CAP_TRANSIENT);
  assert_int_equal(a->last_inbox_seq, 1);
  for (size_t i = 0; i < f->n_seen; i++)
    assert_false(f->seen[i].kick);
  c2c(f, 20, "bob", "y", NULL, 2);
  pump(f);
  /* the live session has both pushes, the transient one none */
  assert_int_equal(count(f, 10, MIM_CMD_C2C_PUSH), 2);
  assert_int_equal(count(f, 11, MIM_CMD_C2C_PUSH), 0);
  /* its ack counts (up to what it could have seen) */
  ack_inbox_seq(f, 11, 1);
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 11});
  pump(f);
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 10});
  pump(f);
  assert_int_equal(login_dev(f, 12, "bob", "phone")->ack_seq, 1);
}

/* MIM_CAP_PULL_NO_ACK: pulls move no cursor; push acks do. */
static void pull_no_ack_session_moves_cursor_only_by_acks(void **state) {
  struct fx *f = *state;
  login(f, 20, "alice");
  for (int i = 0; i < 4; i++)
    c2c(f, 20, "bob", "x", NULL, i + 1);
  pump(f);
  login_caps(f, 10, "bob", "web", MIM_CAP_PULL_NO_ACK);
  pull_after(f, 10, 3, 10, 2);
  pump(f);
  assert_int_equal(got(f, 10, MIM_CMD_PULL_RSP, 0)->n_items, 1);
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 10});
  pump(f);
  assert_int_equal(login_dev(f, 11, "bob", "web")->ack_seq, 0);
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 11});
  pump(f);
  login_caps(f, 12, "bob", "web", MIM_CAP_PULL_NO_ACK);
  ack_inbox_seq(f, 12, 2);
  mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 12});
  pump(f);
  assert_int_equal(login_dev(f, 13, "bob", "web")->ack_seq, 2);
}

/* docs/protocol.md §10: a group's member list is paged (after_member,
 * limit, has_more), each page within reply_bytes_max, so that one member
 * adding many long uids cannot make the list unreadable; a seed request
 * (no limit) gets the whole list when it fits, else the first page. */
static void group_members_are_paged(void **state) {
  struct fx *f = *state;
  enum { N = 1200, UID_LEN = 128 };
  static char names[N][UID_LEN + 1];
  static const char *members[N];
  for (int i = 0; i < N; i++) {
    if (i == 0)
      snprintf(names[i], sizeof names[i], "alice");
    else
      snprintf(names[i], sizeof names[i], "%04d-%0*d", i, UID_LEN - 5, 0);
    members[i] = names[i];
  }
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  size_t idx;
  assert_int_equal(mim_write_batch_add_group(b, MIM_OP_GROUP_CREATE, "big",
                                             members, N, f->now, &idx),
                   0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  mim_write_batch_destroy(b);
  /* a logic with the smallest reply bound: the whole list (~157 KB) does
   * not fit, and a 500-member page of long uids (~65 KB) is cut by it */
  mim_logic_destroy(f->l);
  struct mim_logic_config cfg;
  mim_logic_config_init(&cfg);
  cfg.backend = f->be;
  cfg.dev_auth = true;
  cfg.now_ms = tu_fake_now;
  cfg.clock_user = &f->now;
  cfg.pull_limit_max = 100000;
  cfg.reply_bytes_max = (uint32_t)mim_logic_reply_bytes_min(cfg.content_max);
  assert_true(cfg.reply_bytes_max < (size_t)N * (UID_LEN + 3));
  assert_int_equal(mim_logic_create(&f->l, &cfg), 0);
  assert_int_equal(mim_logic_gateway_up(f->l, GW, "gw-1"), 0);
  login(f, 20, "alice");
  login(f, 30, "stranger");

  /* a seed request: the first page, within the bound, with has_more */
  struct mim_packet q;
  mim_packet_init(&q);
  q.cmd = MIM_CMD_GROUP_LIST_REQ;
  q.group = "big";
  q.seq = 1;
  feed(f, 20, &q);
  pump(f);
  size_t nr = 0;
  struct mim_packet *r = got(f, 20, MIM_CMD_GROUP_LIST_RSP, nr++);
  assert_non_null(r);
  assert_int_equal(r->seq, 1);
  assert_true(r->has_more);
  assert_true(r->n_members > 0 && r->n_members < N);
  size_t bytes = 0;
  for (size_t i = 0; i < r->n_members; i++)
    bytes += strlen(r->members[i]) + 3;
  assert_true(bytes + MIM_REPLY_OVERHEAD <= cfg.reply_bytes_max);

  /* page through: every member once, each page at most 500 and within
   * the bound, has_more until the last */
  static bool seen[N];
  memset(seen, 0, sizeof seen);
  char after[UID_LEN + 1] = "";
  size_t total = 0, pages = 0;
  bool more = true;
  while (more) {
    assert_true(pages++ < 100);
    mim_packet_init(&q);
    q.cmd = MIM_CMD_GROUP_LIST_REQ;
    q.group = "big";
    q.seq = 10 + (int64_t)pages;
    q.limit = 100000; /* clamped to 500 */
    q.after_member = after;
    feed(f, 20, &q);
    pump(f);
    r = got(f, 20, MIM_CMD_GROUP_LIST_RSP, nr++);
    assert_non_null(r);
    assert_int_equal(r->seq, q.seq);
    assert_string_equal(r->group, "big");
    assert_true(r->n_members > 0 && r->n_members <= 500);
    bytes = 0;
    for (size_t i = 0; i < r->n_members; i++) {
      bytes += strlen(r->members[i]) + 3;
      int k = strcmp(r->members[i], "alice") == 0 ? 0 : atoi(r->members[i]);
      assert_true(k >= 0 && k < N);
      assert_string_equal(r->members[i], names[k]);
      assert_false(seen[k]); /* the cursor never repeats a member */
      seen[k] = true;
      total++;
    }
    assert_true(bytes + MIM_REPLY_OVERHEAD <= cfg.reply_bytes_max);
    snprintf(after, sizeof after, "%s", r->members[r->n_members - 1]);
    more = r->has_more;
    clear_seen(f);
    nr = 0;
  }
  assert_int_equal(total, N);
  assert_true(pages >= 3);

  /* a small limit; an unknown cursor gives an empty page; a malformed one
   * and a non-member are refused */
  mim_packet_init(&q);
  q.cmd = MIM_CMD_GROUP_LIST_REQ;
  q.group = "big";
  q.seq = 200;
  q.limit = 2;
  feed(f, 20, &q);
  q.seq = 201;
  q.after_member = "nobody-known";
  feed(f, 20, &q);
  q.seq = 202;
  q.after_member = "bad id";
  feed(f, 20, &q);
  q.seq = 203;
  q.after_member = "";
  feed(f, 30, &q);
  pump(f);
  r = got(f, 20, MIM_CMD_GROUP_LIST_RSP, 0);
  assert_non_null(r);
  assert_int_equal(r->n_members, 2);
  assert_true(r->has_more);
  r = got(f, 20, MIM_CMD_GROUP_LIST_RSP, 1);
  assert_non_null(r);
  assert_int_equal(r->n_members, 0);
  assert_false(r->has_more);
  assert_int_equal(last_error(f, 20)->status, MIM_ERR_MALFORMED);
  assert_int_equal(last_error(f, 30)->status, MIM_ERR_NOT_MEMBER);
}

/* A seed request on a normal group still gets every member, uid order. */
static void seed_group_list_is_whole(void **state) {
  struct fx *f = *state;
  make_team(f);
  struct mim_packet q;
  mim_packet_init(&q);
  q.cmd = MIM_CMD_GROUP_LIST_REQ;
  q.group = "team";
  q.seq = 7;
  feed(f, 10, &q);
  pump(f);
  struct mim_packet *r = got(f, 10, MIM_CMD_GROUP_LIST_RSP, 0);
  assert_non_null(r);
  assert_int_equal(r->n_members, 3);
  assert_string_equal(r->members[0], "alice");
  assert_string_equal(r->members[1], "bob");
  assert_string_equal(r->members[2], "carol");
  assert_false(r->has_more);
}

/* ---- conversations, read positions, receipts (docs/protocol.md §18) ---- */

static void mark_read_req(struct fx *f, uint64_t conn, const char *peer,
                          const char *group, uint64_t conv_seq, int64_t seq) {
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_MARK_READ_REQ;
  s.peer = peer;
  s.group = group;
  s.conv_seq = conv_seq;
  s.seq = seq;
  feed(f, conn, &s);
}

static struct mim_packet *conv_list_req(struct fx *f, uint64_t conn,
                                        int64_t seq) {
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_CONV_LIST_REQ;
  s.seq = seq;
  feed(f, conn, &s);
  pump(f);
  size_t n = count(f, conn, MIM_CMD_CONV_LIST_RSP);
  assert_true(n > 0);
  struct mim_packet *r = got(f, conn, MIM_CMD_CONV_LIST_RSP, n - 1);
  assert_int_equal(r->seq, seq);
  return r;
}

static void read_positions_sync_devices_and_reach_the_peer(void **state) {
  struct fx *f = *state;
  login_caps(f, 10, "alice", "phone", MIM_CAP_READ);
  login_caps(f, 11, "alice", "laptop", MIM_CAP_READ);
  login_caps(f, 20, "bob", "phone", MIM_CAP_READ);
  login_caps(f, 21, "bob", "seed", 0); /* a seed client: nothing new */
  c2c(f, 20, "alice", "one", NULL, 1);
  c2c(f, 20, "alice", "two", NULL, 2);
  pump(f);
  struct mim_packet *l = conv_list_req(f, 11, 3);
  assert_int_equal(l->n_convs, 1);
  assert_string_equal(l->convs[0].peer, "bob");
  assert_int_equal(l->convs[0].unread, 2);
  assert_string_equal(l->convs[0].preview, "two");
  assert_string_equal(l->convs[0].last_from, "bob");
  /* bob's own messages are not unread for him */
  l = conv_list_req(f, 21, 4);
  assert_int_equal(l->convs[0].unread, 0);
  assert_int_equal(l->convs[0].read_seq, 2);

  mark_read_req(f, 10, "bob", NULL, 1, 5);
  pump(f);
  struct mim_packet *r = got(f, 10, MIM_CMD_MARK_READ_RSP, 0);
  assert_non_null(r);
  assert_int_equal(r->seq, 5);
  assert_int_equal(r->read_seq, 1);
  assert_int_equal(r->unread, 1);
  /* the other device follows at once; the requesting one has the reply */
  assert_int_equal(count(f, 10, MIM_CMD_READ_SYNC), 0);
  struct mim_packet *sy = got(f, 11, MIM_CMD_READ_SYNC, 0);
  assert_non_null(sy);
  assert_string_equal(sy->peer, "bob");
  assert_int_equal(sy->read_seq, 1);
  assert_int_equal(sy->unread, 1);
  /* the peer's devices that asked for receipts learn it */
  struct mim_packet *rc = got(f, 20, MIM_CMD_READ_RECEIPT, 0);
  assert_non_null(rc);
  assert_string_equal(rc->from, "alice");
  assert_int_equal(rc->read_seq, 1);
  assert_int_equal(count(f, 21, MIM_CMD_READ_RECEIPT), 0);
  assert_int_equal(count(f, 21, MIM_CMD_READ_SYNC), 0);
  l = conv_list_req(f, 11, 6);
  assert_int_equal(l->convs[0].unread, 1);
  l = conv_list_req(f, 20, 7);
  assert_int_equal(l->convs[0].peer_read_seq, 1);

  /* backwards: no move, no pushes */
  mark_read_req(f, 10, "bob", NULL, 0, 8);
  pump(f);
  r = got(f, 10, MIM_CMD_MARK_READ_RSP, 1);
  assert_non_null(r);
  assert_int_equal(r->read_seq, 1);
  assert_int_equal(count(f, 11, MIM_CMD_READ_SYNC), 1);
  assert_int_equal(count(f, 20, MIM_CMD_READ_RECEIPT), 1);

  /* an answer reads the conversation for its sender */
  c2c(f, 11, "bob", "three", NULL, 9);
  pump(f);
  l = conv_list_req(f, 10, 10);
  assert_int_equal(l->convs[0].unread, 0);
  assert_int_equal(l->convs[0].read_seq, 3);

  /* both or neither of peer and group: malformed */
  mark_read_req(f, 10, "bob", "g", 1, 11);
  pump(f);
  assert_int_equal(last_error(f, 10)->status,
                   mim_err_wire_code(-MIM_ERR_MALFORMED));
  mark_read_req(f, 10, NULL, NULL, 1, 12);
  pump(f);
  assert_int_equal(last_error(f, 10)->seq, 12);
}

static void read_by_counts_group_members(void **state) {
  struct fx *f = *state;
  make_team(f); /* alice (10) with bob and carol */
  login_caps(f, 20, "bob", "phone", MIM_CAP_READ);
  login(f, 40, "dave");
  c2g(f, 10, "team", "hello team", 1);
  pump(f);
  struct mim_packet *s = got(f, 10, MIM_CMD_C2G_SEND_RSP, 0);
  assert_non_null(s);
  struct mim_packet *l = conv_list_req(f, 20, 2);
  assert_int_equal(l->n_convs, 1);
  assert_string_equal(l->convs[0].group, "team");
  uint64_t msg_seq = l->convs[0].last_conv_seq;
  assert_int_equal(l->convs[0].unread, 2); /* the create notice and it */
  mark_read_req(f, 20, NULL, "team", msg_seq, 3);
  pump(f);
  assert_int_equal(got(f, 20, MIM_CMD_MARK_READ_RSP, 0)->unread, 0);

  struct mim_packet q;
  mim_packet_init(&q);
  q.cmd = MIM_CMD_READ_BY_REQ;
  q.group = "team";
  q.conv_seq = msg_seq;
  q.limit = 10;
  q.seq = 4;
  feed(f, 10, &q);
  pump(f);
  struct mim_packet *r = got(f, 10, MIM_CMD_READ_BY_RSP, 0);
  assert_non_null(r);
  assert_int_equal(r->read_count, 2); /* alice sent it, bob read it */
  assert_int_equal(r->member_count, 3);
  assert_int_equal(r->n_members, 2);
  assert_string_equal(r->members[0], "alice");
  assert_string_equal(r->members[1], "bob");
  /* limit 0: the counts only */
  q.limit = 0;
  q.seq = 5;
  feed(f, 10, &q);
  pump(f);
  r = got(f, 10, MIM_CMD_READ_BY_RSP, 1);
  assert_int_equal(r->read_count, 2);
  assert_int_equal(r->n_members, 0);
  /* strangers learn nothing */
  q.seq = 6;
  feed(f, 40, &q);
  pump(f);
  assert_int_equal(last_error(f, 40)->status,
                   mim_err_wire_code(-MIM_ERR_NOT_MEMBER));
  mark_read_req(f, 40, NULL, "team", 1, 7);
  pump(f);
  assert_int_equal(last_error(f, 40)->seq, 7);
  assert_int_equal(last_error(f, 40)->status,
                   mim_err_wire_code(-MIM_ERR_NOT_MEMBER));
}

static void conv_list_pages_are_bounded(void **state) {
  struct fx *f = *state;
  mim_logic_destroy(f->l);
  clear_seen(f);
  struct mim_logic_config cfg;
  mim_logic_config_init(&cfg);
  cfg.backend = f->be;
  cfg.secret = SECRET;
  cfg.secret_len = sizeof SECRET - 1;
  cfg.dev_auth = f->dev_auth;
  cfg.now_ms = tu_fake_now;
  cfg.clock_user = &f->now;
  cfg.conv_page_max = 2;
  cfg.conv_preview_max = 3;
  assert_int_equal(mim_logic_create(&f->l, &cfg), 0);
  assert_int_equal(mim_logic_gateway_up(f->l, GW, "gw-1"), 0);
  login(f, 10, "alice");
  login(f, 20, "bob");
  login(f, 30, "carol");
  login(f, 40, "dave");
  c2c(f, 20, "alice", "from bob", NULL, 1);
  c2c(f, 30, "alice", "from carol", NULL, 1);
  c2c(f, 40, "alice", "from dave", NULL, 1);
  pump(f);
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_CONV_LIST_REQ;
  s.limit = 1000; /* more than allowed: the maximum */
  s.seq = 2;
  feed(f, 10, &s);
  pump(f);
  struct mim_packet *l = got(f, 10, MIM_CMD_CONV_LIST_RSP, 0);
  assert_int_equal(l->n_convs, 2);
  assert_true(l->has_more);
  assert_string_equal(l->convs[0].peer, "dave");
  assert_string_equal(l->convs[0].preview, "fro");
  assert_true(l->convs[0].preview_cut);
  s.msg_id = l->convs[1].last_msg_id;
  s.seq = 3;
  feed(f, 10, &s);
  pump(f);
  l = got(f, 10, MIM_CMD_CONV_LIST_RSP, 1);
  assert_int_equal(l->n_convs, 1);
  assert_false(l->has_more);
  assert_string_equal(l->convs[0].peer, "bob");
}

/* ---- review: conversation reads are reads (rev5) ---- */

static void read_by_req(struct fx *f, uint64_t conn, const char *group,
                        uint64_t conv_seq, int32_t limit, int64_t seq) {
  struct mim_packet q;
  mim_packet_init(&q);
  q.cmd = MIM_CMD_READ_BY_REQ;
  q.group = group;
  q.conv_seq = conv_seq;
  q.limit = limit;
  q.seq = seq;
  feed(f, conn, &q);
}

/* Pipelined conversation lists and read-by requests wait their turn like
 * pulls do: one client's queue of them is not run all at once in one
 * turn of the loop, ahead of everyone else. */
static void conv_reads_run_in_turns(void **state) {
  struct fx *f = *state;
  reopen_bounded(f, 0, 8 * 1024); /* 8 reads of the 1 KiB minimum */
  make_team(f);
  login(f, 20, "bob");
  c2g(f, 10, "team", "hello", 1);
  pump(f);
  clear_seen(f);
  for (int i = 0; i < 40; i++) {
    struct mim_packet s;
    mim_packet_init(&s);
    s.cmd = MIM_CMD_CONV_LIST_REQ;
    s.seq = 1000 + i;
    feed(f, 20, &s);
  }
  for (int i = 0; i < 40; i++)
    read_by_req(f, 20, "team", 1, 0, 2000 + i);
  drain(f);
  size_t first = count(f, 20, MIM_CMD_CONV_LIST_RSP) +
                 count(f, 20, MIM_CMD_READ_BY_RSP);
  assert_true(first >= 1 && first <= 9);
  assert_int_equal(mim_logic_next_timeout(f->l), 0); /* more next turn */
  for (int turn = 0; turn < 200 && count(f, 20, MIM_CMD_READ_BY_RSP) < 40;
       turn++) {
    mim_logic_tick(f->l);
    drain(f);
  }
  assert_int_equal(count(f, 20, MIM_CMD_CONV_LIST_RSP), 40);
  assert_int_equal(count(f, 20, MIM_CMD_READ_BY_RSP), 40);
  for (size_t i = 0; i < 40; i++) { /* in request order */
    assert_int_equal(got(f, 20, MIM_CMD_CONV_LIST_RSP, i)->seq,
                     1000 + (int64_t)i);
    assert_int_equal(got(f, 20, MIM_CMD_READ_BY_RSP, i)->seq,
                     2000 + (int64_t)i);
  }
}

/* A read-by looks up every member's read position, whatever page it
 * asks for: it weighs on the turn by the members it scanned, not by its
 * (tiny) reply, so counts-only requests on a big group cannot take a
 * whole turn's worth of store lookups each. */
static void read_by_weighs_by_members(void **state) {
  struct fx *f = *state;
  reopen_bounded(f, 0, 32 * 1024);
  enum { N = 400 };
  static char names[N][12];
  const char *m[N];
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "u%03d", i);
    m[i] = names[i];
  }
  login(f, 10, "alice");
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "big400", m, N, 1);
  pump(f);
  assert_non_null(got(f, 10, MIM_CMD_GROUP_CREATE_RSP, 0));
  clear_seen(f);
  for (int i = 0; i < 30; i++)
    read_by_req(f, 10, "big400", 1, 0, 100 + i);
  drain(f);
  size_t first = count(f, 10, MIM_CMD_READ_BY_RSP);
  assert_true(first >= 1);
  assert_int_equal(got(f, 10, MIM_CMD_READ_BY_RSP, 0)->member_count, N + 1);
  /* 401 members at MIM__READ_BY_MEMBER_COST bytes each: a few a turn */
  assert_true(first <= 4);
  for (int turn = 0; turn < 200 && count(f, 10, MIM_CMD_READ_BY_RSP) < 30;
       turn++) {
    mim_logic_tick(f->l);
    drain(f);
  }
  assert_int_equal(count(f, 10, MIM_CMD_READ_BY_RSP), 30);
}

/* A readers page stays within reply_bytes_max whatever the uids' lengths
 * (conv_page_max long uids can weigh 130 KB); the rest follows by
 * after_uid. */
static void read_by_page_fits_reply_bytes_max(void **state) {
  struct fx *f = *state;
  reopen_bounded(f, 4096, 0);
  enum { N = 60 };
  static char names[N][121];
  const char *m[N];
  for (int i = 0; i < N; i++) {
    memset(names[i], 'a' + i % 26, 116);
    snprintf(names[i] + 116, 5, "%04d", i);
    m[i] = names[i];
  }
  login(f, 10, "alice");
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "long", m, N, 1);
  pump(f);
  assert_non_null(got(f, 10, MIM_CMD_GROUP_CREATE_RSP, 0));
  /* each member sends one message: its position passes conv seq 1 */
  for (int i = 0; i < N; i++) {
    login(f, 100 + (uint64_t)i, names[i]);
    c2g(f, 100 + (uint64_t)i, "long", "hi", 2);
  }
  pump(f);
  clear_seen(f);
  size_t total = 0;
  const char *after = NULL;
  char last[MIM_ID_MAX + 1] = "";
  for (int page = 0; page < N + 1; page++) {
    struct mim_packet q;
    mim_packet_init(&q);
    q.cmd = MIM_CMD_READ_BY_REQ;
    q.group = "long";
    q.conv_seq = 1;
    q.limit = 100;
    q.after_uid = after;
    q.seq = 1000 + page;
    feed(f, 10, &q);
    pump(f);
    struct mim_packet *r = got(f, 10, MIM_CMD_READ_BY_RSP, (size_t)page);
    assert_non_null(r);
    /* the members who sent, and the creator (its own notice) */
    assert_int_equal(r->read_count, N + 1);
    assert_true(body_size(r) <= 4096);
    assert_true(r->n_members >= 1);
    total += r->n_members;
    snprintf(last, sizeof last, "%s", r->members[r->n_members - 1]);
    after = last;
    if (!r->has_more)
      break;
  }
  assert_int_equal(total, N + 1);
}

/* A member who joined later sees the group from there on (like history):
 * "read by" about a message from before they joined tells them nothing
 * of who was reading the group then. */
static void read_by_is_from_the_join_on(void **state) {
  struct fx *f = *state;
  make_team(f); /* alice (10) with bob and carol */
  login(f, 20, "bob");
  c2g(f, 10, "team", "old news", 1);
  pump(f);
  struct mim_packet *l = conv_list_req(f, 20, 2);
  uint64_t old = l->convs[0].last_conv_seq;
  mark_read_req(f, 20, NULL, "team", old, 3);
  pump(f);
  const char *d[] = {"dave"};
  group_req(f, 10, MIM_CMD_GROUP_ADD_REQ, "team", d, 1, 4);
  pump(f);
  assert_non_null(got(f, 10, MIM_CMD_GROUP_ADD_RSP, 0));
  login(f, 40, "dave");
  c2g(f, 10, "team", "news", 5);
  pump(f);
  l = conv_list_req(f, 40, 6);
  uint64_t now = l->convs[0].last_conv_seq;
  assert_true(now > old);
  read_by_req(f, 40, "team", old, 10, 7);
  pump(f);
  assert_int_equal(count(f, 40, MIM_CMD_READ_BY_RSP), 0);
  assert_non_null(last_error(f, 40));
  assert_int_equal(last_error(f, 40)->seq, 7);
  assert_int_equal(last_error(f, 40)->status,
                   mim_err_wire_code(-MIM_ERR_NOT_MEMBER));
  assert_int_equal(count(f, 40, MIM_CMD_READ_BY_RSP), 0);
  read_by_req(f, 40, "team", now, 10, 8);
  pump(f);
  struct mim_packet *r = got(f, 40, MIM_CMD_READ_BY_RSP, 0);
  assert_non_null(r);
  assert_int_equal(r->member_count, 4);
  /* members from the start still ask about it */
  read_by_req(f, 20, "team", old, 10, 9);
  pump(f);
  r = got(f, 20, MIM_CMD_READ_BY_RSP, 0);
  assert_non_null(r);
  assert_int_equal(r->read_count, 2);
}

/* Delivery receipts: when a device of the receiver acknowledges live
 * pushes, the sender's connections that asked (MIM_CAP_READ) hear
 * DELIVERED up to the newest conv seq acknowledged, once per ack; a seed
 * sender hears nothing; a seed receiver's msg_id acks count too. */
static void delivered_when_a_device_acks(void **state) {
  struct fx *f = *state;
  login_caps(f, 10, "alice", "phone", MIM_CAP_READ);
  login_caps(f, 11, "alice", "seed", 0);
  login_caps(f, 20, "bob", "phone", 0);
  c2c(f, 10, "bob", "one", NULL, 1);
  c2c(f, 10, "bob", "two", NULL, 2);
  pump(f);
  assert_int_equal(count(f, 10, MIM_CMD_DELIVERED), 0); /* not acked yet */
  struct mim_packet *p2 = got(f, 20, MIM_CMD_C2C_PUSH, 1);
  assert_non_null(p2);
  assert_int_equal(p2->conv_seq, 2);
  ack_inbox_seq(f, 20, p2->inbox_seq); /* both at once */
  pump(f);
  assert_int_equal(count(f, 10, MIM_CMD_DELIVERED), 1);
  struct mim_packet *d = got(f, 10, MIM_CMD_DELIVERED, 0);
  assert_string_equal(d->from, "bob");
  assert_int_equal(d->conv_seq, 2);
  assert_int_equal(d->seq, 0);
  assert_int_equal(count(f, 11, MIM_CMD_DELIVERED), 0);
  /* a seed-style ack by msg_id */
  c2c(f, 11, "bob", "three", NULL, 3);
  pump(f);
  struct mim_packet *p3 = got(f, 20, MIM_CMD_C2C_PUSH, 2);
  assert_non_null(p3);
  struct mim_packet ack;
  mim_packet_init(&ack);
  ack.cmd = MIM_CMD_C2C_PUSH_ACK;
  ack.msg_id = p3->msg_id;
  feed(f, 20, &ack);
  pump(f);
  assert_int_equal(count(f, 10, MIM_CMD_DELIVERED), 2);
  assert_int_equal(got(f, 10, MIM_CMD_DELIVERED, 1)->conv_seq, 3);
  /* bob's answer acked by alice's seed device: bob did not ask */
  c2c(f, 20, "alice", "back", NULL, 4);
  pump(f);
  struct mim_packet *pa = got(f, 11, MIM_CMD_C2C_PUSH, 0);
  assert_non_null(pa);
  ack_inbox_seq(f, 11, pa->inbox_seq);
  pump(f);
  assert_int_equal(count(f, 20, MIM_CMD_DELIVERED), 0);
}

/* ---- recall, edit, delete-for-me (docs/protocol.md §19) ---- */

static void msg_change_req(struct fx *f, uint64_t conn, uint64_t msg_id,
                           uint32_t action, const char *peer,
                           const char *group, const char *content,
                           int64_t seq) {
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_MSG_CHANGE_REQ;
  p.msg_id = msg_id;
  p.type = action;
  p.peer = peer;
  p.group = group;
  p.content = content;
  p.seq = seq;
  feed(f, conn, &p);
}

static void recall_reaches_change_devices_and_offline_pulls(void **state) {
  struct fx *f = *state;
  login_caps(f, 10, "alice", "phone", MIM_CAP_CHANGE);
  login_caps(f, 11, "alice", "laptop", MIM_CAP_CHANGE);
  login_caps(f, 20, "bob", "phone", MIM_CAP_CHANGE);
  login_caps(f, 21, "bob", "seed", 0); /* a seed client: nothing new */
  c2c(f, 10, "bob", "oops", NULL, 1);
  pump(f);
  struct mim_packet *sent = got(f, 10, MIM_CMD_C2C_SEND_RSP, 0);
  assert_non_null(sent);
  uint64_t id = sent->msg_id;
  clear_seen(f);

  msg_change_req(f, 10, id, MIM_CHANGE_RECALL, "bob", NULL, NULL, 2);
  pump(f);
  struct mim_packet *r = got(f, 10, MIM_CMD_MSG_CHANGE_RSP, 0);
  assert_non_null(r);
  assert_int_equal(r->seq, 2);
  assert_int_equal(r->msg_id, id);
  assert_int_equal(r->type, MIM_CHANGE_RECALL);
  assert_int_equal(r->conv_seq, 1);
  /* the requester has its reply, every other CAP_CHANGE device a push
   * naming the conversation as it sees it; the seed client nothing */
  assert_int_equal(count(f, 10, MIM_CMD_MSG_CHANGED), 0);
  struct mim_packet *pa = got(f, 11, MIM_CMD_MSG_CHANGED, 0);
  assert_non_null(pa);
  assert_string_equal(pa->peer, "bob");
  assert_string_equal(pa->from, "alice");
  struct mim_packet *pb = got(f, 20, MIM_CMD_MSG_CHANGED, 0);
  assert_non_null(pb);
  assert_string_equal(pb->peer, "alice");
  assert_int_equal(pb->msg_id, id);
  assert_int_equal(pb->change_time, f->now);
  assert_int_equal(f->n_seen, 3);
  /* the conversation list shows the tombstone, not the old text */
  struct mim_packet *cl = conv_list_req(f, 20, 9);
  assert_int_equal(cl->convs[0].last_msg_id, id);
  assert_int_equal(cl->convs[0].last_state, MIM_MSG_STATE_RECALLED);
  assert_string_equal(cl->convs[0].preview, "");
  /* a recall is not a new message: bob's unread count is still 1 */
  assert_int_equal(cl->convs[0].unread, 1);
  assert_int_equal(cl->convs[0].last_conv_seq, 1);

  /* a CAP_CHANGE device that was away pulls the change entry; a seed
   * client pulls nothing new (a hole) */
  clear_seen(f);
  pull_after(f, 20, 1, 10, 3);
  pull_after(f, 21, 1, 10, 4);
  pump(f);
  struct mim_packet *pl = got(f, 20, MIM_CMD_PULL_RSP, 0);
  assert_int_equal(pl->n_items, 1);
  assert_int_equal(pl->items[0].msg_id, id);
  assert_int_equal(pl->items[0].inbox_seq, 2);
  assert_int_equal(pl->items[0].state, MIM_MSG_STATE_RECALLED);
  assert_string_equal(pl->items[0].content, "");
  pl = got(f, 21, MIM_CMD_PULL_RSP, 0);
  assert_int_equal(pl->n_items, 0);
  assert_int_equal(pl->last_inbox_seq, 2);
  /* a re-pull of the whole inbox shows the tombstone */
  clear_seen(f);
  pull_after(f, 21, 0, 10, 5);
  pump(f);
  pl = got(f, 21, MIM_CMD_PULL_RSP, 0);
  assert_int_equal(pl->n_items, 1);
  assert_int_equal(pl->items[0].state, MIM_MSG_STATE_RECALLED);
  assert_string_equal(pl->items[0].content, "");

  /* not bob's to recall; a stranger cannot even tell it exists */
  login_caps(f, 30, "carol", "phone", MIM_CAP_CHANGE);
  clear_seen(f);
  msg_change_req(f, 20, id, MIM_CHANGE_EDIT, "alice", NULL, "x", 6);
  msg_change_req(f, 30, id, MIM_CHANGE_RECALL, "alice", NULL, NULL, 7);
  msg_change_req(f, 30, id + 100, MIM_CHANGE_RECALL, "alice", NULL, NULL, 8);
  pump(f);
  assert_int_equal(last_error(f, 20)->status,
                   mim_err_wire_code(-MIM_ERR_FORBIDDEN));
  struct mim_packet *e1 = got(f, 30, MIM_CMD_ERROR, 0);
  struct mim_packet *e2 = got(f, 30, MIM_CMD_ERROR, 1);
  assert_int_equal(e1->status, mim_err_wire_code(-MIM_ERR_NOT_FOUND));
  assert_int_equal(e2->status, e1->status);
  assert_int_equal(count(f, 11, MIM_CMD_MSG_CHANGED), 0);
}

static void edit_window_and_delete_for_me(void **state) {
  struct fx *f = *state;
  login_caps(f, 10, "alice", "phone", MIM_CAP_CHANGE);
  login_caps(f, 11, "alice", "laptop", MIM_CAP_CHANGE);
  login_caps(f, 20, "bob", "phone", MIM_CAP_CHANGE);
  c2c(f, 10, "bob", "helo", NULL, 1);
  pump(f);
  uint64_t id = got(f, 10, MIM_CMD_C2C_SEND_RSP, 0)->msg_id;
  clear_seen(f);
  /* past the recall window (300 s), inside the edit window */
  f->now += 301 * 1000;
  msg_change_req(f, 10, id, MIM_CHANGE_RECALL, "bob", NULL, NULL, 2);
  msg_change_req(f, 10, id, MIM_CHANGE_EDIT, "bob", NULL, "hello", 3);
  pump(f);
  assert_int_equal(got(f, 10, MIM_CMD_ERROR, 0)->status,
                   mim_err_wire_code(-MIM_ERR_WINDOW_PASSED));
  assert_non_null(got(f, 10, MIM_CMD_MSG_CHANGE_RSP, 0));
  struct mim_packet *pb = got(f, 20, MIM_CMD_MSG_CHANGED, 0);
  assert_non_null(pb);
  assert_int_equal(pb->type, MIM_CHANGE_EDIT);
  assert_string_equal(pb->content, "hello");
  /* an edit is bounded like a send */
  char big[40000];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  msg_change_req(f, 10, id, MIM_CHANGE_EDIT, "bob", NULL, big, 4);
  pump(f);
  assert_int_equal(last_error(f, 10)->status,
                   mim_err_wire_code(-MIM_ERR_TOO_LARGE));
  /* delete-for-me: only alice's other device hears of it */
  clear_seen(f);
  msg_change_req(f, 10, id, MIM_CHANGE_DELETE_FOR_ME, "bob", NULL, NULL, 5);
  pump(f);
  assert_non_null(got(f, 10, MIM_CMD_MSG_CHANGE_RSP, 0));
  assert_non_null(got(f, 11, MIM_CMD_MSG_CHANGED, 0));
  assert_int_equal(count(f, 20, MIM_CMD_MSG_CHANGED), 0);
  /* alice's history no longer holds it; bob's shows the edit */
  clear_seen(f);
  struct mim_packet h;
  mim_packet_init(&h);
  h.cmd = MIM_CMD_HISTORY_REQ;
  h.peer = "bob";
  h.seq = 6;
  feed(f, 11, &h);
  h.peer = "alice";
  feed(f, 20, &h);
  pump(f);
  assert_int_equal(got(f, 11, MIM_CMD_HISTORY_RSP, 0)->n_items, 0);
  struct mim_packet *hb = got(f, 20, MIM_CMD_HISTORY_RSP, 0);
  assert_int_equal(hb->n_items, 1);
  assert_int_equal(hb->items[0].state, MIM_MSG_STATE_EDITED);
  assert_string_equal(hb->items[0].content, "hello");
}

/* Change entries are holes for a connection without MIM_CAP_CHANGE: a
 * pull by after_seq never answers "nothing, has_more" (it reads past
 * them), and past a bound it hands one out, so every page makes
 * progress. */
static void pulls_without_change_cap_make_progress(void **state) {
  struct fx *f = *state;
  login_caps(f, 10, "alice", "phone", MIM_CAP_CHANGE);
  login_caps(f, 20, "bob", "seed", 0);
  enum { N = 20 };
  uint64_t ids[N];
  for (int i = 0; i < N; i++) {
    c2c(f, 10, "bob", "m", NULL, 100 + i);
    pump(f);
    ids[i] = got(f, 10, MIM_CMD_C2C_SEND_RSP, (size_t)i)->msg_id;
  }
  for (int i = 0; i < N; i++)
    msg_change_req(f, 10, ids[i], MIM_CHANGE_RECALL, "bob", NULL, NULL,
                   200 + i);
  pump(f);
  c2c(f, 10, "bob", "last", NULL, 300);
  pump(f);
  clear_seen(f);
  /* bob's inbox: 1..20 the messages, 21..40 the change entries, 41 "last" */
  pull_after(f, 20, N, 8, 1);
  pump(f);
  struct mim_packet *r = got(f, 20, MIM_CMD_PULL_RSP, 0);
  assert_int_equal(r->n_items, 1);
  assert_int_equal(r->items[0].inbox_seq, 2 * N + 1);
  assert_string_equal(r->items[0].content, "last");
  /* one entry a page: past 16 pages of holes, a change entry comes out */
  clear_seen(f);
  pull_after(f, 20, N, 1, 2);
  pump(f);
  r = got(f, 20, MIM_CMD_PULL_RSP, 0);
  assert_int_equal(r->n_items, 1);
  assert_int_equal(r->items[0].inbox_seq, N + 16);
  assert_int_equal(r->items[0].state, MIM_MSG_STATE_RECALLED);
  assert_string_equal(r->items[0].content, "");
  assert_true(r->has_more);
}

/* ---- typing and presence (docs/protocol.md §20, §21) ---- */

static void reopen_presence(struct fx *f, uint32_t group_max,
                            uint32_t sub_max) {
  mim_logic_destroy(f->l);
  struct mim_logic_config cfg;
  mim_logic_config_init(&cfg);
  cfg.backend = f->be;
  cfg.dev_auth = true;
  cfg.now_ms = tu_fake_now;
  cfg.clock_user = &f->now;
  cfg.typing_group_max = group_max;
  cfg.presence_subscribe_max = sub_max;
  assert_int_equal(mim_logic_create(&f->l, &cfg), 0);
  assert_int_equal(mim_logic_gateway_up(f->l, GW, "gw-1"), 0);
  assert_int_equal(mim_logic_gateway_up(f->l, GW2, "gw-2"), 0);
}

static void typing_req(struct fx *f, uint64_t conn, const char *peer,
                       const char *group) {
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_TYPING_REQ;
  s.peer = peer;
  s.group = group;
  s.seq = 77;
  feed(f, conn, &s);
  pump(f);
}

static uint64_t typing_stat(struct fx *f, bool dropped) {
  struct mim_logic_stats st = {.size = sizeof st};
  assert_int_equal(mim_logic_stats(f->l, &st), 0);
  return dropped ? st.typing_dropped : st.typing_relayed;
}

/* Typing reaches the other participants' CAP_TYPING devices only: not the
 * typist's own, not a seed client, not a stranger, not from a non-member,
 * and not to a peer one never talked with. It is never answered. */
static void typing_reaches_the_peers_typing_devices_only(void **state) {
  struct fx *f = *state;
  login_caps(f, 10, "alice", "phone", MIM_CAP_TYPING);
  login_caps(f, 11, "alice", "laptop", MIM_CAP_TYPING);
  login_caps(f, 20, "bob", "phone", MIM_CAP_TYPING);
  login_caps(f, 21, "bob", "seed", 0);
  login_caps(f, 30, "carol", "phone", MIM_CAP_TYPING);
  /* no conversation yet: nobody can ping a stranger */
  typing_req(f, 10, "bob", NULL);
  assert_int_equal(count(f, 20, MIM_CMD_TYPING), 0);
  assert_int_equal(typing_stat(f, true), 1);
  c2c(f, 20, "alice", "hi", NULL, 2);
  pump(f);
  typing_req(f, 10, "bob", NULL);
  struct mim_packet *t = got(f, 20, MIM_CMD_TYPING, 0);
  assert_non_null(t);
  assert_string_equal(t->from, "alice");
  assert_string_equal(t->group, "");
  assert_int_equal(count(f, 21, MIM_CMD_TYPING), 0); /* seed client */
  assert_int_equal(count(f, 10, MIM_CMD_TYPING), 0); /* the typist */
  assert_int_equal(count(f, 11, MIM_CMD_TYPING), 0); /* its other device */
  assert_int_equal(count(f, 30, MIM_CMD_TYPING), 0);
  assert_int_equal(count(f, 10, MIM_CMD_ERROR), 0);  /* never answered */
  /* a group: members hear it, a non-member's typing is dropped */
  const char *m[] = {"bob"};
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "g-typing", m, 1, 3);
  pump(f);
  typing_req(f, 30, NULL, "g-typing");
  assert_int_equal(count(f, 20, MIM_CMD_TYPING), 1);
  typing_req(f, 10, NULL, "g-typing");
  t = got(f, 20, MIM_CMD_TYPING, 1);
  assert_non_null(t);
  assert_string_equal(t->group, "g-typing");
  assert_int_equal(count(f, 11, MIM_CMD_TYPING), 0);
  assert_int_equal(count(f, 30, MIM_CMD_TYPING), 0);
  /* malformed: both or neither of peer and group */
  typing_req(f, 10, "bob", "g-typing");
  struct mim_packet *e = last_error(f, 10);
  assert_non_null(e);
  assert_int_equal(e->failed_cmd, MIM_CMD_TYPING_REQ);
  assert_int_equal(e->status, mim_err_wire_code(-MIM_ERR_MALFORMED));
}

/* Over typing_burst in a moment, indicators are dropped silently and
 * counted; the bucket refills at typing_rate_per_s. */
static void typing_is_rate_limited(void **state) {
  struct fx *f = *state;
  login_caps(f, 10, "alice", "phone", MIM_CAP_TYPING);
  login_caps(f, 20, "bob", "phone", MIM_CAP_TYPING);
  c2c(f, 20, "alice", "hi", NULL, 2);
  pump(f);
  for (int i = 0; i < 8; i++)
    typing_req(f, 10, "bob", NULL);
  assert_int_equal(count(f, 20, MIM_CMD_TYPING), 5); /* the default burst */
  assert_int_equal(typing_stat(f, true), 3);
  assert_int_equal(count(f, 10, MIM_CMD_ERROR), 0);
  f->now += 1000; /* two a second */
  for (int i = 0; i < 4; i++)
    typing_req(f, 10, "bob", NULL);
  assert_int_equal(count(f, 20, MIM_CMD_TYPING), 7);
}

/* In a group larger than typing_group_max, typing is not relayed. */
static void typing_is_not_relayed_in_big_groups(void **state) {
  struct fx *f = *state;
  reopen_presence(f, 2, 0);
  login_caps(f, 10, "alice", "phone", MIM_CAP_TYPING);
  login_caps(f, 20, "bob", "phone", MIM_CAP_TYPING);
  const char *two[] = {"bob"};
  const char *three[] = {"bob", "carol"};
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "g-small", two, 1, 2);
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "g-big", three, 2, 3);
  pump(f);
  typing_req(f, 10, NULL, "g-small");
  assert_int_equal(count(f, 20, MIM_CMD_TYPING), 1);
  typing_req(f, 10, NULL, "g-big");
  assert_int_equal(count(f, 20, MIM_CMD_TYPING), 1);
  assert_int_equal(typing_stat(f, true), 1);
}

static struct mim_packet *presence_req(struct fx *f, uint64_t conn,
                                       const char *const *uids, size_t n,
                                       bool subscribe, int64_t seq) {
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_PRESENCE_REQ;
  s.members = uids;
  s.n_members = n;
  s.subscribe = subscribe;
  s.seq = seq;
  feed(f, conn, &s);
  pump(f);
  size_t k = count(f, conn, MIM_CMD_PRESENCE_RSP);
  if (k == 0)
    return NULL;
  struct mim_packet *r = got(f, conn, MIM_CMD_PRESENCE_RSP, k - 1);
  return r->seq == seq ? r : NULL;
}

static const struct mim_presence_item *
item_of(const struct mim_packet *r, const char *uid) {
  for (size_t i = 0; i < r->n_presences; i++)
    if (strcmp(r->presences[i].uid, uid) == 0)
      return &r->presences[i];
  return NULL;
}

/* A query answers for the caller, its peers and its groups' members;
 * strangers and unknown uids are left out alike. Subscribed connections
 * hear the first device come and the last one go, with last_seen. */
static void presence_hides_strangers_and_pushes_changes(void **state) {
  struct fx *f = *state;
  login_caps(f, 10, "alice", "phone", MIM_CAP_PRESENCE);
  login_caps(f, 20, "bob", "phone", 0);
  login_caps(f, 21, "bob", "laptop", 0);
  login_caps(f, 30, "carol", "phone", 0);
  login_caps(f, 40, "dave", "phone", 0);
  c2c(f, 20, "alice", "hi", NULL, 2);
  const char *m[] = {"dave"};
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "g-pres", m, 1, 3);
  pump(f);
  const char *ask[] = {"bob", "carol", "nobody", "alice", "dave", "bob"};
  struct mim_packet *r = presence_req(f, 10, ask, 6, true, 5);
  assert_non_null(r);
  assert_int_equal(r->n_presences, 3); /* bob once, alice, dave */
  assert_true(item_of(r, "bob")->online);
  assert_true(item_of(r, "alice")->online);
  assert_true(item_of(r, "dave")->online);
  assert_null(item_of(r, "carol"));
  assert_null(item_of(r, "nobody"));
  /* bob's first device goes: nothing; his last: offline at this time */
  f->now += 5000;
  assert_int_equal(mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 20}),
                   0);
  pump(f);
  assert_int_equal(count(f, 10, MIM_CMD_PRESENCE), 0);
  assert_int_equal(mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 21}),
                   0);
  pump(f);
  struct mim_packet *p = got(f, 10, MIM_CMD_PRESENCE, 0);
  assert_non_null(p);
  assert_string_equal(p->uid, "bob");
  assert_false(p->online);
  assert_int_equal(p->last_seen, f->now);
  /* a stranger's comings and goings are never pushed */
  assert_int_equal(mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 30}),
                   0);
  pump(f);
  assert_int_equal(count(f, 10, MIM_CMD_PRESENCE), 1);
  /* a query now says when */
  r = presence_req(f, 10, ask, 1, false, 6);
  assert_non_null(r);
  assert_false(item_of(r, "bob")->online);
  assert_int_equal(item_of(r, "bob")->last_seen, f->now);
  login_caps(f, 22, "bob", "tablet", 0);
  p = got(f, 10, MIM_CMD_PRESENCE, 1);
  assert_non_null(p);
  assert_true(p->online);
  /* too many uids at once */
  const char *lots[101];
  for (size_t i = 0; i < 101; i++)
    lots[i] = "bob";
  assert_null(presence_req(f, 10, lots, 101, false, 7));
  struct mim_packet *e = last_error(f, 10);
  assert_non_null(e);
  assert_int_equal(e->status, mim_err_wire_code(-MIM_ERR_TOO_LARGE));
  /* the subscriber leaves: later changes cost nothing and reach nobody */
  assert_int_equal(mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 10}),
                   0);
  assert_int_equal(mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 22}),
                   0);
  pump(f);
  assert_int_equal(count(f, 10, MIM_CMD_PRESENCE), 2);
}

/* Past presence_subscribe_max a connection's extra uids are answered but
 * not subscribed; a connection without CAP_PRESENCE is never subscribed. */
static void presence_subscriptions_are_capped(void **state) {
  struct fx *f = *state;
  reopen_presence(f, 0, 1);
  login_caps(f, 10, "alice", "phone", MIM_CAP_PRESENCE);
  login_caps(f, 11, "alice", "seed", 0);
  login_caps(f, 20, "bob", "phone", 0);
  login_caps(f, 30, "carol", "phone", 0);
  c2c(f, 20, "alice", "hi", NULL, 2);
  c2c(f, 30, "alice", "hi", NULL, 2);
  pump(f);
  const char *ask[] = {"bob", "carol"};
  struct mim_packet *r = presence_req(f, 10, ask, 2, true, 5);
  assert_non_null(r);
  assert_int_equal(r->n_presences, 2);
  r = presence_req(f, 11, ask, 2, true, 5);
  assert_non_null(r);
  assert_int_equal(r->n_presences, 2);
  assert_int_equal(mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 20}),
                   0);
  assert_int_equal(mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 30}),
                   0);
  pump(f);
  assert_int_equal(count(f, 10, MIM_CMD_PRESENCE), 1);
  assert_string_equal(got(f, 10, MIM_CMD_PRESENCE, 0)->uid, "bob");
  assert_int_equal(count(f, 11, MIM_CMD_PRESENCE), 0);
}

/* last_seen is written with a batch when the last device goes, so a new
 * logic on the same store (a logicd restart) still answers it; a restart
 * itself writes nothing (no false "last seen now"). */
static void last_seen_survives_a_logic_restart(void **state) {
  struct fx *f = *state;
  login_caps(f, 10, "alice", "phone", 0);
  login_caps(f, 20, "bob", "phone", 0);
  c2c(f, 20, "alice", "hi", NULL, 2);
  pump(f);
  int64_t left = f->now + 7000;
  f->now = left;
  assert_int_equal(mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 20}),
                   0);
  pump(f);
  f->now += 60000;
  reopen_presence(f, 0, 0); /* alice's session is gone with the old logic */
  login_caps(f, 11, "alice", "phone", 0);
  const char *ask[] = {"bob"};
  struct mim_packet *r = presence_req(f, 11, ask, 1, false, 3);
  assert_non_null(r);
  assert_int_equal(r->n_presences, 1);
  assert_false(r->presences[0].online);
  assert_int_equal(r->presences[0].last_seen, left);
}

/* ---- large groups (read diffusion, docs/protocol.md §22) ---- */

/* Reopens the store and the logic with group_large_min 4. */
static void large_at_4(struct fx *f) {
  mim_logic_destroy(f->l);
  f->be->ops = real_ops;
  mim_backend_destroy(f->be);
  f->large_min = 4;
  open_store(f);
  open_logic(f);
}

static struct mim_packet *group_sync(struct fx *f, uint64_t conn,
                                     const char *group, uint64_t after,
                                     int32_t limit, int64_t seq) {
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_GROUP_SYNC_REQ;
  s.group = group;
  s.after_seq = after;
  s.has_after_seq = true;
  s.limit = limit;
  s.seq = seq;
  feed(f, conn, &s);
  pump(f);
  for (size_t i = f->n_seen; i-- > 0;)
    if (f->seen[i].conn == conn && f->seen[i].p.seq == seq &&
        (f->seen[i].cmd == MIM_CMD_GROUP_SYNC_RSP ||
         f->seen[i].cmd == MIM_CMD_ERROR))
      return &f->seen[i].p;
  fail_msg("no reply to sync %lld", (long long)seq);
  return NULL;
}


/* A switching add and a later add in one batch: the switch reads the
 * committed member list, which already has the later add's member, so
 * that member followed the group before the messages between the two
 * adds were pushed, and got them though they precede its join. */
static void large_switch_does_not_push_before_join(void **state) {
  struct fx *f = *state;
  large_at_4(f);
  login_caps(f, 10, "alice", "phone", MIM_CAP_LARGE);
  login_caps(f, 11, "alice", "laptop", MIM_CAP_LARGE);
  login_caps(f, 20, "bob", "phone", MIM_CAP_LARGE);
  login_caps(f, 50, "erin", "phone", MIM_CAP_LARGE);
  const char *m[] = {"bob", "carol"};
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "big", m, 2, 1);
  pump(f);
  /* one batch: the switch, bob's message, erin's add */
  const char *d[] = {"dave"};
  group_req(f, 10, MIM_CMD_GROUP_ADD_REQ, "big", d, 1, 2);
  c2g(f, 20, "big", "before erin", 3);
  const char *e[] = {"erin"};
  group_req(f, 11, MIM_CMD_GROUP_ADD_REQ, "big", e, 1, 4);
  pump(f);
  assert_non_null(got(f, 11, MIM_CMD_GROUP_ADD_RSP, 0));
  for (size_t i = 0; i < f->n_seen; i++)
    if (f->seen[i].conn == 50 && f->seen[i].cmd == MIM_CMD_C2G_PUSH &&
        f->seen[i].p.content != NULL)
      assert_null(strstr(f->seen[i].p.content, "before erin"));
}

/* The add that makes a group reach group_large_min switches it: after it
 * a message is in no inbox, the MIM_CAP_LARGE connections of its members
 * (the sender's other devices too) get it pushed with conv_seq and no
 * inbox_seq, a seed connection gets nothing live, and every member reads
 * it by sync. */
static void large_group_is_read_diffusion(void **state) {
  struct fx *f = *state;
  large_at_4(f);
  login_caps(f, 10, "alice", "phone", MIM_CAP_LARGE);
  login_caps(f, 11, "alice", "laptop", MIM_CAP_LARGE);
  login_caps(f, 20, "bob", "phone", MIM_CAP_LARGE);
  login_caps(f, 30, "carol", "seed", 0);
  login_caps(f, 40, "dave", "phone", MIM_CAP_LARGE);
  login_caps(f, 50, "erin", "phone", MIM_CAP_LARGE); /* not a member */
  const char *m[] = {"bob", "carol"};
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "big", m, 2, 1);
  pump(f);
  c2g(f, 10, "big", "small still", 2);
  pump(f);
  /* write diffusion below the threshold: an inbox push */
  struct mim_packet *p = got(f, 20, MIM_CMD_C2G_PUSH, 1);
  assert_non_null(p);
  assert_true(p->inbox_seq > 0);
  const char *d[] = {"dave"};
  group_req(f, 10, MIM_CMD_GROUP_ADD_REQ, "big", d, 1, 3);
  pump(f);
  assert_non_null(got(f, 10, MIM_CMD_GROUP_ADD_RSP, 0));
  /* dave, named by the add, has its notice in his inbox */
  struct mim_packet *dn = got(f, 40, MIM_CMD_C2G_PUSH, 0);
  assert_non_null(dn);
  assert_int_equal(dn->type, MIM_MSG_SYSTEM);
  assert_true(dn->inbox_seq > 0);
  assert_int_equal(dn->conv_seq, 3);
  /* bob follows it now: the notice came by conv seq */
  struct mim_packet *bn = got(f, 20, MIM_CMD_C2G_PUSH, 2);
  assert_non_null(bn);
  assert_int_equal(bn->type, MIM_MSG_SYSTEM);
  assert_int_equal(bn->inbox_seq, 0);
  assert_int_equal(bn->conv_seq, 3);
  assert_int_equal(count(f, 40, MIM_CMD_C2G_PUSH), 1); /* once, not twice */

  size_t carol_before = count(f, 30, MIM_CMD_C2G_PUSH);
  c2g(f, 10, "big", "large now", 4);
  pump(f);
  struct mim_packet *r = got(f, 10, MIM_CMD_C2G_SEND_RSP, 1);
  assert_non_null(r);
  assert_int_equal(r->seq, 4);
  assert_int_equal(r->inbox_seq, 0); /* in no inbox, the sender's neither */
  uint64_t ids[] = {11, 20, 40};
  for (size_t i = 0; i < 3; i++) {
    size_t n = count(f, ids[i], MIM_CMD_C2G_PUSH);
    struct mim_packet *lp = got(f, ids[i], MIM_CMD_C2G_PUSH, n - 1);
    assert_string_equal(lp->content, "large now");
    assert_string_equal(lp->from, "alice");
    assert_int_equal(lp->msg_id, r->msg_id);
    assert_int_equal(lp->conv_seq, 4);
    assert_int_equal(lp->inbox_seq, 0);
  }
  assert_int_equal(count(f, 30, MIM_CMD_C2G_PUSH), carol_before);
  assert_int_equal(count(f, 50, MIM_CMD_C2G_PUSH), 0);
  for (size_t i = 0; i < count(f, 10, MIM_CMD_C2G_PUSH); i++)
    assert_string_not_equal(got(f, 10, MIM_CMD_C2G_PUSH, i)->content,
                            "large now");
  /* not in bob's inbox: his pull ends with what came before */
  pull_after(f, 20, 0, 50, 5);
  pump(f);
  struct mim_packet *pr = got(f, 20, MIM_CMD_PULL_RSP, 0);
  assert_non_null(pr);
  for (size_t i = 0; i < pr->n_items; i++)
    assert_string_not_equal(pr->items[i].content, "large now");
  /* carol (seed) reads it by sync, oldest first, from her join on */
  struct mim_packet *sr = group_sync(f, 30, "big", 0, 10, 6);
  assert_int_equal(sr->cmd, MIM_CMD_GROUP_SYNC_RSP);
  assert_int_equal(sr->n_items, 4);
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(sr->items[i].conv_seq, i + 1);
    assert_int_equal(sr->items[i].inbox_seq, 0);
  }
  assert_string_equal(sr->items[3].content, "large now");
  assert_int_equal(sr->conv_seq, 4);
  assert_int_equal(sr->after_seq, 4);
  assert_false(sr->has_more);
  /* dave joined at 2 (before the notice of his add): from there on */
  struct mim_packet *ds = group_sync(f, 40, "big", 0, 10, 7);
  assert_int_equal(ds->n_items, 2);
  assert_int_equal(ds->items[0].conv_seq, 3);
  /* a stranger learns nothing, of this group or one that does not exist */
  struct mim_packet *e = group_sync(f, 50, "big", 0, 10, 8);
  assert_int_equal(e->cmd, MIM_CMD_ERROR);
  assert_int_equal(e->status, MIM_ERR_NOT_MEMBER);
  e = group_sync(f, 50, "nowhere", 0, 10, 9);
  assert_int_equal(e->status, MIM_ERR_NOT_MEMBER);
}

/* Sync pages: at most `limit`, next_after where the next one starts,
 * has_more until the newest. */
static void group_sync_pages_forward(void **state) {
  struct fx *f = *state;
  make_team(f);
  for (int i = 0; i < 9; i++)
    c2g(f, 10, "team", "m", 10 + i);
  pump(f);
  uint64_t after = 0, want = 1;
  for (int page = 0; page < 4; page++) {
    struct mim_packet *r = group_sync(f, 10, "team", after, 4, 100 + page);
    assert_int_equal(r->cmd, MIM_CMD_GROUP_SYNC_RSP);
    assert_int_equal(r->conv_seq, 10);
    for (size_t i = 0; i < r->n_items; i++)
      assert_int_equal(r->items[i].conv_seq, want++);
    after = r->after_seq;
    if (!r->has_more)
      break;
  }
  assert_int_equal(want, 11);
  assert_int_equal(after, 10);
}

/* A sync page the store's read_bytes_max cuts still starts right after
 * the position: the window is read newest first, so a cut read holds its
 * newest entries, and the page must not skip the oldest ones. */
static void group_sync_byte_cut_skips_nothing(void **state) {
  struct fx *f = *state;
  mim_logic_destroy(f->l);
  f->be->ops = real_ops;
  mim_backend_destroy(f->be);
  f->read_max = 4096;
  open_store(f);
  open_logic(f);
  make_team(f);
  char text[901];
  for (int i = 0; i < 20; i++) {
    memset(text, 'a' + i, 900);
    text[900] = '\0';
    c2g(f, 10, "team", text, 10 + i);
  }
  pump(f);
  uint64_t after = 0, want = 1;
  int pages = 0;
  for (; pages < 30; pages++) {
    struct mim_packet *r = group_sync(f, 10, "team", after, 100, 200 + pages);
    assert_int_equal(r->cmd, MIM_CMD_GROUP_SYNC_RSP);
    assert_int_equal(r->conv_seq, 21);
    assert_true(r->n_items > 0);
    for (size_t i = 0; i < r->n_items; i++)
      assert_int_equal(r->items[i].conv_seq, want++);
    after = r->after_seq;
    if (!r->has_more)
      break;
  }
  assert_true(pages > 0); /* the bound cut pages */
  assert_int_equal(want, 22);
  assert_int_equal(after, 21);
}

/* A removed member stops following at once; a login follows the user's
 * large groups (after a restart too: the index is rebuilt from logins). */
static void large_group_followers_follow_membership(void **state) {
  struct fx *f = *state;
  large_at_4(f);
  login_caps(f, 10, "alice", "phone", MIM_CAP_LARGE);
  const char *m[] = {"bob", "carol", "dave"};
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "big", m, 3, 1);
  pump(f);
  login_caps(f, 20, "bob", "phone", MIM_CAP_LARGE); /* after the switch */
  c2g(f, 10, "big", "one", 2);
  pump(f);
  assert_int_equal(count(f, 20, MIM_CMD_C2G_PUSH), 1);
  const char *b[] = {"bob"};
  group_req(f, 10, MIM_CMD_GROUP_REMOVE_REQ, "big", b, 1, 3);
  pump(f);
  /* bob hears of his removal in his inbox, then nothing more */
  size_t n = count(f, 20, MIM_CMD_C2G_PUSH);
  struct mim_packet *rn = got(f, 20, MIM_CMD_C2G_PUSH, n - 1);
  assert_int_equal(rn->type, MIM_MSG_SYSTEM);
  assert_true(rn->inbox_seq > 0);
  c2g(f, 10, "big", "two", 4);
  pump(f);
  assert_int_equal(count(f, 20, MIM_CMD_C2G_PUSH), n);
  assert_int_equal(group_sync(f, 20, "big", 0, 10, 5)->status,
                   MIM_ERR_NOT_MEMBER);
  /* a restart: connections log in again and follow again */
  mim_logic_destroy(f->l);
  open_logic(f);
  login_caps(f, 12, "alice", "phone", MIM_CAP_LARGE);
  login_caps(f, 31, "carol", "phone", MIM_CAP_LARGE);
  c2g(f, 12, "big", "three", 6);
  pump(f);
  assert_int_equal(count(f, 31, MIM_CMD_C2G_PUSH), 1);
  assert_string_equal(got(f, 31, MIM_CMD_C2G_PUSH, 0)->content, "three");
  /* dissolved: nobody follows it; carol heard it in her inbox */
  struct mim_packet g;
  mim_packet_init(&g);
  g.cmd = MIM_CMD_GROUP_MANAGE_REQ;
  g.group = "big";
  g.type = MIM_GA_DISSOLVE;
  g.seq = 7;
  feed(f, 12, &g);
  pump(f);
  assert_int_equal(count(f, 31, MIM_CMD_C2G_PUSH), 2);
  assert_true(got(f, 31, MIM_CMD_C2G_PUSH, 1)->inbox_seq > 0);
}

/* The conversation list shows a large group by its newest message, with
 * the unread count from the reader's position; mark read clears it. */
static void large_group_in_the_conversation_list(void **state) {
  struct fx *f = *state;
  large_at_4(f);
  login_caps(f, 10, "alice", "phone", MIM_CAP_LARGE);
  login_caps(f, 20, "bob", "phone", MIM_CAP_LARGE);
  c2c(f, 20, "alice", "older", NULL, 1);
  pump(f);
  const char *m[] = {"bob", "carol", "dave"};
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "big", m, 3, 2);
  pump(f);
  c2g(f, 10, "big", "a", 3);
  c2g(f, 10, "big", "b", 4);
  pump(f);
  struct mim_packet *cl = conv_list_req(f, 20, 5);
  assert_int_equal(cl->n_convs, 2);
  assert_string_equal(cl->convs[0].group, "big"); /* newest first */
  assert_true(cl->convs[0].large);
  assert_string_equal(cl->convs[0].preview, "b");
  assert_int_equal(cl->convs[0].last_conv_seq, 3);
  assert_int_equal(cl->convs[0].unread, 3); /* the notice and both */
  assert_string_equal(cl->convs[1].peer, "alice");
  assert_false(cl->convs[1].large);
  /* the sender has read what it sent */
  struct mim_packet *al = conv_list_req(f, 10, 6);
  assert_int_equal(al->convs[0].unread, 0);
  mark_read_req(f, 20, NULL, "big", 3, 7);
  pump(f);
  cl = conv_list_req(f, 20, 8);
  assert_int_equal(cl->convs[0].unread, 0);
  /* paging: the next page after the group is the one-to-one */
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_CONV_LIST_REQ;
  s.msg_id = cl->convs[0].last_msg_id;
  s.seq = 9;
  feed(f, 20, &s);
  pump(f);
  struct mim_packet *pg = got(f, 20, MIM_CMD_CONV_LIST_RSP, 2);
  assert_non_null(pg);
  assert_int_equal(pg->n_convs, 1);
  assert_string_equal(pg->convs[0].peer, "alice");
}

/* A login that reads the store after a commit but before the logic has
 * its outcome, which adds the same user: the user follows once, and so
 * gets each message once. */
static void login_racing_an_add_follows_once(void **state) {
  struct fx *f = *state;
  large_at_4(f);
  login_caps(f, 10, "alice", "phone", MIM_CAP_LARGE);
  const char *m[] = {"bob", "carol", "dave"};
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "big", m, 3, 1);
  pump(f);
  const char *e[] = {"erin"};
  group_req(f, 10, MIM_CMD_GROUP_ADD_REQ, "big", e, 1, 2);
  struct mim_write_batch *b;
  assert_int_equal(mim_logic_take_batch(f->l, &b), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  login_caps(f, 50, "erin", "phone", MIM_CAP_LARGE); /* sees the commit */
  assert_int_equal(mim_logic_batch_done(f->l, b), 0);
  collect(f);
  size_t before = count(f, 50, MIM_CMD_C2G_PUSH);
  c2g(f, 10, "big", "once", 3);
  pump(f);
  assert_int_equal(count(f, 50, MIM_CMD_C2G_PUSH), before + 1);
}

/* A recall or edit in a large group rewrites the record only (members read
 * the timeline): no change entry in any inbox, a push to the followers
 * that asked for changes, and sync shows the tombstone. */
static void large_group_changes_write_no_entries(void **state) {
  struct fx *f = *state;
  large_at_4(f);
  login_caps(f, 10, "alice", "phone", MIM_CAP_LARGE | MIM_CAP_CHANGE);
  login_caps(f, 20, "bob", "phone", MIM_CAP_LARGE | MIM_CAP_CHANGE);
  login_caps(f, 30, "carol", "phone", MIM_CAP_LARGE);
  const char *m[] = {"bob", "carol", "dave"};
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "big", m, 3, 1);
  pump(f);
  c2g(f, 10, "big", "oops", 2);
  pump(f);
  uint64_t id = got(f, 10, MIM_CMD_C2G_SEND_RSP, 0)->msg_id;
  uint64_t bob_last = 0;
  assert_int_equal(f->be->ops->inbox_last_seq(f->be->impl, "bob", &bob_last),
                   0);
  msg_change_req(f, 10, id, MIM_CHANGE_RECALL, NULL, "big", NULL, 3);
  pump(f);
  assert_non_null(got(f, 10, MIM_CMD_MSG_CHANGE_RSP, 0));
  uint64_t after = 0;
  assert_int_equal(f->be->ops->inbox_last_seq(f->be->impl, "bob", &after), 0);
  assert_int_equal(after, bob_last);
  struct mim_packet *ch = got(f, 20, MIM_CMD_MSG_CHANGED, 0);
  assert_non_null(ch);
  assert_int_equal(ch->msg_id, id);
  assert_int_equal(count(f, 30, MIM_CMD_MSG_CHANGED), 0); /* did not ask */
  assert_int_equal(count(f, 10, MIM_CMD_MSG_CHANGED), 0); /* the actor */
  struct mim_packet *sr = group_sync(f, 30, "big", 0, 10, 4);
  assert_int_equal(sr->n_items, 2);
  assert_int_equal(sr->items[1].msg_id, id);
  assert_int_equal(sr->items[1].state, MIM_MSG_STATE_RECALLED);
  assert_string_equal(sr->items[1].content, "");
}

/* A large group's message event says so, with no inbox recipients. */
static void large_group_message_event_says_large(void **state) {
  struct fx *f = *state;
  large_at_4(f);
  struct rec r = {.n = 0};
  mim_logic_set_event_cb(f->l, record_event, &r);
  login(f, 10, "alice");
  const char *m[] = {"bob", "carol", "dave"};
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "big", m, 3, 1);
  pump(f);
  c2g(f, 10, "big", "to all", 2);
  pump(f);
  struct rec_event *e = &r.ev[r.n - 1];
  assert_int_equal(e->kind, MIM_EVENT_MESSAGE_CREATED);
  assert_true(e->large);
  assert_int_equal(e->n_recipients, 0);
  assert_int_equal(e->n_offline, 0);
}

/* A dissolve touches every member even in a large group (a message there
 * weighs 1): it weighs by the member count, so it takes a batch alone
 * instead of hiding 100,000 writes among others' sends. */
static void large_group_dissolve_weighs_by_members(void **state) {
  struct fx *f = *state;
  f->batch_max = 64;
  large_at_4(f);
  login(f, 10, "alice");
  login(f, 20, "bob");
  static char names[40][8];
  const char *m[40];
  for (int i = 0; i < 40; i++) {
    snprintf(names[i], sizeof names[i], "m%02d", i);
    m[i] = names[i];
  }
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "big", m, 40, 1);
  pump(f);
  struct mim_packet g;
  mim_packet_init(&g);
  g.cmd = MIM_CMD_GROUP_MANAGE_REQ;
  g.group = "big";
  g.type = MIM_GA_DISSOLVE;
  g.seq = 2;
  feed(f, 10, &g);
  c2c(f, 20, "carol", "not behind 400 writes", NULL, 3);
  struct mim_write_batch *b;
  assert_int_equal(mim_logic_take_batch(f->l, &b), 0);
  assert_int_equal(mim_write_batch_count(b), 1); /* the dissolve alone */
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  assert_int_equal(mim_logic_batch_done(f->l, b), 0);
  pump(f);
  assert_non_null(got(f, 10, MIM_CMD_GROUP_MANAGE_RSP, 0));
  assert_non_null(got(f, 20, MIM_CMD_C2C_SEND_RSP, 0));
}

/* A member removed from the only group it shared with a subscriber is a
 * stranger again: the subscription ends (both ways), nothing more is
 * pushed, and a query leaves it out. */
static void presence_ends_when_a_shared_group_does(void **state) {
  struct fx *f = *state;
  login_caps(f, 10, "alice", "phone", MIM_CAP_PRESENCE);
  login_caps(f, 20, "bob", "phone", MIM_CAP_PRESENCE);
  const char *m[] = {"bob"};
  group_req(f, 10, MIM_CMD_GROUP_CREATE_REQ, "g-only", m, 1, 2);
  pump(f);
  const char *ask_bob[] = {"bob"}, *ask_alice[] = {"alice"};
  struct mim_packet *r = presence_req(f, 10, ask_bob, 1, true, 3);
  assert_int_equal(r->n_presences, 1);
  r = presence_req(f, 20, ask_alice, 1, true, 4);
  assert_int_equal(r->n_presences, 1);
  group_req(f, 10, MIM_CMD_GROUP_REMOVE_REQ, "g-only", m, 1, 5);
  pump(f);
  assert_non_null(got(f, 10, MIM_CMD_GROUP_REMOVE_RSP, 0));
  login_caps(f, 21, "bob", "laptop", 0);
  assert_int_equal(mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 21}),
                   0);
  assert_int_equal(mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 20}),
                   0);
  login_caps(f, 11, "alice", "laptop", 0);
  assert_int_equal(mim_logic_conn_closed(f->l, (struct mim_conn_ref){GW, 11}),
                   0);
  pump(f);
  assert_int_equal(count(f, 10, MIM_CMD_PRESENCE), 0);
  r = presence_req(f, 10, ask_bob, 1, false, 6);
  assert_int_equal(r->n_presences, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
      T(request_before_auth_is_rejected),
      T(dev_auth_accepts_the_seed_token),
      T(production_auth_checks_tokens),
      T(second_auth_on_a_connection_is_refused),
      T(invalid_uid_is_refused),
      T(logout_ends_the_session),
      T(c2c_online_reply_after_commit_and_push),
      T(forged_from_is_overridden),
      T(c2c_offline_is_pulled_in_order_once),
      T(pull_pages_with_has_more),
      T(pull_after_n_acknowledges_n),
      T(ack_by_inbox_seq_moves_only_this_device),
      T(seed_ack_by_msg_id_advances_contiguously),
      T(relogin_reports_acks_not_yet_committed),
    T(cursors_ride_with_messages_at_most_once_per_interval),
      T(seed_pull_twice_returns_new_messages_only),
      T(seed_pull_after_msg_id_makes_progress),
      T(another_users_inbox_is_never_readable),
      T(own_sends_count_as_delivered),
      T(send_to_self_is_one_inbox_entry),
      T(sender_other_devices_get_the_push),
      T(duplicate_login_kicks_the_first),
      T(gateway_down_drops_its_routes_not_messages),
      T(restored_sessions_receive_after_logic_restart),
      T(c2g_fans_out_to_members_and_sender_devices),
      T(non_member_group_send_is_refused),
      T(late_joiner_does_not_see_earlier_history),
      T(group_management_rules),
      T(logout_takes_effect_in_request_order),
      T(group_change_sees_the_connections_own_create),
      T(admin_reads_history),
      T(retry_in_same_batch_shares_the_outcome),
      T(retry_after_commit_returns_the_original),
      T(retry_with_other_content_is_an_error),
      T(retry_with_other_type_is_an_error_at_both_moments),
      T(dedup_rule_compares_every_field),
      T(ids_follow_one_rule_at_every_entry_point),
      T(seed_sends_without_client_msg_id_are_never_merged),
      T(replies_leave_in_request_order),
      T(malformed_and_unknown_requests_get_errors),
      T(oversized_content_is_refused),
      T(flood_is_rate_limited_then_recovers),
      T(failed_commit_is_a_retryable_error_and_pushes_nothing),
      T(closed_connection_loses_nothing_it_sent),
      T(c2c_history_is_newest_first_for_both_sides),
      T(admin_creates_groups_and_pushes),
      T(seed_client_exchange_works),
      T(text_that_is_not_utf8_is_refused),
      T(pull_is_capped_in_bytes_with_has_more),
      T(history_and_admin_pull_are_capped_in_bytes),
      T(reply_cap_must_hold_the_largest_message),
      T(pipelined_reads_run_in_turns_round_robin),
      T(paused_gateway_runs_no_reads_but_answers_writes),
      T(oversized_read_requests_are_refused),
      T(group_limits_hold_for_clients_and_operators),
      T(group_flood_shares_batches_with_others),
      T(oversized_group_message_gets_a_batch_alone),
      T(closing_with_parked_writes),
      T(repeats_to_one_group_share_a_batch),
      T(session_effect_follows_auth_response),
      T(refused_auth_binds_nobody),
      T(restore_needs_the_right_ticket),
      T(expired_session_is_kicked),
      T(expired_ticket_not_restored),
      T(config_size_is_checked),
      T(admin_group_changes_notify_members),
      T(leaving_twice_is_not_an_error),
      T(client_and_operator_list_groups),
      T(errors_carry_the_logic_time),
      T(group_notice_counts_in_the_batch_budget),
      T(events_follow_commits_and_presence),
      T(admin_push_reply_lists_recipients),
      T(admin_sends_on_behalf_of_a_user),
      T(kick_user_kicks_every_device),
      T(groups_page_is_bounded_by_500),
      T(transient_session_kicks_nobody_and_gets_no_pushes),
      T(pull_no_ack_session_moves_cursor_only_by_acks),
      T(group_members_are_paged),
      T(seed_group_list_is_whole),
      T(read_positions_sync_devices_and_reach_the_peer),
      T(read_by_counts_group_members),
      T(conv_list_pages_are_bounded),
      T(conv_reads_run_in_turns),
      T(read_by_weighs_by_members),
      T(read_by_page_fits_reply_bytes_max),
      T(read_by_is_from_the_join_on),
      T(delivered_when_a_device_acks),
      T(recall_reaches_change_devices_and_offline_pulls),
      T(edit_window_and_delete_for_me),
      T(pulls_without_change_cap_make_progress),
      T(typing_reaches_the_peers_typing_devices_only),
      T(typing_is_rate_limited),
      T(typing_is_not_relayed_in_big_groups),
      T(presence_hides_strangers_and_pushes_changes),
      T(presence_subscriptions_are_capped),
      T(last_seen_survives_a_logic_restart),
      T(large_group_is_read_diffusion),
      T(group_sync_pages_forward),
      T(group_sync_byte_cut_skips_nothing),
      T(large_group_followers_follow_membership),
      T(large_group_in_the_conversation_list),
      T(login_racing_an_add_follows_once),
      T(large_group_changes_write_no_entries),
      T(large_group_message_event_says_large),
      T(large_switch_does_not_push_before_join),
      T(large_group_dissolve_weighs_by_members),
      T(presence_ends_when_a_shared_group_does),
#undef T
  };
  return cmocka_run_group_tests_name("logic", tests, NULL, NULL);
}
