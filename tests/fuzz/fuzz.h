/* What every fuzz target shares: the entry points the driver calls, and
 * checks that abort (the driver's failure signal) instead of returning. */
#ifndef MIM_FUZZ_H
#define MIM_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap);

static inline void check(bool ok) {
  if (!ok)
    abort();
}

/* Two decoded strings: both present (decoders never leave NULL) and equal. */
static inline void same_str(const char *a, const char *b) {
  check(a != NULL && b != NULL && strcmp(a, b) == 0);
}

static inline void same_bytes(const uint8_t *a, size_t alen, const uint8_t *b,
                              size_t blen) {
  check(alen == blen);
  check(alen == 0 || memcmp(a, b, alen) == 0);
}

#endif
