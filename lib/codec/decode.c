/* Decoding: protobuf's wire format read straight into a flat struct
 * (struct mim_packet, struct mim_rpc), walking the rows of table.c. */
#include "codec/codec_internal.h"
#include "codec/table.h"
#include "util/internal.h"
#include "util/varint.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- direct wire decoding ----
 *
 * The decoder reads protobuf's wire format straight into the flat struct,
 * walking the rows: what protobuf-c's unpack + fill() give, field for field
 * (the fuzz targets compare the two on every input), with one allocation
 * for everything the packet owns instead of one per string and message.
 * Unknown fields are skipped; a repeated non-repeated field: the last one
 * wins; a known field with another wire type, a truncated or overlong
 * varint or length, a group: malformed. */

struct wfield {
  uint32_t id;
  unsigned wt;
  uint64_t v;          /* WT_VARINT */
  const uint8_t *data; /* WT_LEN: the value */
  size_t len;
  const uint8_t *raw;  /* the whole value as on the wire (length prefix */
  size_t raw_len;      /* included): what protobuf-c reads a bool from */
};

/* The next field at *p, or false when the bytes are malformed. Tags are
 * read as protobuf-c reads them: at most 5 bytes, 32 bits kept, and only a
 * zero first byte's field bits is an error. */
static bool next_field(const uint8_t **p, const uint8_t *end,
                       struct wfield *f) {
  uint64_t key, n;
  if (*p == end || (**p & 0xf8) == 0 || !mim__varint_get(p, end, 5, &key))
    return false;
  f->id = (uint32_t)(key >> 3);
  f->wt = (unsigned)(key & 7);
  f->raw = *p;
  switch (f->wt) {
  case WT_VARINT:
    if (!mim__varint_get(p, end, 10, &f->v))
      return false;
    break;
  case WT_I64:
  case WT_I32:
    n = f->wt == WT_I64 ? 8 : 4;
    if ((uint64_t)(end - *p) < n)
      return false;
    *p += n;
    break;
  case WT_LEN:
    if (!mim__varint_get(p, end, 5, &n) || n > INT_MAX || n > (uint64_t)(end - *p))
      return false;
    f->data = *p;
    f->len = (size_t)n;
    *p += n;
    break;
  default:
    return false; /* groups (3, 4) and wire types 6, 7 */
  }
  f->raw_len = (size_t)(*p - f->raw);
  return true;
}

static bool raw_bool(const struct wfield *f) {
  for (size_t i = 0; i < f->raw_len; i++)
    if (f->raw[i] & 0x7f)
      return true;
  return false;
}

#define ALIGN_UP(n) \
  (((n) + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1))

/* Validates a body and adds the bytes its mim__codec_decode needs to *need. */
static int wire_need(const struct msg_map *map, const uint8_t *p, size_t n,
                     size_t *need) {
  const uint8_t *end = p + n;
  while (p < end) {
    struct wfield f;
    if (!next_field(&p, end, &f))
      return -MIM_ERR_MALFORMED;
    ptrdiff_t i = mim__codec_row_for(map, f.id);
    if (i < 0)
      continue;
    const struct row *row = &map->rows[i];
    /* ignored fields are still fields protobuf-c checks */
    if (!(map->rw[i].wts >> f.wt & 1))
      return -MIM_ERR_MALFORMED;
    /* a NUL inside a string would silently cut it short for every C
     * reader ("alice\0x" read as "alice"): refused, not truncated */
    if ((row->kind == K_STR || row->kind == K_STRS) &&
        memchr(f.data, '\0', f.len) != NULL)
      return -MIM_ERR_MALFORMED;
    switch (row->kind) {
    case K_STR:
    case K_BYTES:
      *need += f.len + 1;
      break;
    /* an array's element, and room to align the array once more than
     * needed: strings between arrays leave them unaligned */
    case K_STRS:
      *need += sizeof(char *) + _Alignof(max_align_t) + f.len + 1;
      break;
    case K_MSGS: {
      *need += row->sub->flat_size + _Alignof(max_align_t);
      int r = wire_need(row->sub, f.data, f.len, need);
      if (r < 0)
        return r;
      break;
    }
    default:
      break;
    }
  }
  return 0;
}

/* Whether a string field of a body protobuf-c unpacked holds a NUL byte
 * (the reference decoder's copy of wire_need()'s rule; a walk of its own so
 * that the two are still compared). */
bool mim__codec_string_has_nul(const struct msg_map *map, const uint8_t *body,
                               size_t len) {
  const uint8_t *p = body, *end = body + len;
  mim__codec_wire_ready();
  while (p < end) {
    struct wfield f;
    if (!next_field(&p, end, &f))
      return false; /* unpack accepted it: cannot happen */
    ptrdiff_t i = mim__codec_row_for(map, f.id);
    if (i < 0 || f.wt != WT_LEN)
      continue;
    const struct row *row = &map->rows[i];
    if ((row->kind == K_STR || row->kind == K_STRS) &&
        memchr(f.data, '\0', f.len) != NULL)
      return true;
    if (row->kind == K_MSGS && mim__codec_string_has_nul(row->sub, f.data, f.len))
      return true;
  }
  return false;
}

/* Bump allocation in the one block wire_need() measured. */
struct bump {
  char *p;
  size_t left;
};

/* `n` bytes of the block; NULL should wire_need() have measured short
 * (a bug: never written past the block). */
static void *bump_take(struct bump *b, size_t n, bool aligned) {
  size_t pad = aligned ? (size_t)(-(uintptr_t)b->p) &
                             (_Alignof(max_align_t) - 1)
                       : 0;
  if (pad > b->left || n > b->left - pad)
    return NULL;
  void *r = b->p + pad;
  b->p += pad + n;
  b->left -= pad + n;
  return r;
}

static char *bump_str(struct bump *b, const uint8_t *data, size_t len) {
  char *s = bump_take(b, len + 1, false);
  if (s == NULL)
    return NULL;
  if (len > 0)
    memcpy(s, data, len);
  s[len] = '\0';
  return s;
}

/* Fills `flat` from a body wire_need() accepted. */
static int wire_fill(const struct msg_map *map, const uint8_t *body, size_t n,
                     void *flat, struct bump *b) {
  const uint8_t *p, *end = body + n;
  /* repeated rows: count, then give each its array */
  size_t counts[32] = {0}; /* n_rows <= 32: mim__codec_check_tables() */
  bool repeated = false;
  for (size_t i = 0; i < map->n_rows; i++)
    repeated |= map->rows[i].kind == K_STRS || map->rows[i].kind == K_MSGS;
  if (repeated) {
    if (map->n_rows > 32)
      return -EINVAL;
    for (p = body; p < end;) {
      struct wfield f;
      (void)next_field(&p, end, &f);
      ptrdiff_t i = mim__codec_row_for(map, f.id);
      if (i >= 0 && (map->rows[i].kind == K_STRS || map->rows[i].kind == K_MSGS))
        counts[i]++;
    }
    for (size_t i = 0; i < map->n_rows; i++) {
      const struct row *row = &map->rows[i];
      if (counts[i] == 0 || (row->kind != K_STRS && row->kind != K_MSGS))
        continue;
      size_t elem = row->kind == K_STRS ? sizeof(char *) : row->sub->flat_size;
      /* wire_need() reserved an aligned slot per element: room enough */
      void *arr = bump_take(b, counts[i] * elem, true);
      if (arr == NULL)
        return -ENOMEM;
      memset(arr, 0, counts[i] * elem);
      memcpy(AT(flat, row->off), &arr, sizeof(arr));
      counts[i] = 0; /* now the fill index */
    }
  }
  for (p = body; p < end;) {
    struct wfield f;
    (void)next_field(&p, end, &f);
    ptrdiff_t ri = mim__codec_row_for(map, f.id);
    if (ri < 0)
      continue;
    const struct row *row = &map->rows[ri];
    char *dst = AT(flat, row->off);
    switch (row->kind) {
    case K_IGNORE:
      break;
    case K_STR:
      if ((*(const char **)dst = bump_str(b, f.data, f.len)) == NULL)
        return -ENOMEM;
      break;
    case K_I64:
      *(int64_t *)dst = (int64_t)f.v;
      break;
    case K_I32:
      *(int32_t *)dst = (int32_t)(uint32_t)f.v;
      break;
    case K_U32:
      *(uint32_t *)dst = (uint32_t)f.v;
      break;
    case K_U64:
    case K_MSG_ID:
      *(uint64_t *)dst = f.v;
      break;
    case K_BOOL:
      *(bool *)dst = raw_bool(&f);
      break;
    case K_OPT_U64:
      *(uint64_t *)dst = f.v;
      *(bool *)AT(flat, row->aux) = true;
      break;
    case K_BYTES: {
      const uint8_t *d = NULL;
      if (f.len > 0 && (d = (const uint8_t *)bump_str(b, f.data, f.len)) == NULL)
        return -ENOMEM;
      *(const uint8_t **)dst = d;
      *(size_t *)AT(flat, row->aux) = f.len;
      break;
    }
    case K_STRS: {
      size_t i = (size_t)(row - map->rows);
      char **arr;
      memcpy(&arr, dst, sizeof(arr));
      if ((arr[counts[i]++] = bump_str(b, f.data, f.len)) == NULL)
        return -ENOMEM;
      *(size_t *)AT(flat, row->aux) = counts[i];
      break;
    }
    case K_MSGS: {
      size_t i = (size_t)(row - map->rows);
      char *arr;
      memcpy(&arr, dst, sizeof(arr));
      void *e = arr + counts[i]++ * row->sub->flat_size;
      int r = wire_fill(row->sub, f.data, f.len, e, b);
      if (r < 0)
        return r;
      *(size_t *)AT(flat, row->aux) = counts[i];
      break;
    }
    }
  }
  /* what unpack + fill() would leave: "" for absent strings, and msg_ids
   * (the last of repeated ones) in range */
  for (size_t i = 0; i < map->n_rows; i++) {
    const struct row *row = &map->rows[i];
    char *dst = AT(flat, row->off);
    if (row->kind == K_STR && *(const char **)dst == NULL)
      *(const char **)dst = "";
    if (row->kind == K_MSG_ID && *(const uint64_t *)dst > MIM_MSG_ID_MAX)
      return -MIM_ERR_MALFORMED;
  }
  return 0;
}

/* Decodes `body` with `map` into `flat`; on success `*priv` owns what the
 * flat struct points into. On error nothing is left allocated. */
int mim__codec_decode(const struct msg_map *map, const uint8_t *body, size_t len,
                      void *flat, void **priv) {
  /* An empty-body command ignores whatever body it came with: heartbeats
   * carry nothing a reader could act on. */
  if (map->desc == NULL)
    return 0;
  if (body == NULL && len != 0)
    return -EINVAL;
  mim__codec_wire_ready();
  size_t need = 0;
  int r = wire_need(map, body, len, &need);
  if (r < 0)
    return r;
  struct decoded *dec = calloc(1, sizeof(*dec));
  if (dec == NULL)
    return -ENOMEM;
  struct bump b = {NULL, 0};
  if (need > 0) {
    b.p = mim__codec_arena_alloc(&dec->arena, 1, need + _Alignof(max_align_t));
    if (b.p == NULL) {
      free(dec);
      return -ENOMEM;
    }
    b.left = need + _Alignof(max_align_t);
  }
  r = wire_fill(map, body, len, flat, &b);
  if (r < 0) {
    mim__codec_decoded_free(dec);
    return r;
  }
  *priv = dec;
  return 0;
}
