/* protobuf's base-128 varints, for the few places libmim reads and writes
 * the wire format itself (codec/frame.c, codec/packet.c, store/lmdb/). Private to
 * libmim. */
#ifndef MIM_VARINT_H
#define MIM_VARINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A varint holds at most 10 bytes (64 bits, 7 per byte). */
#define MIM__VARINT_MAX 10

/* Bytes `v` takes as a varint. */
static inline size_t mim__varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

/* Writes `v` at `p`; returns the end. */
static inline uint8_t *mim__varint_put(uint8_t *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *p++ = (uint8_t)v;
  return p;
}

/* Reads a varint of at most `max` bytes (<= MIM__VARINT_MAX) at *p, not
 * past `end`, into *v and advances *p. Bits past 64 are dropped, as
 * protobuf-c drops them. False when it does not end within `max` bytes or
 * before `end`. */
static inline bool mim__varint_get(const uint8_t **p, const uint8_t *end,
                                   unsigned max, uint64_t *v) {
  uint64_t x = 0;
  for (unsigned i = 0; i < max && *p < end; i++) {
    uint8_t b = *(*p)++;
    x |= (uint64_t)(b & 0x7f) << (7 * i);
    if (b < 0x80) {
      *v = x;
      return true;
    }
  }
  return false;
}

#endif
