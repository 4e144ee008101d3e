/* Durable dedup of client_msg_ids: the (sender, client_msg_id) index a
 * retried send is matched against, and its expiry queue. */
#include "store/lmdb/lmdb_internal.h"

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

/* Looks (sender, client_msg_id) up. Returns 1 when that decides the op
 * (*o is a duplicate's outcome or a conflict), 0 when the message is new
 * (no entry, or an expired one), or an error. */
int mim__lmdb_dedup_check(struct wtx *w, const struct mim_message_in *m,
                          uint64_t sender_id, struct mim_op_outcome *o) {
  uint8_t k[DEDUP_KEY_MAX];
  MDB_val v;
  int rc = mim__lmdb_get(w->txn, w->s->dbi[DB_DEDUP], k,
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
  rc = mim__lmdb_record_get(w->txn, w->s, msg_id, &w->s->scratch, &r);
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

int mim__lmdb_dedup_put(struct wtx *w, const struct mim_message_in *m,
                        uint64_t sender_id, uint64_t msg_id,
                        uint64_t sender_seq) {
  uint8_t k[DEDUP_TIME_KEY_MAX];
  uint8_t v24[24];
  be64_put(v24, msg_id);
  be64_put(v24 + 8, (uint64_t)m->server_time);
  be64_put(v24 + 16, sender_seq);
  MDB_val v = val(v24, sizeof v24);
  size_t kl = dedup_key(k + 8, sender_id, m->client_msg_id);
  int rc = mim__lmdb_put(w, DB_DEDUP, k + 8, kl, &v, 0);
  if (rc != 0)
    return rc;
  be64_put(k, time_bias(m->server_time));
  MDB_val none = val("", 0);
  rc = mim__lmdb_put(w, DB_DEDUP_TIME, k, kl + 8, &none, 0);
  if (rc == 0)
    w->dedup_added++;
  return rc;
}

/* Removes up to `max` dedup entries older than the window. */
int mim__lmdb_dedup_prune(struct wtx *w, size_t max) {
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
      if ((rc = mim__lmdb_del(w, DB_DEDUP_TIME, p, keys[i].mv_size)) != 0)
        return rc;
      continue;
    }
    /* The dedup entry may have been replaced by a newer message with the
     * same id after it expired; that one has its own queue entry. */
    MDB_val d;
    rc = mim__lmdb_get(w->txn, s->dbi[DB_DEDUP], p + 8, keys[i].mv_size - 8, &d);
    if (rc != 0 && rc != MDB_NOTFOUND)
      return rc;
    if (rc == 0 && d.mv_size == 24 &&
        be64_get((const uint8_t *)d.mv_data + 8) ==
            (uint64_t)time_unbias(be64_get(p)) &&
        (rc = mim__lmdb_del(w, DB_DEDUP, p + 8, keys[i].mv_size - 8)) != 0)
      return rc;
    if ((rc = mim__lmdb_del(w, DB_DEDUP_TIME, p, keys[i].mv_size)) != 0)
      return rc;
  }
  return 0;
}
