/* The daemons' metrics registry (daemons/common/metrics.c), the library's
 * monitoring counters (mim_logic_stats(), mim_lmdb_usage()) and logicd's
 * families built on them (daemons/logicd/lmetrics.c): a real logic on real
 * LMDB files, rendered, and the text checked by a real Prometheus parser
 * (tests/metrics/check-metrics.py, python3-prometheus-client). */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <mim/auth.h>
#include <mim/lmdb.h>
#include <mim/mim.h>

#include "lmetrics.h"
#include "metrics.h"

#define GW 1

static const uint8_t SECRET[] = "0123456789abcdef-metrics-secret";

/* The value of the sample line that starts with `series` + ' ', or -1. */
static double sample(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p != NULL && *p;) {
    if (strncmp(p, series, n) == 0 && p[n] == ' ')
      return strtod(p + n + 1, NULL);
    p = strchr(p, '\n');
    if (p)
      p++;
  }
  return -1;
}

/* Runs the checker on `text` with `args`; its exit status. */
static int check_text(const char *text, const char *args) {
  const char *py = getenv("PYTHON3") ? getenv("PYTHON3") : "/usr/bin/python3";
  const char *chk = getenv("CHECK_METRICS");
  assert_non_null(chk);
  char *dir = tu_mkdtemp();
  char file[512], cmd[4096];
  snprintf(file, sizeof file, "%s/metrics.txt", dir);
  FILE *fp = fopen(file, "w");
  assert_non_null(fp);
  fputs(text, fp);
  fclose(fp);
  snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' %s", py, chk, file, args);
  int st = system(cmd);
  tu_rmdir_free(dir);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int reset(void **state) {
  (void)state;
  mimd_metrics_reset();
  return 0;
}

/* ---- the registry ---- */

static const char *const colours[] = {"red", "green"};

static int collected;

static void collect_odd(void *user, struct mimd_sink *out) {
  (void)user;
  collected++;
  /* a value that needs every escape, and a bad label name (dropped) */
  const char *l[] = {"path", "a\"b\\c\nd", NULL};
  mimd_sink_sample(out, l, 2.5);
  const char *bad[] = {"__reserved", "x", NULL};
  mimd_sink_sample(out, bad, 1);
}

static void registry_render(void **state) {
  (void)state;
  struct mimd_metric *c = mimd_metric_new(
      MIMD_COUNTER, "t_things_total", "Things.\nWith a \\ newline.", "colour",
      colours, 2);
  struct mimd_metric *g =
      mimd_metric_new(MIMD_GAUGE, "t_level", "A level.", NULL, NULL, 0);
  static const double bounds[] = {0.1, 1, 10};
  struct mimd_metric *h = mimd_histogram_new("t_seconds", "Durations.",
                                             bounds, 3);
  assert_non_null(c);
  assert_non_null(g);
  assert_non_null(h);
  assert_non_null(
      mimd_collector_new(MIMD_GAUGE, "t_odd", "Odd labels.", collect_odd, NULL));
  /* refused: duplicate, bad names, bad label, bad bounds */
  assert_null(mimd_metric_new(MIMD_GAUGE, "t_level", "x", NULL, NULL, 0));
  assert_null(mimd_metric_new(MIMD_GAUGE, "0bad", "x", NULL, NULL, 0));
  assert_null(mimd_metric_new(MIMD_GAUGE, "t-bad", "x", NULL, NULL, 0));
  assert_null(mimd_metric_new(MIMD_GAUGE, "t_l", "x", "a:b", colours, 2));
  assert_null(mimd_metric_new(MIMD_GAUGE, "t_l", "x", "ok", colours, 0));
  static const double unsorted[] = {1, 0.5};
  assert_null(mimd_histogram_new("t_h", "x", unsorted, 2));

  mimd_counter_add(c, 1, 5);
  mimd_counter_inc(c, 0);
  mimd_counter_inc(c, 7); /* out of range: ignored */
  mimd_counter_inc(NULL, 0);
  mimd_gauge_set(g, 0, -3);
  mimd_gauge_add(g, 0, 0.5);
  mimd_histogram_observe(h, 0.05);
  mimd_histogram_observe(h, 1);   /* le is inclusive */
  mimd_histogram_observe(h, 100); /* only +Inf */

  size_t len = 0;
  char *text = mimd_metrics_render(&len);
  assert_non_null(text);
  assert_int_equal(strlen(text), len);
  assert_non_null(strstr(text, "# HELP t_things_total Things.\\nWith a \\\\ "
                               "newline.\n# TYPE t_things_total counter\n"
                               "t_things_total{colour=\"red\"} 1\n"
                               "t_things_total{colour=\"green\"} 5\n"));
  assert_non_null(strstr(text, "# TYPE t_level gauge\nt_level -2.5\n"));
  assert_non_null(strstr(text, "# TYPE t_seconds histogram\n"
                               "t_seconds_bucket{le=\"0.1\"} 1\n"
                               "t_seconds_bucket{le=\"1\"} 2\n"
                               "t_seconds_bucket{le=\"10\"} 2\n"
                               "t_seconds_bucket{le=\"+Inf\"} 3\n"
                               "t_seconds_sum 101.05\n"
                               "t_seconds_count 3\n"));
  assert_non_null(strstr(text, "t_odd{path=\"a\\\"b\\\\c\\nd\"} 2.5\n"));
  assert_null(strstr(text, "__reserved"));
  assert_int_equal(collected, 1);
  assert_true(mimd_metric_value(c, 1) == 5);
  /* and a real parser agrees */
  assert_int_equal(check_text(text, "--require t_things_total --require "
                                    "t_seconds --require t_odd"),
                   0);
  free(text);
}

#define THREADS 4
#define PER_THREAD 100000

static struct mimd_metric *race_c, *race_h;

static void *race(void *arg) {
  (void)arg;
  for (int i = 0; i < PER_THREAD; i++) {
    mimd_counter_inc(race_c, 0);
    mimd_histogram_observe(race_h, 1);
  }
  return NULL;
}

/* Several threads (logicd's writer and loop) update the same metrics: no
 * update is lost. */
static void registry_threads(void **state) {
  (void)state;
  static const double b[] = {0.5, 2};
  race_c = mimd_metric_new(MIMD_COUNTER, "t_race_total", "r", NULL, NULL, 0);
  race_h = mimd_histogram_new("t_race_seconds", "r", b, 2);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, race, NULL), 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  char *text = mimd_metrics_render(NULL);
  assert_non_null(text);
  assert_true(sample(text, "t_race_total") == THREADS * PER_THREAD);
  assert_true(sample(text, "t_race_seconds_count") == THREADS * PER_THREAD);
  assert_true(sample(text, "t_race_seconds_sum") == THREADS * PER_THREAD);
  assert_true(sample(text, "t_race_seconds_bucket{le=\"2\"}") ==
              THREADS * PER_THREAD);
  free(text);
}

/* ---- the library's stats and logicd's families ---- */

struct lfx {
  char *dir;
  struct mim_backend *be;
  struct mim_logic *l;
  int64_t now;
};

static void feed(struct lfx *f, uint64_t conn, const struct mim_packet *p) {
  uint8_t body[4096];
  size_t len;
  assert_int_equal(mim_packet_encode_body(p, body, sizeof body, &len), 0);
  assert_int_equal(mim_logic_receive(f->l, (struct mim_conn_ref){GW, conn},
                                     p->cmd, body, len),
                   0);
  mim_logic_flush(f->l);
  struct mim_effect e;
  while (mim_logic_next_effect(f->l, &e) == 0)
    ;
}

static void auth(struct lfx *f, uint64_t conn, const char *uid,
                 const char *device, bool good) {
  char token[MIM_TOKEN_MAX];
  assert_int_equal(mim_token_sign(SECRET, sizeof SECRET - 1, uid, device,
                                  f->now / 1000 + 3600, token, sizeof token),
                   0);
  if (!good)
    token[strlen(token) - 2] ^= 1; /* a forged MAC */
  struct mim_packet a;
  mim_packet_init(&a);
  a.cmd = MIM_CMD_AUTH_REQ;
  a.uid = uid;
  a.device = device;
  a.token = token;
  a.seq = 1;
  feed(f, conn, &a);
}

static void send_c2c(struct lfx *f, uint64_t conn, const char *to,
                     const char *cmid) {
  struct mim_packet s;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_C2C_SEND_REQ;
  s.seq = 2;
  s.to = to;
  s.content = "hi";
  s.client_msg_id = cmid;
  feed(f, conn, &s);
}

static bool fake_ready(void *u) { return *(bool *)u; }
static size_t fake_links(void *u) { (void)u; return 2; }
static size_t fake_bytes(void *u) { (void)u; return 1234; }

static void logic_stats_to_metrics(void **state) {
  (void)state;
  struct lfx fx = {.now = 1700000000000};
  struct lfx *f = &fx;
  f->dir = tu_mkdtemp();
  struct mim_lmdb_config sc;
  mim_lmdb_config_init(&sc);
  sc.path = f->dir;
  sc.no_sync = true;
  assert_int_equal(mim_lmdb_open(&f->be, &sc), 0);
  struct mim_logic_config cfg;
  mim_logic_config_init(&cfg);
  cfg.backend = f->be;
  cfg.secret = SECRET;
  cfg.secret_len = sizeof SECRET - 1;
  cfg.now_ms = tu_fake_now;
  cfg.clock_user = &f->now;
  assert_int_equal(mim_logic_create(&f->l, &cfg), 0);
  assert_int_equal(mim_logic_gateway_up(f->l, GW, "gw-1"), 0);

  struct mim_logic_stats st;
  st.size = 0;
  assert_int_equal(mim_logic_stats(f->l, &st), -EINVAL);
  st.size = sizeof st + 1;
  assert_int_equal(mim_logic_stats(f->l, &st), -EINVAL);

  auth(f, 10, "alice", "phone", true);
  auth(f, 11, "bob", "phone", true);
  auth(f, 12, "mallory", "phone", false); /* TOKEN_INVALID */
  send_c2c(f, 10, "bob", "m1");
  send_c2c(f, 10, "bob", "m1"); /* a retry: stored once */
  send_c2c(f, 12, "bob", "m2"); /* UNAUTHENTICATED */
  auth(f, 13, "bob", "phone", true); /* bob's conn 11 kicked OTHER_LOGIN */

  memset(&st, 0, sizeof st);
  st.size = sizeof st;
  assert_int_equal(mim_logic_stats(f->l, &st), 0);
  assert_int_equal(st.messages_c2c, 1);
  assert_int_equal(st.messages_group + st.messages_push, 0);
  assert_int_equal(st.inbox_appends, 2);
  assert_int_equal(st.deliveries, 1); /* bob's conn 11 was online */
  assert_int_equal(st.logins_ok, 3);
  assert_int_equal(st.logins_failed, 1);
  assert_int_equal(
      st.logins_failed_by_code[MIM_ERR_TOKEN_INVALID - MIM_ERR__FIRST], 1);
  assert_int_equal(st.errors_by_code[MIM_ERR_UNAUTHENTICATED - MIM_ERR__FIRST],
                   1);
  assert_int_equal(st.errors, 1);
  assert_int_equal(st.kicks_by_reason[MIM_KICK_OTHER_LOGIN], 1);
  assert_true(st.batches >= 1);
  assert_true(st.batch_ops >= 1);
  assert_int_equal(st.batches_failed, 0);
  assert_int_equal(st.gateways, 1);
  assert_int_equal(st.sessions, 2); /* alice, bob (conn 13) */
  assert_int_equal(st.writes_gathering, 0);
  assert_false(st.batch_out);

  /* an older caller's smaller struct gets what it knows, nothing more */
  struct mim_logic_stats small;
  memset(&small, 0xab, sizeof small);
  small.size = offsetof(struct mim_logic_stats, inbox_appends);
  assert_int_equal(mim_logic_stats(f->l, &small), 0);
  assert_int_equal(small.messages_c2c, 1);
  assert_int_equal(small.inbox_appends, 0xabababababababab);

  struct mim_lmdb_usage us;
  assert_int_equal(mim_lmdb_usage(f->be, &us), 0);
  assert_true(us.map_size >= 64u << 20);
  assert_true(us.used_bytes > 0 && us.used_bytes <= us.map_size);
  assert_true(us.map_size_max >= us.map_size);
  assert_int_equal(mim_lmdb_usage(NULL, &us), -EINVAL);

  /* logicd's families over this logic and store */
  bool ready = true;
  struct lmetrics_src src = {
      .logic = f->l,
      .store = f->be,
      .ready = fake_ready,
      .rpc_links = fake_links,
      .rpc_queue_bytes = fake_bytes,
      .user = &ready,
  };
  assert_int_equal(lmetrics_register(&src), 0);
  mimd_histogram_observe(lmetrics_commit_seconds, 0.002);
  mimd_histogram_observe(lmetrics_commit_ops, 3);
  char *text = mimd_metrics_render(NULL);
  assert_non_null(text);
  assert_true(sample(text, "mim_messages_stored_total{kind=\"c2c\"}") == 1);
  assert_true(sample(text, "mim_messages_stored_total{kind=\"group\"}") == 0);
  assert_true(sample(text, "mim_deliveries_total") == 1);
  assert_true(sample(text, "mim_inbox_appends_total") == 2);
  assert_true(sample(text,
                     "mim_logins_total{result=\"ok\",reason=\"ok\"}") == 3);
  assert_true(sample(text, "mim_logins_total{result=\"failed\",reason="
                           "\"token_invalid\"}") == 1);
  assert_true(sample(text, "mim_logins_total{result=\"failed\",reason="
                           "\"token_expired\"}") == 0);
  assert_true(sample(text, "mim_errors_total{code=\"1004\",name="
                           "\"unauthenticated\"}") == 1);
  assert_true(sample(text, "mim_errors_total{code=\"1023\",name="
                           "\"group_full\"}") == 0);
  assert_true(sample(text, "mim_kicks_total{reason=\"other_login\"}") == 1);
  assert_true(sample(text, "mim_ready") == 1);
  assert_true(sample(text, "mim_rpc_links") == 2);
  assert_true(sample(text, "mim_rpc_queue_bytes") == 1234);
  assert_true(sample(text, "mim_sessions") == 2);
  assert_true(sample(text, "mim_writer_queue_depth") == 0);
  assert_true(sample(text, "mim_lmdb_map_size_bytes") == (double)us.map_size);
  assert_true(sample(text, "mim_lmdb_map_used_bytes") > 0);
  assert_true(sample(text, "mim_commit_seconds_count") == 1);
  assert_true(sample(text, "mim_commit_batch_ops_bucket{le=\"5\"}") == 1);
  assert_true(sample(text, "mim_commit_batches_total") >= 1);
  assert_non_null(strstr(text, "mim_build_info{version=\"" MIM_VERSION_STRING
                               "\",daemon=\"logicd\"} 1\n"));
  assert_int_equal(
      check_text(text,
                 "--require mim_build_info --require process_start_time_seconds"
                 " --require mim_ready --require mim_commit_seconds"
                 " --require mim_commit_batch_ops --require mim_writer_queue_depth"
                 " --require mim_messages_stored_total --require mim_deliveries_total"
                 " --require mim_logins_total --require mim_errors_total"
                 " --require mim_kicks_total --require mim_lmdb_map_size_bytes"
                 " --require mim_lmdb_map_used_bytes --require mim_rpc_links"
                 " --require mim_rpc_queue_bytes"),
      0);
  free(text);

  /* readiness is read at each scrape */
  ready = false;
  text = mimd_metrics_render(NULL);
  assert_true(sample(text, "mim_ready") == 0);
  free(text);
  /* writes waiting show in the queue depth: a send not yet committed */
  struct mim_packet s;
  uint8_t body[512];
  size_t len;
  mim_packet_init(&s);
  s.cmd = MIM_CMD_C2C_SEND_REQ;
  s.seq = 3;
  s.to = "alice";
  s.content = "x";
  s.client_msg_id = "m3";
  assert_int_equal(mim_packet_encode_body(&s, body, sizeof body, &len), 0);
  assert_int_equal(mim_logic_receive(f->l, (struct mim_conn_ref){GW, 13},
                                     s.cmd, body, len),
                   0);
  text = mimd_metrics_render(NULL);
  assert_true(sample(text, "mim_writer_queue_depth") >= 1);
  free(text);

  mimd_metrics_reset();
  mim_logic_destroy(f->l);
  mim_backend_destroy(f->be);
  tu_rmdir_free(f->dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(registry_render, reset),
      cmocka_unit_test_teardown(registry_threads, reset),
      cmocka_unit_test_teardown(logic_stats_to_metrics, reset),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
