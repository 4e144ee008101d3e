#include "htable.h"

#include <errno.h>
#include <stdlib.h>

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

uint64_t mim__hash_bytes(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= UINT64_C(0x100000001b3);
  }
  return h;
}

uint64_t mim__hash_u64(uint64_t x) {
  x ^= x >> 30;
  x *= UINT64_C(0xbf58476d1ce4e5b9);
  x ^= x >> 27;
  x *= UINT64_C(0x94d049bb133111eb);
  x ^= x >> 31;
  return x;
}
