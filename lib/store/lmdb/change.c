/* The LMDB backend's message changes (docs/architecture.md §6.2): recall
 * and edit rewrite the message's one `msgs` record (every timeline, inbox
 * and conversation list holds only its msg_id, so that is every copy);
 * delete-for-me puts one (uid, msg_id) key in `hidden`. Each change also
 * files a change entry (the msg_id with CHANGE_ENTRY set) in the inbox of
 * every participant (delete-for-me: the actor's only), which is how an
 * offline device learns of it on its next pull. */
#include "store/lmdb/lmdb_internal.h"
#include "store/lmdb/ginfo.h"

int mim__lmdb_hidden(MDB_txn *txn, const struct lmdb_store *s, uint64_t uid,
                     uint64_t msg_id, bool *hidden) {
  uint8_t k[16];
  pair_key(k, uid, msg_id);
  MDB_val v;
  int rc = mim__lmdb_get(txn, s->dbi[DB_HIDDEN], k, sizeof k, &v);
  *hidden = rc == 0;
  return rc == MDB_NOTFOUND ? 0 : rc;
}

int mim__lmdb_hides_any(MDB_txn *txn, const struct lmdb_store *s,
                        uint64_t uid, bool *any) {
  MDB_cursor *cur;
  *any = false;
  int rc = lrc(mdb_cursor_open(txn, s->dbi[DB_HIDDEN], &cur));
  if (rc != 0)
    return rc;
  uint8_t k0[8];
  be64_put(k0, uid);
  MDB_val k = val(k0, sizeof k0), v;
  rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE));
  mdb_cursor_close(cur);
  if (rc == 0)
    *any = k.mv_size == 16 && memcmp(k.mv_data, k0, 8) == 0;
  return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Files change entry `entry` (msg_id | flags) in the inboxes of the members
 * of group `gid` who can see the message (joined before `conv_seq`). */
static int fanout_change(struct wtx *w, uint64_t gid, uint64_t conv_seq,
                         uint64_t entry, struct mim_op_outcome *o) {
  struct lmdb_store *s = w->s;
  size_t n = 0;
  int rc = mim__lmdb_member_ids(w, gid, conv_seq, &n);
  if (rc != 0)
    return rc;
  if ((rc = reserve((void **)&s->rcpt, &s->rcpt_cap, n, sizeof(*s->rcpt))) != 0)
    return rc;
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    struct mim_recipient *r = &s->rcpt[kept];
    if ((rc = mim__lmdb_inbox_append(w, s->idv[i], entry, &r->inbox_seq)) != 0)
      return rc;
    rc = mim__lmdb_id_name(w->txn, s, ID_USER, s->idv[i], &s->scratch, &r->uid);
    if (rc == MDB_CORRUPTED) {
      note_corrupt(s, "user name", s->idv[i]); /* a pull still finds it */
      continue;
    }
    if (rc != 0)
      return rc;
    kept++;
  }
  o->recipients = s->rcpt;
  o->n_recipients = kept;
  return 0;
}

/* Whether `actor` may recall or edit `r` at `now`: sets o->status. */
static int change_allowed(struct wtx *w, const struct mim_write_op *op,
                          const Mimpb__MessageRecord *r, uint64_t gid,
                          struct mim_op_outcome *o) {
  if (op->actor[0] == '\0')
    return 0; /* an operator: any message, no window */
  bool own = strcmp(nz(r->sender), op->actor) == 0;
  int64_t sent = r->server_time, now = op->server_time;
  int64_t window = op->change == MIM_CHANGE_RECALL ? op->recall_window_ms
                                                   : op->edit_window_ms;
  bool in_window = window > 0 && now - sent <= window;
  if (own && in_window)
    return 0;
  if (op->change == MIM_CHANGE_RECALL && r->conv_kind == MIM_CONV_GROUP) {
    struct ginfo gi;
    int rc = mim__ginfo_load(w->txn, w->s, gid, &w->s->scratch, &gi);
    if (rc != 0)
      return rc;
    /* the actor's membership was checked by the caller; the sender may
     * have left since (role NONE: a former member's message). A group
     * notice's sender "" is the server's: no row lets a member recall it */
    uint64_t sid;
    bool sender_member = false;
    uint8_t mk[16];
    MDB_val mv;
    if (nz(r->sender)[0] != '\0' &&
        mim__lmdb_id_find(w->txn, w->s, ID_USER, r->sender, &sid) == 0) {
      pair_key(mk, gid, sid);
      sender_member =
          mim__lmdb_get(w->txn, w->s->dbi[DB_MEMBERS], mk, sizeof mk, &mv) == 0;
    }
    enum mim_group_role actor = mim__ginfo_role(&gi, op->actor, true);
    /* an owner's or admin's own message counts as a member's: they recall
     * it at any time too */
    enum mim_group_role target =
        own ? MIM_ROLE_MEMBER
            : mim__ginfo_role(&gi, nz(r->sender), sender_member);
    if (mim_group_rule_check(actor, MIM_GA_RECALL, target) == 0)
      return 0;
  }
  o->status = own ? -MIM_ERR_WINDOW_PASSED : -MIM_ERR_FORBIDDEN;
  return 0;
}

int mim__lmdb_op_change(struct wtx *w, const struct mim_write_op *op,
                        struct mim_op_outcome *o) {
  struct lmdb_store *s = w->s;
  Mimpb__MessageRecord *r;
  uint8_t mk[8];
  be64_put(mk, op->msg_id);
  MDB_val mv;
  int rc = op->msg_id <= w->last_msg_id
               ? mim__lmdb_get(w->txn, s->dbi[DB_MSGS], mk, sizeof mk, &mv)
               : MDB_NOTFOUND;
  if (rc == MDB_NOTFOUND) {
    o->status = -MIM_ERR_NOT_FOUND;
    return 0;
  }
  if (rc != 0)
    return rc;
  if ((rc = mim__lmdb_record_unpack(&mv, &s->scratch, &r)) != 0) {
    note_corrupt(s, "message", op->msg_id);
    o->status = -MIM_ERR_NOT_FOUND;
    return 0;
  }

  /* Where the message lies, and whether the actor can see it there: every
   * refusal of this kind is the same NOT_FOUND, so nobody probes the ids of
   * conversations they are not in. */
  bool is_op = op->actor[0] == '\0';
  uint64_t actor_id = 0, gid = 0, sender_id = 0, peer_id = 0;
  bool seen = true;
  if (!is_op) {
    rc = mim__lmdb_id_find(w->txn, s, ID_USER, op->actor, &actor_id);
    if (rc == MDB_NOTFOUND)
      seen = false;
    else if (rc != 0)
      return rc;
  }
  switch (r->conv_kind) {
  case MIM_CONV_C2C: {
    const char *snd = nz(r->sender), *pr = nz(r->peer);
    rc = mim__lmdb_id_find(w->txn, s, ID_USER, snd, &sender_id);
    if (rc == 0)
      rc = mim__lmdb_id_find(w->txn, s, ID_USER, pr, &peer_id);
    if (rc == MDB_NOTFOUND) {
      /* a record naming users the store does not know: refuse this op
       * alone, never the batch */
      note_corrupt(s, "message", op->msg_id);
      seen = false;
      break;
    }
    if (rc != 0)
      return rc;
    if (!is_op)
      seen = seen && op->group[0] == '\0' &&
             ((strcmp(op->actor, snd) == 0 && strcmp(op->peer, pr) == 0) ||
              (strcmp(op->actor, pr) == 0 && strcmp(op->peer, snd) == 0));
    break;
  }
  case MIM_CONV_GROUP:
    rc = mim__lmdb_group_find(w->txn, s, nz(r->group), &gid);
    if (rc == MDB_NOTFOUND) {
      seen = false; /* dissolved: nobody to tell, nothing to change */
      break;
    }
    if (rc != 0)
      return rc;
    if (!is_op && seen) {
      uint8_t k[16];
      MDB_val v;
      pair_key(k, gid, actor_id);
      rc = mim__lmdb_get(w->txn, s->dbi[DB_MEMBERS], k, sizeof k, &v);
      if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
      uint64_t joined = rc == 0 && v.mv_size == 8 ? be64_get(v.mv_data) : 0;
      seen = rc == 0 && joined < r->conv_seq &&
             strcmp(op->group, nz(r->group)) == 0;
    }
    break;
  default: /* server pushes belong to no conversation */
    seen = false;
    break;
  }
  if (!seen) {
    o->status = -MIM_ERR_NOT_FOUND;
    return 0;
  }

  o->msg_id = op->msg_id;
  o->conv_seq = r->conv_seq;
  o->server_time = op->server_time;
  o->change_sender = nz(r->sender);
  o->change_peer = nz(r->peer);
  o->change_group = nz(r->group);

  if (op->change == MIM_CHANGE_DELETE_FOR_ME) {
    bool hidden;
    if ((rc = mim__lmdb_hidden(w->txn, s, actor_id, op->msg_id, &hidden)) != 0)
      return rc;
    o->status = 0;
    if (hidden)
      return 0; /* done before: no second entry */
    uint8_t hk[16];
    pair_key(hk, actor_id, op->msg_id);
    MDB_val empty = val("", 0);
    if ((rc = mim__lmdb_put(w, DB_HIDDEN, hk, sizeof hk, &empty, 0)) != 0)
      return rc;
    if ((rc = reserve((void **)&s->rcpt, &s->rcpt_cap, 1, sizeof(*s->rcpt))) != 0)
      return rc;
    s->rcpt[0].uid = op->actor;
    rc = mim__lmdb_inbox_append(w, actor_id,
                                op->msg_id | CHANGE_ENTRY | CHANGE_DELETED,
                                &s->rcpt[0].inbox_seq);
    o->recipients = s->rcpt;
    o->n_recipients = 1;
    return rc;
  }

  if (r->has_state && r->state == MIM_MSG_STATE_RECALLED) {
    /* recalling again changes nothing; editing a tombstone is refused */
    o->status = op->change == MIM_CHANGE_RECALL ? 0 : -MIM_ERR_FORBIDDEN;
    return 0;
  }
  if (op->change == MIM_CHANGE_EDIT && !is_op &&
      strcmp(nz(r->sender), op->actor) != 0) {
    o->status = -MIM_ERR_FORBIDDEN;
    return 0;
  }
  o->status = 0;
  if ((rc = change_allowed(w, op, r, gid, o)) != 0 || o->status != 0)
    return rc;

  /* The rewrite: a recall drops content and payload from the record
   * (LMDB writes the new value to a fresh page; the old page is freed and
   * reused by later commits, docs/security.md). */
  r->has_state = true;
  r->has_change_time = true;
  r->change_time = op->server_time;
  if (op->change == MIM_CHANGE_RECALL) {
    r->state = MIM_MSG_STATE_RECALLED;
    r->has_content = false;
    r->content.len = 0;
    r->content.data = NULL;
    r->has_payload = false;
    r->payload.len = 0;
    r->payload.data = NULL;
  } else {
    r->state = MIM_MSG_STATE_EDITED;
    r->has_content = op->content_len > 0;
    r->content.len = op->content_len;
    r->content.data = (uint8_t *)op->content;
  }
  MDB_val nv = {mimpb__message_record__get_packed_size(r), NULL};
  if ((rc = mim__lmdb_put(w, DB_MSGS, mk, sizeof mk, &nv, MDB_RESERVE)) != 0)
    return rc;
  mimpb__message_record__pack(r, nv.mv_data);

  uint64_t entry = op->msg_id | CHANGE_ENTRY;
  if (r->conv_kind == MIM_CONV_GROUP) {
    /* a large group's members read its timeline, where the record now
     * shows the change: no entry per member (it would cost as many writes
     * as members, each edit of one's own message again) */
    if ((rc = mim__ginfo_large(w->txn, s, gid, &o->large)) != 0)
      return rc;
    return o->large ? 0 : fanout_change(w, gid, r->conv_seq, entry, o);
  }
  if ((rc = reserve((void **)&s->rcpt, &s->rcpt_cap, 2, sizeof(*s->rcpt))) != 0)
    return rc;
  s->rcpt[0].uid = o->change_peer;
  if ((rc = mim__lmdb_inbox_append(w, peer_id, entry, &s->rcpt[0].inbox_seq)) != 0)
    return rc;
  o->n_recipients = 1;
  if (sender_id != peer_id) {
    s->rcpt[1].uid = o->change_sender;
    rc = mim__lmdb_inbox_append(w, sender_id, entry, &s->rcpt[1].inbox_seq);
    o->n_recipients = 2;
  }
  o->recipients = s->rcpt;
  return rc;
}
