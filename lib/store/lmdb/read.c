/* The LMDB backend's reads: id lookups, timeline tails, inbox and
 * conversation pages, cursors and group members. Any thread. */
#include "store/lmdb/lmdb_internal.h"

int mim__lmdb_get(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl,
                  MDB_val *out) {
  MDB_val key = val(k, kl);
  return lrc(mdb_get(txn, dbi, &key, out));
}

/* A u64 value; 0 when absent. */
int mim__lmdb_get_u64(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl,
                      uint64_t *x) {
  MDB_val v;
  int rc = mim__lmdb_get(txn, dbi, k, kl, &v);
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

/* The id of `name`; MDB_NOTFOUND when it has none. */
int mim__lmdb_id_find(MDB_txn *txn, const struct lmdb_store *s,
                      enum id_kind kind, const char *name, uint64_t *id) {
  if (strlen(name) > MIM_ID_MAX)
    return MDB_NOTFOUND;
  uint8_t k[2 + MIM_ID_MAX];
  MDB_val v;
  int rc = mim__lmdb_get(txn, s->dbi[DB_IDS], k, id_key(k, kind, name), &v);
  if (rc != 0)
    return rc;
  if (v.mv_size != 8)
    return MDB_CORRUPTED;
  *id = be64_get(v.mv_data);
  return 0;
}

/* The name of id `id`, copied into `a` (LMDB's pointers die with the next
 * write). */
int mim__lmdb_id_name(MDB_txn *txn, const struct lmdb_store *s,
                   enum id_kind kind, uint64_t id, struct mim__store_arena *a,
                      const char **name) {
  uint8_t k[9];
  k[0] = (uint8_t)(kind - 'a' + 'A');
  be64_put(k + 1, id);
  MDB_val v;
  int rc = mim__lmdb_get(txn, s->dbi[DB_IDS], k, sizeof k, &v);
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

/* The last seq of the timeline `prefix` in the inbox or conv database. */
int mim__lmdb_wtx_tail_seq(struct wtx *w, int which, const uint8_t *prefix,
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

void mim__lmdb_wtx_close_cursors(struct wtx *w) {
  for (size_t i = 0; i < MIM_ARRAY_SIZE(w->tail); i++) {
    if (w->tail[i] != NULL)
      mdb_cursor_close(w->tail[i]);
    w->tail[i] = NULL;
  }
}

int mim__lmdb_group_members(MDB_txn *txn, const struct lmdb_store *s,
                            uint64_t gid, uint64_t *created, uint64_t *count) {
  uint8_t k[8];
  be64_put(k, gid);
  MDB_val v;
  int rc = mim__lmdb_get(txn, s->dbi[DB_GROUPS], k, sizeof k, &v);
  if (rc != 0)
    return rc;
  if (created != NULL)
    *created = v.mv_size >= 8 ? be64_get(v.mv_data) : 0;
  if (v.mv_size >= 16) {
    *count = be64_get((const uint8_t *)v.mv_data + 8);
    return 0;
  }
  *count = 0; /* a record from before the count: count them */
  MDB_cursor *cur;
  if ((rc = lrc(mdb_cursor_open(txn, s->dbi[DB_MEMBERS], &cur))) != 0)
    return rc;
  uint8_t k0[16];
  pair_key(k0, gid, 0);
  MDB_val mk = val(k0, sizeof k0), mv;
  rc = lrc(mdb_cursor_get(cur, &mk, &mv, MDB_SET_RANGE));
  while (rc == 0 && mk.mv_size == 16 && memcmp(mk.mv_data, k0, 8) == 0) {
    (*count)++;
    rc = lrc(mdb_cursor_get(cur, &mk, &mv, MDB_NEXT));
  }
  mdb_cursor_close(cur);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Whether group `gid` exists; its id in *gid. MDB_NOTFOUND when not. */
int mim__lmdb_group_find(MDB_txn *txn, const struct lmdb_store *s,
                         const char *group, uint64_t *gid) {
  int rc = mim__lmdb_id_find(txn, s, ID_GROUP, group, gid);
  if (rc != 0)
    return rc;
  uint8_t k[8];
  be64_put(k, *gid);
  MDB_val v;
  return mim__lmdb_get(txn, s->dbi[DB_GROUPS], k, sizeof k, &v);
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
/* `viewer` (a uid id, 0: none) is whom the read is for: the messages they
 * deleted for themselves are left out (their change entries stay, with
 * state DELETED and no content). In an inbox, a change entry (CHANGE_ENTRY)
 * comes back as the message's record with change_entry set. */
static int walk_timeline(MDB_txn *txn, const struct lmdb_store *s, enum db db,
                         const uint8_t *prefix, size_t plen, uint64_t from,
                         bool backward, uint64_t stop, bool inbox,
                         uint64_t viewer, size_t limit, size_t start,
                         struct mim_message_list *out) {
  bool hides = false;
  if (viewer != 0) {
    int hrc = mim__lmdb_hides_any(txn, s, viewer, &hides);
    if (hrc != 0)
      return hrc;
  }
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
    uint64_t value = v.mv_size == 8 ? be64_get(v.mv_data) : 0;
    uint64_t msg_id = value & CHANGE_ID_MASK;
    bool change = inbox && (value & CHANGE_ENTRY) != 0;
    bool hidden = false;
    if (hides && !change)
      rc = mim__lmdb_hidden(txn, s, viewer, msg_id, &hidden);
    if (rc == 0 && hidden) {
      rc = lrc(mdb_cursor_get(cur, &k, &v, step));
      continue;
    }
    if (rc == 0)
      rc = v.mv_size == 8 ? push_record(msgs, msg_id, inbox ? seq : 0, out)
                          : MDB_CORRUPTED;
    if (rc == 0) {
      struct mim_message *m = &out->items[out->count - 1];
      m->change_entry = change;
      if (change && (value & CHANGE_DELETED) != 0) {
        m->state = MIM_MSG_STATE_DELETED;
        /* the reader dropped it: no content again */
        m->content = (const uint8_t *)"";
        m->content_len = 0;
        m->payload = (const uint8_t *)"";
        m->payload_len = 0;
      }
      bytes += message_bytes(m);
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
    mim__lmdb_read_end(s, txn);
  if (rc == MDB_NOTFOUND)
    rc = 0;
  if (rc != 0) {
    out->count = start;
    out->has_more = false;
    rc = map_err(rc);
  }
  return rc;
}

int mim__lmdb_read_inbox(void *impl, const char *uid, uint64_t after_seq,
                         size_t limit, struct mim_message_list *out) {
  struct lmdb_store *s = impl;
  if (s == NULL || uid == NULL || out == NULL)
    return -EINVAL;
  size_t start = out->count;
  out->has_more = false;
  MDB_txn *txn;
  int rc = mim__lmdb_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return read_finish(s, NULL, rc, start, out);
  uint64_t uid_id;
  rc = mim__lmdb_id_find(txn, s, ID_USER, uid, &uid_id);
  if (rc == 0 && after_seq != UINT64_MAX) {
    uint8_t prefix[8];
    be64_put(prefix, uid_id);
    rc = walk_timeline(txn, s, DB_INBOX, prefix, sizeof prefix, after_seq + 1,
                       false, 0, true, uid_id, limit, start, out);
  }
  return read_finish(s, txn, rc, start, out);
}

int mim__lmdb_read_conversation(void *impl, const char *a, const char *b,
                                const char *group, uint64_t before,
                                uint64_t after, size_t limit,
                                struct mim_message_list *out) {
  struct lmdb_store *s = impl;
  if (s == NULL || out == NULL || (group == NULL && (a == NULL || b == NULL)))
    return -EINVAL;
  size_t start = out->count;
  out->has_more = false;
  MDB_txn *txn;
  int rc = mim__lmdb_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return read_finish(s, NULL, rc, start, out);
  uint8_t conv[CONV_LEN];
  uint64_t viewer = 0;
  if (group != NULL) {
    uint64_t gid;
    if ((rc = mim__lmdb_id_find(txn, s, ID_GROUP, group, &gid)) == 0)
      conv_group(conv, gid);
    /* a group read for a member (`a`): leave out what they deleted */
    if (rc == 0 && a != NULL && a[0] != '\0' &&
        mim__lmdb_id_find(txn, s, ID_USER, a, &viewer) != 0)
      viewer = 0;
  } else {
    uint64_t ida, idb;
    if ((rc = mim__lmdb_id_find(txn, s, ID_USER, a, &ida)) == 0 &&
        (rc = mim__lmdb_id_find(txn, s, ID_USER, b, &idb)) == 0)
      conv_c2c(conv, ida, idb);
    viewer = rc == 0 ? ida : 0; /* `a` is the reader of a pair */
  }
  /* From just below `before` (0: the conversation's end), walking back. */
  if (rc == 0)
    rc = walk_timeline(txn, s, DB_CONV, conv, CONV_LEN,
                       before != 0 ? before : UINT64_MAX, true, after, false,
                       viewer, limit, start, out);
  return read_finish(s, txn, rc, start, out);
}

int mim__lmdb_inbox_last_seq(void *impl, const char *uid, uint64_t *seq) {
  struct lmdb_store *s = impl;
  if (s == NULL || uid == NULL || seq == NULL)
    return -EINVAL;
  *seq = 0;
  MDB_txn *txn;
  int rc = mim__lmdb_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return map_err(rc);
  uint64_t uid_id;
  rc = mim__lmdb_id_find(txn, s, ID_USER, uid, &uid_id);
  MDB_cursor *cur;
  if (rc == 0 && (rc = lrc(mdb_cursor_open(txn, s->dbi[DB_INBOX], &cur))) == 0) {
    uint8_t k[8];
    be64_put(k, uid_id);
    rc = tail_seq(cur, k, sizeof k, seq);
    mdb_cursor_close(cur);
  }
  mim__lmdb_read_end(s, txn);
  return rc == MDB_NOTFOUND ? 0 : map_err(rc);
}

int mim__lmdb_cursor_get(void *impl, const char *uid, const char *device,
                         uint64_t *seq) {
  struct lmdb_store *s = impl;
  if (s == NULL || uid == NULL || device == NULL || seq == NULL)
    return -EINVAL;
  *seq = 0;
  MDB_txn *txn;
  int rc = mim__lmdb_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return map_err(rc);
  uint64_t uid_id, dev_id;
  if ((rc = mim__lmdb_id_find(txn, s, ID_USER, uid, &uid_id)) == 0 &&
      (rc = mim__lmdb_id_find(txn, s, ID_DEVICE, device, &dev_id)) == 0) {
    uint8_t k[16];
    pair_key(k, uid_id, dev_id);
    rc = mim__lmdb_get_u64(txn, s->dbi[DB_CURSORS], k, sizeof k, seq);
  }
  mim__lmdb_read_end(s, txn);
  return rc == MDB_NOTFOUND ? 0 : map_err(rc);
}

int mim__lmdb_last_seen(void *impl, const char *uid, int64_t *ms) {
  struct lmdb_store *s = impl;
  if (s == NULL || uid == NULL || ms == NULL)
    return -EINVAL;
  *ms = 0;
  MDB_txn *txn;
  int rc = mim__lmdb_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return map_err(rc);
  uint64_t uid_id, t = 0;
  if ((rc = mim__lmdb_id_find(txn, s, ID_USER, uid, &uid_id)) == 0) {
    uint8_t k[8];
    be64_put(k, uid_id);
    rc = mim__lmdb_get_u64(txn, s->dbi[DB_LASTSEEN], k, sizeof k, &t);
  }
  mim__lmdb_read_end(s, txn);
  if (rc == MDB_CORRUPTED)
    rc = MDB_NOTFOUND; /* a hint only: unknown */
  if (rc == 0 && t <= INT64_MAX)
    *ms = (int64_t)t;
  return rc == MDB_NOTFOUND ? 0 : map_err(rc);
}

int mim__lmdb_member_get(void *impl, const char *group, const char *uid,
                         uint64_t *joined_conv_seq) {
  struct lmdb_store *s = impl;
  if (s == NULL || group == NULL || uid == NULL)
    return -EINVAL;
  MDB_txn *txn;
  int rc = mim__lmdb_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return map_err(rc);
  uint64_t gid, uid_id, joined = 0;
  rc = mim__lmdb_group_find(txn, s, group, &gid);
  if (rc == MDB_NOTFOUND) {
    rc = -MIM_ERR_NO_SUCH_GROUP;
  } else if (rc == 0) {
    rc = mim__lmdb_id_find(txn, s, ID_USER, uid, &uid_id);
    if (rc == 0) {
      uint8_t k[16];
      MDB_val v;
      pair_key(k, gid, uid_id);
      rc = mim__lmdb_get(txn, s->dbi[DB_MEMBERS], k, sizeof k, &v);
      if (rc == 0 && v.mv_size != 8)
        rc = MDB_CORRUPTED;
      if (rc == 0)
        joined = be64_get(v.mv_data);
    }
    if (rc == MDB_NOTFOUND)
      rc = -MIM_ERR_NOT_MEMBER;
  }
  mim__lmdb_read_end(s, txn);
  if (rc == 0 && joined_conv_seq != NULL)
    *joined_conv_seq = joined;
  return map_err(rc);
}

static int member_cmp(const void *a, const void *b) {
  const struct mim_group_member *x = a, *y = b;
  return strcmp(x->uid, y->uid);
}

int mim__lmdb_members_list(void *impl, const char *group,
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
  int rc = mim__lmdb_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    goto fail;
  uint64_t gid;
  rc = mim__lmdb_group_find(txn, s, group, &gid);
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
    rc = d.mv_size == 8 ? mim__lmdb_id_name(txn, s, ID_USER, uid_id, &a, &v[n].uid)
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
  mim__lmdb_read_end(s, txn);
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

void mim__lmdb_name_page_init(struct name_page *pg) {
  mim__store_arena_init(&pg->a);
  pg->names = NULL;
  pg->n = pg->cap = 0;
}

int mim__lmdb_name_page_add(MDB_txn *txn, struct lmdb_store *s,
                            struct name_page *pg, enum id_kind kind,
                            uint64_t id, const char *what) {
  int rc = reserve((void **)&pg->names, &pg->cap, pg->n + 1,
                   sizeof(*pg->names));
  if (rc != 0)
    return rc;
  rc = mim__lmdb_id_name(txn, s, kind, id, &pg->a, &pg->names[pg->n]);
  if (rc == MDB_CORRUPTED) {
    note_corrupt(s, what, id); /* left out of the page */
    return 0;
  }
  if (rc == 0)
    pg->n++;
  return rc;
}

int mim__lmdb_name_page_end(struct lmdb_store *s, MDB_txn *txn, int rc,
                            struct name_page *pg,
                            void (*fn)(void *user, const char *name),
                            void *user) {
  if (rc == MDB_NOTFOUND)
    rc = 0;
  /* the callbacks run after the read ends: user code must not run while
   * this thread holds the map lock (see members_list) */
  if (txn != NULL)
    mim__lmdb_read_end(s, txn);
  if (rc == 0 && fn != NULL)
    for (size_t i = 0; i < pg->n; i++)
      fn(user, pg->names[i]);
  free(pg->names);
  mim__store_arena_finish(&pg->a);
  return map_err(rc);
}

/* One page of a (head id, id) pair table (ugroups, members): the names of
 * the ids under `head` from `from` on, at most `limit`, added to `pg`;
 * *has_more when more follow. A cursor seek and a walk under one head,
 * never a scan. A corrupt name is noted as `what` and left out of the
 * page. Returns 0, MDB_NOTFOUND (nothing at or after `from`) or an LMDB
 * error. */
static int pair_page(MDB_txn *txn, struct lmdb_store *s, int db, uint64_t head,
                     uint64_t from, enum id_kind kind, const char *what,
                     size_t limit, struct name_page *pg, bool *has_more) {
  MDB_cursor *cur;
  int rc = lrc(mdb_cursor_open(txn, s->dbi[db], &cur));
  if (rc != 0)
    return rc;
  uint8_t k0[16];
  pair_key(k0, head, from);
  MDB_val k = val(k0, sizeof k0), d;
  rc = lrc(mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE));
  while (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, k0, 8) == 0) {
    if (pg->n == limit) {
      *has_more = true;
      break;
    }
    rc = mim__lmdb_name_page_add(txn, s, pg, kind,
                                 be64_get((const uint8_t *)k.mv_data + 8),
                                 what);
    if (rc == 0)
      rc = lrc(mdb_cursor_get(cur, &k, &d, MDB_NEXT));
  }
  mdb_cursor_close(cur);
  return rc;
}

int mim__lmdb_groups_of(void *impl, const char *uid, const char *after,
                        size_t limit, void (*fn)(void *user, const char *group),
                        void *user, bool *has_more) {
  struct lmdb_store *s = impl;
  if (s == NULL || uid == NULL || after == NULL || fn == NULL ||
      has_more == NULL)
    return -EINVAL;
  *has_more = false;
  struct name_page pg;
  mim__lmdb_name_page_init(&pg);
  MDB_txn *txn = NULL;
  int rc = mim__lmdb_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return mim__lmdb_name_page_end(s, NULL, rc, &pg, NULL, NULL);
  uint64_t uid_id, from = 0;
  rc = mim__lmdb_id_find(txn, s, ID_USER, uid, &uid_id);
  if (rc == 0 && after[0] != '\0') {
    rc = mim__lmdb_id_find(txn, s, ID_GROUP, after, &from);
    from++; /* the group after it */
  }
  if (rc == 0) /* else MDB_NOTFOUND: no groups */
    rc = pair_page(txn, s, DB_UGROUPS, uid_id, from, ID_GROUP, "group name",
                   limit, &pg, has_more);
  return mim__lmdb_name_page_end(s, txn, rc, &pg, fn, user);
}

int mim__lmdb_large_ids(MDB_txn *txn, struct lmdb_store *s, uint64_t uid_id,
                        struct mim__store_arena *a, uint64_t **gids,
                        size_t *n) {
  *gids = NULL;
  *n = 0;
  size_t cap = 0;
  MDB_cursor *cur;
  int rc = lrc(mdb_cursor_open(txn, s->dbi[DB_ULARGE], &cur));
  if (rc != 0)
    return rc;
  uint8_t k0[16];
  pair_key(k0, uid_id, 0);
  MDB_val k = val(k0, sizeof k0), v;
  rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE));
  while (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, k0, 8) == 0 &&
         *n < MIM_USER_LARGE_GROUPS_MAX) {
    if (*n == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      uint64_t *g = mim__store_arena_alloc(a, ncap * sizeof *g);
      if (g == NULL) {
        rc = -ENOMEM;
        break;
      }
      if (*n > 0)
        memcpy(g, *gids, *n * sizeof *g);
      *gids = g;
      cap = ncap;
    }
    (*gids)[(*n)++] = be64_get((const uint8_t *)k.mv_data + 8);
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_NEXT));
  }
  mdb_cursor_close(cur);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

int mim__lmdb_large_groups_of(void *impl, const char *uid,
                              void (*fn)(void *user, const char *group),
                              void *user) {
  struct lmdb_store *s = impl;
  if (s == NULL || uid == NULL || fn == NULL)
    return -EINVAL;
  struct name_page pg;
  mim__lmdb_name_page_init(&pg);
  MDB_txn *txn = NULL;
  int rc = mim__lmdb_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return mim__lmdb_name_page_end(s, NULL, rc, &pg, NULL, NULL);
  uint64_t uid_id, *gids;
  size_t n = 0;
  rc = mim__lmdb_id_find(txn, s, ID_USER, uid, &uid_id);
  if (rc == 0) /* else MDB_NOTFOUND: no groups */
    rc = mim__lmdb_large_ids(txn, s, uid_id, &pg.a, &gids, &n);
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = mim__lmdb_name_page_add(txn, s, &pg, ID_GROUP, gids[i],
                                 "group name");
  return mim__lmdb_name_page_end(s, txn, rc, &pg, fn, user);
}

/* Members DB keys are (group id, user id): a page is the user ids after
 * `after`'s, read from a cursor seek, so the order is user-id order. */
int mim__lmdb_members_page(void *impl, const char *group, const char *after,
                           size_t limit, void (*fn)(void *user, const char *uid),
                           void *user, bool *has_more) {
  struct lmdb_store *s = impl;
  if (s == NULL || group == NULL || after == NULL || fn == NULL ||
      has_more == NULL)
    return -EINVAL;
  *has_more = false;
  struct name_page pg;
  mim__lmdb_name_page_init(&pg);
  MDB_txn *txn = NULL;
  int rc = mim__lmdb_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return mim__lmdb_name_page_end(s, NULL, rc, &pg, NULL, NULL);
  uint64_t gid, from = 0;
  rc = mim__lmdb_group_find(txn, s, group, &gid);
  if (rc == MDB_NOTFOUND)
    rc = -MIM_ERR_NO_SUCH_GROUP;
  if (rc == 0 && after[0] != '\0') {
    rc = mim__lmdb_id_find(txn, s, ID_USER, after, &from);
    from++; /* the member after it */
  }
  if (rc == 0) /* else MDB_NOTFOUND (unknown `after`): an empty page */
    rc = pair_page(txn, s, DB_MEMBERS, gid, from, ID_USER, "member", limit,
                   &pg, has_more);
  return mim__lmdb_name_page_end(s, txn, rc, &pg, fn, user);
}
