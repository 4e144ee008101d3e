/* The LMDB backend's conversations (docs/architecture.md §6.1): each
 * user's read position per conversation (`uconv`), the conversation list
 * ordered by newest message (`uclist`), mark-read, the list's pages and
 * "read by" counts. Positions only: nothing here writes per message per
 * member beyond the one `uconv`/`uclist` update an append makes for each
 * participant. */
#include "store/lmdb/lmdb_internal.h"

#define UCONV_KEY (8 + CONV_LEN)
#define UCONV_VAL 16 /* read seq, list msg_id; longer values: extra ignored */

static void uconv_key(uint8_t k[UCONV_KEY], uint64_t uid,
                      const uint8_t conv[CONV_LEN]) {
  be64_put(k, uid);
  memcpy(k + 8, conv, CONV_LEN);
}

/* The (read seq, list msg_id) of `uid` in `conv`; zeros when absent. A
 * record too short to hold both counts as absent (read nothing) and is
 * counted as corrupt: it is only a position, rewritten by the next op. */
static int uconv_get(MDB_txn *txn, struct lmdb_store *s, uint64_t uid,
                     const uint8_t conv[CONV_LEN], uint64_t *read,
                     uint64_t *list_id) {
  uint8_t k[UCONV_KEY];
  uconv_key(k, uid, conv);
  MDB_val v;
  *read = 0;
  *list_id = 0;
  int rc = mim__lmdb_get(txn, s->dbi[DB_UCONV], k, sizeof k, &v);
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc != 0)
    return rc;
  if (v.mv_size < UCONV_VAL) {
    note_corrupt(s, "read position", uid);
    return 0;
  }
  *read = be64_get(v.mv_data);
  *list_id = be64_get((const uint8_t *)v.mv_data + 8);
  return 0;
}

static int uconv_put(struct wtx *w, uint64_t uid, const uint8_t conv[CONV_LEN],
                     uint64_t read, uint64_t list_id) {
  uint8_t k[UCONV_KEY], b[UCONV_VAL];
  uconv_key(k, uid, conv);
  be64_put(b, read);
  be64_put(b + 8, list_id);
  MDB_val v = val(b, sizeof b);
  return mim__lmdb_put(w, DB_UCONV, k, sizeof k, &v, 0);
}

int mim__lmdb_conv_touch(struct wtx *w, uint64_t uid,
                         const uint8_t conv[CONV_LEN], uint64_t msg_id,
                         uint64_t read_to) {
  uint64_t read, list_id;
  int rc = uconv_get(w->txn, w->s, uid, conv, &read, &list_id);
  if (rc != 0)
    return rc;
  uint8_t lk[16];
  if (list_id != 0) {
    pair_key(lk, uid, list_id);
    rc = mim__lmdb_del(w, DB_UCLIST, lk, sizeof lk);
    if (rc != 0 && rc != MDB_NOTFOUND)
      return rc;
  }
  pair_key(lk, uid, msg_id);
  MDB_val cv = val(conv, CONV_LEN);
  if ((rc = mim__lmdb_put(w, DB_UCLIST, lk, sizeof lk, &cv, 0)) != 0)
    return rc;
  return uconv_put(w, uid, conv, read_to > read ? read_to : read, msg_id);
}

/* The conv seq at which `uid` joined group `gid`; MDB_NOTFOUND when not a
 * member. */
static int joined_get(MDB_txn *txn, struct lmdb_store *s, uint64_t gid,
                      uint64_t uid, uint64_t *joined) {
  uint8_t k[16];
  pair_key(k, gid, uid);
  MDB_val v;
  int rc = mim__lmdb_get(txn, s->dbi[DB_MEMBERS], k, sizeof k, &v);
  if (rc != 0)
    return rc;
  *joined = v.mv_size == 8 ? be64_get(v.mv_data) : 0;
  return 0;
}

int mim__lmdb_op_read(struct wtx *w, const struct mim_write_op *op,
                      struct mim_op_outcome *o) {
  struct lmdb_store *s = w->s;
  uint64_t uid, other, joined = 0;
  uint8_t conv[CONV_LEN];
  int rc = mim__lmdb_id_find(w->txn, s, ID_USER, op->uid, &uid);
  if (op->group[0] != '\0') {
    uint64_t gid;
    int grc = mim__lmdb_group_find(w->txn, s, op->group, &gid);
    if (grc == MDB_NOTFOUND) {
      o->status = -MIM_ERR_NO_SUCH_GROUP;
      return 0;
    }
    if (grc != 0)
      return grc;
    if (rc == 0)
      rc = joined_get(w->txn, s, gid, uid, &joined);
    if (rc == MDB_NOTFOUND) {
      o->status = -MIM_ERR_NOT_MEMBER;
      return 0;
    }
    if (rc != 0)
      return rc;
    conv_group(conv, gid);
  } else {
    if (rc == 0)
      rc = mim__lmdb_id_find(w->txn, s, ID_USER, op->peer, &other);
    if (rc == MDB_NOTFOUND) {
      o->status = 0; /* no conversation yet: nothing to read */
      return 0;
    }
    if (rc != 0)
      return rc;
    conv_c2c(conv, uid, other);
  }
  uint64_t tail, read, list_id;
  if ((rc = mim__lmdb_wtx_tail_seq(w, TAIL_CONV, conv, CONV_LEN, &tail)) != 0 ||
      (rc = uconv_get(w->txn, s, uid, conv, &read, &list_id)) != 0)
    return rc;
  uint64_t want = op->seq < tail ? op->seq : tail;
  if (want > read) {
    if ((rc = uconv_put(w, uid, conv, want, list_id)) != 0)
      return rc;
    read = want;
    o->read_moved = true;
  }
  uint64_t floor = read > joined ? read : joined;
  o->status = 0;
  o->read_seq = read;
  o->unread = tail > floor ? tail - floor : 0;
  return 0;
}

/* ---- reads ---- */

/* The newest seq of `conv` through a read cursor on DB_CONV. */
static int conv_tail(MDB_cursor *cur, const uint8_t conv[CONV_LEN],
                     uint64_t *seq) {
  uint8_t k0[CONV_LEN + 8];
  memcpy(k0, conv, CONV_LEN);
  be64_put(k0 + CONV_LEN, UINT64_MAX);
  MDB_val k = val(k0, sizeof k0), v;
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
  if (k.mv_size == sizeof k0 && memcmp(k.mv_data, conv, CONV_LEN) == 0)
    *seq = be64_get((const uint8_t *)k.mv_data + CONV_LEN);
  return 0;
}

/* The longest prefix of `p` (`n` bytes) of at most `max` bytes that ends
 * on a UTF-8 character boundary. */
static size_t utf8_cut(const uint8_t *p, size_t n, size_t max) {
  if (n <= max)
    return n;
  size_t m = max;
  while (m > 0 && (p[m] & 0xC0) == 0x80)
    m--; /* p[m] continues a character begun before it: cut before that */
  return m;
}

/* Fills `ci` (strings in `a`) for conversation `conv` of user `uid`, whose
 * newest message is `msg_id`. MDB_CORRUPTED: leave the entry out. */
static int conv_fill(MDB_txn *txn, struct lmdb_store *s, MDB_cursor *convc,
                     struct mim__store_arena *a, uint64_t uid,
                     const uint8_t conv[CONV_LEN], uint64_t msg_id,
                     bool large, size_t preview_max,
                     struct mim_conv_info *ci) {
  memset(ci, 0, sizeof *ci);
  ci->large = large;
  ci->peer = "";
  ci->group = "";
  ci->last_sender = "";
  ci->last_msg_id = msg_id;
  uint64_t joined = 0, list_id;
  int rc;
  if (conv[0] == 'c') {
    uint64_t lo = be64_get(conv + 1), hi = be64_get(conv + 9);
    uint64_t other = lo == uid ? hi : lo;
    if ((rc = mim__lmdb_id_name(txn, s, ID_USER, other, a, &ci->peer)) != 0)
      return rc;
    if ((rc = uconv_get(txn, s, other, conv, &ci->peer_read_seq, &list_id)))
      return rc;
  } else if (conv[0] == 'g') {
    uint64_t gid = be64_get(conv + 1);
    if ((rc = mim__lmdb_id_name(txn, s, ID_GROUP, gid, a, &ci->group)) != 0)
      return rc;
    rc = joined_get(txn, s, gid, uid, &joined);
    if (rc == MDB_NOTFOUND)
      joined = UINT64_MAX; /* no longer a member: nothing is unread */
    else if (rc != 0)
      return rc;
  } else {
    return MDB_CORRUPTED;
  }
  if ((rc = conv_tail(convc, conv, &ci->last_conv_seq)) != 0 ||
      (rc = uconv_get(txn, s, uid, conv, &ci->read_seq, &list_id)) != 0)
    return rc;
  /* Only the entry the position names is live: conv_touch could not
   * delete an older one when the position record was damaged (list_id
   * 0 then), and listing both would show the conversation twice. */
  if (list_id != 0 && list_id != msg_id && !large)
    return MDB_CORRUPTED;
  uint64_t floor = ci->read_seq > joined ? ci->read_seq : joined;
  ci->unread = ci->last_conv_seq > floor ? ci->last_conv_seq - floor : 0;
  /* parsed in place, not unpacked: an unpack would copy the whole
   * content (up to content_max) of every entry of the page for a preview
   * of conv_preview_max bytes */
  uint8_t mk[8];
  be64_put(mk, msg_id);
  MDB_val rv;
  if ((rc = mim__lmdb_get(txn, s->dbi[DB_MSGS], mk, sizeof mk, &rv)) != 0)
    return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
  struct mim_message m = {0};
  struct mim__message_strings str = {"", "", "", "", "", 0, 0, 0, 0, 0};
  if ((rc = mim__lmdb_record_view(&rv, &m, &str)) != 0)
    return rc;
  if (joined == UINT64_MAX)
    /* a group they left or were removed from: as they last saw it, not
     * how many messages were sent since */
    ci->last_conv_seq = m.conv_seq != 0 ? m.conv_seq : ci->read_seq;
  ci->last_time = m.server_time;
  ci->last_type = m.type;
  if (!mim__lmdb_record_text_ok(&m, &str)) {
    /* listed without its text: preview and sender go out in protobuf
     * strings (and JSON), where one bad byte loses the whole page */
    note_corrupt(s, "message text", uid);
    m.content_len = 0;
    str.sender_len = 0;
  }
  size_t sl = strnlen(str.sender, str.sender_len);
  char *snd = mim__store_arena_alloc(a, sl + 1);
  if (snd == NULL)
    return -ENOMEM;
  if (sl > 0)
    memcpy(snd, str.sender, sl);
  snd[sl] = '\0';
  ci->last_sender = snd;
  ci->last_state = m.state;
  ci->last_change_time = m.change_time;
  bool hidden;
  if ((rc = mim__lmdb_hidden(txn, s, uid, msg_id, &hidden)) != 0)
    return rc;
  if (hidden)
    ci->last_state = MIM_MSG_STATE_DELETED;
  /* a tombstone has no content left; a message the user deleted for
   * themself shows none either */
  const uint8_t *c = m.content_len > 0 && !hidden ? m.content : NULL;
  size_t cl = c != NULL ? m.content_len : 0;
  size_t n = utf8_cut(c, cl, preview_max);
  uint8_t *pv = mim__store_arena_alloc(a, n + 1);
  if (pv == NULL)
    return -ENOMEM;
  if (n > 0)
    memcpy(pv, c, n);
  pv[n] = '\0';
  ci->preview = pv;
  ci->preview_len = n;
  ci->preview_cut = n < cl;
  return 0;
}

/* A large group of the user's, keyed by its timeline's newest message. */
struct large_conv {
  uint64_t msg_id;
  uint64_t gid;
};

static int large_conv_newest_first(const void *x, const void *y) {
  const struct large_conv *a = x, *b = y;
  return a->msg_id < b->msg_id ? 1 : a->msg_id > b->msg_id ? -1 : 0;
}

/* The user's large groups (ascending gids in `gids`) whose newest message
 * is older than `before` (0: any), newest first, in `*out`. Their list
 * entries do not move per message (read diffusion), so conv_list merges
 * them in by their timelines' tails. */
static int large_convs(MDB_txn *txn, struct lmdb_store *s, MDB_cursor *convc,
                       const uint64_t *gids, size_t n, uint64_t before,
                       struct mim__store_arena *a, struct large_conv **out,
                       size_t *n_out) {
  *n_out = 0;
  *out = mim__store_arena_alloc(a, (n > 0 ? n : 1) * sizeof **out);
  if (*out == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    uint8_t conv[CONV_LEN];
    conv_group(conv, gids[i]);
    uint64_t seq;
    int rc = conv_tail(convc, conv, &seq);
    if (rc != 0)
      return rc;
    if (seq == 0)
      continue; /* nothing in it yet */
    uint8_t k[CONV_LEN + 8];
    memcpy(k, conv, CONV_LEN);
    be64_put(k + CONV_LEN, seq);
    MDB_val v;
    rc = mim__lmdb_get(txn, s->dbi[DB_CONV], k, sizeof k, &v);
    if (rc != 0 || v.mv_size != 8) {
      if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
      note_corrupt(s, "group timeline", gids[i]);
      continue;
    }
    uint64_t msg_id = be64_get(v.mv_data);
    if (before != 0 && msg_id >= before)
      continue;
    (*out)[(*n_out)++] = (struct large_conv){msg_id, gids[i]};
  }
  qsort(*out, *n_out, sizeof **out, large_conv_newest_first);
  return 0;
}

static bool is_large(const uint64_t *gids, size_t n,
                     const uint8_t conv[CONV_LEN]) {
  if (conv[0] != 'g')
    return false;
  uint64_t gid = be64_get(conv + 1);
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (gids[mid] == gid)
      return true;
    if (gids[mid] < gid)
      lo = mid + 1;
    else
      hi = mid;
  }
  return false;
}

/* Adds the entry of `conv` (newest message `msg_id`) to `out`; 1 when the
 * page is full (has_more set, nothing added). */
static int list_add(MDB_txn *txn, struct lmdb_store *s, MDB_cursor *convc,
                    struct mim__store_arena *a, uint64_t uid_id,
                    const uint8_t conv[CONV_LEN], uint64_t msg_id, bool large,
                    size_t limit, size_t preview_max, size_t *cap,
                    struct mim_conv_list *out) {
  if (out->count == limit) {
    out->has_more = true;
    return 1;
  }
  int rc = reserve((void **)&out->items, cap, out->count + 1,
                   sizeof(*out->items));
  if (rc != 0)
    return rc;
  rc = conv_fill(txn, s, convc, a, uid_id, conv, msg_id, large, preview_max,
                 &out->items[out->count]);
  if (rc == MDB_CORRUPTED) {
    note_corrupt(s, "conversation", uid_id); /* left out of the page */
    return 0;
  }
  if (rc == 0)
    out->count++;
  return rc;
}

int mim__lmdb_conv_list(void *impl, const char *uid, uint64_t before_msg_id,
                        size_t limit, size_t preview_max,
                        struct mim_conv_list *out) {
  struct lmdb_store *s = impl;
  if (s == NULL || uid == NULL || out == NULL)
    return -EINVAL;
  if (out->priv_ == NULL) {
    if ((out->priv_ = malloc(sizeof(struct mim__store_arena))) == NULL)
      return -ENOMEM;
    mim__store_arena_init(out->priv_);
  }
  struct mim__store_arena *a = out->priv_;
  struct mim__store_arena tmp;
  mim__store_arena_init(&tmp);
  size_t cap = out->count;
  MDB_txn *txn;
  int rc = mim__lmdb_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0) {
    mim__store_arena_finish(&tmp);
    return map_err(rc);
  }
  uint64_t uid_id, *gids = NULL;
  size_t n_gids = 0, n_large = 0, li = 0;
  struct large_conv *large = NULL;
  MDB_cursor *cur = NULL, *convc = NULL;
  if ((rc = mim__lmdb_id_find(txn, s, ID_USER, uid, &uid_id)) != 0)
    goto done;
  if ((rc = lrc(mdb_cursor_open(txn, s->dbi[DB_UCLIST], &cur))) != 0 ||
      (rc = lrc(mdb_cursor_open(txn, s->dbi[DB_CONV], &convc))) != 0)
    goto done;
  if ((rc = mim__lmdb_large_ids(txn, s, uid_id, &tmp, &gids, &n_gids)) != 0 ||
      (rc = large_convs(txn, s, convc, gids, n_gids, before_msg_id, &tmp,
                        &large, &n_large)) != 0)
    goto done;
  /* backwards from the first key at or after (uid, before) */
  uint8_t k0[16];
  pair_key(k0, uid_id, before_msg_id == 0 ? UINT64_MAX : before_msg_id);
  MDB_val k = val(k0, sizeof k0), v;
  rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE));
  if (rc == 0)
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_PREV));
  else if (rc == MDB_NOTFOUND)
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_LAST));
  while (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, k0, 8) == 0) {
    uint64_t msg_id = be64_get((const uint8_t *)k.mv_data + 8);
    if (msg_id >= before_msg_id && before_msg_id != 0) {
      rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_PREV));
      continue;
    }
    if (v.mv_size != CONV_LEN) {
      note_corrupt(s, "conversation list", uid_id);
    } else if (!is_large(gids, n_gids, v.mv_data)) {
      uint8_t conv[CONV_LEN];
      memcpy(conv, v.mv_data, CONV_LEN);
      /* the large groups with newer messages come first */
      for (; li < n_large && large[li].msg_id > msg_id && rc == 0; li++) {
        uint8_t g[CONV_LEN];
        conv_group(g, large[li].gid);
        rc = list_add(txn, s, convc, a, uid_id, g, large[li].msg_id, true,
                      limit, preview_max, &cap, out);
      }
      if (rc == 0)
        rc = list_add(txn, s, convc, a, uid_id, conv, msg_id, false, limit,
                      preview_max, &cap, out);
      if (rc != 0)
        break;
    }
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_PREV));
  }
  if (rc == MDB_NOTFOUND)
    rc = 0;
  for (; li < n_large && rc == 0; li++) {
    uint8_t g[CONV_LEN];
    conv_group(g, large[li].gid);
    rc = list_add(txn, s, convc, a, uid_id, g, large[li].msg_id, true, limit,
                  preview_max, &cap, out);
  }
  if (rc == 1)
    rc = 0; /* the page is full */
done:
  if (rc == MDB_NOTFOUND)
    rc = 0;
  if (convc != NULL)
    mdb_cursor_close(convc);
  if (cur != NULL)
    mdb_cursor_close(cur);
  mim__lmdb_read_end(s, txn);
  mim__store_arena_finish(&tmp);
  return map_err(rc);
}

int mim__lmdb_read_by(void *impl, const char *group, uint64_t conv_seq,
                      const char *after, size_t limit, uint64_t *read_count,
                      uint64_t *member_count,
                      void (*fn)(void *user, const char *uid), void *user,
                      bool *has_more) {
  struct lmdb_store *s = impl;
  if (s == NULL || group == NULL || after == NULL || read_count == NULL ||
      member_count == NULL || has_more == NULL)
    return -EINVAL;
  *read_count = 0;
  *member_count = 0;
  *has_more = false;
  struct name_page pg;
  mim__lmdb_name_page_init(&pg);
  MDB_txn *txn = NULL;
  int rc = mim__lmdb_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return mim__lmdb_name_page_end(s, NULL, rc, &pg, NULL, NULL);
  uint64_t gid, from = 0;
  rc = mim__lmdb_group_find(txn, s, group, &gid);
  if (rc == MDB_NOTFOUND) {
    rc = -MIM_ERR_NO_SUCH_GROUP;
    goto done;
  }
  if (rc != 0)
    goto done;
  if (after[0] != '\0') {
    rc = mim__lmdb_id_find(txn, s, ID_USER, after, &from);
    if (rc == MDB_NOTFOUND) {
      rc = 0;
      from = UINT64_MAX; /* an unknown cursor: no page */
    } else if (rc != 0) {
      goto done;
    }
  }
  uint8_t conv[CONV_LEN];
  conv_group(conv, gid);
  MDB_cursor *cur;
  if ((rc = lrc(mdb_cursor_open(txn, s->dbi[DB_MEMBERS], &cur))) != 0)
    goto done;
  uint8_t k0[16];
  pair_key(k0, gid, 0);
  MDB_val k = val(k0, sizeof k0), v;
  rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE));
  while (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, k0, 8) == 0) {
    uint64_t uid = be64_get((const uint8_t *)k.mv_data + 8);
    uint64_t joined = v.mv_size == 8 ? be64_get(v.mv_data) : 0;
    uint64_t read, list_id;
    (*member_count)++;
    if ((rc = uconv_get(txn, s, uid, conv, &read, &list_id)) != 0)
      break;
    /* a member who joined at or after the message never had it */
    if (conv_seq > joined && read >= conv_seq) {
      (*read_count)++;
      if (fn != NULL && (from == 0 || (uid > from && from != UINT64_MAX))) {
        if (pg.n == limit)
          *has_more = true;
        else if ((rc = mim__lmdb_name_page_add(txn, s, &pg, ID_USER, uid,
                                               "user name")) != 0)
          break;
      }
    }
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_NEXT));
  }
  mdb_cursor_close(cur);
done:
  return mim__lmdb_name_page_end(s, txn, rc, &pg, fn, user);
}
