/* What the token (token.c) and ticket (ticket.c) code share: one rule for
 * secrets and one MAC input encoding. Private. */
#ifndef MIM_AUTH_INTERNAL_H
#define MIM_AUTH_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <mim/auth.h>

#define MAC_LEN 32 /* SHA-256 */

static inline bool secret_ok(const uint8_t *secret, size_t secret_len) {
  return secret && secret_len >= MIM_SECRET_MIN && secret_len <= INT_MAX;
}

/* Appends `n` bytes of `s` with a 4-byte big-endian length prefix to `p`;
 * returns the bytes written. The prefixes make a MAC input injective. */
static inline size_t put_field(uint8_t *p, const char *s, size_t n) {
  p[0] = (uint8_t)(n >> 24);
  p[1] = (uint8_t)(n >> 16);
  p[2] = (uint8_t)(n >> 8);
  p[3] = (uint8_t)n;
  memcpy(p + 4, s, n);
  return 4 + n;
}

#endif /* MIM_AUTH_INTERNAL_H */
