/* An intrusive chained hash table: the element embeds a struct mim__hnode and
 * the caller compares keys. Used for the logic's connection table and its
 * in-flight dedup index. Private to libmim. */
#ifndef MIM_HTABLE_H
#define MIM_HTABLE_H

#include <stddef.h>
#include <stdint.h>

struct mim__hnode {
  struct mim__hnode *next;
  uint64_t hash;
};

struct mim__htable {
  struct mim__hnode **buckets;
  size_t nbuckets;  /* power of two, or 0 before the first insert */
  size_t count;
};

/* Zero-initialised tables are valid and empty. */
void mim__htable_finish(struct mim__htable *t);

/* Links `n` under `hash`; grows the table past load 1. Errors: -ENOMEM (the
 * node is not linked). */
int mim__htable_insert(struct mim__htable *t, struct mim__hnode *n,
                       uint64_t hash);

/* The first node with `hash`, or NULL; continue with mim__htable_next(). */
struct mim__hnode *mim__htable_find(const struct mim__htable *t, uint64_t hash);
struct mim__hnode *mim__htable_next(const struct mim__hnode *n);

/* Unlinks `n`, which must be in `t`. */
void mim__htable_remove(struct mim__htable *t, struct mim__hnode *n);

/* Calls `fn` on every node; `fn` may remove the node it is given. */
void mim__htable_foreach(struct mim__htable *t,
                         void (*fn)(void *user, struct mim__hnode *n),
                         void *user);

/* Keyed hashing for tables keyed by what clients choose (uids, devices,
 * client_msg_ids, group ids): SipHash-1-3 under a random per-table key, so
 * nobody can precompute keys that collide and turn a chain into a list. */
struct mim__hkey {
  uint64_t k0, k1;
};

/* A fresh random key (getrandom; without entropy, the clock mixed with
 * `salt`, e.g. the table's address). */
void mim__hkey_init(struct mim__hkey *k, const void *salt);

/* Writes the two-part key "a\0b" into `buf` (room for strlen(a) + 1 +
 * strlen(b) bytes) and returns its length. Ids never hold a NUL, so the
 * separator keeps ("ab", "c") and ("a", "bc") apart. The one layout of
 * (uid, device) and (sender, client_msg_id) table keys. */
size_t mim__key_pair(char *buf, const char *a, const char *b);

/* SipHash-1-3 of `len` bytes under `k`. */
uint64_t mim__hash_keyed(const struct mim__hkey *k, const void *data,
                         size_t len);
uint64_t mim__siphash13(uint64_t k0, uint64_t k1, const void *data,
                        size_t len);

/* A well-mixed hash of a 64-bit value (splitmix64 finaliser). */
uint64_t mim__hash_u64(uint64_t x);

#define mim__container_of(ptr, type, member)                                   \
  ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#endif
