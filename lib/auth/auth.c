/* Login tokens: "v1." <expiry> "." <base64url(HMAC-SHA256)>, and id checks.
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

#include "util/internal.h"

#define TOKEN_PREFIX "v1."
#define TOKEN_PREFIX_LEN (sizeof(TOKEN_PREFIX) - 1)
#define MAC_DOMAIN "mim-token-v1"
#define MAC_LEN 32     /* SHA-256 */
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

static size_t put_field(uint8_t *p, const char *s, size_t n) {
  p[0] = (uint8_t)(n >> 24);
  p[1] = (uint8_t)(n >> 16);
  p[2] = (uint8_t)(n >> 8);
  p[3] = (uint8_t)n;
  memcpy(p + 4, s, n);
  return 4 + n;
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

static bool secret_ok(const uint8_t *secret, size_t secret_len) {
  return secret && secret_len >= MIM_SECRET_MIN && secret_len <= INT_MAX;
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

bool mim_id_valid(const char *id) {
  if (!id)
    return false;
  const unsigned char *s = (const unsigned char *)id;
  size_t len = 0;
  while (s[len]) {
    unsigned char c = s[len];
    if (c <= 0x20 || c == 0x7f) /* controls and space */
      return false;
    /* the NUL ends any sequence cut short, so this reads no further */
    size_t n = mim__utf8_char_len(s + len, 4);
    if (n == 0)
      return false;
    /* C1 controls U+0080..U+009F are encoded as C2 80..C2 9F. */
    if (n == 2 && c == 0xc2 && s[len + 1] < 0xa0)
      return false;
    len += n;
    if (len > MIM_ID_MAX)
      return false;
  }
  return len > 0;
}

/* ---- session tickets ----
 *
 * 0x01 issued_at(8) expires_at(8) HMAC-SHA256(32); the MAC input is spelled
 * out in <mim/auth.h>. The bound ids are not in the ticket: the RpcSession
 * that carries it names them, and any difference fails the MAC. */

#define TICKET_VERSION 0x01
#define TICKET_DOMAIN "mim-ticket-v1"
#define TICKET_KEY_LABEL "mim session ticket v1"
#define TICKET_MAC_OFF 17

/* Largest MAC input: four length-prefixed strings (domain + three ids), the
 * conn_id, caps and two times. */
#define TICKET_INPUT_MAX                                                       \
  (4 * 4 + (sizeof(TICKET_DOMAIN) - 1) + 3 * MIM_ID_MAX + 8 + 4 + 8 + 8)

static size_t put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (56 - 8 * i));
  return 8;
}

static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

static bool ticket_id_ok(const char *s) {
  if (s == NULL)
    return false;
  size_t n = strlen(s);
  return n > 0 && n <= MIM_ID_MAX;
}

int mim_ticket_key_derive(const uint8_t *secret, size_t secret_len,
                          uint8_t *key) {
  if (!secret_ok(secret, secret_len) || key == NULL)
    return -EINVAL;
  uint8_t mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (!HMAC(EVP_sha256(), secret, (int)secret_len,
            (const uint8_t *)TICKET_KEY_LABEL, sizeof(TICKET_KEY_LABEL) - 1,
            mac, &mac_len) ||
      mac_len != MIM_TICKET_KEY_LEN) {
    OPENSSL_cleanse(mac, sizeof(mac));
    return -EIO;
  }
  memcpy(key, mac, MIM_TICKET_KEY_LEN);
  OPENSSL_cleanse(mac, sizeof(mac));
  return 0;
}

/* The MAC of `t` into `out` (MAC_LEN bytes). Ids are checked by callers. */
static int ticket_mac(const uint8_t *key, size_t key_len,
                      const struct mim_ticket *t, uint8_t *out) {
  uint8_t input[TICKET_INPUT_MAX];
  size_t n = 0;
  n += put_field(input + n, TICKET_DOMAIN, sizeof(TICKET_DOMAIN) - 1);
  n += put_field(input + n, t->gateway_id, strlen(t->gateway_id));
  n += put_u64(input + n, t->conn_id);
  n += put_field(input + n, t->uid, strlen(t->uid));
  n += put_field(input + n, t->device, strlen(t->device));
  input[n++] = (uint8_t)(t->caps >> 24);
  input[n++] = (uint8_t)(t->caps >> 16);
  input[n++] = (uint8_t)(t->caps >> 8);
  input[n++] = (uint8_t)t->caps;
  n += put_u64(input + n, (uint64_t)t->issued_at);
  n += put_u64(input + n, (uint64_t)t->expires_at);

  uint8_t mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  int rc = 0;
  if (!HMAC(EVP_sha256(), key, (int)key_len, input, n, mac, &mac_len) ||
      mac_len != MAC_LEN)
    rc = -EIO;
  else
    memcpy(out, mac, MAC_LEN);
  OPENSSL_cleanse(mac, sizeof(mac));
  OPENSSL_cleanse(input, sizeof(input));
  return rc;
}

int mim_ticket_sign(const uint8_t *key, size_t key_len,
                    const struct mim_ticket *t, uint8_t *buf, size_t cap,
                    size_t *len) {
  if (!secret_ok(key, key_len) || t == NULL || len == NULL ||
      !ticket_id_ok(t->gateway_id) || !ticket_id_ok(t->uid) ||
      !ticket_id_ok(t->device) || t->issued_at <= 0 || t->expires_at < 0)
    return -EINVAL;
  *len = MIM_TICKET_LEN;
  if (buf == NULL || cap < MIM_TICKET_LEN)
    return -ENOBUFS;
  uint8_t mac[MAC_LEN];
  int rc = ticket_mac(key, key_len, t, mac);
  if (rc < 0)
    return rc;
  buf[0] = TICKET_VERSION;
  put_u64(buf + 1, (uint64_t)t->issued_at);
  put_u64(buf + 9, (uint64_t)t->expires_at);
  memcpy(buf + TICKET_MAC_OFF, mac, MAC_LEN);
  OPENSSL_cleanse(mac, sizeof(mac));
  return 0;
}

int mim_ticket_verify(const uint8_t *key, size_t key_len,
                      const uint8_t *ticket, size_t len, struct mim_ticket *t,
                      int64_t now) {
  if (!secret_ok(key, key_len) || t == NULL || (ticket == NULL && len > 0))
    return -EINVAL;
  /* no ticket can have been minted for ids outside these bounds */
  if (len != MIM_TICKET_LEN || ticket[0] != TICKET_VERSION ||
      !ticket_id_ok(t->gateway_id) || !ticket_id_ok(t->uid) ||
      !ticket_id_ok(t->device))
    return -MIM_ERR_TOKEN_INVALID;
  uint64_t issued = get_u64(ticket + 1), expires = get_u64(ticket + 9);
  if (issued == 0 || issued > (uint64_t)INT64_MAX ||
      expires > (uint64_t)INT64_MAX)
    return -MIM_ERR_TOKEN_INVALID;
  struct mim_ticket want = *t;
  want.issued_at = (int64_t)issued;
  want.expires_at = (int64_t)expires;
  uint8_t mac[MAC_LEN];
  int rc = ticket_mac(key, key_len, &want, mac);
  if (rc < 0)
    return rc;
  bool ok = CRYPTO_memcmp(mac, ticket + TICKET_MAC_OFF, MAC_LEN) == 0;
  OPENSSL_cleanse(mac, sizeof(mac));
  if (!ok)
    return -MIM_ERR_TOKEN_INVALID;
  /* after the MAC: a forged ticket is invalid, whatever its expiry */
  if (want.expires_at != 0 && want.expires_at <= now)
    return -MIM_ERR_TOKEN_EXPIRED;
  t->issued_at = want.issued_at;
  t->expires_at = want.expires_at;
  return 0;
}
