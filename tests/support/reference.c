/* The protobuf-c references the library's fast paths are tested against:
 * packet and RPC encode/decode through protobuf-c's pack and unpack, driven
 * by the codec's field tables (lib/codec/table.h), and the stored record
 * parsed through unpack. Linked only by the unit tests, fuzz targets and
 * the codec benchmark, never shipped in libmim.so: protobuf-c is the
 * oracle here, the library does not run these. */
#include "codec/codec_internal.h"
#include "codec/table.h"
#include "reference.h"
#include "store/lmdb/lmdb_internal.h"
#include "util/internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* protobuf-c's message structs use `char *` and `uint8_t *` so that unpack
 * can fill them; pack only reads, so handing it our const data is safe. */
static void *unconst(const void *p) { return (void *)(uintptr_t)p; }

/* protobuf-c reports a failed allocation and a malformed body alike (NULL),
 * so the allocator notes which one happened. It is plain malloc/free, which
 * lets protobuf_c_message_free_unpacked() use the default allocator later. */
static void *pb_alloc_noted(void *data, size_t size) {
  void *p = malloc(size != 0 ? size : 1);

  if (p == NULL)
    *(bool *)data = true;
  return p;
}

static void pb_free_plain(void *data, void *p) {
  (void)data;
  free(p);
}

static void free_unpacked(void *msg) {
  protobuf_c_message_free_unpacked(msg, NULL);
}

/* Marks an optional scalar or bytes field present. */
static void set_has(ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd) {
  *(protobuf_c_boolean *)AT(m, fd->quantifier_offset) = 1;
}

static bool get_has(const ProtobufCMessage *m,
                    const ProtobufCFieldDescriptor *fd) {
  return *(const protobuf_c_boolean *)CAT(m, fd->quantifier_offset) != 0;
}

static int build(const struct msg_map *map, const void *flat, struct arena *a,
                 ProtobufCMessage **out);

/* Copies one flat member into `m`, leaving zero values out (proto3). */
static int build_field(const struct row *row,
                       const ProtobufCFieldDescriptor *fd, const void *flat,
                       ProtobufCMessage *m, struct arena *a) {
  void *dst = AT(m, fd->offset);
  const char *src = CAT(flat, row->off);

  switch (row->kind) {
  case K_IGNORE:
    break;
  case K_STR: {
    const char *s = *(const char *const *)src;
    char *w = unconst(s);
    if (s != NULL && s[0] != '\0')
      memcpy(dst, &w, sizeof(w));
    break;
  }
  case K_I64: {
    int64_t v = *(const int64_t *)src;
    if (v != 0) {
      *(int64_t *)dst = v;
      set_has(m, fd);
    }
    break;
  }
  case K_I32: {
    int32_t v = *(const int32_t *)src;
    if (v != 0) {
      *(int32_t *)dst = v;
      set_has(m, fd);
    }
    break;
  }
  case K_U32: {
    uint32_t v = *(const uint32_t *)src;
    if (v != 0) {
      *(uint32_t *)dst = v;
      set_has(m, fd);
    }
    break;
  }
  case K_U64: {
    uint64_t v = *(const uint64_t *)src;
    if (v != 0) {
      *(uint64_t *)dst = v;
      set_has(m, fd);
    }
    break;
  }
  case K_BOOL:
    if (*(const bool *)src) {
      *(protobuf_c_boolean *)dst = 1;
      set_has(m, fd);
    }
    break;
  case K_MSG_ID: {
    uint64_t v = *(const uint64_t *)src;
    /* A larger id would come back as an error (or, past 2^63, negative):
     * refuse to write what no reader accepts. */
    if (v > MIM_MSG_ID_MAX)
      return -EINVAL;
    if (v != 0) {
      *(int64_t *)dst = (int64_t)v;
      set_has(m, fd);
    }
    break;
  }
  case K_OPT_U64:
    if (*(const bool *)CAT(flat, row->aux)) {
      *(uint64_t *)dst = *(const uint64_t *)src;
      set_has(m, fd);
    }
    break;
  case K_BYTES: {
    const uint8_t *data = *(const uint8_t *const *)src;
    size_t len = *(const size_t *)CAT(flat, row->aux);
    ProtobufCBinaryData bd = {len, unconst(data)};
    if (len == 0)
      break;
    if (data == NULL)
      return -EINVAL;
    memcpy(dst, &bd, sizeof(bd));
    set_has(m, fd);
    break;
  }
  case K_STRS: {
    const char *const *v = *(const char *const *const *)src;
    size_t n = *(const size_t *)CAT(flat, row->aux);
    char **arr;
    if (n == 0)
      break;
    if (v == NULL)
      return -EINVAL;
    /* A copy, because a NULL entry must go out as "" (protobuf-c would
     * strlen() it). */
    arr = mim__codec_arena_alloc(a, n, sizeof(*arr));
    if (arr == NULL)
      return -ENOMEM;
    for (size_t i = 0; i < n; i++)
      arr[i] = unconst(v[i] != NULL ? v[i] : "");
    *(size_t *)AT(m, fd->quantifier_offset) = n;
    memcpy(dst, &arr, sizeof(arr));
    break;
  }
  case K_MSGS: {
    const char *elems = *(const char *const *)src;
    size_t n = *(const size_t *)CAT(flat, row->aux);
    ProtobufCMessage **arr;
    if (n == 0)
      break;
    if (elems == NULL)
      return -EINVAL;
    arr = mim__codec_arena_alloc(a, n, sizeof(*arr));
    if (arr == NULL)
      return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
      int r = build(row->sub, elems + i * row->sub->flat_size, a, &arr[i]);
      if (r < 0)
        return r;
    }
    *(size_t *)AT(m, fd->quantifier_offset) = n;
    memcpy(dst, &arr, sizeof(arr));
    break;
  }
  }
  return 0;
}

/* Builds the protobuf-c message of `map` from `flat`, allocated in `a`. */
static int build(const struct msg_map *map, const void *flat, struct arena *a,
                 ProtobufCMessage **out) {
  ProtobufCMessage *m = mim__codec_arena_alloc(a, 1, map->desc->sizeof_message);

  if (m == NULL)
    return -ENOMEM;
  protobuf_c_message_init(map->desc, m);
  for (size_t i = 0; i < map->n_rows; i++) {
    const ProtobufCFieldDescriptor *fd = mim__codec_field_of(map, &map->rows[i]);
    int r;

    if (fd == NULL)
      return -EINVAL; /* a table bug; mim__codec_check_tables() catches it */
    r = build_field(&map->rows[i], fd, flat, m, a);
    if (r < 0)
      return r;
  }
  *out = m;
  return 0;
}

static int fill(const struct msg_map *map, const ProtobufCMessage *m,
                void *flat, struct arena *a);

/* Copies one field of the unpacked `m` into `flat`, pointing into `m`. */
static int fill_field(const struct row *row,
                      const ProtobufCFieldDescriptor *fd,
                      const ProtobufCMessage *m, void *flat, struct arena *a) {
  const char *src = CAT(m, fd->offset);
  char *dst = AT(flat, row->off);

  /* Absent scalars need no has_ check: unpack leaves them at the
   * descriptor's default, 0 for every field we have. */
  switch (row->kind) {
  case K_IGNORE:
    break;
  case K_STR: {
    const char *s;
    memcpy(&s, src, sizeof(s));
    /* Absent strings decode as "", never NULL, so that readers can use any
     * string of a decoded packet without a NULL check. */
    *(const char **)dst = s != NULL ? s : "";
    break;
  }
  case K_I64:
    *(int64_t *)dst = *(const int64_t *)src;
    break;
  case K_I32:
    *(int32_t *)dst = *(const int32_t *)src;
    break;
  case K_U32:
    *(uint32_t *)dst = *(const uint32_t *)src;
    break;
  case K_U64:
    *(uint64_t *)dst = *(const uint64_t *)src;
    break;
  case K_BOOL:
    *(bool *)dst = *(const protobuf_c_boolean *)src != 0;
    break;
  case K_MSG_ID: {
    int64_t v = *(const int64_t *)src;
    if (v < 0 || (uint64_t)v > MIM_MSG_ID_MAX)
      return -MIM_ERR_MALFORMED;
    *(uint64_t *)dst = (uint64_t)v;
    break;
  }
  case K_OPT_U64: {
    bool has = get_has(m, fd);
    *(uint64_t *)dst = has ? *(const uint64_t *)src : 0;
    *(bool *)AT(flat, row->aux) = has;
    break;
  }
  case K_BYTES: {
    ProtobufCBinaryData bd;
    memcpy(&bd, src, sizeof(bd));
    if (!get_has(m, fd) || bd.len == 0)
      bd = (ProtobufCBinaryData){0, NULL};
    *(const uint8_t **)dst = bd.data;
    *(size_t *)AT(flat, row->aux) = bd.len;
    break;
  }
  case K_STRS: {
    size_t n = *(const size_t *)CAT(m, fd->quantifier_offset);
    const char *const *v;
    /* protobuf-c's char ** array serves as the const char *const * one. */
    memcpy(&v, src, sizeof(v));
    *(const char *const **)dst = n != 0 ? v : NULL;
    *(size_t *)AT(flat, row->aux) = n;
    break;
  }
  case K_MSGS: {
    size_t n = *(const size_t *)CAT(m, fd->quantifier_offset);
    const ProtobufCMessage *const *v;
    char *elems = NULL;
    memcpy(&v, src, sizeof(v));
    if (n != 0) {
      elems = mim__codec_arena_alloc(a, n, row->sub->flat_size);
      if (elems == NULL)
        return -ENOMEM;
      for (size_t i = 0; i < n; i++) {
        int r = fill(row->sub, v[i], elems + i * row->sub->flat_size, a);
        if (r < 0)
          return r;
      }
    }
    memcpy(dst, &elems, sizeof(elems));
    *(size_t *)AT(flat, row->aux) = n;
    break;
  }
  }
  return 0;
}

/* Fills `flat` from the unpacked `m`; arrays are allocated in `a`. */
static int fill(const struct msg_map *map, const ProtobufCMessage *m,
                void *flat, struct arena *a) {
  for (size_t i = 0; i < map->n_rows; i++) {
    const ProtobufCFieldDescriptor *fd = mim__codec_field_of(map, &map->rows[i]);
    int r;

    if (fd == NULL)
      return -EINVAL;
    r = fill_field(&map->rows[i], fd, m, flat, a);
    if (r < 0)
      return r;
  }
  return 0;
}

/* The protobuf-c path: unpack, then fill() from the unpacked message: the
 * reference the direct decoder must match.
 * Unpacks `body` with `map` into `flat`; on success `*priv` owns what the
 * flat struct points into. On error nothing is left allocated. */
static int decode_reference(const struct msg_map *map, const uint8_t *body, size_t len,
                  void *flat, void **priv) {
  static const uint8_t none[1];
  ProtobufCAllocator allocator = {pb_alloc_noted, pb_free_plain, NULL};
  struct decoded *dec;
  bool oom = false;
  int r;

  /* An empty-body command ignores whatever body it came with: heartbeats
   * carry nothing a reader could act on. */
  if (map->desc == NULL)
    return 0;
  if (body == NULL && len != 0)
    return -EINVAL;
  dec = calloc(1, sizeof(*dec));
  if (dec == NULL)
    return -ENOMEM;
  allocator.allocator_data = &oom;
  ProtobufCMessage *msg = protobuf_c_message_unpack(
      map->desc, &allocator, len, body != NULL ? body : none);
  if (msg == NULL) {
    r = oom ? -ENOMEM : -MIM_ERR_MALFORMED;
    goto fail;
  }
  dec->ref = msg; /* freed with `dec`, on every path from here */
  dec->ref_free = free_unpacked;
  /* protobuf-c keeps a string's bytes up to its first NUL only, so the
   * rule the direct decoder applies (no NUL inside a string) is checked on
   * the body protobuf-c accepted */
  if (mim__codec_string_has_nul(map, body, len)) {
    r = -MIM_ERR_MALFORMED;
    goto fail;
  }
  r = fill(map, msg, flat, &dec->arena);
  if (r < 0)
    goto fail;
  *priv = dec;
  return 0;

fail:
  mim__codec_decoded_free(dec);
  return r;
}

/* The protobuf-c path: build() then pack. Only the tests use it, as the
 * reference the direct encoder must match. */
static int encode_body_reference(const struct msg_map *map, const void *flat,
                                 uint8_t *buf, size_t cap, size_t *len) {
  struct arena a = {NULL};
  ProtobufCMessage *m;
  size_t n;
  int r;

  if (map->desc == NULL) {
    *len = 0;
    return 0;
  }
  r = build(map, flat, &a, &m);
  if (r < 0)
    goto out;
  n = protobuf_c_message_get_packed_size(m);
  *len = n;
  if (n > cap) {
    r = -ENOBUFS;
    goto out;
  }
  if (n > 0)
    protobuf_c_message_pack(m, buf);
out:
  mim__codec_arena_free(&a);
  return r;
}

int mim__codec_encode_reference(bool rpc, const void *flat, uint8_t *buf,
                                size_t cap, size_t *len) {
  const struct msg_map *map =
      rpc ? mim__codec_rpc_map(((const struct mim_rpc *)flat)->cmd)
          : mim__codec_client_map(((const struct mim_packet *)flat)->cmd);
  if (map == NULL)
    return -MIM_ERR_UNKNOWN_CMD;
  return encode_body_reference(map, flat, buf, cap, len);
}

/* ---- reference decoder (for tests) ---- */

int mim__codec_decode_reference(bool rpc, uint32_t cmd, const uint8_t *body,
                                size_t len, void *flat) {
  return rpc ? mim__codec_rpc_decode_with(decode_reference, flat, cmd, body, len)
             : mim__codec_packet_decode_with(decode_reference, flat, cmd, body, len);
}

/* ---- stored records ---- */

int mim__store_record_push_reference(const uint8_t *rec, size_t len,
                                     uint64_t msg_id, uint64_t inbox_seq,
                                     struct mim_message_list *out) {
  struct mim__store_arena a;
  mim__store_arena_init(&a);
  MDB_val v = val(rec, len);
  Mimpb__MessageRecord *r;
  int rc = mim__lmdb_record_unpack(&v, &a, &r);
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
  if (!mim__lmdb_record_text_ok(&m, &str)) {
    mim__store_arena_finish(&a);
    return map_err(MDB_CORRUPTED);
  }
  rc = mim_message_list_push(out, &m);
  mim__store_arena_finish(&a);
  return rc;
}
