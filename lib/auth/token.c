/* Login tokens: "v1." <expiry> "." <base64url(HMAC-SHA256)>.
 *
 * MAC input (all lengths 4-byte big-endian, no separators, no NUL):
 *   len("mim-token-v1") "mim-token-v1"
 *   len(uid)            uid
 *   len(device)         device            ("" for a token of every device)
 *   len(expiry)         expiry            (the decimal text in the token)
 * Length prefixes make the encoding injective: no two (uid, device, expiry)
 * triples share an input. docs/protocol.md repeats this for backends that
 * mint tokens in other languages.
 */
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <mim/auth.h>

#include "auth/auth_internal.h"
#include "util/internal.h"

#define TOKEN_PREFIX "v1."
#define TOKEN_PREFIX_LEN (sizeof(TOKEN_PREFIX) - 1)
#define MAC_DOMAIN "mim-token-v1"
#define MAC_B64_LEN 43 /* ceil(32 * 4 / 3), no padding */
#define EXPIRY_DIGITS_MAX 19 /* INT64_MAX = 9223372036854775807 */

/* Largest MAC input: four prefixes, the domain, two ids, the expiry. */
#define MAC_INPUT_MAX                                                          \
  (4 * 4 + (sizeof(MAC_DOMAIN) - 1) + 2 * MIM_ID_MAX + EXPIRY_DIGITS_MAX)

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Writes base64url of `in` (no padding) and a NUL into `out`, which holds at
 * least (n * 4 + 2) / 3 + 1 bytes. */
static void b64url_encode(const uint8_t *in, size_t n, char *out) {
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    *out++ = b64url_alphabet[v >> 18];
    *out++ = b64url_alphabet[(v >> 12) & 63];
    *out++ = b64url_alphabet[(v >> 6) & 63];
    *out++ = b64url_alphabet[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    *out++ = b64url_alphabet[v >> 18];
    *out++ = b64url_alphabet[(v >> 12) & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    *out++ = b64url_alphabet[v >> 18];
    *out++ = b64url_alphabet[(v >> 12) & 63];
    *out++ = b64url_alphabet[(v >> 6) & 63];
  }
  *out = '\0';
}


/* base64url MAC of (uid, device, expiry text) into `out` (MAC_B64_LEN + 1
 * bytes). Lengths are checked by the callers: ids <= MIM_ID_MAX, expiry <=
 * EXPIRY_DIGITS_MAX, secret_len <= INT_MAX. */
static int mac_b64(const uint8_t *secret, size_t secret_len, const char *uid,
                   size_t uid_len, const char *device, size_t device_len,
                   const char *expiry, size_t expiry_len, char *out) {
  uint8_t input[MAC_INPUT_MAX];
  size_t n = 0;
  n += put_field(input + n, MAC_DOMAIN, sizeof(MAC_DOMAIN) - 1);
  n += put_field(input + n, uid, uid_len);
  n += put_field(input + n, device, device_len);
  n += put_field(input + n, expiry, expiry_len);

  uint8_t mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (!HMAC(EVP_sha256(), secret, (int)secret_len, input, n, mac, &mac_len) ||
      mac_len != MAC_LEN) {
    OPENSSL_cleanse(input, sizeof(input));
    return -EIO;
  }
  b64url_encode(mac, MAC_LEN, out);
  OPENSSL_cleanse(mac, sizeof(mac));
  OPENSSL_cleanse(input, sizeof(input));
  return 0;
}


int mim_token_sign(const uint8_t *secret, size_t secret_len, const char *uid,
                   const char *device, int64_t expires_at, char *buf,
                   size_t cap) {
  if (!secret_ok(secret, secret_len) || !uid || expires_at <= 0)
    return -EINVAL;
  if (!device)
    device = "";
  size_t uid_len = strlen(uid), device_len = strlen(device);
  /* A device longer than any valid id could never log in: refuse to mint a
   * token that can only fail later. */
  if (uid_len == 0 || uid_len > MIM_ID_MAX || device_len > MIM_ID_MAX)
    return -EINVAL;
  if (!buf)
    return -EINVAL;

  /* Canonical decimal: no sign, no leading zeros (expires_at > 0). */
  char expiry[EXPIRY_DIGITS_MAX + 1];
  size_t expiry_len = 0;
  char rev[EXPIRY_DIGITS_MAX];
  for (uint64_t v = (uint64_t)expires_at; v; v /= 10)
    rev[expiry_len++] = (char)('0' + v % 10);
  for (size_t i = 0; i < expiry_len; i++)
    expiry[i] = rev[expiry_len - 1 - i];
  expiry[expiry_len] = '\0';

  size_t need = TOKEN_PREFIX_LEN + expiry_len + 1 + MAC_B64_LEN + 1;
  if (cap < need)
    return -ENOBUFS;

  char mac[MAC_B64_LEN + 1];
  int r = mac_b64(secret, secret_len, uid, uid_len, device, device_len, expiry,
                  expiry_len, mac);
  if (r < 0)
    return r;

  char *p = buf;
  memcpy(p, TOKEN_PREFIX, TOKEN_PREFIX_LEN);
  p += TOKEN_PREFIX_LEN;
  memcpy(p, expiry, expiry_len);
  p += expiry_len;
  *p++ = '.';
  memcpy(p, mac, MAC_B64_LEN + 1); /* with its NUL */
  OPENSSL_cleanse(mac, sizeof(mac));
  return 0;
}

/* Splits "v1.<expiry>.<mac>" strictly: expiry is 1..19 ASCII digits without
 * a leading zero and fits int64 (> 0); mac is exactly MAC_B64_LEN base64url
 * characters; nothing follows. */
static bool token_parse(const char *token, const char **expiry,
                        size_t *expiry_len, int64_t *expires_at,
                        const char **mac) {
  if (strncmp(token, TOKEN_PREFIX, TOKEN_PREFIX_LEN) != 0)
    return false;
  const char *p = token + TOKEN_PREFIX_LEN;
  const char *digits = p;
  uint64_t v = 0;
  while (*p >= '0' && *p <= '9') {
    if (p - digits >= EXPIRY_DIGITS_MAX)
      return false;
    v = v * 10 + (uint64_t)(*p - '0');
    p++;
  }
  size_t n = (size_t)(p - digits);
  if (n == 0 || digits[0] == '0' || v > (uint64_t)INT64_MAX || *p != '.')
    return false;
  p++;
  for (size_t i = 0; i < MAC_B64_LEN; i++) {
    char c = p[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
          (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return false; /* also stops at the NUL of a short token */
  }
  if (p[MAC_B64_LEN] != '\0')
    return false;
  *expiry = digits;
  *expiry_len = n;
  *expires_at = (int64_t)v;
  *mac = p;
  return true;
}

/* 1 the MAC matches, 0 it does not, or a negative error. */
static int mac_matches(const uint8_t *secret, size_t secret_len,
                       const char *uid, size_t uid_len, const char *device,
                       const char *expiry, size_t expiry_len,
                       const char *mac) {
  char want[MAC_B64_LEN + 1];
  int r = mac_b64(secret, secret_len, uid, uid_len, device, strlen(device),
                  expiry, expiry_len, want);
  if (r < 0)
    return r;
  /* Comparing the canonical encodings also rejects the non-canonical
   * spellings of the last character (its two unused low bits set). */
  r = CRYPTO_memcmp(want, mac, MAC_B64_LEN) == 0;
  OPENSSL_cleanse(want, sizeof(want));
  return r;
}

int mim_token_verify(const uint8_t *secret, size_t secret_len,
                     const char *token, const char *uid, const char *device,
                     int64_t now, int64_t *expires_at) {
  if (!secret_ok(secret, secret_len) || !token || !uid || !device)
    return -EINVAL;
  size_t uid_len = strlen(uid);
  /* No token can have been minted for ids outside these bounds. */
  if (uid_len == 0 || uid_len > MIM_ID_MAX || strlen(device) > MIM_ID_MAX)
    return -MIM_ERR_TOKEN_INVALID;

  const char *expiry, *mac;
  size_t expiry_len;
  int64_t exp;
  if (!token_parse(token, &expiry, &expiry_len, &exp, &mac))
    return -MIM_ERR_TOKEN_INVALID;

  /* The device's own token first, then a token of every device (minted with
   * device ""): a device-bound token that fails costs two HMACs. */
  int r = mac_matches(secret, secret_len, uid, uid_len, device, expiry,
                      expiry_len, mac);
  if (r == 0 && device[0] != '\0')
    r = mac_matches(secret, secret_len, uid, uid_len, "", expiry, expiry_len,
                    mac);
  if (r < 0)
    return r;
  if (r == 0)
    return -MIM_ERR_TOKEN_INVALID;
  /* Checked after the MAC: a forged token is invalid, whatever its expiry. */
  if (exp <= now)
    return -MIM_ERR_TOKEN_EXPIRED;
  if (expires_at)
    *expires_at = exp;
  return 0;
}
