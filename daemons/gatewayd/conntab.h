/* conn_id -> connection: an open-addressing hash table (linear probing,
 * backward-shift deletion). Keys are never 0 (0 marks an empty slot). */
#ifndef GATEWAYD_CONNTAB_H
#define GATEWAYD_CONNTAB_H

#include <stddef.h>
#include <stdint.h>

struct conntab_slot {
  uint64_t key;
  void *value;
};

struct conntab {
  struct conntab_slot *slots;
  size_t cap; /* a power of two, or 0 */
  size_t count;
};

/* Adds `key` (!= 0, not present) -> `value` (borrowed). Errors: -ENOMEM. */
int conntab_put(struct conntab *t, uint64_t key, void *value);

/* The value of `key`, or NULL. */
void *conntab_get(const struct conntab *t, uint64_t key);

/* Removes `key` if present. */
void conntab_del(struct conntab *t, uint64_t key);

/* Frees the slots; the values are the caller's. */
void conntab_free(struct conntab *t);

/* Iteration over the slots: for (i = 0; i < t->cap; i++) if key != 0.
 * The table must not change meanwhile. */

#endif
