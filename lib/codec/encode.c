/* Encoding: a flat struct written straight to protobuf's wire format,
 * walking the rows of table.c; measured first, so a frame is built in one
 * buffer of the right size. */
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

/* ---- direct wire encoding ----
 *
 * The encoder writes protobuf's wire format straight from the flat struct,
 * walking the same rows: what build() + protobuf_c_message_pack() produce,
 * byte for byte (rows are in field-number order, which the table check
 * enforces; zero values are left out as build() does), without building a
 * protobuf-c message, allocating, or walking it twice more to size and
 * pack it: a pull reply of 500 messages is the hot path of an offline
 * sync (docs/benchmarks.md has the figures). mim__codec_encode_reference()
 * (tests/support/reference.c) keeps the protobuf-c path so tests can
 * compare the two on every command. */

static uint64_t tag_of(uint32_t id, unsigned wt) {
  return ((uint64_t)id << 3) | wt;
}

/* A scalar row's value as a varint, or false when it is left out. Signed
 * values go out as protobuf's int32/int64 do: sign-extended to 64 bits. */
static bool row_varint(const struct row *row, const void *flat,
                       uint64_t *v) {
  const char *src = CAT(flat, row->off);
  switch (row->kind) {
  case K_I64:
    *v = (uint64_t) * (const int64_t *)src;
    return *v != 0;
  case K_I32:
    *v = (uint64_t)(int64_t) * (const int32_t *)src;
    return *v != 0;
  case K_U32:
    *v = *(const uint32_t *)src;
    return *v != 0;
  case K_U64:
  case K_MSG_ID:
    *v = *(const uint64_t *)src;
    return *v != 0;
  case K_BOOL:
    *v = 1;
    return *(const bool *)src;
  case K_OPT_U64:
    *v = *(const uint64_t *)src;
    return *(const bool *)CAT(flat, row->aux);
  default:
    return false;
  }
}

static int wire_size(const struct msg_map *map, const void *flat,
                     size_t *out);

/* The bytes of one row on the wire (tags included). */
static int row_size(const struct msg_map *map, size_t i, const void *flat,
                    size_t *out) {
  const struct row *row = &map->rows[i];
  uint32_t id = map->rw[i].id;
  const char *src = CAT(flat, row->off);
  uint64_t v;

  *out = 0;
  if (id == 0)
    return -EINVAL; /* a table bug; mim__codec_check_tables() catches it */
  switch (row->kind) {
  case K_IGNORE:
    return 0;
  case K_STR: {
    const char *str = *(const char *const *)src;
    if (str != NULL && str[0] != '\0') {
      size_t n = strlen(str);
      *out = mim__varint_len(tag_of(id, WT_LEN)) + mim__varint_len(n) + n;
    }
    return 0;
  }
  case K_BYTES: {
    size_t n = *(const size_t *)CAT(flat, row->aux);
    if (n == 0)
      return 0;
    if (*(const uint8_t *const *)src == NULL)
      return -EINVAL;
    *out = mim__varint_len(tag_of(id, WT_LEN)) + mim__varint_len(n) + n;
    return 0;
  }
  case K_STRS: {
    const char *const *strs = *(const char *const *const *)src;
    size_t n = *(const size_t *)CAT(flat, row->aux), total = 0;
    if (n > 0 && strs == NULL)
      return -EINVAL;
    for (size_t k = 0; k < n; k++) {
      size_t len = strs[k] != NULL ? strlen(strs[k]) : 0;
      total += mim__varint_len(tag_of(id, WT_LEN)) + mim__varint_len(len) + len;
    }
    *out = total;
    return 0;
  }
  case K_MSGS: {
    const char *elems = *(const char *const *)src;
    size_t n = *(const size_t *)CAT(flat, row->aux), total = 0;
    if (n > 0 && elems == NULL)
      return -EINVAL;
    for (size_t k = 0; k < n; k++) {
      size_t len;
      int r = wire_size(row->sub, elems + k * row->sub->flat_size, &len);
      if (r < 0)
        return r;
      total += mim__varint_len(tag_of(id, WT_LEN)) + mim__varint_len(len) + len;
    }
    *out = total;
    return 0;
  }
  case K_MSG_ID:
    /* A larger id would come back as an error (or, past 2^63, negative):
     * refuse to write what no reader accepts. */
    if (*(const uint64_t *)src > MIM_MSG_ID_MAX)
      return -EINVAL;
    break;
  default:
    break;
  }
  if (row_varint(row, flat, &v))
    *out = mim__varint_len(tag_of(id, WT_VARINT)) + mim__varint_len(v);
  return 0;
}

static int wire_size(const struct msg_map *map, const void *flat,
                     size_t *out) {
  size_t total = 0;
  for (size_t i = 0; i < map->n_rows; i++) {
    size_t n;
    int r = row_size(map, i, flat, &n);
    if (r < 0)
      return r;
    total += n;
  }
  *out = total;
  return 0;
}

static uint8_t *put_len(uint8_t *p, uint32_t id, const void *data,
                        size_t n) {
  p = mim__varint_put(p, tag_of(id, WT_LEN));
  p = mim__varint_put(p, n);
  if (n > 0)
    memcpy(p, data, n);
  return p + n;
}

/* Room a length prefix may need: 5 varint bytes cover lengths < 2^35. */
#define LEN_ROOM 5

/* Writes what wire_size() measured (and so validated) of `flat`. With
 * `slack` (LEN_ROOM bytes to spare past the measured end), a sub-message
 * is written first and its length put before it, one memmove instead of
 * measuring it a second time. */
static uint8_t *wire_write(const struct msg_map *map, const void *flat,
                           uint8_t *p, bool slack) {
  for (size_t i = 0; i < map->n_rows; i++) {
    const struct row *row = &map->rows[i];
    uint32_t id = map->rw[i].id;
    const char *src = CAT(flat, row->off);
    uint64_t v;

    switch (row->kind) {
    case K_IGNORE:
      break;
    case K_STR: {
      const char *str = *(const char *const *)src;
      if (str != NULL && str[0] != '\0')
        p = put_len(p, id, str, strlen(str));
      break;
    }
    case K_BYTES: {
      size_t n = *(const size_t *)CAT(flat, row->aux);
      if (n > 0)
        p = put_len(p, id, *(const uint8_t *const *)src, n);
      break;
    }
    case K_STRS: {
      const char *const *strs = *(const char *const *const *)src;
      size_t n = *(const size_t *)CAT(flat, row->aux);
      for (size_t k = 0; k < n; k++)
        p = put_len(p, id, strs[k] != NULL ? strs[k] : "",
                    strs[k] != NULL ? strlen(strs[k]) : 0);
      break;
    }
    case K_MSGS: {
      const char *elems = *(const char *const *)src;
      size_t n = *(const size_t *)CAT(flat, row->aux);
      for (size_t k = 0; k < n; k++) {
        const void *e = elems + k * row->sub->flat_size;
        size_t len = 0;
        p = mim__varint_put(p, tag_of(id, WT_LEN));
        if (slack) {
          uint8_t *end = wire_write(row->sub, e, p + LEN_ROOM, true);
          len = (size_t)(end - (p + LEN_ROOM));
          uint8_t *at = mim__varint_put(p, len);
          memmove(at, p + LEN_ROOM, len);
          p = at + len;
        } else {
          (void)wire_size(row->sub, e, &len); /* validated by the caller */
          p = mim__varint_put(p, len);
          p = wire_write(row->sub, e, p, false);
        }
      }
      break;
    }
    default:
      if (row_varint(row, flat, &v)) {
        p = mim__varint_put(p, tag_of(id, WT_VARINT));
        p = mim__varint_put(p, v);
      }
      break;
    }
  }
  return p;
}

/* Encodes the body of `flat` into `buf`; `*len` is the body size, also on
 * -ENOBUFS. */
int mim__codec_encode_body(const struct msg_map *map, const void *flat,
                           uint8_t *buf, size_t cap, size_t *len) {
  size_t n;
  int r;

  if (map->desc == NULL) {
    *len = 0;
    return 0;
  }
  mim__codec_wire_ready();
  r = wire_size(map, flat, &n);
  if (r < 0)
    return r;
  *len = n;
  if (n > cap)
    return -ENOBUFS;
  if (n > 0)
    wire_write(map, flat, buf, cap - n >= LEN_ROOM);
  return 0;
}

int mim__packet_encode_body_alloc(const struct mim_packet *p, uint8_t **body,
                                  size_t *len) {
  const struct msg_map *map = mim__codec_client_map(p->cmd);
  size_t n = 0;
  int r;

  if (map == NULL)
    return -MIM_ERR_UNKNOWN_CMD;
  mim__codec_wire_ready();
  if (map->desc != NULL && (r = wire_size(map, p, &n)) < 0)
    return r;
  *body = malloc(n + LEN_ROOM);
  if (*body == NULL)
    return -ENOMEM;
  if (n > 0)
    wire_write(map, p, *body, true);
  *len = n;
  return 0;
}


/* Encodes header + body, the body built in place after the header. */
int mim__codec_encode_frame(const struct msg_map *map, uint32_t cmd,
                            const void *flat, uint8_t *buf, size_t cap,
                            size_t *len) {
  bool room = buf != NULL && cap >= MIM_HEADER_SIZE;
  size_t body_len = 0;
  int r;

  r = mim__codec_encode_body(map, flat, room ? buf + MIM_HEADER_SIZE : NULL,
                  room ? cap - MIM_HEADER_SIZE : 0, &body_len);
  if (r == -ENOBUFS) {
    *len = MIM_HEADER_SIZE + body_len;
    return r;
  }
  if (r < 0)
    return r;
  /* The body is already at buf + 12; this writes the header (or reports
   * -ENOBUFS for a body-less frame that does not fit). */
  return mim_frame_encode(buf, cap, cmd, room ? buf + MIM_HEADER_SIZE : NULL,
                          body_len, len);
}
