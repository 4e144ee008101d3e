/* Key layouts of the LMDB backend (the databases are listed in
 * lmdb_internal.h) and the builders every key is made with: big-endian u64
 * ids, so keys sort numerically and no two (id, id) pairs spell the same
 * bytes. */
#ifndef MIM_STORE_LMDB_KEYS_H
#define MIM_STORE_LMDB_KEYS_H

#include <lmdb.h>
#include <stdint.h>
#include <string.h>

#include <mim/common.h>

enum id_kind { ID_USER = 'u', ID_GROUP = 'g', ID_DEVICE = 'd' };

#define CONV_LEN 17
#define DEDUP_KEY_MAX (8 + MIM_CLIENT_MSG_ID_MAX)
#define DEDUP_TIME_KEY_MAX (8 + DEDUP_KEY_MAX)

static inline void be64_put(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
}

static inline uint64_t be64_get(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

static inline int64_t u64_to_i64(uint64_t u) {
  int64_t t;
  memcpy(&t, &u, sizeof t); /* two's complement, without UB */
  return t;
}

/* int64 → u64 whose unsigned order is the signed order (dedup_time keys). */
static inline uint64_t time_bias(int64_t t) {
  return (uint64_t)t ^ (UINT64_C(1) << 63);
}

static inline int64_t time_unbias(uint64_t u) {
  return u64_to_i64(u ^ (UINT64_C(1) << 63));
}

static inline MDB_val val(const void *p, size_t n) {
  MDB_val v = {n, (void *)p};
  return v;
}

static inline size_t id_key(uint8_t *k, enum id_kind kind, const char *name) {
  size_t n = strlen(name);
  k[0] = (uint8_t)kind;
  k[1] = ':';
  memcpy(k + 2, name, n);
  return n + 2;
}

static inline void conv_c2c(uint8_t k[CONV_LEN], uint64_t a, uint64_t b) {
  k[0] = 'c';
  be64_put(k + 1, a < b ? a : b);
  be64_put(k + 9, a < b ? b : a);
}

static inline void conv_group(uint8_t k[CONV_LEN], uint64_t gid) {
  k[0] = 'g';
  be64_put(k + 1, gid);
  be64_put(k + 9, 0);
}

static inline void pair_key(uint8_t k[16], uint64_t a, uint64_t b) {
  be64_put(k, a);
  be64_put(k + 8, b);
}

static inline size_t dedup_key(uint8_t *k, uint64_t sender_id, const char *cmid) {
  size_t n = strlen(cmid);
  be64_put(k, sender_id);
  memcpy(k + 8, cmid, n);
  return 8 + n;
}

#endif /* MIM_STORE_LMDB_KEYS_H */
