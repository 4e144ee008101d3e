/* The LMDB backend's writer: the ops of a write batch applied in one
 * transaction (messages and their fan-out, cursors, groups), and the split
 * of a batch LMDB refuses as too large (MDB_TXN_FULL). */
#include "store/lmdb/lmdb_internal.h"
#include "store/lmdb/ginfo.h"

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

int mim__lmdb_put(struct wtx *w, enum db db, const void *k, size_t kl,
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
  return mim__lmdb_put(w, db, k, kl, &v, 0);
}

int mim__lmdb_del(struct wtx *w, enum db db, const void *k, size_t kl) {
  int rc = injected(w);
  if (rc != 0)
    return rc;
  MDB_val key = val(k, kl);
  return lrc(mdb_del(w->txn, w->s->dbi[db], &key, NULL));
}

/* mim__lmdb_id_find() for the writer, through its cache. */
static int wtx_id_find(struct wtx *w, enum id_kind kind, const char *name,
                       uint64_t *id) {
  if (mim__store_cache_id_get(w->s->cache, kind, name, id))
    return 0;
  int rc = mim__lmdb_id_find(w->txn, w->s, kind, name, id);
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
  rc = mim__lmdb_put(w, DB_IDS, k, id_key(k, kind, name), &v, MDB_NOOVERWRITE);
  if (rc != 0)
    return rc;
  uint8_t rk[9];
  rk[0] = (uint8_t)(kind - 'a' + 'A');
  be64_put(rk + 1, fresh);
  MDB_val n = val(name, strlen(name));
  rc = mim__lmdb_put(w, DB_IDS, rk, sizeof rk, &n, MDB_NOOVERWRITE);
  if (rc != 0)
    return rc;
  w->last_id = fresh;
  *id = fresh;
  mim__store_cache_id_set(w->s->cache, kind, name, fresh);
  return 0;
}

/* Appends `msg_id` to the inbox of `uid`; its seq in *seq. */
int mim__lmdb_inbox_append(struct wtx *w, uint64_t uid, uint64_t msg_id,
                           uint64_t *seq) {
  uint8_t k[16];
  uint64_t last;
  be64_put(k, uid);
  int rc = mim__lmdb_wtx_tail_seq(w, TAIL_INBOX, k, 8, &last);
  if (rc != 0)
    return rc;
  be64_put(k + 8, last + 1);
  uint8_t v8[8];
  be64_put(v8, msg_id);
  MDB_val v = val(v8, sizeof v8);
  rc = mim__lmdb_put(w, DB_INBOX, k, sizeof k, &v, 0);
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
  int rc = mim__lmdb_put(w, DB_CONV, k, sizeof k, &v, 0);
  if (rc == 0)
    mim__store_cache_tail_set(w->s->cache, TAIL_CONV, conv, CONV_LEN, conv_seq);
  return rc;
}

static int conv_last(struct wtx *w, const uint8_t conv[CONV_LEN],
                     uint64_t *seq) {
  return mim__lmdb_wtx_tail_seq(w, TAIL_CONV, conv, CONV_LEN, seq);
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

int mim__lmdb_member_ids(struct wtx *w, uint64_t gid, uint64_t joined_before,
                         size_t *n) {
  struct lmdb_store *s = w->s;
  *n = 0;
  MDB_cursor *cur;
  int rc = lrc(mdb_cursor_open(w->txn, s->dbi[DB_MEMBERS], &cur));
  if (rc != 0)
    return rc;
  uint8_t k0[16];
  pair_key(k0, gid, 0);
  MDB_val k = val(k0, sizeof k0), v;
  rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE));
  while (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, k0, 8) == 0) {
    uint64_t joined = v.mv_size == 8 ? be64_get(v.mv_data) : 0;
    if (joined < joined_before) {
      rc = reserve((void **)&s->idv, &s->idv_cap, *n + 1, sizeof(*s->idv));
      if (rc != 0)
        break;
      s->idv[(*n)++] = be64_get((const uint8_t *)k.mv_data + 8);
    }
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_NEXT));
  }
  mdb_cursor_close(cur);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Fans message `msg_id` out to the members of group `gid`. */
static int fanout_group(struct wtx *w, uint64_t gid, uint64_t msg_id,
                        uint64_t sender_id, const char *sender,
                        const uint8_t conv[CONV_LEN], uint64_t conv_seq,
                        struct mim_op_outcome *o) {
  struct lmdb_store *s = w->s;
  size_t n = 0;
  int rc = mim__lmdb_member_ids(w, gid, UINT64_MAX, &n);
  if (rc != 0)
    return rc;
  rc = reserve((void **)&s->rcpt, &s->rcpt_cap, n, sizeof(*s->rcpt));
  if (rc != 0)
    return rc;
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    struct mim_recipient *r = &s->rcpt[kept];
    rc = mim__lmdb_inbox_append(w, s->idv[i], msg_id, &r->inbox_seq);
    if (rc != 0)
      return rc;
    /* the member's conversation list; the sender has read what it sent */
    bool is_sender = s->idv[i] == sender_id && sender[0] != '\0';
    rc = mim__lmdb_conv_touch(w, s->idv[i], conv, msg_id,
                              is_sender ? conv_seq : 0);
    if (rc != 0)
      return rc;
    if (is_sender) {
      r->uid = sender;
      o->sender_inbox_seq = r->inbox_seq;
    } else {
      rc = mim__lmdb_id_name(w->txn, s, ID_USER, s->idv[i], &s->scratch, &r->uid);
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
    rc = mim__lmdb_inbox_append(w, ids[i].id, msg_id, &r->inbox_seq);
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
    rc = mim__lmdb_dedup_check(w, m, sender_id, o);
    if (rc != 0)
      return rc < 0 ? rc : 0;
  }
  if (w->last_msg_id >= MIM_MSG_ID_MAX) {
    o->status = -MIM_ERR_STORE_FULL;
    return 0;
  }

  uint8_t conv[CONV_LEN];
  uint64_t conv_seq = 0, gid = 0, peer_id = 0;
  struct ginfo gi = {0};
  switch (m->conv_kind) {
  case MIM_CONV_C2C:
    if ((rc = id_assign(w, ID_USER, m->sender, &sender_id)) != 0 ||
        (rc = id_assign(w, ID_USER, m->peer, &peer_id)) != 0)
      return rc;
    conv_c2c(conv, sender_id, peer_id);
    break;
  case MIM_CONV_GROUP:
    rc = mim__lmdb_group_find(w->txn, s, m->group, &gid);
    if (rc == MDB_NOTFOUND) {
      o->status = -MIM_ERR_NO_SUCH_GROUP;
      return 0;
    }
    if (rc != 0)
      return rc;
    if ((rc = mim__ginfo_load(w->txn, s, gid, &s->scratch, &gi)) != 0)
      return rc;
    if (m->sender[0] != '\0') {
      uint8_t mk[16];
      MDB_val mv;
      pair_key(mk, gid, sender_id);
      rc = sender_known ? mim__lmdb_get(w->txn, s->dbi[DB_MEMBERS], mk, sizeof mk, &mv)
                        : MDB_NOTFOUND;
      if (rc == MDB_NOTFOUND) {
        o->status = -MIM_ERR_NOT_MEMBER;
        return 0;
      }
      if (rc != 0)
        return rc;
      /* mutes: checked here, in the transaction, for every path */
      if (gi.present &&
          mim__ginfo_muted(&gi, m->sender,
                           mim__ginfo_role(&gi, m->sender, true),
                           m->server_time)) {
        o->status = -MIM_ERR_MUTED;
        return 0;
      }
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
  if ((rc = mim__lmdb_record_put(w, msg_id, m, conv_seq)) != 0)
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
    if ((rc = mim__lmdb_inbox_append(w, peer_id, msg_id, &s->rcpt[0].inbox_seq)) != 0)
      return rc;
    o->n_recipients = 1;
    if (peer_id != sender_id) {
      s->rcpt[1].uid = m->sender;
      rc = mim__lmdb_inbox_append(w, sender_id, msg_id, &s->rcpt[1].inbox_seq);
      if (rc != 0)
        return rc;
      o->n_recipients = 2;
    }
    o->recipients = s->rcpt;
    o->sender_inbox_seq = s->rcpt[o->n_recipients - 1].inbox_seq;
    /* both users' conversation lists; the sender has read what it sent */
    if (peer_id != sender_id &&
        (rc = mim__lmdb_conv_touch(w, peer_id, conv, msg_id, 0)) != 0)
      return rc;
    rc = mim__lmdb_conv_touch(w, sender_id, conv, msg_id, conv_seq);
    break;
  case MIM_CONV_GROUP:
    o->large = gi.large;
    /* a large group's message is in its timeline only; the sender has
     * read what it sent */
    if (gi.large)
      rc = sender_id != 0
               ? mim__lmdb_conv_touch(w, sender_id, conv, msg_id, conv_seq)
               : 0;
    else
      rc = fanout_group(w, gid, msg_id, sender_id, m->sender, conv, conv_seq,
                        o);
    break;
  default:
    rc = fanout_push(w, m, msg_id, o);
    break;
  }
  if (rc != 0)
    return rc;
  if (has_cmid)
    rc = mim__lmdb_dedup_put(w, m, sender_id, msg_id, o->sender_inbox_seq);
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
      rc = mim__lmdb_del(w, DB_CURSORS, e[i].key, sizeof e[i].key);
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
  rc = mim__lmdb_get(w->txn, w->s->dbi[DB_CURSORS], k, sizeof k, &old);
  if (rc == MDB_NOTFOUND) {
    /* a device new to this user (cursors only move forward) */
    if (op->seq == 0)
      goto done;
    if ((rc = cursor_make_room(w, uid)) != 0)
      return rc;
  } else if (rc != 0) {
    return rc;
  }
  rc = mim__lmdb_get_u64(w->txn, w->s->dbi[DB_CURSORS], k, sizeof k, &cur);
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

/* last_seen of a user (docs/protocol.md §21): one small record, replaced
 * by a later time only (two logicds never share a store, but a batch may
 * carry two of the same user). */
static int op_last_seen(struct wtx *w, const struct mim_write_op *op,
                        struct mim_op_outcome *o) {
  uint64_t uid, old = 0;
  int rc = id_assign(w, ID_USER, op->uid, &uid);
  if (rc != 0)
    return rc;
  uint8_t k[8];
  be64_put(k, uid);
  rc = mim__lmdb_get_u64(w->txn, w->s->dbi[DB_LASTSEEN], k, sizeof k, &old);
  if (rc != 0 && rc != MDB_NOTFOUND && rc != MDB_CORRUPTED)
    return rc; /* a corrupt record is only a hint: overwritten */
  if (rc != 0)
    old = 0;
  if (op->seq > old && (rc = put_u64(w, DB_LASTSEEN, k, sizeof k, op->seq)))
    return rc;
  o->status = 0;
  return 0;
}

/* The `groups` record holds the creation time (ms) and, since it is kept
 * there, the member count: an add then costs what it names, not what the
 * group holds (an add to a group of 100,000 walked 100,000 keys). A record
 * of a store made before it has none: the members are counted once
 * (mim__lmdb_group_members) and the record gets it with the op's change. */
static int group_count_put(struct wtx *w, uint64_t gid, uint64_t created,
                           uint64_t count) {
  uint8_t k[8], b[16];
  be64_put(k, gid);
  be64_put(b, created);
  be64_put(b + 8, count);
  MDB_val v = val(b, sizeof b);
  return mim__lmdb_put(w, DB_GROUPS, k, sizeof k, &v, 0);
}

/* Whether adding op's members to group `gid` (0: a group being created)
 * with `count` members would take it past group_members_max: those named
 * and not yet in it are added to the count; a uid named twice in one
 * request counts twice, which can only refuse early, never let the group
 * grow past the limit. Runs before the op writes anything, so a refused op
 * leaves no trace. */
static int group_would_overflow(struct wtx *w, const struct mim_write_op *op,
                                uint64_t gid, uint64_t count, bool *full) {
  struct lmdb_store *s = w->s;
  uint64_t max = s->group_members_max;
  *full = false;
  if (op->n_members > max) {
    *full = true;
    return 0;
  }
  int rc = 0;
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
        rc = mim__lmdb_get(w->txn, s->dbi[DB_MEMBERS], k, sizeof k, &v);
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

/* The SYSTEM message that tells the group what changed
 * (mim_group_notice_format): stored once, in the group's conversation,
 * and appended to the inbox of every member after the change and of every
 * member just removed, in the transaction of the change itself. In a
 * `large` group only the members an add or remove names get it in their
 * inbox; the others follow the timeline. */
static int group_notice(struct wtx *w, const struct mim_write_op *op,
                        uint64_t gid, const uint8_t conv[CONV_LEN],
                        bool large, struct mim_op_outcome *o) {
  struct lmdb_store *s = w->s;
  if (w->last_msg_id >= MIM_MSG_ID_MAX) {
    /* the change stands (it was decided); only its notice is lost */
    mim__log_to(&s->log, MIM_LOG_WARN, "store: msg ids exhausted: group "
                "change stored without its notice");
    return 0;
  }
  char *content = mim__store_arena_alloc(&s->scratch, MIM_GROUP_NOTICE_MAX);
  if (content == NULL)
    return -ENOMEM;
  size_t clen;
  int rc = op->kind == MIM_OP_GROUP_MANAGE
               ? mim_group_manage_notice_format(
                     content, MIM_GROUP_NOTICE_MAX, &clen, op->group,
                     op->actor, op->action, o->members, o->n_members,
                     op->until, op->name)
               : mim_group_notice_format(content, MIM_GROUP_NOTICE_MAX,
                                         &clen, op->kind, op->group,
                                         op->actor, o->members, o->n_members);
  if (rc != 0)
    return rc;
  struct mim_message_in m = {
      .type = MIM_MSG_SYSTEM,
      .conv_kind = MIM_CONV_GROUP,
      .sender = "",
      .sender_device = "",
      .peer = "",
      .group = op->group,
      .client_msg_id = "",
      .content = (const uint8_t *)content,
      .content_len = clen,
      .server_time = op->server_time,
  };
  uint64_t conv_seq;
  if ((rc = conv_last(w, conv, &conv_seq)) != 0)
    return rc;
  conv_seq++;
  uint64_t msg_id = ++w->last_msg_id;
  if ((rc = mim__lmdb_record_put(w, msg_id, &m, conv_seq)) != 0 ||
      (rc = conv_append(w, conv, conv_seq, msg_id)) != 0)
    return rc;
  o->msg_id = msg_id;
  o->server_time = op->server_time;
  o->conv_seq = conv_seq;
  /* the members after the change; the actor has read its own change (as
   * a sender its message), so the notice is not unread for them */
  uint64_t actor_id = 0;
  const char *actor = "";
  if (op->actor[0] != '\0') {
    rc = wtx_id_find(w, ID_USER, op->actor, &actor_id);
    if (rc == 0)
      actor = op->actor;
    else if (rc != MDB_NOTFOUND)
      return rc;
  }
  o->large = large;
  if (large) {
    /* in the timeline only, but for those it names, who may not follow
     * the group yet (added) or no longer may (removed) */
    o->n_recipients = 0;
    if (actor_id != 0 &&
        (rc = mim__lmdb_conv_touch(w, actor_id, conv, msg_id, conv_seq)) != 0)
      return rc;
    if (op->kind == MIM_OP_GROUP_MANAGE)
      return 0;
  } else {
    if ((rc = fanout_group(w, gid, msg_id, actor_id, actor, conv, conv_seq,
                           o)) != 0)
      return rc;
    if (op->kind != MIM_OP_GROUP_REMOVE)
      return 0;
  }
  /* and those removed: they learn that they are out (in a large group
   * also those added: they learn that they are in) */
  size_t kept = o->n_recipients;
  rc = reserve((void **)&s->rcpt, &s->rcpt_cap, kept + o->n_members,
               sizeof(*s->rcpt));
  if (rc != 0)
    return rc;
  for (size_t i = 0; i < o->n_members; i++) {
    uint64_t uid;
    if ((rc = wtx_id_find(w, ID_USER, o->members[i], &uid)) != 0)
      return rc; /* they were members a moment ago: they have an id */
    struct mim_recipient *r = &s->rcpt[kept++];
    r->uid = o->members[i];
    if ((rc = mim__lmdb_inbox_append(w, uid, msg_id, &r->inbox_seq)) != 0)
      return rc;
    /* A large group is listed from the user's large groups, not from list
     * entries per message: one removed would drop out of their
     * conversation list, where a group one left stays (§18 of
     * docs/protocol.md). Its notice becomes their entry. */
    if (large && op->kind == MIM_OP_GROUP_REMOVE &&
        (rc = mim__lmdb_conv_touch(w, uid, conv, msg_id, 0)) != 0)
      return rc;
  }
  o->recipients = s->rcpt;
  o->n_recipients = kept;
  return 0;
}

/* Whether user `uid` is a member of group `gid`. */
static int is_member(struct wtx *w, uint64_t gid, const char *uid,
                     bool *member) {
  uint64_t id;
  *member = false;
  int rc = wtx_id_find(w, ID_USER, uid, &id);
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc != 0)
    return rc;
  uint8_t k[16];
  MDB_val v;
  pair_key(k, gid, id);
  rc = mim__lmdb_get(w->txn, w->s->dbi[DB_MEMBERS], k, sizeof k, &v);
  if (rc == MDB_NOTFOUND)
    return 0;
  *member = rc == 0;
  return rc;
}

/* The role of `uid` ("" = operator) in group `gid` with record `gi`. */
static int role_of(struct wtx *w, uint64_t gid, const struct ginfo *gi,
                   const char *uid, enum mim_group_role *role) {
  bool member = false;
  int rc = uid[0] != '\0' ? is_member(w, gid, uid, &member) : 0;
  if (rc == 0)
    *role = mim__ginfo_role(gi, uid, member);
  return rc;
}

/* The rules table (mim_group_rule_check) applied to an add or remove of
 * an existing group, before anything is written. Sets o->status when it
 * refuses. A group older than roles (no record) keeps its old rules:
 * every member may add. */
static int group_change_allowed(struct wtx *w, const struct mim_write_op *op,
                                uint64_t gid, struct ginfo *gi,
                                struct mim_op_outcome *o) {
  enum mim_group_role actor;
  int rc = role_of(w, gid, gi, op->actor, &actor);
  if (rc != 0)
    return rc;
  if (op->kind == MIM_OP_GROUP_ADD) {
    if (gi->legacy && actor == MIM_ROLE_MEMBER)
      return 0;
    o->status = mim_group_rule_check(actor, MIM_GA_ADD, MIM_ROLE_NONE);
    return 0;
  }
  for (size_t i = 0; i < op->n_members && o->status == 0; i++) {
    bool self = strcmp(op->members[i], op->actor) == 0;
    enum mim_group_role target;
    if ((rc = role_of(w, gid, gi, op->members[i], &target)) != 0)
      return rc;
    if (target == MIM_ROLE_NONE && !self)
      continue; /* not a member: nothing to remove */
    o->status = self ? mim_group_rule_check(actor, MIM_GA_LEAVE, actor)
                     : mim_group_rule_check(actor, MIM_GA_REMOVE, target);
  }
  return 0;
}

/* Adds (or with `del` removes) (uid, gid) to the index of the users'
 * large groups. */
static int ularge_set(struct wtx *w, uint64_t uid, uint64_t gid, bool del) {
  uint8_t uk[16];
  pair_key(uk, uid, gid);
  if (del) {
    int rc = mim__lmdb_del(w, DB_ULARGE, uk, sizeof uk);
    return rc == MDB_NOTFOUND ? 0 : rc;
  }
  MDB_val empty = val("", 0);
  return mim__lmdb_put(w, DB_ULARGE, uk, sizeof uk, &empty, 0);
}

/* Switches group `gid` (record `gi`, `count` members) to read diffusion
 * when it has group_large_min members or more: the flag in its record and
 * every member's `ularge` entry, in the transaction of the add that made it
 * this large. Once: a large group never switches back. */
static int maybe_go_large(struct wtx *w, uint64_t gid, struct ginfo *gi,
                          uint64_t count, struct mim_op_outcome *o) {
  struct lmdb_store *s = w->s;
  if (s->group_large_min == 0 || count < s->group_large_min)
    return 0;
  size_t n = 0;
  int rc = mim__lmdb_member_ids(w, gid, UINT64_MAX, &n);
  if (rc != 0)
    return rc;
  gi->large = true;
  if ((rc = mim__ginfo_save(w, gid, gi)) != 0)
    return rc;
  for (size_t i = 0; i < n; i++)
    if ((rc = ularge_set(w, s->idv[i], gid, false)) != 0)
      return rc;
  o->became_large = true;
  return 0;
}

static int op_group(struct wtx *w, const struct mim_write_op *op,
                    struct mim_op_outcome *o) {
  struct lmdb_store *s = w->s;
  uint64_t gid;
  int rc = mim__lmdb_group_find(w->txn, s, op->group, &gid);
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
  struct ginfo gi = {0};
  if (op->kind != MIM_OP_GROUP_CREATE) {
    if ((rc = mim__ginfo_load(w->txn, s, gid, &s->scratch, &gi)) != 0)
      return rc;
    if ((rc = group_change_allowed(w, op, gid, &gi, o)) != 0)
      return rc;
    if (o->status != 0)
      return 0; /* refused before any write */
  }
  uint64_t created = (uint64_t)op->server_time, count = 0;
  if (op->kind != MIM_OP_GROUP_CREATE &&
      (rc = mim__lmdb_group_members(w->txn, s, gid, &created, &count)) != 0)
    return rc;
  if (op->kind != MIM_OP_GROUP_REMOVE && s->group_members_max != 0) {
    bool full;
    rc = group_would_overflow(w, op, op->kind == MIM_OP_GROUP_CREATE ? 0 : gid,
                              count, &full);
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
    if ((rc = group_count_put(w, gid, created, 0)) != 0)
      return rc;
    /* the creator owns it; an operator's group: its first member */
    if ((rc = mim__ginfo_load(w->txn, s, gid, &s->scratch, &gi)) != 0)
      return rc;
    gi.present = true;
    gi.owner = op->actor[0] != '\0' ? op->actor
               : op->n_members > 0   ? op->members[0]
                                     : "";
    gi.name = gi.metadata = "";
    gi.n_admins = gi.n_muted = 0;
    gi.muted_all = gi.legacy = false;
    if ((rc = mim__ginfo_save(w, gid, &gi)) != 0)
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
      rc = mim__lmdb_del(w, DB_MEMBERS, k, sizeof k);
    } else {
      if ((rc = id_assign(w, ID_USER, op->members[i], &uid)) != 0)
        return rc;
      pair_key(k, gid, uid);
      uint8_t v8[8];
      be64_put(v8, joined);
      MDB_val v = val(v8, sizeof v8);
      rc = mim__lmdb_put(w, DB_MEMBERS, k, sizeof k, &v, MDB_NOOVERWRITE);
    }
    /* already a member / not a member: not an error, just not reported */
    if (rc == MDB_KEYEXIST || rc == MDB_NOTFOUND)
      continue;
    if (rc != 0)
      return rc;
    /* the index of the user's groups follows the membership */
    uint8_t uk[16];
    pair_key(uk, uid, gid);
    if (op->kind == MIM_OP_GROUP_REMOVE) {
      rc = mim__lmdb_del(w, DB_UGROUPS, uk, sizeof uk);
      if (rc == MDB_NOTFOUND)
        rc = 0; /* an index entry lost to corruption: nothing to undo */
    } else {
      MDB_val empty = val("", 0);
      rc = mim__lmdb_put(w, DB_UGROUPS, uk, sizeof uk, &empty, 0);
    }
    if (rc == 0 && gi.large)
      rc = ularge_set(w, uid, gid, op->kind == MIM_OP_GROUP_REMOVE);
    if (rc != 0)
      return rc;
    s->names[n++] = op->members[i];
  }
  if (op->kind == MIM_OP_GROUP_REMOVE && gi.present) {
    /* who left keeps no role and no mute */
    for (size_t i = 0; i < n; i++)
      mim__ginfo_forget(&gi, s->names[i]);
    if ((rc = mim__ginfo_save(w, gid, &gi)) != 0)
      return rc;
  }
  if (n > 0) {
    count = op->kind == MIM_OP_GROUP_REMOVE ? (count > n ? count - n : 0)
                                            : count + n;
    if ((rc = group_count_put(w, gid, created, count)) != 0)
      return rc;
  }
  if (n > 0 && op->kind != MIM_OP_GROUP_REMOVE && !gi.large &&
      (rc = maybe_go_large(w, gid, &gi, count, o)) != 0)
    return rc;
  o->status = 0;
  o->large = gi.large;
  o->members = s->names;
  o->n_members = n;
  if (n == 0 || !op->notice)
    return 0; /* nothing changed (or no notice asked for) */
  return group_notice(w, op, gid, conv, gi.large, o);
}

/* DISSOLVE: the notice reaches every member, then every membership, the
 * group's role record and the group itself are deleted (its id stays
 * taken: ids are never reused). */
static int group_dissolve(struct wtx *w, const struct mim_write_op *op,
                          uint64_t gid, const uint8_t conv[CONV_LEN],
                          struct mim_op_outcome *o) {
  struct lmdb_store *s = w->s;
  size_t n = 0, cap = 0;
  uint64_t *ids = NULL;
  const char **names = NULL;
  MDB_cursor *cur;
  int rc = lrc(mdb_cursor_open(w->txn, s->dbi[DB_MEMBERS], &cur));
  if (rc != 0)
    return rc;
  uint8_t k0[16];
  pair_key(k0, gid, 0);
  MDB_val k = val(k0, sizeof k0), v;
  rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE));
  while (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, k0, 8) == 0) {
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 64;
      uint64_t *ni = mim__store_arena_alloc(&s->scratch, ncap * sizeof *ni);
      const char **nn =
          mim__store_arena_alloc(&s->scratch, ncap * sizeof *nn);
      if (ni == NULL || nn == NULL) {
        rc = -ENOMEM;
        break;
      }
      if (n > 0) {
        memcpy(ni, ids, n * sizeof *ni);
        memcpy(nn, names, n * sizeof *nn);
      }
      ids = ni;
      names = nn;
      cap = ncap;
    }
    ids[n++] = be64_get((const uint8_t *)k.mv_data + 8);
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_NEXT));
  }
  mdb_cursor_close(cur);
  if (rc != 0 && rc != MDB_NOTFOUND)
    return rc;
  for (size_t i = 0; i < n; i++)
    if ((rc = mim__lmdb_id_name(w->txn, s, ID_USER, ids[i], &s->scratch,
                                &names[i])) != 0)
      return rc;
  o->status = 0;
  o->members = names;
  o->n_members = n;
  /* every member's inbox, large group or not: they cannot sync a group
   * that is gone, and this is the group's last write */
  if ((rc = group_notice(w, op, gid, conv, false, o)) != 0)
    return rc;
  for (size_t i = 0; i < n; i++) {
    uint8_t mk[16], uk[16];
    pair_key(mk, gid, ids[i]);
    pair_key(uk, ids[i], gid);
    if ((rc = mim__lmdb_del(w, DB_MEMBERS, mk, sizeof mk)) != 0)
      return rc;
    rc = mim__lmdb_del(w, DB_UGROUPS, uk, sizeof uk);
    if (rc == 0 || rc == MDB_NOTFOUND)
      rc = ularge_set(w, ids[i], gid, true);
    if (rc != 0)
      return rc;
  }
  uint8_t gk[8];
  be64_put(gk, gid);
  rc = mim__lmdb_del(w, DB_GINFO, gk, sizeof gk);
  if (rc != 0 && rc != MDB_NOTFOUND)
    return rc;
  return mim__lmdb_del(w, DB_GROUPS, gk, sizeof gk);
}

/* A role, mute, info or dissolve change (MIM_OP_GROUP_MANAGE): the rules
 * table decides, then the record changes and the notice is stored. */
static int op_manage(struct wtx *w, const struct mim_write_op *op,
                     struct mim_op_outcome *o) {
  struct lmdb_store *s = w->s;
  uint64_t gid;
  int rc = mim__lmdb_group_find(w->txn, s, op->group, &gid);
  if (rc == MDB_NOTFOUND) {
    o->status = -MIM_ERR_NO_SUCH_GROUP;
    return 0;
  }
  if (rc != 0)
    return rc;
  struct ginfo gi;
  if ((rc = mim__ginfo_load(w->txn, s, gid, &s->scratch, &gi)) != 0)
    return rc;
  enum mim_group_role actor, target = MIM_ROLE_NONE;
  if ((rc = role_of(w, gid, &gi, op->actor, &actor)) != 0)
    return rc;
  if (op->target[0] != '\0') {
    if ((rc = role_of(w, gid, &gi, op->target, &target)) != 0)
      return rc;
    if (target == MIM_ROLE_NONE && actor != MIM_ROLE_NONE) {
      o->status = -MIM_ERR_NOT_MEMBER; /* the target is not in the group */
      return 0;
    }
  }
  if ((o->status = mim_group_rule_check(actor, op->action, target)) != 0)
    return 0;
  uint8_t conv[CONV_LEN];
  conv_group(conv, gid);
  if (op->action == MIM_GA_DISSOLVE)
    return group_dissolve(w, op, gid, conv, o);
  ssize_t i;
  switch (op->action) {
  case MIM_GA_TRANSFER: {
    const char *old = gi.owner;
    mim__ginfo_forget(&gi, op->target);
    gi.owner = op->target;
    gi.legacy = false; /* owned now: the table applies in full */
    /* the old owner stays in charge as an admin */
    if (old[0] != '\0' && gi.n_admins < MIM_GROUP_ADMINS_MAX)
      gi.admins[gi.n_admins++] = old;
    break;
  }
  case MIM_GA_PROMOTE:
    if (gi.n_admins >= MIM_GROUP_ADMINS_MAX) {
      o->status = -MIM_ERR_TOO_LARGE;
      return 0;
    }
    gi.admins[gi.n_admins++] = op->target;
    break;
  case MIM_GA_DEMOTE:
    i = mim__ginfo_find(gi.admins, gi.n_admins, op->target);
    if (i >= 0)
      gi.admins[i] = gi.admins[--gi.n_admins];
    break;
  case MIM_GA_MUTE:
    i = mim__ginfo_find(gi.muted, gi.n_muted, op->target);
    if (i < 0) {
      if (gi.n_muted >= MIM_GROUP_MUTED_MAX) {
        o->status = -MIM_ERR_TOO_LARGE;
        return 0;
      }
      i = (ssize_t)gi.n_muted++;
      gi.muted[i] = op->target;
    }
    gi.until[i] = op->until;
    break;
  case MIM_GA_UNMUTE:
    i = mim__ginfo_find(gi.muted, gi.n_muted, op->target);
    if (i >= 0) {
      gi.n_muted--;
      gi.muted[i] = gi.muted[gi.n_muted];
      gi.until[i] = gi.until[gi.n_muted];
    }
    break;
  case MIM_GA_MUTE_ALL:
  case MIM_GA_UNMUTE_ALL:
    gi.muted_all = op->action == MIM_GA_MUTE_ALL;
    break;
  case MIM_GA_SET_INFO:
    if (op->name != NULL)
      gi.name = op->name;
    if (op->metadata != NULL)
      gi.metadata = op->metadata;
    break;
  default:
    return -EINVAL;
  }
  gi.present = true;
  if ((rc = mim__ginfo_save(w, gid, &gi)) != 0)
    return rc;
  o->status = 0;
  o->members = NULL;
  o->n_members = 0;
  if (op->target[0] != '\0') {
    rc = reserve((void **)&s->names, &s->names_cap, 1, sizeof(*s->names));
    if (rc != 0)
      return rc;
    s->names[0] = op->target;
    o->members = s->names;
    o->n_members = 1;
  }
  return group_notice(w, op, gid, conv, gi.large, o);
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
  case MIM_OP_READ:
    rc = mim__lmdb_op_read(w, &op, &o);
    break;
  case MIM_OP_CHANGE:
    clock_see(w, op.server_time);
    rc = mim__lmdb_op_change(w, &op, &o);
    break;
  case MIM_OP_LAST_SEEN:
    rc = op_last_seen(w, &op, &o);
    break;
  case MIM_OP_GROUP_CREATE:
  case MIM_OP_GROUP_ADD:
  case MIM_OP_GROUP_REMOVE:
    clock_see(w, op.server_time);
    rc = op_group(w, &op, &o);
    break;
  case MIM_OP_GROUP_MANAGE:
    clock_see(w, op.server_time);
    rc = op_manage(w, &op, &o);
    break;
  default:
    rc = -EINVAL;
    break;
  }
  if (rc != 0)
    return rc;
  return mim_write_batch_set_outcome(b, i, &o);
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
  int rc = mim__lmdb_txn_begin(s, 0, &w.txn);
  if (rc != 0)
    return rc;
  for (size_t i = from; i < to; i++)
    if ((rc = apply_op(&w, b, i)) != 0)
      goto fail_txn;
  if ((rc = mim__lmdb_dedup_prune(&w, DEDUP_PRUNE_MIN + w.dedup_added)) != 0 ||
      (rc = meta_save(&w)) != 0)
    goto fail_txn;
  mim__lmdb_wtx_close_cursors(&w);
  if (s->inject_armed && s->inject_nth == 0) {
    s->inject_armed = false;
    rc = s->inject_err;
    goto fail_txn;
  }
  rc = lrc(mdb_txn_commit(w.txn)); /* frees the txn, even on failure */
  mim__lmdb_txn_unlock(s);
  if (rc != 0) {
    /* only the real commit's writes and syncs: an error injected in its
     * place (tests) models a transaction that never reached the disk */
    if (rc == -EIO && disk_full(s))
      rc = -ENOSPC;
    else if (fatal_err(rc))
      set_fatal(s, rc);
    /* a failed meta-page write returns its errno (ENOSPC, say) but leaves
     * LMDB's fatal flag set: every later transaction would mim__lmdb_get MDB_PANIC.
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
  mim__lmdb_wtx_close_cursors(&w);
  mdb_txn_abort(w.txn);
  mim__lmdb_txn_unlock(s);
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
    if ((rc = mim__lmdb_grow_map(s)) != 0)
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
      mim__log_to(&s->log, MIM_LOG_ERROR, "store: op %zu alone is too big for one transaction",
                 from);
      fail_ops(b, from, from + 1, -MIM_ERR_TOO_LARGE);
      refused++;
      from++;
    } else if (stored == 0 && refused == 0) {
      return rc;
    } else {
      mim__log_to(&s->log, MIM_LOG_ERROR, "store: %zu of %zu ops not stored: %s", n - from, n,
                 err_text(rc));
      if (rc == MDB_PANIC)
        set_fatal(s, rc);
      fail_ops(b, from, n, map_err(rc));
      break;
    }
  }
  mim__log_to(&s->log, MIM_LOG_WARN, "store: batch of %zu ops split after MDB_TXN_FULL: %zu stored, "
            "%zu too big alone", n, stored, refused);
  return 0;
}

int mim__lmdb_commit(void *impl, struct mim_write_batch *b) {
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
    if ((rc = mim__lmdb_grow_map(s)) != 0)
      break;
  }
  /* Too many dirty pages for one transaction: never fail every write of
   * the batch for it (a retry would fail the same way, forever). */
  if (rc == MDB_TXN_FULL)
    rc = commit_split(s, b, n);
  if (rc != 0) {
    mim__log_to(&s->log, MIM_LOG_ERROR, "store: commit of %zu ops failed: %s", n, err_text(rc));
    if (rc == MDB_PANIC) /* from any call: LMDB says the env is done */
      set_fatal(s, rc);
    rc = map_err(rc);
  }
  /* A failure status also becomes every op's status (batch.c). */
  mim_write_batch_set_status(b, rc);
  pthread_mutex_unlock(&s->write_lock);
  return rc;
}
