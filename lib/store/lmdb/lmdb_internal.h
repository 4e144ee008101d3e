/* The LMDB backend of the message store: what its files share. Private.
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
 *   ugroups     (uid_id, gid) → "": the groups of a user, the index of
 *               groups_of (members the other way round); rebuilt from
 *               members when a store made before it is opened
 *   uconv       (uid_id, conv(17)) → (read conv seq, uclist msg_id): a
 *               user's read position and list entry per conversation
 *   uclist      (uid_id, msg_id) → conv(17): the conversation list, keyed
 *               by each conversation's newest message (docs/architecture.md
 *               §6.1)
 *   ularge      (uid_id, gid) → "": the user's large groups (read
 *               diffusion, §6.3): what a login follows and conv_list
 *               merges, without walking all of the user's groups
 *
 * There is no counter database: the newest key of a timeline (a user's
 * inbox range, a conversation's range) is its last seq. Reading it costs one
 * cursor search on the very page the append dirties anyway, whereas a
 * counter keyed by conversation is one more random page per message to
 * write and sync (docs/benchmarks.md). Timelines are never trimmed at their newest end.
 *
 * Failures. An op that fails alone (not a member, no such group, dedup
 * conflict, group exists) is refused by checks that run before it writes
 * anything, so the op leaves no trace and no nested transaction is needed.
 * Anything else (I/O, ENOSPC, out of memory, corruption) aborts the whole
 * transaction: nothing of the batch is stored and every op reports the
 * error. A full map aborts too, is grown, and the batch runs again. */
#ifndef MIM_STORE_LMDB_INTERNAL_H
#define MIM_STORE_LMDB_INTERNAL_H

#include "util/internal.h"
#include "store/store_internal.h"
#include "store/lmdb/cache.h"
#include "store/lmdb/keys.h"
#include "util/varint.h"

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
  DB_UGROUPS,
  DB_UCONV,
  DB_UCLIST,
  DB_GINFO, /* group roles and info (ginfo.c) */
  DB_HIDDEN, /* (uid id, msg_id) -> "": deleted for that user (change.c) */
  DB_LASTSEEN, /* uid id -> when its last device went away (ms) */
  DB_ULARGE, /* (uid id, gid) -> "": the large groups of a user */
  DB__COUNT
};

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
  uint32_t group_large_min;   /* 0 = never */

  /* Writer-owned: committed values, updated only after a commit. */
  uint64_t last_msg_id;
  uint64_t last_id;
  int64_t clock_ms; /* newest server_time seen: "now" for dedup expiry */

  /* Writer-owned: what the writer looked up (timeline tails, ids), so a
   * hot timeline is not searched for its tail before every append. */
  struct mim__store_cache *cache;

  struct mim__log_sink log; /* mim_lmdb_config.log, or process-wide */

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

/* The two timelines whose tails a write transaction keeps a cursor on. */
enum { TAIL_INBOX, TAIL_CONV };

/* ---- small helpers ---- */

/* LMDB returns errno values positive and its own codes negative (-30799 and
 * up); internally we keep both negative, as everywhere in libmim. */
static inline int lrc(int rc) { return rc > 0 ? -rc : rc; }

/* Whether `rc` is one of LMDB's own codes (MDB_KEYEXIST -30799 up to
 * MDB_LAST_ERRCODE), not an errno value. */
static inline bool is_mdb_err(int rc) {
  return rc >= MDB_KEYEXIST && rc <= MDB_LAST_ERRCODE;
}

/* The error a caller sees for an internal one. */
static inline int map_err(int rc) {
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

static inline const char *err_text(int rc) {
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
static inline bool fatal_err(int rc) {
  return rc == MDB_PANIC || rc == -EIO;
}

/* Below this much free space, a failed commit is taken for a full disk. */
#define DISK_FULL_BYTES ((uint64_t)1 << 20)

/* Whether the filesystem of the store is (all but) full. LMDB reports a
 * short write of its pages as EIO, which is what a filesystem that fills
 * up mid-write gives: that is a full store, retryable once space is
 * freed, not a broken one. */
static inline bool disk_full(const struct lmdb_store *s) {
  struct statvfs st;
  if (s->path == NULL || statvfs(s->path, &st) != 0)
    return false;
  return (uint64_t)st.f_bavail * st.f_frsize < DISK_FULL_BYTES;
}

static inline void set_fatal(struct lmdb_store *s, int rc) {
  int none = 0;
  if (atomic_compare_exchange_strong(&s->fatal, &none, rc))
    mim__log_to(&s->log, MIM_LOG_ERROR, "store: unrecoverable failure: %s; the environment must be "
               "closed and opened again (restart the process)",
               rc == MDB_PANIC ? mdb_strerror(rc) : mim_strerror(rc));
}

/* Counts a record that could not be read and is skipped, and says so in
 * the log: the first few times, then at every power of two, so a corrupt
 * entry on a hot page cannot flood the log. `what` names the database. */
static inline void note_corrupt(struct lmdb_store *s, const char *what,
                         uint64_t id) {
  uint_fast64_t n = atomic_fetch_add(&s->corrupt, 1) + 1;
  if (n <= 8 || (n & (n - 1)) == 0)
    mim__log_to(&s->log, MIM_LOG_WARN, "store: skipped an unreadable %s record (id %" PRIu64
              "); %" PRIu64 " skipped since start",
              what, id, (uint64_t)n);
}

/* Grows `*arr` (elements of `size`) to hold at least `need`. */
static inline int reserve(void **arr, size_t *cap, size_t need, size_t size) {
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
static inline void *pb_alloc(void *data, size_t n) {
  return mim__store_arena_alloc(data, n);
}

static inline void pb_free(void *data, void *p) {
  (void)data;
  (void)p;
}

static inline const char *nz(const char *s) { return s != NULL ? s : ""; }

/* ---- across the backend's files ---- */

/* change.c. An inbox value is a msg_id (< 2^53); a change entry (a
 * recall or edit of it, or the reader's own delete of it) sets these: */
#define CHANGE_ENTRY (UINT64_C(1) << 63)
#define CHANGE_DELETED (UINT64_C(1) << 62)
#define CHANGE_ID_MASK (CHANGE_DELETED - 1)
int mim__lmdb_op_change(struct wtx *w, const struct mim_write_op *op,
                        struct mim_op_outcome *o);
/* Whether `uid` deleted `msg_id` for themself. */
int mim__lmdb_hidden(MDB_txn *txn, const struct lmdb_store *s, uint64_t uid,
                     uint64_t msg_id, bool *hidden);
/* Whether `uid` deleted anything for themself (a read skips the per-entry
 * lookups when not). */
int mim__lmdb_hides_any(MDB_txn *txn, const struct lmdb_store *s,
                        uint64_t uid, bool *any);
/* write.c: appends inbox value `value` (a msg_id, or a change entry) to
 * `uid`'s inbox; its seq in *seq. */
int mim__lmdb_inbox_append(struct wtx *w, uint64_t uid, uint64_t value,
                           uint64_t *seq);
/* Collects into s->idv the user ids of the members of group `gid` who
 * joined before conv seq `joined_before` (UINT64_MAX: all), *n of them:
 * collected first, as inbox writes must not run under an open cursor's
 * page pointers. Returns 0 or an LMDB error. */
int mim__lmdb_member_ids(struct wtx *w, uint64_t gid, uint64_t joined_before,
                         size_t *n);

/* conv.c */
/* Moves `uid`'s list entry of `conv` to `msg_id` and raises its read
 * position to `read_to` (0: leave it). */
int mim__lmdb_conv_touch(struct wtx *w, uint64_t uid,
                         const uint8_t conv[CONV_LEN], uint64_t msg_id,
                         uint64_t read_to);
int mim__lmdb_op_read(struct wtx *w, const struct mim_write_op *op,
                      struct mim_op_outcome *o);
int mim__lmdb_conv_list(void *impl, const char *uid, uint64_t before_msg_id,
                        size_t limit, size_t preview_max,
                        struct mim_conv_list *out);
int mim__lmdb_read_by(void *impl, const char *group, uint64_t conv_seq,
                      const char *after, size_t limit, uint64_t *read_count,
                      uint64_t *member_count,
                      void (*fn)(void *user, const char *uid), void *user,
                      bool *has_more);

/* dedup.c */
int mim__lmdb_dedup_check(struct wtx *w, const struct mim_message_in *m,
                          uint64_t sender_id, struct mim_op_outcome *o);
int mim__lmdb_dedup_prune(struct wtx *w, size_t max);
int mim__lmdb_dedup_put(struct wtx *w, const struct mim_message_in *m,
                        uint64_t sender_id, uint64_t msg_id,
                        uint64_t sender_seq);

/* env.c */
int mim__lmdb_grow_map(struct lmdb_store *s);
void mim__lmdb_read_end(struct lmdb_store *s, MDB_txn *txn);
int mim__lmdb_txn_begin(struct lmdb_store *s, unsigned flags, MDB_txn **txn);
void mim__lmdb_txn_unlock(struct lmdb_store *s);

/* read.c */
int mim__lmdb_get(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl,
                  MDB_val *out);
int mim__lmdb_get_u64(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl,
                      uint64_t *x);
int mim__lmdb_group_find(MDB_txn *txn, const struct lmdb_store *s,
                         const char *group, uint64_t *gid);
int mim__lmdb_id_find(MDB_txn *txn, const struct lmdb_store *s,
                      enum id_kind kind, const char *name, uint64_t *id);
int mim__lmdb_id_name(MDB_txn *txn, const struct lmdb_store *s,
                   enum id_kind kind, uint64_t id, struct mim__store_arena *a,
                      const char **name);
int mim__lmdb_cursor_get(void *impl, const char *uid, const char *device,
                         uint64_t *seq);
int mim__lmdb_inbox_last_seq(void *impl, const char *uid, uint64_t *seq);
int mim__lmdb_member_get(void *impl, const char *group, const char *uid,
                         uint64_t *joined_conv_seq);
int mim__lmdb_members_list(void *impl, const char *group,
                           void (*fn)(void *user,
                           const struct mim_group_member *m),
                           void *user);
int mim__lmdb_groups_of(void *impl, const char *uid, const char *after,
                        size_t limit, void (*fn)(void *user, const char *group),
                        void *user, bool *has_more);
/* The creation time (ms; `created` may be NULL) and member count of group
 * `gid`, from its `groups` record (a record from before the count: the
 * members counted). MDB_NOTFOUND: no group. */
int mim__lmdb_group_members(MDB_txn *txn, const struct lmdb_store *s,
                            uint64_t gid, uint64_t *created, uint64_t *count);
/* The ids of the large groups user `uid_id` is a member of (its
 * `ularge` entries), ascending, the first MIM_USER_LARGE_GROUPS_MAX, in `*gids` (from arena `a`),
 * *n of them. Returns 0, -ENOMEM or an LMDB error. */
int mim__lmdb_large_ids(MDB_txn *txn, struct lmdb_store *s, uint64_t uid_id,
                        struct mim__store_arena *a, uint64_t **gids,
                        size_t *n);
int mim__lmdb_large_groups_of(void *impl, const char *uid,
                              void (*fn)(void *user, const char *group),
                              void *user);

/* A page of names read in one read transaction and handed to a callback
 * after it ended: members, groups, readers. init, add, then end. */
struct name_page {
  struct mim__store_arena a; /* the names */
  const char **names;
  size_t n, cap;
};
void mim__lmdb_name_page_init(struct name_page *pg);
/* Adds the name of id `id` of `kind`; a corrupt name is noted as `what`
 * and left out (0). Returns 0, -ENOMEM or an LMDB error. */
int mim__lmdb_name_page_add(MDB_txn *txn, struct lmdb_store *s,
                            struct name_page *pg, enum id_kind kind,
                            uint64_t id, const char *what);
/* Ends the read `txn` (NULL: none began), then, when `rc` is 0 or
 * MDB_NOTFOUND (nothing there: an empty page), calls `fn` (NULL: none)
 * per name; frees the page. Returns `rc` mapped (map_err), 0 for
 * MDB_NOTFOUND. */
int mim__lmdb_name_page_end(struct lmdb_store *s, MDB_txn *txn, int rc,
                            struct name_page *pg,
                            void (*fn)(void *user, const char *name),
                            void *user);
int mim__lmdb_last_seen(void *impl, const char *uid, int64_t *ms);
int mim__lmdb_members_page(void *impl, const char *group, const char *after,
                           size_t limit, void (*fn)(void *user, const char *uid),
                           void *user, bool *has_more);
int mim__lmdb_read_conversation(void *impl, const char *a, const char *b,
                                const char *group, uint64_t before,
                                uint64_t after, size_t limit,
                                struct mim_message_list *out);
int mim__lmdb_read_inbox(void *impl, const char *uid, uint64_t after_seq,
                         size_t limit, struct mim_message_list *out);
void mim__lmdb_wtx_close_cursors(struct wtx *w);
int mim__lmdb_wtx_tail_seq(struct wtx *w, int which, const uint8_t *prefix,
                           size_t plen, uint64_t *seq);

/* record.c */
/* Unpacks record `v` with protobuf-c into `a` (*out valid until `a` is
 * reset): the write path's dedup check, and the test references. */
/* Parses stored record `v` without copying: the scalars into `m`, the
 * strings as slices into `str` (both pointing into `v`, valid while its
 * transaction is). MDB_CORRUPTED when malformed; texts are not checked
 * (mim__lmdb_record_text_ok). */
int mim__lmdb_record_view(const MDB_val *v, struct mim_message *m,
                          struct mim__message_strings *str);
int mim__lmdb_record_unpack(const MDB_val *v, struct mim__store_arena *a,
                            Mimpb__MessageRecord **out);
/* Whether the texts of `m` (slices in `str`) are valid UTF-8 ids/strings. */
bool mim__lmdb_record_text_ok(const struct mim_message *m,
                              const struct mim__message_strings *str);
int mim__lmdb_record_get(MDB_txn *txn, const struct lmdb_store *s,
                         uint64_t msg_id, struct mim__store_arena *a,
                         Mimpb__MessageRecord **out);
int mim__lmdb_record_put(struct wtx *w, uint64_t msg_id,
                         const struct mim_message_in *m, uint64_t conv_seq);

/* write.c */
int mim__lmdb_del(struct wtx *w, enum db db, const void *k, size_t kl);
int mim__lmdb_commit(void *impl, struct mim_write_batch *b);
int mim__lmdb_put(struct wtx *w, enum db db, const void *k, size_t kl,
                  MDB_val *v, unsigned flags);

#endif /* MIM_STORE_LMDB_INTERNAL_H */
