/* Fuzz target: arbitrary bytes as a token (mim_token_verify) and as an id
 * (mim_id_valid). Neither may crash; a valid id must round-trip through
 * sign/verify; a token that verifies must be the one sign writes. */
#include "fuzz.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mim/auth.h>


static const uint8_t secret[] = "fuzz-secret-0123456789abcdef";
#define SECRET_LEN (sizeof(secret) - 1)
#define NOW INT64_C(1700000000)

static const char *const seeds[] = {
    /* valid for ("alice", "phone"), for ("alice", every device), expired */
    "v1.1700003600.vDR3qjG7daLJWhq-WK8QItfs0sU_a4_Php88SV3t86A",
    "v1.1700003600.chHAXfok42F6B5aU3vayaK8J8UxndcdnqJakiX36uns",
    "v1.1700000000.LEpxbcpAsLdKrXNfiyt6T9mIwLYZY0J0cB2WT1MWkK0",
    "v1.9223372036854775807.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "v1.9223372036854775808.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "v1.+1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "v1.01.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_",
    "token",
    "v1.",
    "v1..",
    "alice",
    "\xe6\x9d\x8e\xe9\x9b\xb7",
    "\xf0\x9f\x98\x80x",
    "\xed\xa0\x80",
    "\xc2\x85",
    "a b",
};

size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap) {
  if (i >= sizeof(seeds) / sizeof(seeds[0]))
    return 0;
  size_t n = strlen(seeds[i]);
  if (n > cap)
    n = cap;
  memcpy(buf, seeds[i], n);
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s)
    return 0;
  memcpy(s, data, size);
  s[size] = '\0'; /* stops at the first NUL byte of the input, if any */

  int64_t exp = 0;
  int r = mim_token_verify(secret, SECRET_LEN, s, "alice", "phone", NOW, &exp);
  if (r == 0) {
    /* Only a token sign would write can verify. */
    char again[MIM_TOKEN_MAX];
    if (exp <= NOW ||
        mim_token_sign(secret, SECRET_LEN, "alice", "phone", exp, again,
                       sizeof(again)) != 0 ||
        strcmp(again, s) != 0) {
      char any[MIM_TOKEN_MAX];
      if (mim_token_sign(secret, SECRET_LEN, "alice", "", exp, any,
                         sizeof(any)) != 0 ||
          strcmp(any, s) != 0)
        abort();
    }
  } else if (r != -MIM_ERR_TOKEN_INVALID && r != -MIM_ERR_TOKEN_EXPIRED) {
    abort();
  }

  /* The input as id, and as uid / device of a verification. */
  bool valid = mim_id_valid(s);
  r = mim_token_verify(secret, SECRET_LEN, "token", s, s, NOW, NULL);
  if (r != -MIM_ERR_TOKEN_INVALID)
    abort();
  if (valid) {
    char tok[MIM_TOKEN_MAX];
    if (strlen(s) == 0 || strlen(s) > MIM_ID_MAX ||
        mim_token_sign(secret, SECRET_LEN, s, s, NOW + 1, tok, sizeof(tok)) !=
            0 ||
        mim_token_verify(secret, SECRET_LEN, tok, s, s, NOW, NULL) != 0)
      abort();
  }
  free(s);
  return 0;
}
