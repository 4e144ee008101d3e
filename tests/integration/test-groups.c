/* Group limits and the fairness of the single writer, end to end: the real
 * logicd and gatewayd on loopback ports, real websocket clients, and the
 * real mimctl for the operator path.
 *
 *   test-groups [NAME]   runs every test, or only the test called NAME
 *
 * group_limits           members per request and per group, through the
 *                        client protocol and through mimctl (admin RPC)
 * group_flood_fairness   while one member floods a 5,000-member group,
 *                        other users' one-to-one sends are acknowledged
 *                        promptly; prints the acknowledgement latency
 *                        (median, p99) with and without the flood
 *
 * group_remove_in_flight a member removed in the batches of messages in
 *                        flight gets exactly those stored before
 *
 * Each test gets its own daemon pair. Exit status 77 (skipped) when the
 * daemons are not built.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mim/codec.h>
#include <mim/common.h>

#include "harness.h"
#include "tclient.h"
#include "wsclient.h"

enum {
  E_TOO_LARGE = 1018,
  E_GROUP_FULL = 1023,
};

static struct wsc_ctx *WS;

struct fixture {
  struct harness *h;
  bool passed;
  const char *name;
};

#define PASSED(f) ((f)->passed = true)

static int64_t mono_us(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int setup_with(void **state, const char *name, unsigned timeout_s,
                      const char *const *logicd_args) {
  struct fixture *f = calloc(1, sizeof(*f));
  struct h_opts o;

  if (f == NULL)
    return -1;
  f->name = name;
  h_opts_init(&o);
  o.logicd_args = logicd_args;
  if (h_begin(&f->h, WS, &o, name, timeout_s) != 0) {
    free(f);
    return -1;
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  int r = f != NULL ? h_finish(f->h, f->name, f->passed, H_CHECK_GATEWAYD | H_CHECK_LOGICD | H_STOP_GATEWAYD |
                                  H_STOP_LOGICD)
                    : h_finish(NULL, NULL, false, 0);

  free(f);
  *state = NULL;
  return r;
}

/* ---- helpers ---- */

/* A group request from `c`; returns the reply (caller finishes it). */
static void expect_group_ok(struct tc *c, uint32_t cmd, const char *group,
                            const char *const *members, size_t n) {
  struct mim_packet rsp;

  tc_group_call(c, cmd, group, members, n, &rsp);
  tc_expect_cmd(&rsp, cmd + 1);
  mim_packet_finish(&rsp);
}

static void expect_group_error(struct tc *c, uint32_t cmd, const char *group,
                               const char *const *members, size_t n,
                               int32_t code) {
  struct mim_packet rsp;

  tc_group_call(c, cmd, group, members, n, &rsp);
  tc_expect_error(&rsp, code, cmd);
  assert_false(rsp.retryable);
  mim_packet_finish(&rsp);
}

/* Runs mimctl against the harness's logicd with `args` (NULL-terminated)
 * and returns its exit status; its stderr goes to `err` (cap bytes). */
static int mimctl(struct harness *h, const char *const *args, char *err,
                  size_t cap) {
  char conf[400], path[400];
  const char *argv[2100];
  size_t n = 0;
  int fd, status;
  pid_t pid;
  ssize_t got;
  FILE *cf;

  /* an operator's view: logicd's config names its admin path */
  snprintf(conf, sizeof conf, "%s/mimctl.ini", h->root);
  cf = fopen(conf, "w");
  assert_non_null(cf);
  fprintf(cf, "[logic]\nlisten = 127.0.0.1:%d\ndata_dir = %s\n",
          h->logic_port, h->data_dir);
  fclose(cf);
  snprintf(path, sizeof path, "%s/mimctl.err", h->root);
  argv[n++] = h_mimctl_path();
  argv[n++] = "--config";
  argv[n++] = conf;
  argv[n++] = "--timeout";
  argv[n++] = "20";
  for (size_t i = 0; args[i] != NULL; i++) {
    assert_true(n < 2099);
    argv[n++] = args[i];
  }
  argv[n] = NULL;
  fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);

    dup2(null, 1);
    dup2(fd, 2);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  got = pread(fd, err, cap - 1, 0);
  err[got > 0 ? got : 0] = '\0';
  close(fd);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* "p0001,p0002,..." for members [from, to) named `prefix`NNNN. */
static char *member_csv(const char *prefix, int from, int to) {
  size_t cap = (size_t)(to - from) * (strlen(prefix) + 8) + 1;
  char *s = malloc(cap), *p = s;

  assert_non_null(s);
  *p = '\0';
  for (int i = from; i < to; i++)
    p += snprintf(p, cap - (size_t)(p - s), "%s%s%04d", i > from ? "," : "",
                  prefix, i);
  return s;
}

/* ====================================================================== */
/* limits                                                                 */
/* ====================================================================== */

static const char *const limits_args[] = {
    "--group-members-max", "20", "--group-request-members-max", "10", NULL};

static int setup_group_limits(void **state) {
  return setup_with(state, "group_limits", 120, limits_args);
}

static void group_limits(void **state) {
  struct fixture *f = *state;
  struct tc *owner = tc_login(f->h, "lim-owner", NULL);
  struct tc *outsider = tc_login(f->h, "lim-outsider", NULL);
  char names[40][16];
  const char *m[40];
  char err[4096];

  for (int i = 0; i < 40; i++) {
    snprintf(names[i], sizeof names[i], "lim-m%02d", i);
    m[i] = names[i];
  }

  /* --- members per request: 10 --- */
  expect_group_error(owner, MIM_CMD_GROUP_CREATE_REQ, "lim-g", m, 11,
                     E_TOO_LARGE);
  /* nothing was created */
  expect_group_error(owner, MIM_CMD_GROUP_LIST_REQ, "lim-g", NULL, 0,
                     1008 /* NOT_MEMBER: no such group, to a stranger */);
  expect_group_ok(owner, MIM_CMD_GROUP_CREATE_REQ, "lim-g", m, 9); /* 10 */
  expect_group_error(owner, MIM_CMD_GROUP_ADD_REQ, "lim-g", m + 9, 11,
                     E_TOO_LARGE);
  expect_group_error(owner, MIM_CMD_GROUP_REMOVE_REQ, "lim-g", m, 11,
                     E_TOO_LARGE);

  /* --- members per group: 20 --- */
  expect_group_ok(owner, MIM_CMD_GROUP_ADD_REQ, "lim-g", m + 9, 10); /* 20 */
  expect_group_error(owner, MIM_CMD_GROUP_ADD_REQ, "lim-g", m + 19, 1,
                     E_GROUP_FULL);
  /* already members are not new: no error, nothing added */
  expect_group_ok(owner, MIM_CMD_GROUP_ADD_REQ, "lim-g", m, 3);
  /* the limit is per group: another one has room of its own */
  expect_group_ok(outsider, MIM_CMD_GROUP_CREATE_REQ, "lim-h", m + 20, 10);
  {
    struct mim_packet rsp;

    tc_group_call(owner, MIM_CMD_GROUP_LIST_REQ, "lim-g", NULL, 0, &rsp);
    tc_expect_cmd(&rsp, MIM_CMD_GROUP_LIST_RSP);
    assert_int_equal(rsp.n_members, 20);
    mim_packet_finish(&rsp);
  }

  /* --- the operator path (mimctl over the admin RPC) --- */
  if (h_mimctl_path() == NULL) {
    fprintf(stderr, "[group_limits] mimctl not built: operator path not "
                    "checked\n");
    fail_msg("MIMCTL is not set or not executable");
  }
  {
    char *eleven = member_csv("lim-a", 0, 11);
    char *ten = member_csv("lim-a", 0, 10);
    const char *create11[] = {"group", "create", "lim-admin", "--members",
                              eleven, NULL};
    const char *create10[] = {"group", "create", "lim-admin", "--members",
                              ten, NULL};
    const char *add_full[] = {"group", "add", "lim-g", "lim-extra", NULL};
    const char *add_ok[] = {"group", "add", "lim-admin", "lim-b0", "lim-b1",
                            "lim-b2", "lim-b3", "lim-b4", "lim-b5", "lim-b6",
                            "lim-b7", "lim-b8", "lim-b9", NULL};
    const char *add_full2[] = {"group", "add", "lim-admin", "lim-c0", NULL};

    assert_int_equal(mimctl(f->h, create11, err, sizeof err), 1);
    assert_non_null(strstr(err, "MIM_ERR_TOO_LARGE"));
    assert_int_equal(mimctl(f->h, create10, err, sizeof err), 0);
    assert_int_equal(mimctl(f->h, add_ok, err, sizeof err), 0); /* 20 */
    assert_int_equal(mimctl(f->h, add_full2, err, sizeof err), 1);
    assert_non_null(strstr(err, "MIM_ERR_GROUP_FULL"));
    /* operators cannot grow a client's group past the limit either */
    assert_int_equal(mimctl(f->h, add_full, err, sizeof err), 1);
    assert_non_null(strstr(err, "MIM_ERR_GROUP_FULL"));
    free(eleven);
    free(ten);
  }

  tc_free(owner);
  tc_free(outsider);
  PASSED(f);
}

/* ====================================================================== */
/* fairness                                                               */
/* ====================================================================== */

enum {
  FLOOD_MEMBERS = 5000, /* the flooded group, the flooders included */
  FLOODERS = 3,         /* members flooding it, one connection each */
  FLOOD_WINDOW = 100,   /* sends each keeps in flight: below the
                           per-connection queue (256) */
  FLOOD_RATE = 190,     /* sends per second each: below rate_per_sec */
  OTHERS = 4,           /* users sending one-to-one meanwhile */
  ROUNDS = 25,          /* sends per other user per phase */
};

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

  return x < y ? -1 : x > y;
}

struct latency {
  int64_t us[OTHERS * ROUNDS];
  size_t n;
};

static int64_t pct(struct latency *l, double p) {
  size_t i;

  qsort(l->us, l->n, sizeof l->us[0], cmp_i64);
  i = (size_t)(p * (double)(l->n - 1) + 0.5);
  return l->us[i];
}

/* One flooding member: keeps FLOOD_WINDOW messages to the group in flight
 * at FLOOD_RATE per second, counting what comes back. */
struct flooder {
  struct tc *c;
  int64_t in_flight;
  int64_t sent, acked, refused; /* refused: BUSY or RATE_LIMITED */
  double tokens;
  int64_t last_us;
};

static void flooder_drain(struct flooder *fl, int timeout_ms) {
  struct mim_packet rsp;

  while (fl->in_flight > 0 &&
         (timeout_ms > 0 || wsc_pending(fl->c->ws) > 0) &&
         wsc_recv(fl->c->ws, timeout_ms, &rsp) == 0) {
    if (rsp.cmd == MIM_CMD_C2G_PUSH) {
      mim_packet_finish(&rsp); /* the other flooders' messages */
      continue;
    }
    if (rsp.cmd == MIM_CMD_C2G_SEND_RSP) {
      fl->acked++;
    } else {
      /* the flooder's own queue is full or it is over its rate: its
       * problem, retryable, never someone else's */
      tc_expect_error(&rsp, rsp.status, MIM_CMD_C2G_SEND_REQ);
      assert_true(rsp.status == E_BUSY || rsp.status == E_RATE_LIMITED);
      fl->refused++;
    }
    fl->in_flight--;
    mim_packet_finish(&rsp);
  }
}

static void flooder_top_up(struct flooder *fl) {
  int64_t now = mono_us();

  flooder_drain(fl, 0);
  fl->tokens += (double)(now - fl->last_us) * FLOOD_RATE / 1e6;
  if (fl->tokens > FLOOD_WINDOW)
    fl->tokens = FLOOD_WINDOW;
  fl->last_us = now;
  while (fl->in_flight < FLOOD_WINDOW && fl->tokens >= 1.0) {
    struct mim_packet p;

    mim_packet_init(&p);
    p.cmd = MIM_CMD_C2G_SEND_REQ;
    p.seq = ++fl->c->seq;
    p.group = "fair-big";
    p.content = "flood";
    assert_int_equal(wsc_queue_packet(fl->c->ws, &p), 0);
    fl->tokens -= 1.0;
    fl->in_flight++;
    fl->sent++;
  }
}

/* Each other user sends ROUNDS one-to-one messages, one at a time, taking
 * turns; records how long each took to be acknowledged. With `fl`, the
 * flooders are topped up before every send. */
static void others_send(struct tc **others, const char *tag,
                        struct flooder *fl, struct latency *l) {
  char content[64];

  l->n = 0;
  for (int r = 0; r < ROUNDS; r++)
    for (int i = 0; i < OTHERS; i++) {
      int64_t t0;

      for (int k = 0; fl != NULL && k < FLOODERS; k++)
        flooder_top_up(&fl[k]);
      t0 = mono_us();
      snprintf(content, sizeof content, "%s %d/%d", tag, i, r);
      tc_c2c(others[i], "fair-peer", content, NULL, NULL);
      l->us[l->n++] = mono_us() - t0;
    }
}

/* write diffusion (a large group's message would be one write) */
static const char *const flood_args[] = {"--group-large-min", "0", NULL};

static int setup_group_flood_fairness(void **state) {
  return setup_with(state, "group_flood_fairness", 600, flood_args);
}

static void group_flood_fairness(void **state) {
  struct fixture *f = *state;
  struct flooder fl[FLOODERS];
  struct tc *others[OTHERS];
  struct latency quiet, flood;
  static char names[FLOOD_MEMBERS][16];
  static const char *m[FLOOD_MEMBERS];
  int64_t q50, q99, f50, f99, t0, flood_ms, sent = 0, acked = 0,
                                             refused = 0;

  memset(fl, 0, sizeof fl);
  for (int i = 0; i < FLOODERS; i++) {
    char uid[32];

    snprintf(uid, sizeof uid, "fair-flooder%d", i);
    fl[i].c = tc_login(f->h, uid, NULL);
  }
  for (int i = 0; i < OTHERS; i++) {
    char uid[32];

    snprintf(uid, sizeof uid, "fair-other%d", i);
    others[i] = tc_login(f->h, uid, NULL);
  }
  /* a 5,000-member group, 1,000 members per request (the default limit):
   * flooder 0 creates it with the other flooders in it */
  for (int i = 0; i < FLOOD_MEMBERS - 1; i++) {
    if (i > 0 && i < FLOODERS)
      snprintf(names[i], sizeof names[i], "fair-flooder%d", i);
    else
      snprintf(names[i], sizeof names[i], "fair-m%04d", i);
    m[i] = names[i];
  }
  expect_group_ok(fl[0].c, MIM_CMD_GROUP_CREATE_REQ, "fair-big", m, 999);
  for (int i = 999; i < FLOOD_MEMBERS - 1; i += 1000)
    expect_group_ok(fl[0].c, MIM_CMD_GROUP_ADD_REQ, "fair-big", m + i,
                    FLOOD_MEMBERS - 1 - i < 1000 ? FLOOD_MEMBERS - 1 - i
                                                 : 1000);
  tc_c2g(fl[0].c, "fair-big", "warm-up", NULL, NULL);

  /* without a flood */
  others_send(others, "quiet", NULL, &quiet);
  q50 = pct(&quiet, 0.5);
  q99 = pct(&quiet, 0.99);

  /* with one: FLOODERS members each keep FLOOD_WINDOW messages to 5,000
   * members in flight (far more inbox writes per second than one writer
   * commits), while the others send as before */
  t0 = mono_us();
  for (int k = 0; k < FLOODERS; k++) {
    fl[k].last_us = t0;
    fl[k].tokens = FLOOD_WINDOW;
    flooder_top_up(&fl[k]);
  }
  wsc_ctx_service(WS, 0); /* the flood leaves first */
  others_send(others, "flood", fl, &flood);
  f50 = pct(&flood, 0.5);
  f99 = pct(&flood, 0.99);

  /* every flood message is answered too: the flooders are slowed (and
   * refused BUSY when their own queue is full), never starved */
  for (int k = 0; k < FLOODERS; k++) {
    flooder_drain(&fl[k], 120000);
    assert_int_equal(fl[k].in_flight, 0);
    assert_true(fl[k].acked > 0);
    sent += fl[k].sent;
    acked += fl[k].acked;
    refused += fl[k].refused;
  }
  flood_ms = (mono_us() - t0) / 1000;

  printf("fairness: one-to-one ack latency of %d users, %d sends each, "
         "one at a time\n", OTHERS, ROUNDS);
  printf("fairness:   quiet:  median %7.1f ms  p99 %7.1f ms\n",
         (double)q50 / 1000, (double)q99 / 1000);
  printf("fairness:   flood:  median %7.1f ms  p99 %7.1f ms   (%d members "
         "each keep %d msgs to a %d-member group in flight)\n",
         (double)f50 / 1000, (double)f99 / 1000, FLOODERS, FLOOD_WINDOW,
         FLOOD_MEMBERS);
  printf("fairness:   flood: %lld msgs sent, %lld acknowledged (%lld inbox "
         "writes), %lld refused BUSY/RATE_LIMITED, in %lld ms\n",
         (long long)sent, (long long)acked,
         (long long)acked * FLOOD_MEMBERS, (long long)refused,
         (long long)flood_ms);
  fflush(stdout);
  /* generous for 2 shared cores: the point is "not behind the flood" */
  assert_true(f99 < 1000000);

  for (int i = 0; i < OTHERS; i++)
    tc_free(others[i]);
  for (int k = 0; k < FLOODERS; k++)
    tc_free(fl[k].c);
  PASSED(f);
}

/* Queues a group send from `c` without waiting for its reply. */
static void c2g_nowait(struct tc *c, const char *group, const char *content) {
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_C2G_SEND_REQ;
  p.group = group;
  p.content = content;
  p.seq = ++c->seq;
  assert_int_equal(wsc_send_packet(c->ws, &p), 0);
}

/* Takes every queued packet of `cmd` from `c` (after a barrier); calls
 * `fn` on each. Returns how many. */
static size_t drain_cmd(struct tc *c, uint32_t cmd,
                        void (*fn)(void *user, const struct mim_packet *p),
                        void *user) {
  size_t n = 0;
  struct mim_packet p;
  while (wsc_recv_cmd(c->ws, cmd, 0, &p) == 0) {
    if (fn != NULL)
      fn(user, &p);
    mim_packet_finish(&p);
    n++;
  }
  return n;
}

static void max_conv_seq(void *user, const struct mim_packet *p) {
  uint64_t *m = user;
  if (p->conv_seq > *m)
    *m = p->conv_seq;
}

/* A member removed while messages to the group are in flight, in the same
 * batches as the removal, from the remover's connection and from another
 * member's: the removed member has exactly the messages stored before the
 * removal (its notice included) and none after, pushed or pulled; the
 * others have everything. */
static int setup_group_remove_in_flight(void **state) {
  return setup_with(state, "group_remove_in_flight", 120, NULL);
}

static void group_remove_in_flight(void **state) {
  struct fixture *f = *state;
  enum { BEFORE = 100, AFTER = 100, OTHER = 150 };
  struct tc *alice = tc_login(f->h, "alice", "phone");
  struct tc *bob = tc_login(f->h, "bob", "phone");
  struct tc *carol = tc_login_caps(f->h, "carol", "phone", 0);
  struct tc *dave = tc_login(f->h, "dave", "phone");
  const char *members[] = {"bob", "carol", "dave"};
  struct mim_packet cr;
  tc_group_call(alice, MIM_CMD_GROUP_CREATE_REQ, "rf", members, 3, &cr);
  tc_expect_cmd(&cr, MIM_CMD_GROUP_CREATE_RSP);
  mim_packet_finish(&cr);
  char text[32];
  for (int i = 0; i < OTHER; i++) {
    snprintf(text, sizeof text, "d%d", i);
    c2g_nowait(dave, "rf", text);
  }
  for (int i = 0; i < BEFORE; i++) {
    snprintf(text, sizeof text, "a%d", i);
    c2g_nowait(alice, "rf", text);
  }
  struct mim_packet rm;
  mim_packet_init(&rm);
  const char *gone[] = {"carol"};
  rm.cmd = MIM_CMD_GROUP_REMOVE_REQ;
  rm.group = "rf";
  rm.members = gone;
  rm.n_members = 1;
  rm.seq = ++alice->seq;
  assert_int_equal(wsc_send_packet(alice->ws, &rm), 0);
  for (int i = 0; i < AFTER; i++) {
    snprintf(text, sizeof text, "b%d", i);
    c2g_nowait(alice, "rf", text);
  }
  tc_barrier(alice);
  tc_barrier(dave);
  assert_int_equal(drain_cmd(alice, MIM_CMD_C2G_SEND_RSP, NULL, NULL),
                   BEFORE + AFTER);
  assert_int_equal(drain_cmd(alice, MIM_CMD_GROUP_REMOVE_RSP, NULL, NULL), 1);
  assert_int_equal(drain_cmd(dave, MIM_CMD_C2G_SEND_RSP, NULL, NULL), OTHER);

  /* bob has everything: the creation, every message, the removal */
  struct tc_items all = {0};
  tc_pull_all(bob, 0, &all);
  uint64_t removed_at = 0;
  size_t msgs = 0;
  for (size_t i = 0; i < all.n; i++) {
    if (all.v[i].type == MIM_MSG_SYSTEM &&
        strstr(all.v[i].content, "\"action\":\"remove\"") != NULL)
      removed_at = all.v[i].conv_seq;
    else if (all.v[i].type != MIM_MSG_SYSTEM)
      msgs++;
  }
  assert_int_equal(msgs, BEFORE + AFTER + OTHER);
  assert_true(removed_at > 0);
  /* every message from alice sent after the removal comes after it */
  for (size_t i = 0; i < all.n; i++)
    if (all.v[i].content[0] == 'b' && all.v[i].conv_seq <= removed_at)
      fail_msg("%s at conv seq %llu, the removal at %llu", all.v[i].content,
               (unsigned long long)all.v[i].conv_seq,
               (unsigned long long)removed_at);

  /* carol: a prefix of the conversation up to her removal, pushed and
   * pulled alike */
  tc_barrier(carol);
  uint64_t pushed_max = 0;
  drain_cmd(carol, MIM_CMD_C2G_PUSH, max_conv_seq, &pushed_max);
  assert_true(pushed_max <= removed_at);
  struct tc_items mine = {0};
  tc_pull_all(carol, 0, &mine);
  uint64_t want = 1;
  for (size_t i = 0; i < mine.n; i++) {
    assert_string_equal(mine.v[i].group, "rf");
    assert_int_equal(mine.v[i].conv_seq, want); /* no gap, nothing later */
    want++;
  }
  assert_int_equal(want - 1, removed_at);
  tc_items_free(&mine);
  tc_items_free(&all);

  /* and she can no longer send to it */
  struct mim_packet rsp;
  mim_packet_init(&rsp);
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_C2G_SEND_REQ;
  req.group = "rf";
  req.content = "still here?";
  tc_call(carol, &req, &rsp);
  tc_expect_error(&rsp, 1008 /* NOT_MEMBER */, MIM_CMD_C2G_SEND_REQ);
  mim_packet_finish(&rsp);
  PASSED(f);
}

/* ====================================================================== */

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_##fn, teardown)

static const struct CMUnitTest all_tests[] = {
    T(group_limits),
    T(group_flood_fairness),
    T(group_remove_in_flight),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "integration-groups", all_tests, COUNT(all_tests), &WS, 0);
}
