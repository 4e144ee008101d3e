/* Storage faults and durability, end to end: the real logicd and gatewayd,
 * with logicd's own calls to the disk made to fail by an LD_PRELOAD shim
 * (tests/fault/faultfs.c, path in $FAULTFS_LIB), a store too small for what
 * is sent, a filesystem that runs out of space, and records corrupted on
 * disk behind logicd's back.
 *
 *   test-faults [NAME]   runs every test, or only the test called NAME
 *
 * Each test gets fresh daemons. Exit status 77 (skipped) when the daemons
 * or the shim are not built.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mim/codec.h>
#include <mim/common.h>

#include "harness.h"
#include "tclient.h"
#include "wsclient.h"

#define E_STORE 1017
#define E_STORE_FULL 1020
#define E_BAD_UTF8 1022
#define EXIT_STORE 3 /* logicd's LOGICD_EXIT_STORE */

static struct wsc_ctx *WS;
/* logicd's exit status once a test reaped it (-1: killed by a signal) */
static int logic_exit = -2;

struct fixture {
  struct harness *h;
  bool passed;
  const char *name;
  char mnt[300]; /* a filesystem this test mounted, unmounted at teardown */
};

#define PASSED(f) ((f)->passed = true)

static const char *faultfs_lib(void) {
  const char *p = getenv("FAULTFS_LIB");
  return p != NULL && access(p, R_OK) == 0 ? p : NULL;
}

static const char *const FAULT_VARS[] = {
    "LD_PRELOAD", "FAULTFS_PROC", "FAULTFS_PATH", "FAULTFS_CALLS",
    "FAULTFS_ERRNO", "FAULTFS_AFTER", "FAULTFS_TIMES", "FAULTFS_ARM",
    "FAULTFS_OFF_MAX", "FAULTFS_TRACE",
};

static void fault_env_clear(void) {
  for (size_t i = 0; i < sizeof FAULT_VARS / sizeof *FAULT_VARS; i++)
    unsetenv(FAULT_VARS[i]);
}

/* Sets the shim's variables (pairs NAME, VALUE, ..., NULL) for the daemons
 * started next; the shim acts in logicd only. */
static void fault_env(const char *name, ...) {
  fault_env_clear();
  setenv("LD_PRELOAD", faultfs_lib(), 1);
  setenv("FAULTFS_PROC", "logicd", 1);
  va_list ap;
  va_start(ap, name);
  for (const char *k = name; k != NULL; k = va_arg(ap, const char *))
    setenv(k, va_arg(ap, const char *), 1);
  va_end(ap);
}

static int setup_with(void **state, const char *name,
                      const char *const *logicd_args) {
  struct fixture *f = calloc(1, sizeof *f);
  if (f == NULL)
    return -1;
  f->name = name;
  struct h_opts o;
  h_opts_init(&o);
  o.logicd_args = logicd_args;
  h_watchdog(150, name);
  if (h_create(&f->h, WS, &o) != 0) {
    free(f);
    return -1;
  }
  *state = f;
  return 0;
}

static int setup(void **state) { return setup_with(state, "faults", NULL); }

static int teardown(void **state) {
  struct fixture *f = *state;
  fault_env_clear();
  tc_free_all();
  if (f == NULL)
    return 0;
  if (!f->passed && f->h != NULL) {
    fprintf(stderr, "[%s] failed; daemon logs follow\n", f->name);
    h_dump_logs(f->h);
  }
  if (f->h != NULL) {
    if (f->h->gw_pid > 0)
      (void)h_stop_gatewayd(f->h, SIGKILL);
    if (f->h->logic_pid > 0)
      (void)h_stop_logicd(f->h, SIGKILL);
  }
  if (f->mnt[0] != '\0') {
    /* logicd is gone: nothing holds the mount */
    if (umount2(f->mnt, MNT_DETACH) != 0)
      fprintf(stderr, "[%s] umount %s: %s\n", f->name, f->mnt,
              strerror(errno));
  }
  h_destroy(f->h);
  free(f);
  *state = NULL;
  h_watchdog(0, NULL);
  return 0;
}

/* Starts both daemons with the shim configured by the caller's
 * fault_env(); the variables are cleared again afterwards so that a
 * restart runs without it unless asked. */
static void start(struct fixture *f) {
  logic_exit = -2;
  assert_int_equal(h_start(f->h), 0);
  fault_env_clear();
}

/* Whether logicd has exited; reaps it and keeps its status in logic_exit
 * (h_logicd_alive() would reap it and lose the status). */
static bool logicd_exited(struct harness *h) {
  if (h->logic_pid <= 0)
    return true;
  int st;
  if (waitpid(h->logic_pid, &st, WNOHANG) != h->logic_pid)
    return false;
  h->logic_pid = 0;
  logic_exit = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return true;
}

/* Waits for logicd to exit by itself and returns its exit status (-1 if it
 * was killed by a signal); fails the test if it still runs after `ms`. */
static int wait_logicd_exit(struct harness *h, int ms) {
  int64_t deadline = h_mono_ms() + ms;
  while (h_mono_ms() < deadline) {
    if (logicd_exited(h))
      return logic_exit;
    h_sleep_ms(50);
  }
  fail_msg("logicd still runs %d ms after its store failed (a zombie that "
           "answers heartbeats while every send fails)", ms);
  return -1;
}

/* Whether logicd's log (every start so far) contains `needle`. */
static bool log_has(const struct harness *h, const char *needle) {
  FILE *fp = fopen(h->logic_log, "r");
  if (fp == NULL)
    return false;
  char line[2048];
  bool found = false;
  while (!found && fgets(line, sizeof line, fp) != NULL)
    found = strstr(line, needle) != NULL;
  fclose(fp);
  return found;
}

static void touch(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(fd >= 0);
  close(fd);
}

/* Sends a c2c message and waits up to `ms` for what answers it. Returns
 * the reply's cmd (7 = acknowledged, 17 = Error with *code set) or 0 when
 * nothing came (the link went down with logicd). */
static uint32_t send_try(struct tc *c, const char *to, const char *content,
                         const char *cmid, int ms, int32_t *code) {
  struct mim_packet req, rsp;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_C2C_SEND_REQ;
  req.to = to;
  req.content = content;
  req.client_msg_id = cmid;
  req.seq = ++c->seq;
  req.ts = tc_now_ms();
  if (wsc_send_packet(c->ws, &req) != 0)
    return 0;
  int64_t seq = req.seq;
  int64_t deadline = h_mono_ms() + ms;
  while (h_mono_ms() < deadline) {
    int r = wsc_recv(c->ws, 200, &rsp);
    if (r == -ETIMEDOUT)
      continue;
    if (r != 0)
      return 0;
    uint32_t cmd = rsp.cmd;
    bool mine = rsp.seq == seq && cmd != MIM_CMD_C2C_PUSH &&
                cmd != MIM_CMD_C2G_PUSH && cmd != MIM_CMD_SERVER_PUSH;
    if (mine && code != NULL)
      *code = rsp.status;
    mim_packet_finish(&rsp);
    if (mine)
      return cmd;
  }
  return 0;
}

/* Every item of `uid`'s inbox after 0, by pages of 100, into `out`
 * (inbox_seq may skip entries the server could not read). */
static void pull_everything(struct tc *c, struct tc_items *out) {
  uint64_t after = 0;
  for (int page = 0; page < 1000; page++) {
    struct mim_packet rsp;
    tc_pull(c, true, after, 100, &rsp);
    for (size_t i = 0; i < rsp.n_items; i++) {
      const struct mim_pull_item *it = &rsp.items[i];
      assert_true(it->inbox_seq > after);
      after = it->inbox_seq;
      if (out->n == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 64;
        out->v = realloc(out->v, out->cap * sizeof *out->v);
        assert_non_null(out->v);
      }
      struct tc_item *d = &out->v[out->n++];
      memset(d, 0, sizeof *d);
      d->content = strdup(it->content ? it->content : "");
      d->client_msg_id = strdup(it->client_msg_id ? it->client_msg_id : "");
      d->from = strdup("");
      d->to = strdup("");
      d->group = strdup("");
      d->msg_id = it->msg_id;
      d->inbox_seq = it->inbox_seq;
    }
    bool more = rsp.has_more;
    mim_packet_finish(&rsp);
    if (!more)
      return;
  }
  fail_msg("pull did not end");
}

static bool items_have(const struct tc_items *it, const char *content) {
  for (size_t i = 0; i < it->n; i++)
    if (strcmp(it->v[i].content, content) == 0)
      return true;
  return false;
}

/* ---- a failed fdatasync ---- */

/* fdatasync of data.mdb fails (EIO) once armed: the send whose commit it
 * was is not acknowledged, logicd says why and exits with status 3, and a
 * restart serves everything acknowledged before, and the retried send. */
static void sync_failure_is_not_acked(void **state) {
  struct fixture *f = *state;
  char arm[400];
  snprintf(arm, sizeof arm, "%s/arm", f->h->root);
  fault_env("FAULTFS_CALLS", "fdatasync", "FAULTFS_ERRNO", "EIO",
            "FAULTFS_TIMES", "0", "FAULTFS_ARM", arm, NULL);
  start(f);
  struct tc *a = tc_login(f->h, "alice", "phone");
  for (int i = 0; i < 3; i++) {
    char text[32], cmid[32];
    snprintf(text, sizeof text, "before-%d", i);
    snprintf(cmid, sizeof cmid, "b%d", i);
    tc_c2c(a, "bob", text, cmid, NULL);
  }
  touch(arm);
  int32_t code = 0;
  uint32_t got = send_try(a, "bob", "lost-1", "l1", 15000, &code);
  if (got == MIM_CMD_C2C_SEND_RSP)
    fail_msg("a send whose commit's fdatasync failed was acknowledged");
  if (got == MIM_CMD_ERROR)
    assert_true(code == E_STORE || code == E_UNAVAILABLE);
  assert_int_equal(wait_logicd_exit(f->h, 15000), EXIT_STORE);
  assert_true(log_has(f->h, "store failure"));
  assert_true(log_has(f->h, "exits with status 3"));
  tc_free(a);

  unlink(arm);
  assert_int_equal(h_start_logicd(f->h), 0);
  assert_int_equal(h_wait_linked(f->h, 15000), 0);
  a = tc_login(f->h, "alice", "phone");
  tc_c2c(a, "bob", "lost-1", "l1", NULL); /* the retry goes through */
  struct tc *b = tc_login(f->h, "bob", "phone");
  struct tc_items it = {0};
  pull_everything(b, &it);
  assert_int_equal(it.n, 4);
  for (int i = 0; i < 3; i++) {
    char text[32];
    snprintf(text, sizeof text, "before-%d", i);
    assert_true(items_have(&it, text));
  }
  assert_true(items_have(&it, "lost-1"));
  tc_items_free(&it);
  PASSED(f);
}

/* ---- a failed meta-page write ---- */

/* The write of LMDB's meta page (the first two pages of data.mdb) fails:
 * LMDB marks the environment fatal; logicd must not acknowledge the send
 * and must exit. */
static void meta_page_write_failure(void **state) {
  struct fixture *f = *state;
  char arm[400];
  snprintf(arm, sizeof arm, "%s/arm", f->h->root);
  long page = sysconf(_SC_PAGESIZE);
  char off_max[32];
  snprintf(off_max, sizeof off_max, "%ld", 2 * (page > 0 ? page : 4096));
  fault_env("FAULTFS_CALLS", "pwrite", "FAULTFS_ERRNO", "EIO",
            "FAULTFS_TIMES", "1", "FAULTFS_OFF_MAX", off_max, "FAULTFS_ARM",
            arm, NULL);
  start(f);
  struct tc *a = tc_login(f->h, "alice", "phone");
  tc_c2c(a, "bob", "kept", "k1", NULL);
  touch(arm);
  int32_t code = 0;
  uint32_t got = send_try(a, "bob", "not-acked", "n1", 15000, &code);
  if (got == MIM_CMD_C2C_SEND_RSP)
    fail_msg("a send whose meta-page write failed was acknowledged");
  assert_int_equal(wait_logicd_exit(f->h, 15000), EXIT_STORE);
  assert_true(log_has(f->h, "store failure"));
  tc_free(a);
  unlink(arm);
  assert_int_equal(h_start_logicd(f->h), 0);
  assert_int_equal(h_wait_linked(f->h, 15000), 0);
  struct tc *b = tc_login(f->h, "bob", "phone");
  struct tc_items it = {0};
  pull_everything(b, &it);
  assert_true(items_have(&it, "kept"));
  tc_items_free(&it);
  PASSED(f);
}

/* ---- MDB_PANIC ---- */

/* The meta-page write fails with ENOSPC: that commit reports a full store
 * (not fatal by itself), but LMDB has marked the environment fatal, so the
 * next transaction gets MDB_PANIC. logicd must stop there, not answer
 * every later send with an error for ever. */
static void mdb_panic_stops_logicd(void **state) {
  struct fixture *f = *state;
  char arm[400];
  snprintf(arm, sizeof arm, "%s/arm", f->h->root);
  long page = sysconf(_SC_PAGESIZE);
  char off_max[32];
  snprintf(off_max, sizeof off_max, "%ld", 2 * (page > 0 ? page : 4096));
  fault_env("FAULTFS_CALLS", "pwrite", "FAULTFS_ERRNO", "ENOSPC",
            "FAULTFS_TIMES", "1", "FAULTFS_OFF_MAX", off_max, "FAULTFS_ARM",
            arm, NULL);
  start(f);
  struct tc *a = tc_login(f->h, "alice", "phone");
  tc_c2c(a, "bob", "kept", "k1", NULL);
  touch(arm);
  int32_t code = 0;
  /* the first commit after arming fails with ENOSPC (STORE_FULL to its
   * requests: it may be a cursor write rather than this send), and the
   * next one meets MDB_PANIC */
  logic_exit = -2;
  for (int i = 0; i < 3 && !logicd_exited(f->h); i++) {
    char text[32], cmid[32];
    snprintf(text, sizeof text, "after-%d", i);
    snprintf(cmid, sizeof cmid, "p%d", i);
    uint32_t got = send_try(a, "bob", text, cmid, 15000, &code);
    if (got == MIM_CMD_C2C_SEND_RSP)
      fail_msg("send %d after the failed meta-page write was acknowledged",
               i);
    if (got == MIM_CMD_ERROR)
      assert_true(code == E_STORE_FULL || code == E_STORE ||
                  code == E_UNAVAILABLE);
  }
  assert_int_equal(wait_logicd_exit(f->h, 15000), EXIT_STORE);
  assert_true(log_has(f->h, "MDB_PANIC"));
  tc_free(a);
  unlink(arm);
  assert_int_equal(h_start_logicd(f->h), 0);
  assert_int_equal(h_wait_linked(f->h, 15000), 0);
  struct tc *b = tc_login(f->h, "bob", "phone");
  struct tc_items it = {0};
  pull_everything(b, &it);
  assert_true(items_have(&it, "kept"));
  tc_items_free(&it);
  PASSED(f);
}

/* ---- a full store ---- */

/* Fills the store with 16 KiB messages until it is full, then checks: the
 * refusal is STORE_FULL (retryable), every acknowledged message is there,
 * reads and logins still work, and logicd keeps running. */
static void fill_until_full(struct fixture *f, int max_sends) {
  struct tc *a = tc_login(f->h, "alice", "phone");
  static char text[16 * 1024 + 1];
  static bool ok[1000];
  int acked = 0, full = 0;
  assert_true(max_sends <= 1000);
  for (int i = 0; i < max_sends && full < 3; i++) {
    memset(text, 'a' + i % 26, sizeof text - 1);
    snprintf(text, 16, "m%06d-", i);
    text[strlen(text)] = 'x';
    text[sizeof text - 1] = '\0';
    char cmid[32];
    snprintf(cmid, sizeof cmid, "c%d", i);
    int32_t code = 0;
    uint32_t got = send_try(a, "bob", text, cmid, 15000, &code);
    ok[i] = got == MIM_CMD_C2C_SEND_RSP;
    if (ok[i]) {
      acked++;
      continue;
    }
    if (got != MIM_CMD_ERROR)
      fail_msg("send %d: no reply (logicd alive: %d)", i,
               h_logicd_alive(f->h));
    if (code != E_STORE_FULL)
      fail_msg("send %d: error %d, want STORE_FULL (1020)", i, code);
    full++;
  }
  if (full == 0)
    fail_msg("the store never filled up in %d sends", max_sends);
  assert_true(acked > 0);
  assert_true(h_logicd_alive(f->h)); /* a full store is not fatal */
  /* every acknowledged message is there, and reads work */
  struct tc *b = tc_login(f->h, "bob", "phone");
  struct tc_items it = {0};
  pull_everything(b, &it);
  if ((int)it.n != acked)
    fail_msg("%d sends acknowledged, bob's inbox holds %zu", acked, it.n);
  for (int i = 0, k = 0; i < max_sends; i++) {
    if (!ok[i])
      continue;
    char want[16];
    snprintf(want, sizeof want, "m%06d-", i);
    assert_memory_equal(it.v[k].content, want, strlen(want));
    k++;
  }
  tc_items_free(&it);
  struct mim_packet req, rsp;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_HISTORY_REQ;
  req.peer = "alice";
  req.limit = 10;
  tc_call(b, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_HISTORY_RSP);
  assert_true(rsp.n_items > 0);
  mim_packet_finish(&rsp);
  tc_barrier(a);
  assert_true(h_logicd_alive(f->h));
}

static const char *const TINY_MAP[] = {"--map-size-mb", "1",
                                       "--map-size-max-mb", "1", NULL};

static int setup_tiny_map(void **state) {
  return setup_with(state, "store_full_tiny_map", TINY_MAP);
}

static void store_full_tiny_map(void **state) {
  struct fixture *f = *state;
  start(f);
  fill_until_full(f, 400);
  PASSED(f);
}

/* The same with a real ENOSPC: logicd's data directory on a 2 MiB tmpfs,
 * with a map far larger than the filesystem. Skipped where mounting is not
 * allowed. */
static void enospc_small_filesystem(void **state) {
  struct fixture *f = *state;
  snprintf(f->mnt, sizeof f->mnt, "%s/smallfs", f->h->root);
  assert_int_equal(mkdir(f->mnt, 0700), 0);
  if (mount("mimtest", f->mnt, "tmpfs", MS_NOSUID | MS_NODEV,
            "size=2m,mode=0700") != 0) {
    fprintf(stderr, "[enospc_small_filesystem] cannot mount a tmpfs (%s): "
            "skipped\n", strerror(errno));
    f->mnt[0] = '\0';
    PASSED(f);
    skip();
  }
  snprintf(f->h->data_dir, sizeof f->h->data_dir, "%s/data", f->mnt);
  start(f);
  fill_until_full(f, 400);
  PASSED(f);
}

/* ---- corrupt records and invalid UTF-8 ---- */

/* Rewrites the record of `msg_id` in logicd's store (logicd stopped). */
static void put_raw_record(const char *dir, uint64_t msg_id,
                           const uint8_t *rec, size_t len) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  assert_int_equal(mdb_env_create(&env), 0);
  assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
  assert_int_equal(mdb_env_set_mapsize(env, (size_t)64 << 20), 0);
  assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
  assert_int_equal(mdb_dbi_open(txn, "msgs", 0, &dbi), 0);
  uint8_t k[8];
  for (int i = 0; i < 8; i++)
    k[i] = (uint8_t)(msg_id >> (56 - 8 * i));
  MDB_val key = {sizeof k, k}, val = {len, (void *)rec};
  assert_int_equal(mdb_put(txn, dbi, &key, &val, 0), 0);
  assert_int_equal(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

/* A record that is not protobuf, and one whose content is c3 28 (not
 * UTF-8), sit in bob's inbox between good ones: his pulls and histories
 * return the good ones (each page), logicd logs the skipped records, and
 * a client sending c3 28 is refused with BAD_UTF8. */
static void corrupt_record_and_bad_utf8_reach_a_pull(void **state) {
  struct fixture *f = *state;
  start(f);
  struct tc *a = tc_login(f->h, "alice", "phone");
  uint64_t ids[6];
  for (int i = 0; i < 6; i++) {
    char text[32];
    snprintf(text, sizeof text, "good-%d", i);
    ids[i] = tc_c2c(a, "bob", text, NULL, NULL);
  }
  /* the entry point refuses it... */
  struct mim_packet rsp;
  int32_t code = 0;
  assert_int_equal(send_try(a, "bob", "bad \xc3\x28 text", "u1", 10000, &code),
                   MIM_CMD_ERROR);
  assert_int_equal(code, E_BAD_UTF8);
  assert_int_equal(send_try(a, "bob", "ok", "\xed\xa0\x80", 10000, &code),
                   MIM_CMD_ERROR); /* a surrogate in client_msg_id */
  assert_int_equal(code, E_BAD_UTF8);
  tc_free(a);
  assert_int_equal(h_stop_gatewayd(f->h, SIGTERM), 0);
  assert_int_equal(h_stop_logicd(f->h, SIGTERM), 0);

  /* ...so put them on disk behind logicd's back */
  static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  put_raw_record(f->h->data_dir, ids[1], garbage, sizeof garbage);
  /* version 1, type 0, sender "alice", conv_kind 1, peer "bob",
   * content c3 28 */
  static const uint8_t bad_utf8[] = {0x08, 0x01, 0x10, 0x00, 0x1a, 0x05, 'a',
                                     'l',  'i',  'c',  'e',  0x28, 0x01, 0x32,
                                     0x03, 'b',  'o',  'b',  0x42, 0x02, 0xc3,
                                     0x28};
  put_raw_record(f->h->data_dir, ids[3], bad_utf8, sizeof bad_utf8);

  assert_int_equal(h_start(f->h), 0);
  struct tc *b = tc_login(f->h, "bob", "phone");
  /* pages of 2: every page holding a bad record still comes back */
  uint64_t after = 0;
  size_t got = 0;
  for (int page = 0; page < 10; page++) {
    tc_pull(b, true, after, 2, &rsp);
    for (size_t i = 0; i < rsp.n_items; i++) {
      const struct mim_pull_item *it = &rsp.items[i];
      assert_true(it->msg_id != ids[1] && it->msg_id != ids[3]);
      assert_true(mim_utf8_valid(it->content, strlen(it->content)));
      after = it->inbox_seq;
      got++;
    }
    bool more = rsp.has_more;
    mim_packet_finish(&rsp);
    if (!more)
      break;
  }
  assert_int_equal(got, 4);
  /* history: the same four */
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_HISTORY_REQ;
  req.peer = "alice";
  req.limit = 10;
  tc_call(b, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_HISTORY_RSP);
  assert_int_equal(rsp.n_items, 4);
  mim_packet_finish(&rsp);
  assert_true(log_has(f->h, "skipped an unreadable message record"));
  assert_true(h_logicd_alive(f->h));
  PASSED(f);
}

/* ---- durability: no reply before its sync ---- */

struct event {
  long no;
  enum { EV_SYNC, EV_IN, EV_OUT } kind;
  char *hex; /* bytes of in/out events, as hex */
};

static void hex_of(const void *p, size_t n, char *out) {
  static const char hex[] = "0123456789abcdef";
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[b[i] >> 4];
    out[2 * i + 1] = hex[b[i] & 15];
  }
  out[2 * n] = '\0';
}

static size_t varint(uint64_t v, uint8_t *out) {
  size_t n = 0;
  do {
    out[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v != 0);
  return n;
}

static size_t load_trace(const char *path, struct event **out) {
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  size_t n = 0, cap = 0;
  struct event *v = NULL;
  char *line = NULL;
  size_t lcap = 0;
  while (getline(&line, &lcap, fp) > 0) {
    long no;
    char kind[16];
    if (sscanf(line, "%ld %15s", &no, kind) != 2)
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 1024;
      v = realloc(v, cap * sizeof *v);
      assert_non_null(v);
    }
    struct event *e = &v[n];
    e->no = no;
    e->hex = NULL;
    if (strcmp(kind, "sync") == 0) {
      e->kind = EV_SYNC;
      n++;
      continue;
    }
    e->kind = strcmp(kind, "in") == 0 ? EV_IN : EV_OUT;
    if (getline(&line, &lcap, fp) <= 0)
      break;
    e->hex = strdup(line);
    n++;
  }
  free(line);
  fclose(fp);
  *out = v;
  return n;
}

/* logicd runs under the shim's trace: every completed fdatasync of
 * data.mdb and every socket read and write, numbered in one order. For
 * each of 30 sends, the read that brought the request, the write that
 * carries its reply (recognised by its seq) and a sync in between must
 * appear in that order: a reply is never written before the sync of the
 * commit that holds its message. */
static void reply_never_precedes_its_sync(void **state) {
  struct fixture *f = *state;
  char trace[400];
  snprintf(trace, sizeof trace, "%s/trace", f->h->root);
  fault_env("FAULTFS_TRACE", trace, NULL);
  start(f);
  struct tc *a = tc_login(f->h, "alice", "phone");
  enum { N = 30 };
  /* seqs whose varint is long and unlike anything else on the link */
  const int64_t base = INT64_C(0x2a5a5a5a5a00);
  int64_t seqs[N];
  for (int i = 0; i < N; i++) {
    char text[32];
    snprintf(text, sizeof text, "durable-%03d", i);
    a->seq = base + 2 * i;
    struct mim_packet rsp;
    tc_c2c(a, "bob", text, NULL, &rsp);
    seqs[i] = rsp.seq;
    mim_packet_finish(&rsp);
  }
  tc_barrier(a);

  struct event *ev;
  size_t n = load_trace(trace, &ev);
  size_t syncs = 0;
  for (size_t k = 0; k < n; k++)
    syncs += ev[k].kind == EV_SYNC;
  fprintf(stderr, "[durability] %zu traced events, %zu syncs of data.mdb\n",
          n, syncs);
  for (int i = 0; i < N; i++) {
    char text[32], want_in[80], want_out[64];
    snprintf(text, sizeof text, "durable-%03d", i);
    hex_of(text, strlen(text), want_in);
    uint8_t enc[16];
    enc[0] = 0x18; /* SendResponse.seq: field 3, varint */
    size_t len = 1 + varint((uint64_t)seqs[i], enc + 1);
    hex_of(enc, len, want_out);
    long in_no = -1, out_no = -1, sync_no = -1;
    for (size_t k = 0; k < n; k++) {
      struct event *e = &ev[k];
      if (in_no < 0) {
        if (e->kind == EV_IN && strstr(e->hex, want_in) != NULL)
          in_no = e->no;
        continue;
      }
      if (e->kind == EV_SYNC && e->no > in_no && sync_no < 0)
        sync_no = e->no;
      if (e->kind == EV_OUT && e->no > in_no && strstr(e->hex, want_out)) {
        out_no = e->no;
        break;
      }
    }
    if (in_no < 0 || out_no < 0)
      fail_msg("send %d: request (event %ld) or reply (event %ld) not found "
               "in the trace", i, in_no, out_no);
    if (sync_no < 0 || sync_no > out_no)
      fail_msg("send %d: its reply was written (event %ld) before any "
               "fdatasync of data.mdb after its request (event %ld; first "
               "sync after it: %ld)", i, out_no, in_no, sync_no);
  }
  for (size_t k = 0; k < n; k++)
    free(ev[k].hex);
  free(ev);
  PASSED(f);
}

/* ---- main ---- */

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static const struct CMUnitTest tests[] = {
    T(sync_failure_is_not_acked),
    T(meta_page_write_failure),
    T(mdb_panic_stops_logicd),
    cmocka_unit_test_setup_teardown(store_full_tiny_map, setup_tiny_map,
                                    teardown),
    T(enospc_small_filesystem),
    T(corrupt_record_and_bad_utf8_reach_a_pull),
    T(reply_never_precedes_its_sync),
};

int main(int argc, char **argv) {
  return h_main(argc, argv, "faults", tests, sizeof tests / sizeof *tests, &WS, 0);
}
