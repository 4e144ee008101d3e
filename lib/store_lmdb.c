/* The LMDB backend of the message store.
 *
 * One environment, one writer (commit() runs one batch at a time in one
 * write transaction: group commit), any number of concurrent readers (LMDB
 * MVCC: a read sees the last committed snapshot and never waits for the
 * writer).
 *
 * Layout. Every id in a key is a fixed-width big-endian u64, so keys sort
 * numerically and no two (id, id) pairs can spell the same bytes. Strings
 * (uids, group ids, device ids) are mapped to such ids in `ids`:
 *
 *   meta        "schema" → u32 version; "last_msg_id", "last_id" → u64
 *   ids         'u'|'g'|'d' ':' name → u64 id (user, group, device; one
 *               counter, ids from 1; 0 stands for the server as sender)
 *               'U'|'G'|'D' id → name (the reverse; upper case, so the two
 *               directions never share a key)
 *   msgs        msg_id → packed MessageRecord (version 1)
 *   inbox       (uid_id, seq) → msg_id
 *   conv        conv(17) seq → msg_id, where conv is 'c' lo_uid hi_uid for
 *               a c2c pair (ordered, so both directions share it) or
 *               'g' gid 0 for a group: the tag byte keeps the spaces apart
 *   groups      gid → i64 created (ms)
 *   members     (gid, uid_id) → joined_conv_seq
 *   dedup       (sender_id, client_msg_id bytes) → (msg_id, server_time,
 *               sender_inbox_seq)
 *   dedup_time  (server_time biased, sender_id, client_msg_id) → "" (the
 *               expiry queue: the oldest entries come first)
 *   cursors     (uid_id, dev_id) → seq
 *
 * There is no counter database: the newest key of a timeline (a user's
 * inbox range, a conversation's range) is its last seq. Reading it costs one
 * cursor search on the very page the append dirties anyway, whereas a
 * counter keyed by conversation is one more random page per message to
 * write and sync (docs/benchmarks.md has the measurement). Timelines are never trimmed at their newest end.
 *
 * Failures. An op that fails alone (not a member, no such group, dedup
 * conflict, group exists) is refused by checks that run before it writes
 * anything, so the op leaves no trace and no nested transaction is needed.
 * Anything else (I/O, ENOSPC, out of memory, corruption) aborts the whole
 * transaction: nothing of the batch is stored and every op reports the
 * error. A full map aborts too, is grown, and the batch runs again. */
#include "internal.h"
#include "store_lmdb.h"
#include "store_cache.h"
#include "varint.h"

#include "record.pb-c.h"

#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define DEFAULT_MAP_SIZE ((size_t)64 << 20)
#define DEFAULT_MAP_SIZE_MAX ((size_t)64 << 30)
#define DEFAULT_DEDUP_WINDOW_MS (24 * 3600 * 1000LL)
#define DEFAULT_CURSORS_PER_USER_MAX 64

/* Expired dedup entries removed per commit on top of one per entry the
 * commit adds, so the expiry queue keeps pace with any send rate. */
#define DEDUP_PRUNE_MIN 256

enum db {
  DB_META,
  DB_IDS,
  DB_MSGS,
  DB_INBOX,
  DB_CONV,
  DB_GROUPS,
  DB_MEMBERS,
  DB_DEDUP,
  DB_DEDUP_TIME,
  DB_CURSORS,
  DB__COUNT
};

static const char *const db_names[DB__COUNT] = {
    "meta",  "ids",   "msgs",       "inbox",   "conv",    "groups",
    "members", "dedup", "dedup_time", "cursors",
};

enum id_kind { ID_USER = 'u', ID_GROUP = 'g', ID_DEVICE = 'd' };

#define CONV_LEN 17
#define DEDUP_KEY_MAX (8 + MIM_CLIENT_MSG_ID_MAX)
#define DEDUP_TIME_KEY_MAX (8 + DEDUP_KEY_MAX)

struct lmdb_store {
  MDB_env *env;
  MDB_dbi dbi[DB__COUNT];
  /* mdb_env_set_mapsize() must not run while any transaction of this
   * process is open. Every transaction (read or write) holds this lock
   * shared; resizing takes it exclusively. Readers never wait for each
   * other nor for commits, only for the rare resize. */
  pthread_rwlock_t map_lock;
  /* commit() is documented as single-writer; this keeps the writer-owned
   * state below consistent even if a caller breaks that rule. */
  pthread_mutex_t write_lock;
  size_t map_size_max;
  int64_t dedup_window_ms;
  char *path; /* the environment's directory (free space checks) */
  size_t read_bytes_max; /* 0 = none (mim_lmdb_config) */
  size_t cursors_per_user_max; /* 0 = none (mim_lmdb_config) */
  uint32_t group_members_max; /* 0 = no limit */

  /* Writer-owned: committed values, updated only after a commit. */
  uint64_t last_msg_id;
  uint64_t last_id;
  int64_t clock_ms; /* newest server_time seen: "now" for dedup expiry */

  /* Writer-owned: what the writer looked up (timeline tails, ids), so a
   * hot timeline is not searched for its tail before every append. */
  struct mim__store_cache *cache;

  /* Writer-owned scratch, reused by every op. */
  struct mim__store_arena scratch;
  struct mim_recipient *rcpt;
  size_t rcpt_cap;
  uint64_t *idv;
  size_t idv_cap;
  const char **names;
  size_t names_cap;

  /* Records skipped because they could not be read (any thread). */
  atomic_uint_fast64_t corrupt;
  /* 0, or the error after which the environment must not be used again
   * (mim_backend_health); set once by the writer, read by any thread. */
  atomic_int fatal;

  /* Test hook (mim__store_lmdb_inject_failure). */
  bool inject_armed;
  unsigned long inject_nth;
  int inject_err;
  /* Test hook (mim__store_lmdb_txn_writes_max): 0 = off. */
  unsigned long txn_writes_max;
};

/* State of one write transaction. Counters live here until the commit
 * succeeds, so an aborted batch leaves the store's copies untouched. */
struct wtx {
  struct lmdb_store *s;
  MDB_txn *txn;
  uint64_t last_msg_id;
  uint64_t last_id;
  int64_t clock_ms;
  size_t dedup_added;
  unsigned long writes;
  MDB_cursor *tail[2]; /* inbox and conv, for tail_seq(); opened lazily */
};

/* ---- small helpers ---- */

static void be64_put(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
}

static uint64_t be64_get(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

static int64_t u64_to_i64(uint64_t u) {
  int64_t t;
  memcpy(&t, &u, sizeof t); /* two's complement, without UB */
  return t;
}

/* int64 → u64 whose unsigned order is the signed order (dedup_time keys). */
static uint64_t time_bias(int64_t t) {
  return (uint64_t)t ^ (UINT64_C(1) << 63);
}

static int64_t time_unbias(uint64_t u) {
  return u64_to_i64(u ^ (UINT64_C(1) << 63));
}

/* LMDB returns errno values positive and its own codes negative (-30799 and
 * up); internally we keep both negative, as everywhere in libmim. */
static int lrc(int rc) { return rc > 0 ? -rc : rc; }

/* Whether `rc` is one of LMDB's own codes (MDB_KEYEXIST -30799 up to
 * MDB_LAST_ERRCODE), not an errno value. */
static bool is_mdb_err(int rc) {
  return rc >= MDB_KEYEXIST && rc <= MDB_LAST_ERRCODE;
}

/* The error a caller sees for an internal one. */
static int map_err(int rc) {
  switch (rc) {
  case MDB_MAP_FULL:
  case -ENOSPC:
    return -MIM_ERR_STORE_FULL;
  case MDB_VERSION_MISMATCH:
    return -MIM_ERR_SCHEMA_MISMATCH;
  case MDB_READERS_FULL:
    return -MIM_ERR_BUSY;
  default:
    break;
  }
  if (is_mdb_err(rc))
    return -MIM_ERR_STORE;
  return rc;
}

static const char *err_text(int rc) {
  if (is_mdb_err(rc))
    return mdb_strerror(rc);
  return mim_strerror(rc);
}

/* Whether mdb_txn_commit() failing with `rc` leaves the environment
 * unusable. MDB_PANIC: LMDB itself marked it so (a failed meta-page write
 * sets its fatal flag and every later transaction gets MDB_PANIC). -EIO
 * from the commit is a failed write or sync of the data file: after a failed
 * fdatasync the kernel may have dropped the dirty pages and cleared the
 * error, so nothing this process holds can be trusted to match the disk
 * any more (PostgreSQL's fsync rule); only a fresh open, which reads the
 * last durable meta page again, can. ENOSPC is not fatal: nothing was
 * acknowledged, and the next commit may find room. */
static bool fatal_err(int rc) {
  return rc == MDB_PANIC || rc == -EIO;
}

/* Below this much free space, a failed commit is taken for a full disk. */
#define DISK_FULL_BYTES ((uint64_t)1 << 20)

/* Whether the filesystem of the store is (all but) full. LMDB reports a
 * short write of its pages as EIO, which is what a filesystem that fills
 * up mid-write gives: that is a full store, retryable once space is
 * freed, not a broken one. */
static bool disk_full(const struct lmdb_store *s) {
  struct statvfs st;
  if (s->path == NULL || statvfs(s->path, &st) != 0)
    return false;
  return (uint64_t)st.f_bavail * st.f_frsize < DISK_FULL_BYTES;
}

static void set_fatal(struct lmdb_store *s, int rc) {
  int none = 0;
  if (atomic_compare_exchange_strong(&s->fatal, &none, rc))
    mim__error("store: unrecoverable failure: %s; the environment must be "
               "closed and opened again (restart the process)",
               rc == MDB_PANIC ? mdb_strerror(rc) : mim_strerror(rc));
}

/* Counts a record that could not be read and is skipped, and says so in
 * the log: the first few times, then at every power of two, so a corrupt
 * entry on a hot page cannot flood the log. `what` names the database. */
static void note_corrupt(struct lmdb_store *s, const char *what,
                         uint64_t id) {
  uint_fast64_t n = atomic_fetch_add(&s->corrupt, 1) + 1;
  if (n <= 8 || (n & (n - 1)) == 0)
    mim__warn("store: skipped an unreadable %s record (id %" PRIu64
              "); %" PRIu64 " skipped since start",
              what, id, (uint64_t)n);
}

static MDB_val val(const void *p, size_t n) {
  MDB_val v = {n, (void *)p};
  return v;
}

/* Grows `*arr` (elements of `size`) to hold at least `need`. */
static int reserve(void **arr, size_t *cap, size_t need, size_t size) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? *cap : 16;
  while (n < need)
    n *= 2;
  if (n > SIZE_MAX / size)
    return -ENOMEM;
  void *p = realloc(*arr, n * size);
  if (p == NULL)
    return -ENOMEM;
  *arr = p;
  *cap = n;
  return 0;
}

/* protobuf-c allocations go to an arena: a record's strings are copied out
 * right after unpacking, so they all die together. */
static void *pb_alloc(void *data, size_t n) {
  return mim__store_arena_alloc(data, n);
}

static void pb_free(void *data, void *p) {
  (void)data;
  (void)p;
}

/* ---- transactions and the map ---- */

/* Another process grew the map: adopt its size (no txn may be open). */
static int adopt_map_size(struct lmdb_store *s) {
  pthread_rwlock_wrlock(&s->map_lock);
  int rc = lrc(mdb_env_set_mapsize(s->env, 0));
  pthread_rwlock_unlock(&s->map_lock);
  return rc;
}

/* Begins a transaction with the map lock held shared; end it with
 * txn_end(). */
static int txn_begin(struct lmdb_store *s, unsigned flags, MDB_txn **txn) {
  for (;;) {
    pthread_rwlock_rdlock(&s->map_lock);
    int rc = mdb_txn_begin(s->env, NULL, flags, txn);
    if (rc == 0)
      return 0;
    pthread_rwlock_unlock(&s->map_lock);
    if (rc != MDB_MAP_RESIZED)
      return lrc(rc);
    rc = adopt_map_size(s);
    if (rc != 0)
      return rc;
  }
}

/* Releases the map lock of a transaction already committed or aborted. */
static void txn_unlock(struct lmdb_store *s) {
  pthread_rwlock_unlock(&s->map_lock);
}

static void read_end(struct lmdb_store *s, MDB_txn *txn) {
  mdb_txn_abort(txn);
  txn_unlock(s);
}

/* Doubles the map (up to map_size_max). Called by the writer with no
 * transaction open; waits for running reads to finish. */
static int grow_map(struct lmdb_store *s) {
  int rc = 0;
  pthread_rwlock_wrlock(&s->map_lock);
  MDB_envinfo info;
  mdb_env_info(s->env, &info);
  size_t cur = info.me_mapsize;
  if (cur >= s->map_size_max) {
    rc = -MIM_ERR_STORE_FULL;
    goto out;
  }
  size_t next = cur > s->map_size_max / 2 ? s->map_size_max : cur * 2;
  rc = lrc(mdb_env_set_mapsize(s->env, next));
  if (rc == 0)
    mim__info("store: map grown from %zu to %zu bytes", cur, next);
out:
  pthread_rwlock_unlock(&s->map_lock);
  return rc;
}

/* ---- writes (through these two, so tests can inject failures) ---- */

static int injected(struct wtx *w) {
  struct lmdb_store *s = w->s;
  w->writes++;
  if (s->txn_writes_max != 0 && w->writes > s->txn_writes_max)
    return MDB_TXN_FULL;
  if (s->inject_armed && s->inject_nth == w->writes) {
    s->inject_armed = false;
    return s->inject_err;
  }
  return 0;
}

static int put(struct wtx *w, enum db db, const void *k, size_t kl,
               MDB_val *v, unsigned flags) {
  int rc = injected(w);
  if (rc != 0)
    return rc;
  MDB_val key = val(k, kl);
  return lrc(mdb_put(w->txn, w->s->dbi[db], &key, v, flags));
}

static int put_u64(struct wtx *w, enum db db, const void *k, size_t kl,
                   uint64_t x) {
  uint8_t b[8];
  be64_put(b, x);
  MDB_val v = val(b, sizeof b);
  return put(w, db, k, kl, &v, 0);
}

static int del(struct wtx *w, enum db db, const void *k, size_t kl) {
  int rc = injected(w);
  if (rc != 0)
    return rc;
  MDB_val key = val(k, kl);
  return lrc(mdb_del(w->txn, w->s->dbi[db], &key, NULL));
}

/* ---- reads shared by both paths ---- */

static int get(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl,
               MDB_val *out) {
  MDB_val key = val(k, kl);
  return lrc(mdb_get(txn, dbi, &key, out));
}

/* A u64 value; 0 when absent. */
static int get_u64(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl,
                   uint64_t *x) {
  MDB_val v;
  int rc = get(txn, dbi, k, kl, &v);
  if (rc == MDB_NOTFOUND) {
    *x = 0;
    return 0;
  }
  if (rc != 0)
    return rc;
  if (v.mv_size != 8)
    return MDB_CORRUPTED;
  *x = be64_get(v.mv_data);
  return 0;
}

static size_t id_key(uint8_t *k, enum id_kind kind, const char *name) {
  size_t n = strlen(name);
  k[0] = (uint8_t)kind;
  k[1] = ':';
  memcpy(k + 2, name, n);
  return n + 2;
}

/* The id of `name`; MDB_NOTFOUND when it has none. */
static int id_find(MDB_txn *txn, const struct lmdb_store *s,
                   enum id_kind kind, const char *name, uint64_t *id) {
  if (strlen(name) > MIM_ID_MAX)
    return MDB_NOTFOUND;
  uint8_t k[2 + MIM_ID_MAX];
  MDB_val v;
  int rc = get(txn, s->dbi[DB_IDS], k, id_key(k, kind, name), &v);
  if (rc != 0)
    return rc;
  if (v.mv_size != 8)
    return MDB_CORRUPTED;
  *id = be64_get(v.mv_data);
  return 0;
}

/* The name of id `id`, copied into `a` (LMDB's pointers die with the next
 * write). */
static int id_name(MDB_txn *txn, const struct lmdb_store *s,
                   enum id_kind kind, uint64_t id, struct mim__store_arena *a,
                   const char **name) {
  uint8_t k[9];
  k[0] = (uint8_t)(kind - 'a' + 'A');
  be64_put(k + 1, id);
  MDB_val v;
  int rc = get(txn, s->dbi[DB_IDS], k, sizeof k, &v);
  if (rc != 0)
    return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
  char *p = mim__store_arena_alloc(a, v.mv_size + 1);
  if (p == NULL)
    return -ENOMEM;
  memcpy(p, v.mv_data, v.mv_size);
  p[v.mv_size] = '\0';
  *name = p;
  return 0;
}

static void conv_c2c(uint8_t k[CONV_LEN], uint64_t a, uint64_t b) {
  k[0] = 'c';
  be64_put(k + 1, a < b ? a : b);
  be64_put(k + 9, a < b ? b : a);
}

static void conv_group(uint8_t k[CONV_LEN], uint64_t gid) {
  k[0] = 'g';
  be64_put(k + 1, gid);
  be64_put(k + 9, 0);
}

/* The last seq of a timeline: `cur`'s database is keyed by prefix (`plen`
 * bytes) + u64 seq, and the prefix's newest key holds it. 0 when empty. */
static int tail_seq(MDB_cursor *cur, const uint8_t *prefix, size_t plen,
                    uint64_t *seq) {
  uint8_t k0[CONV_LEN + 8];
  memcpy(k0, prefix, plen);
  be64_put(k0 + plen, UINT64_MAX); /* never a real seq */
  MDB_val k = val(k0, plen + 8), v;
  int rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE));
  if (rc == 0)
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_PREV));
  else if (rc == MDB_NOTFOUND)
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_LAST));
  *seq = 0;
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc != 0)
    return rc;
  if (k.mv_size == plen + 8 && memcmp(k.mv_data, prefix, plen) == 0)
    *seq = be64_get((const uint8_t *)k.mv_data + plen);
  return 0;
}

enum { TAIL_INBOX, TAIL_CONV };

/* The last seq of the timeline `prefix` in the inbox or conv database. */
static int wtx_tail_seq(struct wtx *w, int which, const uint8_t *prefix,
                        size_t plen, uint64_t *seq) {
  if (mim__store_cache_tail_get(w->s->cache, which, prefix, plen, seq))
    return 0;
  if (w->tail[which] == NULL) {
    enum db db = which == TAIL_INBOX ? DB_INBOX : DB_CONV;
    int rc = lrc(mdb_cursor_open(w->txn, w->s->dbi[db], &w->tail[which]));
    if (rc != 0)
      return rc;
  }
  int rc = tail_seq(w->tail[which], prefix, plen, seq);
  if (rc == 0)
    mim__store_cache_tail_set(w->s->cache, which, prefix, plen, *seq);
  return rc;
}

static void wtx_close_cursors(struct wtx *w) {
  for (size_t i = 0; i < MIM_ARRAY_SIZE(w->tail); i++) {
    if (w->tail[i] != NULL)
      mdb_cursor_close(w->tail[i]);
    w->tail[i] = NULL;
  }
}

static void pair_key(uint8_t k[16], uint64_t a, uint64_t b) {
  be64_put(k, a);
  be64_put(k + 8, b);
}

/* Whether group `gid` exists; its id in *gid. MDB_NOTFOUND when not. */
static int group_find(MDB_txn *txn, const struct lmdb_store *s,
                      const char *group, uint64_t *gid) {
  int rc = id_find(txn, s, ID_GROUP, group, gid);
  if (rc != 0)
    return rc;
  uint8_t k[8];
  be64_put(k, *gid);
  MDB_val v;
  return get(txn, s->dbi[DB_GROUPS], k, sizeof k, &v);
}

/* ---- records ---- */

static const char *nz(const char *s) { return s != NULL ? s : ""; }

static int record_unpack(const MDB_val *v, struct mim__store_arena *a,
                         Mimpb__MessageRecord **out) {
  ProtobufCAllocator alloc = {pb_alloc, pb_free, a};
  *out = mimpb__message_record__unpack(&alloc, v->mv_size, v->mv_data);
  return *out != NULL ? 0 : MDB_CORRUPTED;
}

/* The stored record of `msg_id`, unpacked into `a`. */
static int record_get(MDB_txn *txn, const struct lmdb_store *s,
                      uint64_t msg_id, struct mim__store_arena *a,
                      Mimpb__MessageRecord **out) {
  uint8_t k[8];
  be64_put(k, msg_id);
  MDB_val v;
  int rc = get(txn, s->dbi[DB_MSGS], k, sizeof k, &v);
  if (rc != 0)
    return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
  return record_unpack(&v, a, out);
}

/* Whether a retry `m` asks for the same message as the stored `r`: the
 * library's one rule, mim__message_same(), on a view of `r`. */
static bool same_message(const Mimpb__MessageRecord *r,
                         const struct mim_message_in *m) {
  struct mim_message_in v = {
      .type = r->type,
      .conv_kind = r->conv_kind,
      .peer = r->peer,
      .group = r->group,
      .content = r->has_content ? r->content.data : NULL,
      .content_len = r->has_content ? r->content.len : 0,
      .payload = r->has_payload ? r->payload.data : NULL,
      .payload_len = r->has_payload ? r->payload.len : 0,
  };
  return mim__message_same(&v, m);
}

/* Stores message `m` as `msg_id`. Empty strings are left out: proto2
 * optional fields read back as absent, which record_view() turns into "". */
static int record_put(struct wtx *w, uint64_t msg_id,
                      const struct mim_message_in *m, uint64_t conv_seq) {
  Mimpb__MessageRecord r = MIMPB__MESSAGE_RECORD__INIT;
#define STR_(s) ((s)[0] != '\0' ? (char *)(s) : NULL)
  r.has_version = true;
  r.version = 1;
  r.has_type = true;
  r.type = m->type;
  r.sender = STR_(m->sender);
  r.sender_device = STR_(m->sender_device);
  r.has_conv_kind = true;
  r.conv_kind = m->conv_kind;
  r.peer = STR_(m->peer);
  r.group = STR_(m->group);
  r.has_content = m->content_len > 0;
  r.content.len = m->content_len;
  r.content.data = (uint8_t *)m->content;
  r.has_payload = m->payload_len > 0;
  r.payload.len = m->payload_len;
  r.payload.data = (uint8_t *)m->payload;
  r.has_server_time = true;
  r.server_time = m->server_time;
  r.client_msg_id = STR_(m->client_msg_id);
  r.has_conv_seq = conv_seq != 0;
  r.conv_seq = conv_seq;
#undef STR_
  uint8_t k[8];
  be64_put(k, msg_id);
  /* msg_ids only grow: append (no tree search) and pack in place. */
  MDB_val v = {mimpb__message_record__get_packed_size(&r), NULL};
  int rc = put(w, DB_MSGS, k, sizeof k, &v, MDB_APPEND | MDB_RESERVE);
  if (rc != 0)
    return rc;
  mimpb__message_record__pack(&r, v.mv_data);
  return 0;
}

/* ---- write ops ---- */

/* id_find() for the writer, through its cache. */
static int wtx_id_find(struct wtx *w, enum id_kind kind, const char *name,
                       uint64_t *id) {
  if (mim__store_cache_id_get(w->s->cache, kind, name, id))
    return 0;
  int rc = id_find(w->txn, w->s, kind, name, id);
  if (rc == 0)
    mim__store_cache_id_set(w->s->cache, kind, name, *id);
  return rc;
}

/* The id of `name`, assigned if it has none yet. */
static int id_assign(struct wtx *w, enum id_kind kind, const char *name,
                     uint64_t *id) {
  int rc = wtx_id_find(w, kind, name, id);
  if (rc != MDB_NOTFOUND)
    return rc;
  uint64_t fresh = w->last_id + 1;
  uint8_t k[2 + MIM_ID_MAX];
  uint8_t v8[8];
  be64_put(v8, fresh);
  MDB_val v = val(v8, sizeof v8);
  rc = put(w, DB_IDS, k, id_key(k, kind, name), &v, MDB_NOOVERWRITE);
  if (rc != 0)
    return rc;
  uint8_t rk[9];
  rk[0] = (uint8_t)(kind - 'a' + 'A');
  be64_put(rk + 1, fresh);
  MDB_val n = val(name, strlen(name));
  rc = put(w, DB_IDS, rk, sizeof rk, &n, MDB_NOOVERWRITE);
  if (rc != 0)
    return rc;
  w->last_id = fresh;
  *id = fresh;
  mim__store_cache_id_set(w->s->cache, kind, name, fresh);
  return 0;
}

/* Appends `msg_id` to the inbox of `uid`; its seq in *seq. */
static int inbox_append(struct wtx *w, uint64_t uid, uint64_t msg_id,
                        uint64_t *seq) {
  uint8_t k[16];
  uint64_t last;
  be64_put(k, uid);
  int rc = wtx_tail_seq(w, TAIL_INBOX, k, 8, &last);
  if (rc != 0)
    return rc;
  be64_put(k + 8, last + 1);
  uint8_t v8[8];
  be64_put(v8, msg_id);
  MDB_val v = val(v8, sizeof v8);
  rc = put(w, DB_INBOX, k, sizeof k, &v, 0);
  if (rc != 0)
    return rc;
  *seq = last + 1;
  mim__store_cache_tail_set(w->s->cache, TAIL_INBOX, k, 8, *seq);
  return 0;
}

/* Appends `msg_id` to conversation `conv` at `conv_seq`, one past
 * conv_last(). */
static int conv_append(struct wtx *w, const uint8_t conv[CONV_LEN],
                       uint64_t conv_seq, uint64_t msg_id) {
  uint8_t k[CONV_LEN + 8];
  memcpy(k, conv, CONV_LEN);
  be64_put(k + CONV_LEN, conv_seq);
  uint8_t v8[8];
  be64_put(v8, msg_id);
  MDB_val v = val(v8, sizeof v8);
  int rc = put(w, DB_CONV, k, sizeof k, &v, 0);
  if (rc == 0)
    mim__store_cache_tail_set(w->s->cache, TAIL_CONV, conv, CONV_LEN, conv_seq);
  return rc;
}

static int conv_last(struct wtx *w, const uint8_t conv[CONV_LEN],
                     uint64_t *seq) {
  return wtx_tail_seq(w, TAIL_CONV, conv, CONV_LEN, seq);
}

static size_t dedup_key(uint8_t *k, uint64_t sender_id, const char *cmid) {
  size_t n = strlen(cmid);
  be64_put(k, sender_id);
  memcpy(k + 8, cmid, n);
  return 8 + n;
}

/* Looks (sender, client_msg_id) up. Returns 1 when that decides the op
 * (*o is a duplicate's outcome or a conflict), 0 when the message is new
 * (no entry, or an expired one), or an error. */
static int dedup_check(struct wtx *w, const struct mim_message_in *m,
                       uint64_t sender_id, struct mim_op_outcome *o) {
  uint8_t k[DEDUP_KEY_MAX];
  MDB_val v;
  int rc = get(w->txn, w->s->dbi[DB_DEDUP], k,
               dedup_key(k, sender_id, m->client_msg_id), &v);
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc != 0)
    return rc;
  /* A corrupt entry (or one whose record is unreadable) counts as absent:
   * failing here would fail this batch and every retry of the send
   * forever. The send is stored as new and its entry overwrites this one. */
  if (v.mv_size != 24) {
    note_corrupt(w->s, "dedup", sender_id);
    return 0;
  }
  const uint8_t *p = v.mv_data;
  uint64_t msg_id = be64_get(p);
  int64_t stored_time = u64_to_i64(be64_get(p + 8));
  uint64_t sender_seq = be64_get(p + 16);
  /* Expired (older than the window, relative to this message): the id is
   * free again. Times run forward; a retry stamped before the original is
   * within the window. */
  if (m->server_time > stored_time &&
      (uint64_t)m->server_time - (uint64_t)stored_time >
          (uint64_t)w->s->dedup_window_ms)
    return 0;
  Mimpb__MessageRecord *r;
  rc = record_get(w->txn, w->s, msg_id, &w->s->scratch, &r);
  if (rc == MDB_CORRUPTED) {
    note_corrupt(w->s, "message", msg_id);
    return 0;
  }
  if (rc != 0)
    return rc;
  if (!same_message(r, m)) {
    o->status = -MIM_ERR_DEDUP_CONFLICT;
    return 1;
  }
  o->status = 0;
  o->duplicate = true;
  o->msg_id = msg_id;
  o->server_time = r->server_time;
  o->conv_seq = r->conv_seq;
  o->sender_inbox_seq = sender_seq;
  return 1;
}

static int dedup_put(struct wtx *w, const struct mim_message_in *m,
                     uint64_t sender_id, uint64_t msg_id,
                     uint64_t sender_seq) {
  uint8_t k[DEDUP_TIME_KEY_MAX];
  uint8_t v24[24];
  be64_put(v24, msg_id);
  be64_put(v24 + 8, (uint64_t)m->server_time);
  be64_put(v24 + 16, sender_seq);
  MDB_val v = val(v24, sizeof v24);
  size_t kl = dedup_key(k + 8, sender_id, m->client_msg_id);
  int rc = put(w, DB_DEDUP, k + 8, kl, &v, 0);
  if (rc != 0)
    return rc;
  be64_put(k, time_bias(m->server_time));
  MDB_val none = val("", 0);
  rc = put(w, DB_DEDUP_TIME, k, kl + 8, &none, 0);
  if (rc == 0)
    w->dedup_added++;
  return rc;
}

/* A (uid id, name) pair of a push recipient. */
struct named_id {
  uint64_t id;
  const char *name;
};

static int named_id_cmp(const void *a, const void *b) {
  const struct named_id *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id;
}

/* Fans message `msg_id` out to the members of group `gid`. */
static int fanout_group(struct wtx *w, uint64_t gid, uint64_t msg_id,
                        uint64_t sender_id, const char *sender,
                        struct mim_op_outcome *o) {
  struct lmdb_store *s = w->s;
  /* Collect the member ids first: inbox writes must not run under an open
   * cursor's page pointers. */
  size_t n = 0;
  MDB_cursor *cur;
  int rc = lrc(mdb_cursor_open(w->txn, s->dbi[DB_MEMBERS], &cur));
  if (rc != 0)
    return rc;
  uint8_t k0[16];
  pair_key(k0, gid, 0);
  MDB_val k = val(k0, sizeof k0), v;
  rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE));
  while (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, k0, 8) == 0) {
    rc = reserve((void **)&s->idv, &s->idv_cap, n + 1, sizeof(*s->idv));
    if (rc != 0)
      break;
    s->idv[n++] = be64_get((const uint8_t *)k.mv_data + 8);
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_NEXT));
  }
  mdb_cursor_close(cur);
  if (rc != 0 && rc != MDB_NOTFOUND)
    return rc;
  rc = reserve((void **)&s->rcpt, &s->rcpt_cap, n, sizeof(*s->rcpt));
  if (rc != 0)
    return rc;
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    struct mim_recipient *r = &s->rcpt[kept];
    rc = inbox_append(w, s->idv[i], msg_id, &r->inbox_seq);
    if (rc != 0)
      return rc;
    if (s->idv[i] == sender_id && sender[0] != '\0') {
      r->uid = sender;
      o->sender_inbox_seq = r->inbox_seq;
    } else {
      rc = id_name(w->txn, s, ID_USER, s->idv[i], &s->scratch, &r->uid);
      if (rc == MDB_CORRUPTED) {
        /* the entry is stored and a pull finds it; only the live push to
         * this member is lost, instead of every message to the group */
        note_corrupt(s, "user name", s->idv[i]);
        continue;
      }
      if (rc != 0)
        return rc;
    }
    kept++;
  }
  o->recipients = s->rcpt;
  o->n_recipients = kept;
  return 0;
}

/* Fans a server push out to its listed recipients (each once). */
static int fanout_push(struct wtx *w, const struct mim_message_in *m,
                       uint64_t msg_id, struct mim_op_outcome *o) {
  struct lmdb_store *s = w->s;
  struct named_id *ids =
      mim__store_arena_alloc(&s->scratch, m->n_recipients * sizeof(*ids));
  if (ids == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < m->n_recipients; i++) {
    ids[i].name = m->recipients[i];
    int rc = id_assign(w, ID_USER, ids[i].name, &ids[i].id);
    if (rc != 0)
      return rc;
  }
  qsort(ids, m->n_recipients, sizeof(*ids), named_id_cmp);
  int rc = reserve((void **)&s->rcpt, &s->rcpt_cap, m->n_recipients,
                   sizeof(*s->rcpt));
  if (rc != 0)
    return rc;
  size_t n = 0;
  for (size_t i = 0; i < m->n_recipients; i++) {
    if (i > 0 && ids[i].id == ids[i - 1].id)
      continue;
    struct mim_recipient *r = &s->rcpt[n++];
    r->uid = ids[i].name;
    rc = inbox_append(w, ids[i].id, msg_id, &r->inbox_seq);
    if (rc != 0)
      return rc;
    if (m->sender[0] != '\0' && strcmp(m->sender, r->uid) == 0)
      o->sender_inbox_seq = r->inbox_seq;
  }
  o->recipients = s->rcpt;
  o->n_recipients = n;
  return 0;
}

/* MESSAGE. Every check that can refuse the op runs before its first write. */
static int op_message(struct wtx *w, const struct mim_message_in *m,
                      struct mim_op_outcome *o) {
  struct lmdb_store *s = w->s;
  bool has_cmid = m->client_msg_id[0] != '\0';
  /* The server (sender "") is id 0; an unknown sender has no id and so no
   * dedup entry and no membership yet. */
  uint64_t sender_id = 0;
  bool sender_known = true;
  int rc;
  if (m->sender[0] != '\0') {
    rc = wtx_id_find(w, ID_USER, m->sender, &sender_id);
    if (rc == MDB_NOTFOUND)
      sender_known = false;
    else if (rc != 0)
      return rc;
  }
  if (has_cmid && sender_known) {
    rc = dedup_check(w, m, sender_id, o);
    if (rc != 0)
      return rc < 0 ? rc : 0;
  }
  if (w->last_msg_id >= MIM_MSG_ID_MAX) {
    o->status = -MIM_ERR_STORE_FULL;
    return 0;
  }

  uint8_t conv[CONV_LEN];
  uint64_t conv_seq = 0, gid = 0, peer_id = 0;
  switch (m->conv_kind) {
  case MIM_CONV_C2C:
    if ((rc = id_assign(w, ID_USER, m->sender, &sender_id)) != 0 ||
        (rc = id_assign(w, ID_USER, m->peer, &peer_id)) != 0)
      return rc;
    conv_c2c(conv, sender_id, peer_id);
    break;
  case MIM_CONV_GROUP:
    rc = group_find(w->txn, s, m->group, &gid);
    if (rc == MDB_NOTFOUND) {
      o->status = -MIM_ERR_NO_SUCH_GROUP;
      return 0;
    }
    if (rc != 0)
      return rc;
    if (m->sender[0] != '\0') {
      uint8_t mk[16];
      MDB_val mv;
      pair_key(mk, gid, sender_id);
      rc = sender_known ? get(w->txn, s->dbi[DB_MEMBERS], mk, sizeof mk, &mv)
                        : MDB_NOTFOUND;
      if (rc == MDB_NOTFOUND) {
        o->status = -MIM_ERR_NOT_MEMBER;
        return 0;
      }
      if (rc != 0)
        return rc;
    }
    conv_group(conv, gid);
    break;
  default: /* MIM_CONV_PUSH */
    if (has_cmid && m->sender[0] != '\0' &&
        (rc = id_assign(w, ID_USER, m->sender, &sender_id)) != 0)
      return rc;
    break;
  }

  /* From here on the op cannot be refused: only the txn can fail. */
  if (m->conv_kind != MIM_CONV_PUSH) {
    if ((rc = conv_last(w, conv, &conv_seq)) != 0)
      return rc;
    conv_seq++;
  }
  uint64_t msg_id = ++w->last_msg_id;
  if ((rc = record_put(w, msg_id, m, conv_seq)) != 0)
    return rc;
  if (m->conv_kind != MIM_CONV_PUSH &&
      (rc = conv_append(w, conv, conv_seq, msg_id)) != 0)
    return rc;

  o->status = 0;
  o->msg_id = msg_id;
  o->server_time = m->server_time;
  o->conv_seq = conv_seq;
  switch (m->conv_kind) {
  case MIM_CONV_C2C:
    rc = reserve((void **)&s->rcpt, &s->rcpt_cap, 2, sizeof(*s->rcpt));
    if (rc != 0)
      return rc;
    s->rcpt[0].uid = m->peer;
    if ((rc = inbox_append(w, peer_id, msg_id, &s->rcpt[0].inbox_seq)) != 0)
      return rc;
    o->n_recipients = 1;
    if (peer_id != sender_id) {
      s->rcpt[1].uid = m->sender;
      rc = inbox_append(w, sender_id, msg_id, &s->rcpt[1].inbox_seq);
      if (rc != 0)
        return rc;
      o->n_recipients = 2;
    }
    o->recipients = s->rcpt;
    o->sender_inbox_seq = s->rcpt[o->n_recipients - 1].inbox_seq;
    break;
  case MIM_CONV_GROUP:
    rc = fanout_group(w, gid, msg_id, sender_id, m->sender, o);
    break;
  default:
    rc = fanout_push(w, m, msg_id, o);
    break;
  }
  if (rc != 0)
    return rc;
  if (has_cmid)
    rc = dedup_put(w, m, sender_id, msg_id, o->sender_inbox_seq);
  return rc;
}

struct cursor_entry {
  uint64_t seq;
  uint8_t key[16];
};

static int by_seq(const void *a, const void *b) {
  uint64_t x = ((const struct cursor_entry *)a)->seq;
  uint64_t y = ((const struct cursor_entry *)b)->seq;
  return x < y ? -1 : x > y;
}

/* Makes room for one more cursor of user `uid`: a client picks its device
 * name freely, and each device that acknowledged leaves a cursor record
 * forever, so one user logging in under ever new names would grow the
 * store without bound. When `uid` has cursors_per_user_max cursors, the
 * ones that read least (lowest seq: stale devices) are deleted until one
 * more fits; such a device, should it come back, reads from the start. */
static int cursor_make_room(struct wtx *w, uint64_t uid) {
  size_t max = w->s->cursors_per_user_max;
  if (max == 0)
    return 0;
  MDB_cursor *cur;
  int rc = lrc(mdb_cursor_open(w->txn, w->s->dbi[DB_CURSORS], &cur));
  if (rc != 0)
    return rc;
  uint8_t k0[16];
  pair_key(k0, uid, 0);
  MDB_val k = val(k0, sizeof k0), v;
  struct cursor_entry *e = NULL;
  size_t n = 0, cap = 0;
  rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE));
  while (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, k0, 8) == 0) {
    if (n == cap) {
      size_t ncap = cap == 0 ? 16 : cap * 2;
      struct cursor_entry *ne = realloc(e, ncap * sizeof *e);
      if (ne == NULL) {
        rc = -ENOMEM;
        break;
      }
      e = ne;
      cap = ncap;
    }
    /* a corrupt value counts as having read nothing: the first to go */
    e[n].seq = v.mv_size == 8 ? be64_get(v.mv_data) : 0;
    memcpy(e[n].key, k.mv_data, 16);
    n++;
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_NEXT));
  }
  mdb_cursor_close(cur);
  if (rc == MDB_NOTFOUND)
    rc = 0;
  if (rc == 0 && n >= max) {
    qsort(e, n, sizeof *e, by_seq);
    for (size_t i = 0; rc == 0 && i < n - max + 1; i++)
      rc = del(w, DB_CURSORS, e[i].key, sizeof e[i].key);
  }
  free(e);
  return rc;
}

static int op_cursor(struct wtx *w, const struct mim_write_op *op,
                     struct mim_op_outcome *o) {
  uint64_t uid, dev, cur;
  int rc;
  if ((rc = id_assign(w, ID_USER, op->uid, &uid)) != 0 ||
      (rc = id_assign(w, ID_DEVICE, op->device, &dev)) != 0)
    return rc;
  uint8_t k[16];
  pair_key(k, uid, dev);
  MDB_val old;
  rc = get(w->txn, w->s->dbi[DB_CURSORS], k, sizeof k, &old);
  if (rc == MDB_NOTFOUND) {
    /* a device new to this user (cursors only move forward) */
    if (op->seq == 0)
      goto done;
    if ((rc = cursor_make_room(w, uid)) != 0)
      return rc;
  } else if (rc != 0) {
    return rc;
  }
  rc = get_u64(w->txn, w->s->dbi[DB_CURSORS], k, sizeof k, &cur);
  if (rc == MDB_CORRUPTED) {
    /* a cursor is only a hint of what was read: overwrite the bad one */
    note_corrupt(w->s, "cursor", uid);
    cur = 0;
    rc = 0;
  }
  if (rc != 0)
    return rc;
  if (op->seq > cur && (rc = put_u64(w, DB_CURSORS, k, sizeof k, op->seq)))
    return rc;
done:
  o->status = 0;
  return 0;
}

/* Whether adding op's members to group `gid` (0: a group being created)
 * would take it past group_members_max. The members already in the group
 * are counted (a cursor walk, at most the limit plus one entries), those
 * named and not yet in it are added; a uid named twice in one request
 * counts twice, which can only refuse early, never let the group grow past
 * the limit. Runs before the op writes anything, so a refused op leaves no
 * trace. */
static int group_would_overflow(struct wtx *w, const struct mim_write_op *op,
                                uint64_t gid, bool *full) {
  struct lmdb_store *s = w->s;
  uint64_t max = s->group_members_max;
  *full = false;
  if (op->n_members > max) {
    *full = true;
    return 0;
  }
  uint64_t count = 0;
  int rc = 0;
  if (gid != 0) {
    MDB_cursor *cur;
    if ((rc = lrc(mdb_cursor_open(w->txn, s->dbi[DB_MEMBERS], &cur))) != 0)
      return rc;
    uint8_t k0[16];
    pair_key(k0, gid, 0);
    MDB_val k = val(k0, sizeof k0), v;
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE));
    while (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, k0, 8) == 0 &&
           count <= max) {
      count++;
      rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_NEXT));
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
      return rc;
  }
  for (size_t i = 0; i < op->n_members && count <= max; i++) {
    uint64_t uid;
    if (gid != 0) {
      rc = wtx_id_find(w, ID_USER, op->members[i], &uid);
      if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
      if (rc == 0) {
        uint8_t k[16];
        MDB_val v;
        pair_key(k, gid, uid);
        rc = get(w->txn, s->dbi[DB_MEMBERS], k, sizeof k, &v);
        if (rc == 0)
          continue; /* already a member */
        if (rc != MDB_NOTFOUND)
          return rc;
      }
    }
    count++;
  }
  *full = count > max;
  return 0;
}

static int op_group(struct wtx *w, const struct mim_write_op *op,
                    struct mim_op_outcome *o) {
  struct lmdb_store *s = w->s;
  uint64_t gid;
  int rc = group_find(w->txn, s, op->group, &gid);
  if (rc != 0 && rc != MDB_NOTFOUND)
    return rc;
  if (op->kind == MIM_OP_GROUP_CREATE && rc == 0) {
    o->status = -MIM_ERR_GROUP_EXISTS;
    return 0;
  }
  if (op->kind != MIM_OP_GROUP_CREATE && rc == MDB_NOTFOUND) {
    o->status = -MIM_ERR_NO_SUCH_GROUP;
    return 0;
  }
  if (op->kind != MIM_OP_GROUP_REMOVE && s->group_members_max != 0) {
    bool full;
    rc = group_would_overflow(w, op, op->kind == MIM_OP_GROUP_CREATE ? 0 : gid,
                              &full);
    if (rc != 0)
      return rc;
    if (full) {
      o->status = -MIM_ERR_GROUP_FULL; /* checked before any write */
      return 0;
    }
  }
  if (op->kind == MIM_OP_GROUP_CREATE) {
    if ((rc = id_assign(w, ID_GROUP, op->group, &gid)) != 0)
      return rc;
    uint8_t k[8];
    be64_put(k, gid);
    if ((rc = put_u64(w, DB_GROUPS, k, sizeof k, (uint64_t)op->server_time)))
      return rc;
  }
  /* New members see the messages after this point only. */
  uint8_t conv[CONV_LEN];
  uint64_t joined;
  conv_group(conv, gid);
  if ((rc = conv_last(w, conv, &joined)) != 0)
    return rc;
  rc = reserve((void **)&s->names, &s->names_cap, op->n_members,
               sizeof(*s->names));
  if (rc != 0)
    return rc;
  size_t n = 0;
  for (size_t i = 0; i < op->n_members; i++) {
    uint64_t uid;
    uint8_t k[16];
    if (op->kind == MIM_OP_GROUP_REMOVE) {
      rc = wtx_id_find(w, ID_USER, op->members[i], &uid);
      if (rc == MDB_NOTFOUND)
        continue;
      if (rc != 0)
        return rc;
      pair_key(k, gid, uid);
      rc = del(w, DB_MEMBERS, k, sizeof k);
    } else {
      if ((rc = id_assign(w, ID_USER, op->members[i], &uid)) != 0)
        return rc;
      pair_key(k, gid, uid);
      uint8_t v8[8];
      be64_put(v8, joined);
      MDB_val v = val(v8, sizeof v8);
      rc = put(w, DB_MEMBERS, k, sizeof k, &v, MDB_NOOVERWRITE);
    }
    /* already a member / not a member: not an error, just not reported */
    if (rc == MDB_KEYEXIST || rc == MDB_NOTFOUND)
      continue;
    if (rc != 0)
      return rc;
    s->names[n++] = op->members[i];
  }
  o->status = 0;
  o->members = s->names;
  o->n_members = n;
  return 0;
}

static void clock_see(struct wtx *w, int64_t t) {
  if (t > w->clock_ms)
    w->clock_ms = t;
}

/* Applies op `i` of `b` and records its outcome. Returns an error only
 * when the whole transaction must fail. */
static int apply_op(struct wtx *w, struct mim_write_batch *b, size_t i) {
  struct mim_write_op op;
  int rc = mim_write_batch_op(b, i, &op);
  if (rc != 0)
    return rc;
  struct mim_op_outcome o = {0};
  mim__store_arena_reset(&w->s->scratch);
  switch (op.kind) {
  case MIM_OP_MESSAGE:
    clock_see(w, op.message->server_time);
    rc = op_message(w, op.message, &o);
    break;
  case MIM_OP_CURSOR:
    rc = op_cursor(w, &op, &o);
    break;
  case MIM_OP_GROUP_CREATE:
  case MIM_OP_GROUP_ADD:
  case MIM_OP_GROUP_REMOVE:
    clock_see(w, op.server_time);
    rc = op_group(w, &op, &o);
    break;
  default:
    rc = -EINVAL;
    break;
  }
  if (rc != 0)
    return rc;
  return mim_write_batch_set_outcome(b, i, &o);
}

/* Removes up to `max` dedup entries older than the window. */
static int dedup_prune(struct wtx *w, size_t max) {
  struct lmdb_store *s = w->s;
  if (w->clock_ms == INT64_MIN)
    return 0;
  int64_t cutoff = w->clock_ms < INT64_MIN + s->dedup_window_ms
                       ? INT64_MIN
                       : w->clock_ms - s->dedup_window_ms;
  /* Collect first, delete after: deleting under an open cursor of the same
   * tree would need LMDB's cursor-after-delete rules. */
  mim__store_arena_reset(&s->scratch);
  MDB_val *keys = mim__store_arena_alloc(&s->scratch, max * sizeof(*keys));
  if (keys == NULL)
    return -ENOMEM;
  size_t n = 0;
  MDB_cursor *cur;
  int rc = lrc(mdb_cursor_open(w->txn, s->dbi[DB_DEDUP_TIME], &cur));
  if (rc != 0)
    return rc;
  MDB_val k, v;
  rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_FIRST));
  while (rc == 0 && n < max) {
    /* a key too short to be ours is removed, not left to stop the
     * pruning at that spot for good */
    bool bad = k.mv_size < 16;
    if (bad)
      note_corrupt(s, "dedup expiry", 0);
    else if (time_unbias(be64_get(k.mv_data)) >= cutoff)
      break;
    keys[n].mv_size = k.mv_size;
    keys[n].mv_data = mim__store_arena_memdup(&s->scratch, k.mv_data,
                                              k.mv_size);
    if (keys[n].mv_data == NULL) {
      rc = -ENOMEM;
      break;
    }
    n++;
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_NEXT));
  }
  mdb_cursor_close(cur);
  if (rc != 0 && rc != MDB_NOTFOUND)
    return rc;
  for (size_t i = 0; i < n; i++) {
    const uint8_t *p = keys[i].mv_data;
    if (keys[i].mv_size < 16) {
      if ((rc = del(w, DB_DEDUP_TIME, p, keys[i].mv_size)) != 0)
        return rc;
      continue;
    }
    /* The dedup entry may have been replaced by a newer message with the
     * same id after it expired; that one has its own queue entry. */
    MDB_val d;
    rc = get(w->txn, s->dbi[DB_DEDUP], p + 8, keys[i].mv_size - 8, &d);
    if (rc != 0 && rc != MDB_NOTFOUND)
      return rc;
    if (rc == 0 && d.mv_size == 24 &&
        be64_get((const uint8_t *)d.mv_data + 8) ==
            (uint64_t)time_unbias(be64_get(p)) &&
        (rc = del(w, DB_DEDUP, p + 8, keys[i].mv_size - 8)) != 0)
      return rc;
    if ((rc = del(w, DB_DEDUP_TIME, p, keys[i].mv_size)) != 0)
      return rc;
  }
  return 0;
}

static int meta_save(struct wtx *w) {
  struct lmdb_store *s = w->s;
  int rc = 0;
  if (w->last_msg_id != s->last_msg_id)
    rc = put_u64(w, DB_META, "last_msg_id", 11, w->last_msg_id);
  if (rc == 0 && w->last_id != s->last_id)
    rc = put_u64(w, DB_META, "last_id", 7, w->last_id);
  return rc;
}

/* One attempt at committing ops [from, to) of `b`: those ops, the dedup
 * pruning and the meta counters (msg_id, id) in one write transaction. */
static int apply_batch(struct lmdb_store *s, struct mim_write_batch *b,
                       size_t from, size_t to) {
  struct wtx w = {
      .s = s,
      .last_msg_id = s->last_msg_id,
      .last_id = s->last_id,
      .clock_ms = s->clock_ms,
  };
  int rc = txn_begin(s, 0, &w.txn);
  if (rc != 0)
    return rc;
  for (size_t i = from; i < to; i++)
    if ((rc = apply_op(&w, b, i)) != 0)
      goto fail_txn;
  if ((rc = dedup_prune(&w, DEDUP_PRUNE_MIN + w.dedup_added)) != 0 ||
      (rc = meta_save(&w)) != 0)
    goto fail_txn;
  wtx_close_cursors(&w);
  if (s->inject_armed && s->inject_nth == 0) {
    s->inject_armed = false;
    rc = s->inject_err;
    goto fail_txn;
  }
  rc = lrc(mdb_txn_commit(w.txn)); /* frees the txn, even on failure */
  txn_unlock(s);
  if (rc != 0) {
    /* only the real commit's writes and syncs: an error injected in its
     * place (tests) models a transaction that never reached the disk */
    if (rc == -EIO && disk_full(s))
      rc = -ENOSPC;
    else if (fatal_err(rc))
      set_fatal(s, rc);
    /* a failed meta-page write returns its errno (ENOSPC, say) but leaves
     * LMDB's fatal flag set: every later transaction would get MDB_PANIC.
     * Find out now, not at the next write, which may be far off. */
    if (atomic_load(&s->fatal) == 0) {
      MDB_txn *probe;
      int prc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &probe);
      if (prc == 0)
        mdb_txn_abort(probe);
      else if (prc == MDB_PANIC)
        set_fatal(s, prc);
    }
    mim__store_cache_clear(s->cache);
    return rc;
  }
  s->last_msg_id = w.last_msg_id;
  s->last_id = w.last_id;
  s->clock_ms = w.clock_ms;
  return 0;

fail_txn:
  wtx_close_cursors(&w);
  mdb_txn_abort(w.txn);
  txn_unlock(s);
  mim__store_cache_clear(s->cache); /* it may hold what was never stored */
  return rc;
}

/* Commits ops [from, to) of `b` in one transaction, growing the map while
 * it is full: the whole range runs again in the bigger map (the outcomes
 * it set are overwritten, the aborted writes are gone). */
static int commit_range(struct lmdb_store *s, struct mim_write_batch *b,
                        size_t from, size_t to) {
  int rc;
  for (;;) {
    if ((rc = atomic_load(&s->fatal)) != 0)
      break; /* an earlier run found the store unusable */
    rc = apply_batch(s, b, from, to);
    if (rc != MDB_MAP_FULL)
      break;
    if ((rc = grow_map(s)) != 0)
      break;
  }
  return rc;
}

/* Marks ops [from, to) of `b` failed with `err` alone (the batch as a whole
 * is not: other ops of it were stored). Recording an outcome without lists
 * cannot fail (batch.c). */
static void fail_ops(struct mim_write_batch *b, size_t from, size_t to,
                     int err) {
  struct mim_op_outcome o = {.status = err};
  for (size_t i = from; i < to; i++)
    (void)mim_write_batch_set_outcome(b, i, &o);
}

/* Commits a batch that made one transaction dirty more pages than LMDB
 * allows (MDB_TXN_FULL): in runs of ops, halving the run each time it is
 * still too big and growing it back after a success, in order. One op that
 * is too big on its own fails alone with MIM_ERR_TOO_LARGE; every other op
 * is stored and keeps its own outcome. Another error before anything was
 * stored fails the batch as before; after something was, it fails only
 * the ops not yet stored (the stored ones are durable and answered). */
static int commit_split(struct lmdb_store *s, struct mim_write_batch *b,
                        size_t n) {
  size_t from = 0, run = n / 2 > 0 ? n / 2 : 1, stored = 0, refused = 0;
  while (from < n) {
    size_t to = n - from < run ? n : from + run;
    int rc = commit_range(s, b, from, to);
    if (rc == 0) {
      stored += to - from;
      from = to;
      if (run < n / 2)
        run *= 2;
    } else if (rc == MDB_TXN_FULL && run > 1) {
      run /= 2;
    } else if (rc == MDB_TXN_FULL) {
      mim__error("store: op %zu alone is too big for one transaction",
                 from);
      fail_ops(b, from, from + 1, -MIM_ERR_TOO_LARGE);
      refused++;
      from++;
    } else if (stored == 0 && refused == 0) {
      return rc;
    } else {
      mim__error("store: %zu of %zu ops not stored: %s", n - from, n,
                 err_text(rc));
      if (rc == MDB_PANIC)
        set_fatal(s, rc);
      fail_ops(b, from, n, map_err(rc));
      break;
    }
  }
  mim__warn("store: batch of %zu ops split after MDB_TXN_FULL: %zu stored, "
            "%zu too big alone", n, stored, refused);
  return 0;
}

static int lmdb_commit(void *impl, struct mim_write_batch *b) {
  struct lmdb_store *s = impl;
  if (s == NULL || b == NULL || mim_write_batch_status(b) == 0)
    return -EINVAL;
  size_t n = mim_write_batch_count(b);
  if (n == 0) {
    mim_write_batch_set_status(b, 0);
    return 0;
  }
  pthread_mutex_lock(&s->write_lock);
  int rc = atomic_load(&s->fatal);
  for (; rc == 0;) {
    rc = apply_batch(s, b, 0, n);
    if (rc != MDB_MAP_FULL)
      break;
    /* The whole batch runs again in the bigger map: the outcomes it set
     * are overwritten, the aborted writes are gone. */
    if ((rc = grow_map(s)) != 0)
      break;
  }
  /* Too many dirty pages for one transaction: never fail every write of
   * the batch for it (a retry would fail the same way, forever). */
  if (rc == MDB_TXN_FULL)
    rc = commit_split(s, b, n);
  if (rc != 0) {
    mim__error("store: commit of %zu ops failed: %s", n, err_text(rc));
    if (rc == MDB_PANIC) /* from any call: LMDB says the env is done */
      set_fatal(s, rc);
    rc = map_err(rc);
  }
  /* A failure status also becomes every op's status (batch.c). */
  mim_write_batch_set_status(b, rc);
  pthread_mutex_unlock(&s->write_lock);
  return rc;
}

/* ---- reads ---- */

/* Appends the record of `msg_id` to `out`. `a` holds the unpacked record
 * until the caller resets it. */
/* ---- reading records without protobuf-c ----
 *
 * A read hands records straight to a message list, so it parses the
 * MessageRecord wire format itself, pointing into the LMDB value instead
 * of unpacking into allocated structs first, which would allocate and
 * copy every field of every record read (docs/benchmarks.md has the
 * cost). Same results as unpack for every
 * record we write (proto2, fields 1-12); unknown fields are skipped, a
 * later occurrence of a field wins, and anything malformed is
 * MDB_CORRUPTED. */

/* Parses record `v` into the scalars of `m` and the slices of `str`. */
static int record_parse(const MDB_val *v, struct mim_message *m,
                        struct mim__message_strings *str) {
  const uint8_t *p = v->mv_data, *end = p + v->mv_size;
  while (p < end) {
    uint64_t key, x;
    if (!mim__varint_get(&p, end, MIM__VARINT_MAX, &key))
      return MDB_CORRUPTED;
    unsigned field = (unsigned)(key >> 3), wt = (unsigned)(key & 7);
    if (wt == 0) {
      if (!mim__varint_get(&p, end, MIM__VARINT_MAX, &x))
        return MDB_CORRUPTED;
      switch (field) {
      case 2: m->type = (uint32_t)x; break;
      case 5: m->conv_kind = (uint32_t)x; break;
      case 10: m->server_time = u64_to_i64(x); break;
      case 12: m->conv_seq = x; break;
      default: break; /* version (1) and unknown fields */
      }
    } else if (wt == 2) {
      if (!mim__varint_get(&p, end, MIM__VARINT_MAX, &x) ||
          x > (uint64_t)(end - p))
        return MDB_CORRUPTED;
      const char *d = (const char *)p;
      size_t n = (size_t)x;
      p += n;
      switch (field) {
      case 3: str->sender = d; str->sender_len = n; break;
      case 4: str->sender_device = d; str->sender_device_len = n; break;
      case 6: str->peer = d; str->peer_len = n; break;
      case 7: str->group = d; str->group_len = n; break;
      case 8: m->content = (const uint8_t *)d; m->content_len = n; break;
      case 9: m->payload = (const uint8_t *)d; m->payload_len = n; break;
      case 11: str->client_msg_id = d; str->client_msg_id_len = n; break;
      default: break;
      }
    } else if (wt == 1 || wt == 5) {
      size_t n = wt == 1 ? 8 : 4;
      if ((size_t)(end - p) < n)
        return MDB_CORRUPTED;
      p += n;
    } else {
      return MDB_CORRUPTED; /* groups (3, 4) or no such wire type */
    }
  }
  return 0;
}

/* Whether every text of a parsed record is UTF-8: they all go out in
 * protobuf `string` fields, where one bad byte makes a strict parser drop
 * the whole page. Records stored before the library checked what it
 * stores may hold anything. */
static bool slice_ok(const char *s, size_t n) {
  /* what readers use of it: the C string, up to a NUL if it holds one */
  return mim_utf8_valid(s, strnlen(s, n));
}

static bool record_text_ok(const struct mim_message *m,
                           const struct mim__message_strings *str) {
  return mim_utf8_valid(m->content, m->content_len) &&
         slice_ok(str->sender, str->sender_len) &&
         slice_ok(str->sender_device, str->sender_device_len) &&
         slice_ok(str->peer, str->peer_len) &&
         slice_ok(str->group, str->group_len) &&
         slice_ok(str->client_msg_id, str->client_msg_id_len);
}

int mim__store_record_push(const uint8_t *rec, size_t len, uint64_t msg_id,
                           uint64_t inbox_seq, struct mim_message_list *out) {
  MDB_val v = val(rec, len);
  struct mim_message m = {.msg_id = msg_id, .inbox_seq = inbox_seq};
  struct mim__message_strings str = {"", "", "", "", "", 0, 0, 0, 0, 0};
  int rc = record_parse(&v, &m, &str);
  if (rc == 0 && !record_text_ok(&m, &str))
    rc = MDB_CORRUPTED;
  if (rc != 0)
    return map_err(rc);
  return mim__message_list_push_slices(out, &m, &str);
}

int mim__store_record_push_reference(const uint8_t *rec, size_t len,
                                     uint64_t msg_id, uint64_t inbox_seq,
                                     struct mim_message_list *out) {
  struct mim__store_arena a;
  mim__store_arena_init(&a);
  MDB_val v = val(rec, len);
  Mimpb__MessageRecord *r;
  int rc = record_unpack(&v, &a, &r);
  if (rc != 0) {
    mim__store_arena_finish(&a);
    return map_err(rc);
  }
  struct mim_message m = {
      .msg_id = msg_id,
      .inbox_seq = inbox_seq,
      .conv_seq = r->conv_seq,
      .server_time = r->server_time,
      .type = r->type,
      .conv_kind = r->conv_kind,
      .sender = nz(r->sender),
      .sender_device = nz(r->sender_device),
      .peer = nz(r->peer),
      .group = nz(r->group),
      .client_msg_id = nz(r->client_msg_id),
      .content = r->content.data,
      .content_len = r->has_content ? r->content.len : 0,
      .payload = r->payload.data,
      .payload_len = r->has_payload ? r->payload.len : 0,
  };
  struct mim__message_strings str = {
      m.sender, m.sender_device, m.peer, m.group, m.client_msg_id,
      strlen(m.sender), strlen(m.sender_device), strlen(m.peer),
      strlen(m.group), strlen(m.client_msg_id)};
  if (!record_text_ok(&m, &str)) {
    mim__store_arena_finish(&a);
    return map_err(MDB_CORRUPTED);
  }
  rc = mim_message_list_push(out, &m);
  mim__store_arena_finish(&a);
  return rc;
}

/* Appends the record of `msg_id`, read through `msgs` (a cursor on the
 * msgs database), to `out`. */
static int push_record(MDB_cursor *msgs, uint64_t msg_id, uint64_t inbox_seq,
                       struct mim_message_list *out) {
  uint8_t k0[8];
  be64_put(k0, msg_id);
  MDB_val k = val(k0, sizeof k0), v;
  int rc = lrc(mdb_cursor_get(msgs, &k, &v, MDB_SET_KEY));
  if (rc != 0)
    return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
  rc = mim__store_record_push(v.mv_data, v.mv_size, msg_id, inbox_seq, out);
  return rc == -MIM_ERR_STORE ? MDB_CORRUPTED : rc;
}

/* What a read entry weighs against read_bytes_max: its variable-length
 * fields, roughly what it costs in a reply. */
static size_t message_bytes(const struct mim_message *m) {
  return m->content_len + m->payload_len + strlen(m->sender) +
         strlen(m->sender_device) + strlen(m->peer) + strlen(m->group) +
         strlen(m->client_msg_id);
}

/* Appends to `out` the records of the timeline `prefix` (`plen` bytes) of
 * database `db`, keyed prefix + u64 seq: forward from seq `from`, or
 * backward from just below `from` and down to `stop` (excluded), at most
 * `limit` of them past out->count `start`, and no more once they hold
 * s->read_bytes_max bytes (has_more set when more follow).
 * Each message's inbox_seq is its timeline seq when `inbox`, else 0. */
static int walk_timeline(MDB_txn *txn, const struct lmdb_store *s, enum db db,
                         const uint8_t *prefix, size_t plen, uint64_t from,
                         bool backward, uint64_t stop, bool inbox,
                         size_t limit, size_t start,
                         struct mim_message_list *out) {
  MDB_cursor *cur, *msgs;
  int rc = lrc(mdb_cursor_open(txn, s->dbi[db], &cur));
  if (rc != 0)
    return rc;
  if ((rc = lrc(mdb_cursor_open(txn, s->dbi[DB_MSGS], &msgs))) != 0) {
    mdb_cursor_close(cur);
    return rc;
  }
  uint8_t k0[CONV_LEN + 8];
  memcpy(k0, prefix, plen);
  be64_put(k0 + plen, from);
  MDB_val k = val(k0, plen + 8), v;
  MDB_cursor_op step = backward ? MDB_PREV : MDB_NEXT;
  size_t bytes = 0; /* of the entries appended, for read_bytes_max */
  rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE));
  if (backward && rc == 0)
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_PREV));
  else if (backward && rc == MDB_NOTFOUND)
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_LAST));
  while (rc == 0 && k.mv_size == plen + 8 &&
         memcmp(k.mv_data, prefix, plen) == 0) {
    uint64_t seq = be64_get((const uint8_t *)k.mv_data + plen);
    if (backward && seq <= stop)
      break;
    if (out->count - start == limit ||
        (s->read_bytes_max > 0 && bytes >= s->read_bytes_max)) {
      out->has_more = true;
      break;
    }
    uint64_t msg_id = v.mv_size == 8 ? be64_get(v.mv_data) : 0;
    rc = v.mv_size == 8 ? push_record(msgs, msg_id, inbox ? seq : 0, out)
                        : MDB_CORRUPTED;
    if (rc == 0) {
      bytes += message_bytes(&out->items[out->count - 1]);
    } else if (rc == MDB_CORRUPTED) {
      /* left out, not the end of the page: one bad record must not make
       * every page that holds it fail (the page holds `limit` others) */
      note_corrupt((struct lmdb_store *)s, "message", msg_id);
      rc = 0;
    }
    if (rc == 0)
      rc = lrc(mdb_cursor_get(cur, &k, &v, step));
  }
  mdb_cursor_close(msgs);
  mdb_cursor_close(cur);
  return rc;
}

/* Ends a read begun at out->count `start`: the transaction (if any), and on
 * failure nothing appended and the error as libmim's. */
static int read_finish(struct lmdb_store *s, MDB_txn *txn, int rc,
                       size_t start, struct mim_message_list *out) {
  if (txn != NULL)
    read_end(s, txn);
  if (rc == MDB_NOTFOUND)
    rc = 0;
  if (rc != 0) {
    out->count = start;
    out->has_more = false;
    rc = map_err(rc);
  }
  return rc;
}

static int lmdb_read_inbox(void *impl, const char *uid, uint64_t after_seq,
                           size_t limit, struct mim_message_list *out) {
  struct lmdb_store *s = impl;
  if (s == NULL || uid == NULL || out == NULL)
    return -EINVAL;
  size_t start = out->count;
  out->has_more = false;
  MDB_txn *txn;
  int rc = txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return read_finish(s, NULL, rc, start, out);
  uint64_t uid_id;
  rc = id_find(txn, s, ID_USER, uid, &uid_id);
  if (rc == 0 && after_seq != UINT64_MAX) {
    uint8_t prefix[8];
    be64_put(prefix, uid_id);
    rc = walk_timeline(txn, s, DB_INBOX, prefix, sizeof prefix, after_seq + 1,
                       false, 0, true, limit, start, out);
  }
  return read_finish(s, txn, rc, start, out);
}

static int lmdb_read_conversation(void *impl, const char *a, const char *b,
                                  const char *group, uint64_t before,
                                  uint64_t after, size_t limit,
                                  struct mim_message_list *out) {
  struct lmdb_store *s = impl;
  if (s == NULL || out == NULL || (group == NULL && (a == NULL || b == NULL)))
    return -EINVAL;
  size_t start = out->count;
  out->has_more = false;
  MDB_txn *txn;
  int rc = txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return read_finish(s, NULL, rc, start, out);
  uint8_t conv[CONV_LEN];
  if (group != NULL) {
    uint64_t gid;
    if ((rc = id_find(txn, s, ID_GROUP, group, &gid)) == 0)
      conv_group(conv, gid);
  } else {
    uint64_t ida, idb;
    if ((rc = id_find(txn, s, ID_USER, a, &ida)) == 0 &&
        (rc = id_find(txn, s, ID_USER, b, &idb)) == 0)
      conv_c2c(conv, ida, idb);
  }
  /* From just below `before` (0: the conversation's end), walking back. */
  if (rc == 0)
    rc = walk_timeline(txn, s, DB_CONV, conv, CONV_LEN,
                       before != 0 ? before : UINT64_MAX, true, after, false,
                       limit, start, out);
  return read_finish(s, txn, rc, start, out);
}

static int lmdb_inbox_last_seq(void *impl, const char *uid, uint64_t *seq) {
  struct lmdb_store *s = impl;
  if (s == NULL || uid == NULL || seq == NULL)
    return -EINVAL;
  *seq = 0;
  MDB_txn *txn;
  int rc = txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return map_err(rc);
  uint64_t uid_id;
  rc = id_find(txn, s, ID_USER, uid, &uid_id);
  MDB_cursor *cur;
  if (rc == 0 && (rc = lrc(mdb_cursor_open(txn, s->dbi[DB_INBOX], &cur))) == 0) {
    uint8_t k[8];
    be64_put(k, uid_id);
    rc = tail_seq(cur, k, sizeof k, seq);
    mdb_cursor_close(cur);
  }
  read_end(s, txn);
  return rc == MDB_NOTFOUND ? 0 : map_err(rc);
}

static int lmdb_cursor_get(void *impl, const char *uid, const char *device,
                           uint64_t *seq) {
  struct lmdb_store *s = impl;
  if (s == NULL || uid == NULL || device == NULL || seq == NULL)
    return -EINVAL;
  *seq = 0;
  MDB_txn *txn;
  int rc = txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return map_err(rc);
  uint64_t uid_id, dev_id;
  if ((rc = id_find(txn, s, ID_USER, uid, &uid_id)) == 0 &&
      (rc = id_find(txn, s, ID_DEVICE, device, &dev_id)) == 0) {
    uint8_t k[16];
    pair_key(k, uid_id, dev_id);
    rc = get_u64(txn, s->dbi[DB_CURSORS], k, sizeof k, seq);
  }
  read_end(s, txn);
  return rc == MDB_NOTFOUND ? 0 : map_err(rc);
}

static int lmdb_member_get(void *impl, const char *group, const char *uid,
                           uint64_t *joined_conv_seq) {
  struct lmdb_store *s = impl;
  if (s == NULL || group == NULL || uid == NULL)
    return -EINVAL;
  MDB_txn *txn;
  int rc = txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return map_err(rc);
  uint64_t gid, uid_id, joined = 0;
  rc = group_find(txn, s, group, &gid);
  if (rc == MDB_NOTFOUND) {
    rc = -MIM_ERR_NO_SUCH_GROUP;
  } else if (rc == 0) {
    rc = id_find(txn, s, ID_USER, uid, &uid_id);
    if (rc == 0) {
      uint8_t k[16];
      MDB_val v;
      pair_key(k, gid, uid_id);
      rc = get(txn, s->dbi[DB_MEMBERS], k, sizeof k, &v);
      if (rc == 0 && v.mv_size != 8)
        rc = MDB_CORRUPTED;
      if (rc == 0)
        joined = be64_get(v.mv_data);
    }
    if (rc == MDB_NOTFOUND)
      rc = -MIM_ERR_NOT_MEMBER;
  }
  read_end(s, txn);
  if (rc == 0 && joined_conv_seq != NULL)
    *joined_conv_seq = joined;
  return map_err(rc);
}

static int member_cmp(const void *a, const void *b) {
  const struct mim_group_member *x = a, *y = b;
  return strcmp(x->uid, y->uid);
}

static int lmdb_members_list(void *impl, const char *group,
                             void (*fn)(void *user,
                                        const struct mim_group_member *m),
                             void *user) {
  struct lmdb_store *s = impl;
  if (s == NULL || group == NULL || fn == NULL)
    return -EINVAL;
  struct mim__store_arena a;
  mim__store_arena_init(&a);
  struct mim_group_member *v = NULL;
  size_t n = 0, cap = 0;
  MDB_txn *txn;
  int rc = txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    goto fail;
  uint64_t gid;
  rc = group_find(txn, s, group, &gid);
  if (rc == MDB_NOTFOUND)
    rc = -MIM_ERR_NO_SUCH_GROUP;
  if (rc != 0)
    goto done;
  MDB_cursor *cur;
  if ((rc = lrc(mdb_cursor_open(txn, s->dbi[DB_MEMBERS], &cur))) != 0)
    goto done;
  uint8_t k0[16];
  pair_key(k0, gid, 0);
  MDB_val k = val(k0, sizeof k0), d;
  rc = lrc(mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE));
  while (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, k0, 8) == 0) {
    if ((rc = reserve((void **)&v, &cap, n + 1, sizeof(*v))) != 0)
      break;
    uint64_t uid_id = be64_get((const uint8_t *)k.mv_data + 8);
    v[n].joined_conv_seq = d.mv_size == 8 ? be64_get(d.mv_data) : 0;
    rc = d.mv_size == 8 ? id_name(txn, s, ID_USER, uid_id, &a, &v[n].uid)
                        : MDB_CORRUPTED;
    if (rc == MDB_CORRUPTED) {
      note_corrupt(s, "member", uid_id); /* left out of the list */
      rc = 0;
    } else if (rc == 0) {
      n++;
    }
    if (rc == 0)
      rc = lrc(mdb_cursor_get(cur, &k, &d, MDB_NEXT));
  }
  mdb_cursor_close(cur);
  if (rc == MDB_NOTFOUND)
    rc = 0;
done:
  /* The callbacks run after the read ends: user code must not run while
   * this thread holds the map lock. */
  read_end(s, txn);
  if (rc == 0) {
    if (n > 1) /* v is NULL for a group without members */
      qsort(v, n, sizeof(*v), member_cmp);
    for (size_t i = 0; i < n; i++)
      fn(user, &v[i]);
  }
fail:
  free(v);
  mim__store_arena_finish(&a);
  return map_err(rc);
}

static void lmdb_destroy(void *impl) {
  struct lmdb_store *s = impl;
  if (s == NULL)
    return;
  mdb_env_close(s->env);
  pthread_mutex_destroy(&s->write_lock);
  pthread_rwlock_destroy(&s->map_lock);
  free(s->path);
  mim__store_arena_finish(&s->scratch);
  free(s->rcpt);
  free(s->idv);
  free(s->names);
  mim__store_cache_destroy(s->cache);
  free(s);
}

static int lmdb_health(void *impl) {
  struct lmdb_store *s = impl;
  int rc = atomic_load(&s->fatal);
  return rc == 0 ? 0 : map_err(rc);
}

static const struct mim_backend_ops lmdb_ops = {
    .commit = lmdb_commit,
    .read_inbox = lmdb_read_inbox,
    .read_conversation = lmdb_read_conversation,
    .inbox_last_seq = lmdb_inbox_last_seq,
    .cursor_get = lmdb_cursor_get,
    .member_get = lmdb_member_get,
    .members_list = lmdb_members_list,
    .destroy = lmdb_destroy,
    .health = lmdb_health,
};

/* ---- opening ---- */

void mim_lmdb_config_init(struct mim_lmdb_config *cfg) {
  if (cfg == NULL)
    return;
  memset(cfg, 0, sizeof(*cfg));
  cfg->map_size = DEFAULT_MAP_SIZE;
  cfg->map_size_max = DEFAULT_MAP_SIZE_MAX;
  cfg->dedup_window_ms = DEFAULT_DEDUP_WINDOW_MS;
  cfg->cursors_per_user_max = DEFAULT_CURSORS_PER_USER_MAX;
  cfg->group_members_max = MIM_GROUP_MEMBERS_MAX_DEFAULT;
}

static int mkdir_p(const char *path) {
  char buf[PATH_MAX];
  size_t n = strlen(path);
  if (n >= sizeof buf)
    return -ENAMETOOLONG;
  memcpy(buf, path, n + 1);
  for (char *p = buf + 1; *p != '\0'; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
      return -errno;
    *p = '/';
  }
  if (mkdir(buf, 0700) != 0 && errno != EEXIST)
    return -errno;
  return 0;
}

static int meta_u64(MDB_txn *txn, const struct lmdb_store *s, const char *k,
                    uint64_t *x) {
  return get_u64(txn, s->dbi[DB_META], k, strlen(k), x);
}

/* Opens (and on a new store creates) the databases, refusing a store of
 * another schema version before anything is written: the check and the
 * creation share one write transaction, aborted on mismatch. */
static int open_dbs(struct lmdb_store *s) {
  MDB_txn *txn;
  int rc = lrc(mdb_txn_begin(s->env, NULL, 0, &txn));
  if (rc != 0)
    return rc;
  MDB_dbi meta;
  rc = lrc(mdb_dbi_open(txn, db_names[DB_META], 0, &meta));
  bool fresh = rc == MDB_NOTFOUND;
  if (rc == 0) {
    MDB_val v;
    rc = get(txn, meta, "schema", 6, &v);
    uint32_t version = 0;
    if (rc == 0 && v.mv_size == 4) {
      const uint8_t *p = v.mv_data;
      version = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                (uint32_t)p[2] << 8 | p[3];
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
      goto fail_txn;
    if (version != MIM_LMDB_SCHEMA_VERSION) {
      mim__error("store: schema version %" PRIu32 ", this library needs %d",
                 version, MIM_LMDB_SCHEMA_VERSION);
      rc = -MIM_ERR_SCHEMA_MISMATCH;
      goto fail_txn;
    }
  } else if (fresh) {
    /* No meta: an empty environment, or someone else's LMDB files. */
    MDB_stat st;
    MDB_dbi main_db;
    if ((rc = lrc(mdb_dbi_open(txn, NULL, 0, &main_db))) != 0 ||
        (rc = lrc(mdb_stat(txn, main_db, &st))) != 0)
      goto fail_txn;
    if (st.ms_entries > 0) {
      mim__error("store: the environment holds data but no libmim schema");
      rc = -MIM_ERR_SCHEMA_MISMATCH;
      goto fail_txn;
    }
  } else {
    goto fail_txn;
  }
  for (int i = 0; i < DB__COUNT; i++)
    if ((rc = lrc(mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i]))))
      goto fail_txn;
  if (fresh) {
    uint8_t v4[4] = {0, 0, 0, MIM_LMDB_SCHEMA_VERSION};
    MDB_val k = val("schema", 6), v = val(v4, sizeof v4);
    if ((rc = lrc(mdb_put(txn, s->dbi[DB_META], &k, &v, 0))) != 0)
      goto fail_txn;
  }
  if ((rc = meta_u64(txn, s, "last_msg_id", &s->last_msg_id)) != 0 ||
      (rc = meta_u64(txn, s, "last_id", &s->last_id)) != 0)
    goto fail_txn;
  return lrc(mdb_txn_commit(txn));

fail_txn:
  mdb_txn_abort(txn);
  return rc;
}

static size_t round_page(size_t n) {
  long ps = sysconf(_SC_PAGESIZE);
  size_t p = ps > 0 ? (size_t)ps : 4096;
  return n > SIZE_MAX - p ? n : (n + p - 1) / p * p;
}

int mim_lmdb_open(struct mim_backend **out, const struct mim_lmdb_config *cfg) {
  if (out == NULL || cfg == NULL || cfg->path == NULL ||
      cfg->path[0] == '\0' || cfg->dedup_window_ms < 0)
    return -EINVAL;
  int rc = mkdir_p(cfg->path);
  if (rc != 0) {
    mim__error("store: cannot create %s: %s", cfg->path, mim_strerror(rc));
    return rc;
  }
  struct mim_backend *be = calloc(1, sizeof(*be));
  struct lmdb_store *s = calloc(1, sizeof(*s));
  if (be == NULL || s == NULL || mim__store_cache_create(&s->cache) < 0) {
    rc = -ENOMEM;
    goto fail_alloc;
  }
  size_t map_size = round_page(cfg->map_size ? cfg->map_size
                                             : DEFAULT_MAP_SIZE);
  s->map_size_max = cfg->map_size_max ? cfg->map_size_max
                                      : DEFAULT_MAP_SIZE_MAX;
  if (s->map_size_max < map_size)
    s->map_size_max = map_size;
  s->dedup_window_ms = cfg->dedup_window_ms;
  s->read_bytes_max = cfg->read_bytes_max;
  s->cursors_per_user_max = cfg->cursors_per_user_max;
  s->group_members_max = cfg->group_members_max;
  s->clock_ms = INT64_MIN;
  if ((s->path = strdup(cfg->path)) == NULL) {
    rc = -ENOMEM;
    goto fail_alloc;
  }
  mim__store_arena_init(&s->scratch);

  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  /* A resize must not starve behind a steady stream of reads. */
  pthread_rwlockattr_setkind_np(&attr,
                                PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  rc = -pthread_rwlock_init(&s->map_lock, &attr);
  pthread_rwlockattr_destroy(&attr);
  if (rc != 0)
    goto fail_alloc;
  if ((rc = -pthread_mutex_init(&s->write_lock, NULL)) != 0)
    goto fail_rwlock;

  if ((rc = lrc(mdb_env_create(&s->env))) != 0)
    goto fail_mutex;
  if ((rc = lrc(mdb_env_set_maxdbs(s->env, DB__COUNT))) != 0 ||
      (rc = lrc(mdb_env_set_mapsize(s->env, map_size))) != 0)
    goto fail_env;
  /* NOTLS: read transactions are tied to their txn, not to a thread, so
   * readers on any thread never exhaust reader slots. NOSYNC only when a
   * test asks: durability is the point of the store. */
  unsigned flags = MDB_NOTLS | (cfg->no_sync ? MDB_NOSYNC : 0);
  if ((rc = lrc(mdb_env_open(s->env, cfg->path, flags, 0600))) != 0) {
    mim__error("store: cannot open %s: %s", cfg->path, err_text(rc));
    goto fail_env;
  }
  int dead = 0;
  mdb_reader_check(s->env, &dead); /* slots of crashed processes */
  if ((rc = open_dbs(s)) != 0)
    goto fail_env;

  be->ops = &lmdb_ops;
  be->impl = s;
  *out = be;
  return 0;

fail_env:
  mdb_env_close(s->env);
fail_mutex:
  pthread_mutex_destroy(&s->write_lock);
fail_rwlock:
  pthread_rwlock_destroy(&s->map_lock);
fail_alloc:
  if (s != NULL) {
    mim__store_cache_destroy(s->cache);
    free(s->path);
  }
  free(s);
  free(be);
  /* errno values from opening the files stay what they are (-ENOSPC is
   * not "store full" here); LMDB's own codes become libmim's */
  return is_mdb_err(rc) ? map_err(rc) : rc;
}

/* ---- test hooks ---- */

void mim__store_lmdb_inject_failure(struct mim_backend *be, unsigned long nth,
                                    int err) {
  struct lmdb_store *s = be->impl;
  pthread_mutex_lock(&s->write_lock);
  s->inject_armed = true;
  s->inject_nth = nth;
  s->inject_err = err;
  pthread_mutex_unlock(&s->write_lock);
}

void mim__store_lmdb_txn_writes_max(struct mim_backend *be,
                                    unsigned long max) {
  struct lmdb_store *s = be->impl;
  pthread_mutex_lock(&s->write_lock);
  s->txn_writes_max = max;
  pthread_mutex_unlock(&s->write_lock);
}

size_t mim__store_lmdb_map_size(const struct mim_backend *be) {
  struct lmdb_store *s = be->impl;
  MDB_envinfo info;
  pthread_rwlock_rdlock(&s->map_lock);
  mdb_env_info(s->env, &info);
  pthread_rwlock_unlock(&s->map_lock);
  return info.me_mapsize;
}

uint64_t mim_lmdb_corrupt_skipped(const struct mim_backend *be) {
  if (be == NULL || be->ops != &lmdb_ops)
    return 0;
  const struct lmdb_store *s = be->impl;
  return (uint64_t)atomic_load(&s->corrupt);
}
