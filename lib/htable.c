#include "htable.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__linux__)
#include <sys/random.h>
#endif

void mim__htable_finish(struct mim__htable *t) {
  free(t->buckets);
  t->buckets = NULL;
  t->nbuckets = 0;
  t->count = 0;
}

static int grow(struct mim__htable *t) {
  size_t n = t->nbuckets ? t->nbuckets * 2 : 16;
  struct mim__hnode **b = calloc(n, sizeof *b);
  if (b == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < t->nbuckets; i++) {
    struct mim__hnode *e = t->buckets[i];
    while (e != NULL) {
      struct mim__hnode *next = e->next;
      size_t j = e->hash & (n - 1);
      e->next = b[j];
      b[j] = e;
      e = next;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = n;
  return 0;
}

int mim__htable_insert(struct mim__htable *t, struct mim__hnode *n,
                       uint64_t hash) {
  if (t->count >= t->nbuckets) {
    int rc = grow(t);
    /* a full table still works, only slower: fail only when it has none */
    if (rc < 0 && t->nbuckets == 0)
      return rc;
  }
  size_t i = hash & (t->nbuckets - 1);
  n->hash = hash;
  n->next = t->buckets[i];
  t->buckets[i] = n;
  t->count++;
  return 0;
}

struct mim__hnode *mim__htable_find(const struct mim__htable *t,
                                    uint64_t hash) {
  if (t->nbuckets == 0)
    return NULL;
  struct mim__hnode *e = t->buckets[hash & (t->nbuckets - 1)];
  while (e != NULL && e->hash != hash)
    e = e->next;
  return e;
}

struct mim__hnode *mim__htable_next(const struct mim__hnode *n) {
  struct mim__hnode *e = n->next;
  while (e != NULL && e->hash != n->hash)
    e = e->next;
  return e;
}

void mim__htable_remove(struct mim__htable *t, struct mim__hnode *n) {
  struct mim__hnode **p = &t->buckets[n->hash & (t->nbuckets - 1)];
  while (*p != NULL && *p != n)
    p = &(*p)->next;
  if (*p == n) {
    *p = n->next;
    t->count--;
  }
}

void mim__htable_foreach(struct mim__htable *t,
                         void (*fn)(void *user, struct mim__hnode *n),
                         void *user) {
  for (size_t i = 0; i < t->nbuckets; i++) {
    struct mim__hnode *e = t->buckets[i];
    while (e != NULL) {
      struct mim__hnode *next = e->next; /* fn may unlink e */
      fn(user, e);
      e = next;
    }
  }
}

uint64_t mim__hash_u64(uint64_t x) {
  x ^= x >> 30;
  x *= UINT64_C(0xbf58476d1ce4e5b9);
  x ^= x >> 27;
  x *= UINT64_C(0x94d049bb133111eb);
  x ^= x >> 31;
  return x;
}

/* ---- keyed hashing ---- */

static uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

#define SIPROUND                                                               \
  do {                                                                         \
    v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);                 \
    v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                    \
    v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                    \
    v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);                 \
  } while (0)

/* SipHash-1-3: one compression and three finalisation rounds, the variant
 * hash tables use (Rust's HashMap, CPython); ids are short, so it costs about
 * as much as FNV-1a and resists collision flooding. */
uint64_t mim__siphash13(uint64_t k0, uint64_t k1, const void *s, size_t len) {
  uint64_t v0 = k0 ^ UINT64_C(0x736f6d6570736575);
  uint64_t v1 = k1 ^ UINT64_C(0x646f72616e646f6d);
  uint64_t v2 = k0 ^ UINT64_C(0x6c7967656e657261);
  uint64_t v3 = k1 ^ UINT64_C(0x7465646279746573);
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;

  for (; i + 8 <= len; i += 8) {
    uint64_t m = 0;
    for (int j = 7; j >= 0; j--) /* little-endian, any alignment */
      m = (m << 8) | p[i + (size_t)j];
    v3 ^= m;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t j = 0; i + j < len; j++)
    b |= (uint64_t)p[i + j] << (8 * j);
  v3 ^= b;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t mix64(uint64_t k) {
  k ^= k >> 33;
  k *= UINT64_C(0xff51afd7ed558ccd);
  k ^= k >> 33;
  k *= UINT64_C(0xc4ceb9fe1a85ec53);
  k ^= k >> 33;
  return k;
}

void mim__hkey_init(struct mim__hkey *k, const void *salt) {
#if defined(__linux__)
  uint64_t r[2];
  if (getrandom(r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r) {
    k->k0 = r[0];
    k->k1 = r[1];
    return;
  }
#endif
  /* No entropy yet (early boot) or not Linux: a key from the clock and the
   * owner's address is weak but still differs per table and per run, so
   * colliding ids cannot be computed once and replayed. */
  struct timespec ts = {0, 0};
  timespec_get(&ts, TIME_UTC);
  k->k0 = mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30));
  k->k1 = mix64((uint64_t)(uintptr_t)salt ^ k->k0);
}

uint64_t mim__hash_keyed(const struct mim__hkey *k, const void *data,
                         size_t len) {
  return mim__siphash13(k->k0, k->k1, data, len);
}

size_t mim__key_pair(char *buf, const char *a, const char *b) {
  size_t al = strlen(a), bl = strlen(b);
  memcpy(buf, a, al);
  buf[al] = '\0';
  memcpy(buf + al + 1, b, bl);
  return al + 1 + bl;
}
