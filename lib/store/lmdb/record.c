/* Stored messages: packing a MessageRecord on write and parsing it on
 * read without protobuf-c. */
#include "store/lmdb/lmdb_internal.h"

int mim__lmdb_record_unpack(const MDB_val *v, struct mim__store_arena *a,
                            Mimpb__MessageRecord **out) {
  ProtobufCAllocator alloc = {pb_alloc, pb_free, a};
  *out = mimpb__message_record__unpack(&alloc, v->mv_size, v->mv_data);
  return *out != NULL ? 0 : MDB_CORRUPTED;
}

/* The stored record of `msg_id`, unpacked into `a`. */
int mim__lmdb_record_get(MDB_txn *txn, const struct lmdb_store *s,
                         uint64_t msg_id, struct mim__store_arena *a,
                         Mimpb__MessageRecord **out) {
  uint8_t k[8];
  be64_put(k, msg_id);
  MDB_val v;
  int rc = mim__lmdb_get(txn, s->dbi[DB_MSGS], k, sizeof k, &v);
  if (rc != 0)
    return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
  return mim__lmdb_record_unpack(&v, a, out);
}

/* Stores message `m` as `msg_id`. Empty strings are left out: proto2
 * optional fields read back as absent, which record_view() turns into "". */
int mim__lmdb_record_put(struct wtx *w, uint64_t msg_id,
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
  int rc = mim__lmdb_put(w, DB_MSGS, k, sizeof k, &v, MDB_APPEND | MDB_RESERVE);
  if (rc != 0)
    return rc;
  mimpb__message_record__pack(&r, v.mv_data);
  return 0;
}

/* ---- reading records without protobuf-c ----
 *
 * A read hands records straight to a message list, so it parses the
 * MessageRecord wire format itself, pointing into the LMDB value instead
 * of unpacking into allocated structs first, which would copy every field
 * once more per message of an offline sync (docs/benchmarks.md). Same results as unpack for every
 * record we write (proto2, fields 1-14); unknown fields are skipped, a
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
      case 13: m->state = (uint32_t)x; break;
      case 14: m->change_time = u64_to_i64(x); break;
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

bool mim__lmdb_record_text_ok(const struct mim_message *m,
                              const struct mim__message_strings *str) {
  return mim_utf8_valid(m->content, m->content_len) &&
         slice_ok(str->sender, str->sender_len) &&
         slice_ok(str->sender_device, str->sender_device_len) &&
         slice_ok(str->peer, str->peer_len) &&
         slice_ok(str->group, str->group_len) &&
         slice_ok(str->client_msg_id, str->client_msg_id_len);
}

int mim__lmdb_record_view(const MDB_val *v, struct mim_message *m,
                          struct mim__message_strings *str) {
  return record_parse(v, m, str);
}

int mim__store_record_push(const uint8_t *rec, size_t len, uint64_t msg_id,
                           uint64_t inbox_seq, struct mim_message_list *out) {
  MDB_val v = val(rec, len);
  struct mim_message m = {.msg_id = msg_id, .inbox_seq = inbox_seq};
  struct mim__message_strings str = {"", "", "", "", "", 0, 0, 0, 0, 0};
  int rc = record_parse(&v, &m, &str);
  if (rc == 0 && !mim__lmdb_record_text_ok(&m, &str))
    rc = MDB_CORRUPTED;
  if (rc != 0)
    return map_err(rc);
  return mim__message_list_push_slices(out, &m, &str);
}

