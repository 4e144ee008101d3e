/* conn_id -> connection table. conn_ids are consecutive integers, so a
 * multiplicative (Fibonacci) hash spreads them over the slots; the table
 * stays at most half full, which keeps linear probes short. */
#include "conntab.h"

#include <errno.h>
#include <stdlib.h>

static size_t slot_of(uint64_t key, size_t cap) {
  return (size_t)((key * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & (cap - 1);
}

static int resize(struct conntab *t, size_t cap) {
  struct conntab_slot *slots = calloc(cap, sizeof *slots);
  if (slots == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < t->cap; i++) {
    if (t->slots[i].key == 0)
      continue;
    size_t j = slot_of(t->slots[i].key, cap);
    while (slots[j].key != 0)
      j = (j + 1) & (cap - 1);
    slots[j] = t->slots[i];
  }
  free(t->slots);
  t->slots = slots;
  t->cap = cap;
  return 0;
}

int conntab_put(struct conntab *t, uint64_t key, void *value) {
  if ((t->count + 1) * 2 > t->cap) {
    int rc = resize(t, t->cap ? t->cap * 2 : 64);
    if (rc < 0)
      return rc;
  }
  size_t i = slot_of(key, t->cap);
  while (t->slots[i].key != 0)
    i = (i + 1) & (t->cap - 1);
  t->slots[i].key = key;
  t->slots[i].value = value;
  t->count++;
  return 0;
}

static size_t find(const struct conntab *t, uint64_t key) {
  if (t->cap == 0)
    return SIZE_MAX;
  for (size_t i = slot_of(key, t->cap);; i = (i + 1) & (t->cap - 1)) {
    if (t->slots[i].key == key)
      return i;
    if (t->slots[i].key == 0)
      return SIZE_MAX;
  }
}

void *conntab_get(const struct conntab *t, uint64_t key) {
  size_t i = find(t, key);
  return i == SIZE_MAX ? NULL : t->slots[i].value;
}

void conntab_del(struct conntab *t, uint64_t key) {
  size_t i = find(t, key);
  if (i == SIZE_MAX)
    return;
  size_t mask = t->cap - 1;
  /* backward shift: pull later entries of the probe run into the hole so
   * that lookups never need tombstones */
  for (size_t j = (i + 1) & mask; t->slots[j].key != 0; j = (j + 1) & mask) {
    size_t home = slot_of(t->slots[j].key, t->cap);
    /* move j into the hole i unless its home lies cyclically in (i, j] */
    if (((j - home) & mask) >= ((j - i) & mask)) {
      t->slots[i] = t->slots[j];
      i = j;
    }
  }
  t->slots[i].key = 0;
  t->slots[i].value = NULL;
  t->count--;
  /* give memory back after a connection storm has passed */
  if (t->cap > 1024 && t->count * 8 < t->cap)
    (void)resize(t, t->cap / 2);
}

void conntab_free(struct conntab *t) {
  free(t->slots);
  t->slots = NULL;
  t->cap = t->count = 0;
}
