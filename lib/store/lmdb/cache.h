/* The LMDB writer's memory of what it looked up: each timeline's last seq
 * and each name's id. Both are direct-mapped (one slot per hash, a
 * colliding key simply replaces the slot), so memory is fixed and a miss
 * only costs the B-tree search the cache exists to skip.
 *
 * Only the writer uses it, under the store's write lock. Entries describe
 * the open write transaction; a transaction that does not commit must
 * clear the cache, since it may hold seqs and ids that were never stored.
 * Private to libmim. */
#ifndef MIM_STORE_CACHE_H
#define MIM_STORE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest timeline prefix (a conversation key) and longest name cached;
 * longer names are looked up every time. */
#define MIM__CACHE_PREFIX_MAX 17
#define MIM__CACHE_NAME_MAX 47

struct mim__store_cache;

/* Errors: -ENOMEM. */
int mim__store_cache_create(struct mim__store_cache **out);
void mim__store_cache_destroy(struct mim__store_cache *c);

/* Forgets everything (a write transaction was aborted). */
void mim__store_cache_clear(struct mim__store_cache *c);

/* The last seq of timeline `prefix` (`len` <= MIM__CACHE_PREFIX_MAX bytes)
 * into *seq: true when known. `space` keeps apart timelines whose keys
 * could be equal (the caller's tag: inbox or conversation). */
bool mim__store_cache_tail_get(const struct mim__store_cache *c, int space,
                               const uint8_t *prefix, size_t len,
                               uint64_t *seq);
void mim__store_cache_tail_set(struct mim__store_cache *c, int space,
                               const uint8_t *prefix, size_t len,
                               uint64_t seq);

/* The id of (`kind`, `name`) into *id: true when known. */
bool mim__store_cache_id_get(const struct mim__store_cache *c, int kind,
                             const char *name, uint64_t *id);
void mim__store_cache_id_set(struct mim__store_cache *c, int kind,
                             const char *name, uint64_t id);

#endif
