#include "store/lmdb/cache.h"

#include "util/htable.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* 32 Ki timelines (1 MiB) and 16 Ki names (1 MiB): far more than one
 * commit touches, so collisions stay rare at any user count. */
#define TAIL_SLOTS (1u << 15)
#define ID_SLOTS (1u << 14)

struct tail_slot {
  uint8_t used;
  uint8_t space;
  uint8_t len;
  uint8_t prefix[MIM__CACHE_PREFIX_MAX];
  uint64_t seq;
};

struct id_slot {
  uint8_t used;
  uint8_t kind;
  char name[MIM__CACHE_NAME_MAX + 1];
  uint64_t id;
};

struct mim__store_cache {
  struct tail_slot tails[TAIL_SLOTS];
  struct id_slot ids[ID_SLOTS];
  /* uids and group ids are chosen by clients: keyed, so nobody can pick
   * names that all land in one slot and keep evicting each other */
  struct mim__hkey key;
};

int mim__store_cache_create(struct mim__store_cache **out) {
  *out = calloc(1, sizeof **out);
  if (*out == NULL)
    return -ENOMEM;
  mim__hkey_init(&(*out)->key, *out);
  return 0;
}

void mim__store_cache_destroy(struct mim__store_cache *c) { free(c); }

void mim__store_cache_clear(struct mim__store_cache *c) {
  if (c != NULL) {
    memset(c->tails, 0, sizeof c->tails);
    memset(c->ids, 0, sizeof c->ids);
  }
}

static struct tail_slot *tail_slot(const struct mim__store_cache *c, int space,
                                   const uint8_t *prefix, size_t len) {
  struct mim__hkey k = {c->key.k0 ^ (uint64_t)space, c->key.k1};
  uint64_t h = mim__hash_keyed(&k, prefix, len);
  return (struct tail_slot *)&c->tails[h & (TAIL_SLOTS - 1)];
}

bool mim__store_cache_tail_get(const struct mim__store_cache *c, int space,
                               const uint8_t *prefix, size_t len,
                               uint64_t *seq) {
  if (c == NULL || len > MIM__CACHE_PREFIX_MAX)
    return false;
  const struct tail_slot *t = tail_slot(c, space, prefix, len);
  if (!t->used || t->space != space || t->len != len ||
      memcmp(t->prefix, prefix, len) != 0)
    return false;
  *seq = t->seq;
  return true;
}

void mim__store_cache_tail_set(struct mim__store_cache *c, int space,
                               const uint8_t *prefix, size_t len,
                               uint64_t seq) {
  if (c == NULL || len > MIM__CACHE_PREFIX_MAX)
    return;
  struct tail_slot *t = tail_slot(c, space, prefix, len);
  t->used = 1;
  t->space = (uint8_t)space;
  t->len = (uint8_t)len;
  memcpy(t->prefix, prefix, len);
  t->seq = seq;
}

static struct id_slot *id_slot(const struct mim__store_cache *c, int kind,
                               const char *name, size_t len) {
  struct mim__hkey k = {c->key.k0 ^ (uint64_t)kind, c->key.k1};
  uint64_t h = mim__hash_keyed(&k, name, len);
  return (struct id_slot *)&c->ids[h & (ID_SLOTS - 1)];
}

bool mim__store_cache_id_get(const struct mim__store_cache *c, int kind,
                             const char *name, uint64_t *id) {
  size_t len = strlen(name);
  if (c == NULL || len > MIM__CACHE_NAME_MAX)
    return false;
  const struct id_slot *s = id_slot(c, kind, name, len);
  if (!s->used || s->kind != kind || strcmp(s->name, name) != 0)
    return false;
  *id = s->id;
  return true;
}

void mim__store_cache_id_set(struct mim__store_cache *c, int kind,
                             const char *name, uint64_t id) {
  size_t len = strlen(name);
  if (c == NULL || len > MIM__CACHE_NAME_MAX)
    return;
  struct id_slot *s = id_slot(c, kind, name, len);
  s->used = 1;
  s->kind = (uint8_t)kind;
  memcpy(s->name, name, len + 1);
  s->id = id;
}
