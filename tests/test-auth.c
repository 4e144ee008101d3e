/* Login tokens and id checks (lib/auth.c). */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <mim/auth.h>

static const uint8_t secret[] = "0123456789abcdef0123456789abcdef";
#define SECRET_LEN (sizeof(secret) - 1)
#define NOW INT64_C(1700000000)
#define LATER (NOW + 3600)

static void sign_ok(const char *uid, const char *device, int64_t exp,
                    char *buf) {
  assert_int_equal(
      mim_token_sign(secret, SECRET_LEN, uid, device, exp, buf, MIM_TOKEN_MAX),
      0);
}

static int verify(const char *token, const char *uid, const char *device) {
  return mim_token_verify(secret, SECRET_LEN, token, uid, device, NOW, NULL);
}

/* The documented MAC input, built independently of lib/auth.c. */
static size_t put_lp(uint8_t *p, const char *s) {
  size_t n = strlen(s);
  p[0] = (uint8_t)(n >> 24);
  p[1] = (uint8_t)(n >> 16);
  p[2] = (uint8_t)(n >> 8);
  p[3] = (uint8_t)n;
  memcpy(p + 4, s, n);
  return n + 4;
}

static void ref_mac(const uint8_t *key, size_t key_len, const char *uid,
                    const char *device, const char *expiry, uint8_t out[32]) {
  uint8_t in[512];
  size_t n = 0;
  n += put_lp(in + n, "mim-token-v1");
  n += put_lp(in + n, uid);
  n += put_lp(in + n, device);
  n += put_lp(in + n, expiry);
  unsigned int len = 0;
  assert_non_null(HMAC(EVP_sha256(), key, (int)key_len, in, n, out, &len));
  assert_int_equal(len, 32);
}

/* base64url (no padding) of a 32-byte MAC, written independently. */
static void ref_b64(const uint8_t mac[32], char out[44]) {
  static const char a[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  uint32_t bits = 0;
  int nbits = 0;
  size_t o = 0;
  for (size_t i = 0; i < 32; i++) {
    bits = bits << 8 | mac[i];
    nbits += 8;
    while (nbits >= 6) {
      out[o++] = a[(bits >> (nbits - 6)) & 63];
      nbits -= 6;
    }
  }
  if (nbits > 0)
    out[o++] = a[(bits << (6 - nbits)) & 63];
  out[o] = '\0';
}

static int b64_val(char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '-')
    return 62;
  if (c == '_')
    return 63;
  return -1;
}

/* Decodes 43 base64url characters into 32 bytes; fails the test otherwise. */
static void ref_b64_decode(const char *s, uint8_t out[32]) {
  assert_int_equal(strlen(s), 43);
  uint32_t bits = 0;
  int nbits = 0;
  size_t o = 0;
  for (size_t i = 0; i < 43; i++) {
    int v = b64_val(s[i]);
    assert_true(v >= 0);
    bits = bits << 6 | (uint32_t)v;
    nbits += 6;
    if (nbits >= 8) {
      assert_true(o < 32);
      out[o++] = (uint8_t)(bits >> (nbits - 8));
      nbits -= 8;
    }
  }
  assert_int_equal(o, 32);
  assert_int_equal(bits & ((1u << nbits) - 1), 0); /* canonical tail */
}

/* "v1.<expiry>.<mac>" with a correctly computed MAC over `expiry` as given:
 * a parser that accepted the text would find the MAC right. */
static void forge(char *buf, size_t cap, const char *uid, const char *device,
                  const char *expiry) {
  uint8_t mac[32];
  char b64[44];
  ref_mac(secret, SECRET_LEN, uid, device, expiry, mac);
  ref_b64(mac, b64);
  snprintf(buf, cap, "v1.%s.%s", expiry, b64);
}

/* ---- tests ---- */

static void valid_token_verifies_and_returns_expiry(void **state) {
  (void)state;
  char tok[MIM_TOKEN_MAX];
  sign_ok("alice", "phone", LATER, tok);
  assert_int_equal(strncmp(tok, "v1.1700003600.", 14), 0);
  assert_int_equal(strlen(tok), 14 + 43);
  int64_t exp = 0;
  assert_int_equal(mim_token_verify(secret, SECRET_LEN, tok, "alice", "phone",
                                    NOW, &exp),
                   0);
  assert_int_equal(exp, LATER);
  /* NULL expires_at is allowed. */
  assert_int_equal(verify(tok, "alice", "phone"), 0);
}

static void expired_token_rejected(void **state) {
  (void)state;
  char tok[MIM_TOKEN_MAX];
  int64_t exp = -1;
  sign_ok("alice", "phone", NOW, tok); /* expiry == now */
  assert_int_equal(mim_token_verify(secret, SECRET_LEN, tok, "alice", "phone",
                                    NOW, &exp),
                   -MIM_ERR_TOKEN_EXPIRED);
  assert_int_equal(exp, -1); /* untouched on failure */
  sign_ok("alice", "phone", NOW - 1, tok); /* expiry < now */
  assert_int_equal(verify(tok, "alice", "phone"), -MIM_ERR_TOKEN_EXPIRED);
  /* One second before expiry it is still good. */
  assert_int_equal(mim_token_verify(secret, SECRET_LEN, tok, "alice", "phone",
                                    NOW - 2, &exp),
                   0);
  assert_int_equal(exp, NOW - 1);
  /* A forged expired token is invalid, not expired. */
  tok[strlen(tok) - 2] ^= 1;
  assert_int_equal(verify(tok, "alice", "phone"), -MIM_ERR_TOKEN_INVALID);
}

static void other_uid_rejected(void **state) {
  (void)state;
  char tok[MIM_TOKEN_MAX];
  sign_ok("alice", "phone", LATER, tok);
  assert_int_equal(verify(tok, "bob", "phone"), -MIM_ERR_TOKEN_INVALID);
  assert_int_equal(verify(tok, "alicf", "phone"), -MIM_ERR_TOKEN_INVALID);
  assert_int_equal(verify(tok, "alice ", "phone"), -MIM_ERR_TOKEN_INVALID);
  assert_int_equal(verify(tok, "Alice", "phone"), -MIM_ERR_TOKEN_INVALID);
  assert_int_equal(verify(tok, "", "phone"), -MIM_ERR_TOKEN_INVALID);
}

static void other_device_rejected(void **state) {
  (void)state;
  char tok[MIM_TOKEN_MAX];
  sign_ok("alice", "phone", LATER, tok);
  assert_int_equal(verify(tok, "alice", "laptop"), -MIM_ERR_TOKEN_INVALID);
  assert_int_equal(verify(tok, "alice", "default"), -MIM_ERR_TOKEN_INVALID);
  /* A device-bound token is not a token of every device. */
  assert_int_equal(verify(tok, "alice", ""), -MIM_ERR_TOKEN_INVALID);
}

static void deviceless_token_valid_for_every_device(void **state) {
  (void)state;
  char a[MIM_TOKEN_MAX], b[MIM_TOKEN_MAX];
  sign_ok("alice", "", LATER, a);
  sign_ok("alice", NULL, LATER, b);
  assert_string_equal(a, b); /* NULL and "" are the same */
  const char *devices[] = {"", "default", "phone", "laptop", "\xe6\x89\x8b"};
  for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++)
    assert_int_equal(verify(a, "alice", devices[i]), 0);
  /* ... but still only for its uid. */
  assert_int_equal(verify(a, "bob", "phone"), -MIM_ERR_TOKEN_INVALID);
}

static void length_prefixes_keep_fields_apart(void **state) {
  (void)state;
  char tok[MIM_TOKEN_MAX];
  /* Plain concatenation would make these two inputs equal. */
  sign_ok("ab", "c", LATER, tok);
  assert_int_equal(verify(tok, "ab", "c"), 0);
  assert_int_equal(verify(tok, "a", "bc"), -MIM_ERR_TOKEN_INVALID);
  assert_int_equal(verify(tok, "abc", ""), -MIM_ERR_TOKEN_INVALID);
}

static void other_secret_rejected(void **state) {
  (void)state;
  char tok[MIM_TOKEN_MAX];
  sign_ok("alice", "phone", LATER, tok);
  uint8_t other[SECRET_LEN];
  memcpy(other, secret, SECRET_LEN);
  other[SECRET_LEN - 1] ^= 1;
  assert_int_equal(mim_token_verify(other, SECRET_LEN, tok, "alice", "phone",
                                    NOW, NULL),
                   -MIM_ERR_TOKEN_INVALID);
  /* A prefix of the secret is another secret. */
  assert_int_equal(mim_token_verify(secret, SECRET_LEN - 1, tok, "alice",
                                    "phone", NOW, NULL),
                   -MIM_ERR_TOKEN_INVALID);
}

static void every_prefix_rejected(void **state) {
  (void)state;
  char tok[MIM_TOKEN_MAX], cut[MIM_TOKEN_MAX];
  sign_ok("alice", "phone", LATER, tok);
  size_t len = strlen(tok);
  for (size_t n = 0; n < len; n++) {
    memcpy(cut, tok, n);
    cut[n] = '\0';
    assert_int_equal(verify(cut, "alice", "phone"), -MIM_ERR_TOKEN_INVALID);
  }
  assert_int_equal(verify(tok, "alice", "phone"), 0);
}

static void flipped_mac_character_rejected(void **state) {
  (void)state;
  char tok[MIM_TOKEN_MAX];
  sign_ok("alice", "phone", LATER, tok);
  size_t len = strlen(tok), mac_at = len - 43;
  for (size_t i = mac_at; i < len; i++) {
    char saved = tok[i];
    tok[i] = saved == 'A' ? 'B' : 'A';
    assert_int_equal(verify(tok, "alice", "phone"), -MIM_ERR_TOKEN_INVALID);
    tok[i] = saved;
  }
  /* The last character carries 4 bits; its 3 other spellings with the two
   * unused bits set decode to the same MAC and must still be refused. */
  int last = b64_val(tok[len - 1]);
  static const char a[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (int low = 1; low < 4; low++) {
    char saved = tok[len - 1];
    tok[len - 1] = a[(last & ~3) | low];
    assert_int_equal(verify(tok, "alice", "phone"), -MIM_ERR_TOKEN_INVALID);
    tok[len - 1] = saved;
  }
  assert_int_equal(verify(tok, "alice", "phone"), 0);
}

static void garbage_rejected(void **state) {
  (void)state;
  char tok[MIM_TOKEN_MAX], buf[2 * MIM_TOKEN_MAX];
  sign_ok("alice", "phone", LATER, tok);
  const char *bad[] = {
      "", "token", "v1", "v1.", "v1..", "v1.1700003600", "v1.1700003600.",
      "V1.1700003600.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", " ",
      "\xff\xfe", "Bearer x",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(verify(bad[i], "alice", "phone"), -MIM_ERR_TOKEN_INVALID);

  /* The valid token with anything around it. */
  const char *fmt[] = {"%s ", " %s", "%s\n", "%s=", "%sA", "x%s", "%s.x"};
  for (size_t i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
    snprintf(buf, sizeof(buf), fmt[i], tok);
    assert_int_equal(verify(buf, "alice", "phone"), -MIM_ERR_TOKEN_INVALID);
  }
  /* Another version prefix with an otherwise valid token. */
  snprintf(buf, sizeof(buf), "v2%s", tok + 2);
  assert_int_equal(verify(buf, "alice", "phone"), -MIM_ERR_TOKEN_INVALID);
  /* Standard base64 ('+', '/') instead of base64url. */
  strcpy(buf, tok);
  buf[strlen(buf) - 5] = '+';
  assert_int_equal(verify(buf, "alice", "phone"), -MIM_ERR_TOKEN_INVALID);
}

static void bad_expiry_text_rejected(void **state) {
  (void)state;
  char tok[2 * MIM_TOKEN_MAX];
  /* Each carries the right MAC for its text, so only the parser stops it. */
  const char *bad[] = {
      "+1700003600", "-1700003600", " 1700003600", "01700003600", "0", "00",
      "9223372036854775808",  /* INT64_MAX + 1 */
      "18446744073709551616", /* 2^64 */
      "99999999999999999999", /* 20 digits */
      "17000036OO", "0x6553f100", "1700003600.0", "1e10", "",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    forge(tok, sizeof(tok), "alice", "phone", bad[i]);
    assert_int_equal(verify(tok, "alice", "phone"), -MIM_ERR_TOKEN_INVALID);
  }
  /* The same construction with good text is accepted, and so is the
   * largest expiry. */
  forge(tok, sizeof(tok), "alice", "phone", "1700003600");
  assert_int_equal(verify(tok, "alice", "phone"), 0);
  forge(tok, sizeof(tok), "alice", "phone", "9223372036854775807");
  int64_t exp = 0;
  assert_int_equal(mim_token_verify(secret, SECRET_LEN, tok, "alice", "phone",
                                    NOW, &exp),
                   0);
  assert_int_equal(exp, INT64_MAX);
}

static void invalid_arguments_einval(void **state) {
  (void)state;
  char tok[MIM_TOKEN_MAX], good[MIM_TOKEN_MAX];
  char long_id[MIM_ID_MAX + 2];
  memset(long_id, 'u', MIM_ID_MAX + 1);
  long_id[MIM_ID_MAX + 1] = '\0';
  sign_ok("alice", "phone", LATER, good);

  /* Short secret: one byte below the minimum. */
  assert_int_equal(mim_token_sign(secret, MIM_SECRET_MIN - 1, "alice", "phone",
                                  LATER, tok, sizeof(tok)),
                   -EINVAL);
  assert_int_equal(mim_token_sign(secret, MIM_SECRET_MIN, "alice", "phone",
                                  LATER, tok, sizeof(tok)),
                   0);
  assert_int_equal(mim_token_verify(secret, MIM_SECRET_MIN - 1, good, "alice",
                                    "phone", NOW, NULL),
                   -EINVAL);
  assert_int_equal(
      mim_token_sign(NULL, SECRET_LEN, "alice", "phone", LATER, tok, 80),
      -EINVAL);

  /* uid empty / too long; expiry not positive. */
  assert_int_equal(
      mim_token_sign(secret, SECRET_LEN, "", "phone", LATER, tok, 80), -EINVAL);
  assert_int_equal(
      mim_token_sign(secret, SECRET_LEN, NULL, "phone", LATER, tok, 80),
      -EINVAL);
  assert_int_equal(
      mim_token_sign(secret, SECRET_LEN, long_id, "phone", LATER, tok, 80),
      -EINVAL);
  /* A device no login could use gets no token either. */
  assert_int_equal(
      mim_token_sign(secret, SECRET_LEN, "alice", long_id, LATER, tok, 80),
      -EINVAL);
  assert_int_equal(verify(good, "alice", long_id), -MIM_ERR_TOKEN_INVALID);
  long_id[MIM_ID_MAX] = '\0'; /* exactly MIM_ID_MAX is fine */
  assert_int_equal(
      mim_token_sign(secret, SECRET_LEN, long_id, long_id, LATER, tok, 80), 0);
  assert_int_equal(verify(tok, long_id, long_id), 0);
  assert_int_equal(
      mim_token_sign(secret, SECRET_LEN, "alice", "phone", 0, tok, 80),
      -EINVAL);
  assert_int_equal(
      mim_token_sign(secret, SECRET_LEN, "alice", "phone", -5, tok, 80),
      -EINVAL);

  /* NULL arguments to verify. */
  assert_int_equal(mim_token_verify(NULL, SECRET_LEN, good, "alice", "phone",
                                    NOW, NULL),
                   -EINVAL);
  assert_int_equal(verify(NULL, "alice", "phone"), -EINVAL);
  assert_int_equal(verify(good, NULL, "phone"), -EINVAL);
  assert_int_equal(verify(good, "alice", NULL), -EINVAL);
}

static void small_buffer_enobufs(void **state) {
  (void)state;
  char tok[MIM_TOKEN_MAX];
  size_t need = strlen("v1.1700003600.") + 43 + 1;
  memset(tok, 'z', sizeof(tok));
  assert_int_equal(mim_token_sign(secret, SECRET_LEN, "alice", "phone", LATER,
                                  tok, need - 1),
                   -ENOBUFS);
  assert_int_equal(tok[0], 'z'); /* nothing written */
  assert_int_equal(mim_token_sign(secret, SECRET_LEN, "alice", "phone", LATER,
                                  tok, 0),
                   -ENOBUFS);
  assert_int_equal(mim_token_sign(secret, SECRET_LEN, "alice", "phone", LATER,
                                  tok, need),
                   0);
  assert_int_equal(strlen(tok), need - 1);
  /* MIM_TOKEN_MAX holds the longest token. */
  assert_int_equal(mim_token_sign(secret, SECRET_LEN, "alice", "phone",
                                  INT64_MAX, tok, MIM_TOKEN_MAX),
                   0);
  assert_true(strlen(tok) < MIM_TOKEN_MAX);
}

static void known_answer_matches_reference_hmac(void **state) {
  (void)state;
  char tok[MIM_TOKEN_MAX];
  const struct {
    const char *uid, *device;
    int64_t exp;
  } v[] = {
      {"alice", "phone", LATER},
      {"alice", "", LATER},
      {"\xe6\x9d\x8e\xe9\x9b\xb7", "web-1", INT64_MAX},
      {"x", "y", 1},
  };
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    sign_ok(v[i].uid, v[i].device, v[i].exp, tok);
    char expiry[32];
    snprintf(expiry, sizeof(expiry), "%lld", (long long)v[i].exp);
    char prefix[48];
    snprintf(prefix, sizeof(prefix), "v1.%s.", expiry);
    assert_int_equal(strncmp(tok, prefix, strlen(prefix)), 0);

    uint8_t want[32], got[32];
    ref_mac(secret, SECRET_LEN, v[i].uid, v[i].device, expiry, want);
    ref_b64_decode(tok + strlen(prefix), got);
    assert_memory_equal(got, want, 32);
  }
}

static void fixed_vectors_from_python(void **state) {
  (void)state;
  /* Computed with Python's hmac/hashlib/base64 from the documented input
   * (docs/protocol.md), pinning the format across releases. */
  char tok[MIM_TOKEN_MAX];
  sign_ok("alice", "phone", 1700000000, tok);
  assert_string_equal(tok,
                      "v1.1700000000.OEY-L7klSketoqYzahZhFmXxdiNJARdeL4pOK-oxmto");
  sign_ok("\xe6\x9d\x8e\xe9\x9b\xb7", "", 4102444800, tok);
  assert_string_equal(tok,
                      "v1.4102444800.UsdlomSQL2QyvuYdFr84G0F7Mm2-fzGqcZOagKbssaE");
  assert_int_equal(mim_token_verify(secret, SECRET_LEN, tok,
                                    "\xe6\x9d\x8e\xe9\x9b\xb7", "tablet", NOW,
                                    NULL),
                   0);
}

static void id_valid_edge_cases(void **state) {
  (void)state;
  char id[MIM_ID_MAX + 8];
  memset(id, 'a', sizeof(id));

  assert_false(mim_id_valid(NULL));
  assert_false(mim_id_valid(""));
  assert_true(mim_id_valid("a"));
  assert_true(mim_id_valid("alice_01-x.y@z"));
  id[MIM_ID_MAX] = '\0';
  assert_true(mim_id_valid(id));
  id[MIM_ID_MAX] = 'a';
  id[MIM_ID_MAX + 1] = '\0';
  assert_false(mim_id_valid(id));

  /* Space, controls, DEL. */
  assert_false(mim_id_valid("a b"));
  assert_false(mim_id_valid(" "));
  assert_false(mim_id_valid("alice\n"));
  assert_false(mim_id_valid("a\tb"));
  assert_false(mim_id_valid("\x01"));
  assert_false(mim_id_valid("\x1f"));
  assert_false(mim_id_valid("a\x7f"));
  assert_true(mim_id_valid("~!"));

  /* Valid multibyte UTF-8: 2, 3 and 4 bytes. */
  assert_true(mim_id_valid("\xc3\xa9t\xc3\xa9"));           /* été */
  assert_true(mim_id_valid("\xe6\x9d\x8e\xe9\x9b\xb7"));    /* 李雷 */
  assert_true(mim_id_valid("\xf0\x9f\x98\x80"));            /* U+1F600 */
  assert_true(mim_id_valid("\xf4\x8f\xbf\xbf"));            /* U+10FFFF */
  assert_true(mim_id_valid("\xed\x9f\xbf"));                /* U+D7FF */

  /* Malformed UTF-8. */
  assert_false(mim_id_valid("\x80"));             /* stray continuation */
  assert_false(mim_id_valid("a\xbf"));
  assert_false(mim_id_valid("\xc3"));             /* truncated */
  assert_false(mim_id_valid("\xe6\x9d"));
  assert_false(mim_id_valid("\xe6\x9d" "a"));
  assert_false(mim_id_valid("\xc0\xaf"));         /* overlong '/' */
  assert_false(mim_id_valid("\xc1\xbf"));
  assert_false(mim_id_valid("\xe0\x80\xaf"));     /* overlong, 3 bytes */
  assert_false(mim_id_valid("\xf0\x80\x80\xaf")); /* overlong, 4 bytes */
  assert_false(mim_id_valid("\xed\xa0\x80"));     /* surrogate U+D800 */
  assert_false(mim_id_valid("\xf4\x90\x80\x80")); /* U+110000 */
  assert_false(mim_id_valid("\xf5\x80\x80\x80"));
  assert_false(mim_id_valid("\xff"));
  assert_false(mim_id_valid("\xc2\x85"));         /* C1 control NEL */

  /* The limit counts bytes, not characters: 42 x 3 bytes + 2 = 128. */
  size_t n = 0;
  for (int i = 0; i < 42; i++) {
    memcpy(id + n, "\xe6\x9d\x8e", 3);
    n += 3;
  }
  memcpy(id + n, "ab", 3);
  assert_int_equal(strlen(id), MIM_ID_MAX);
  assert_true(mim_id_valid(id));
  memcpy(id + n, "abc", 4);
  assert_false(mim_id_valid(id));
  /* A multibyte character straddling the limit. */
  memcpy(id + n, "a\xe6\x9d\x8e", 5);
  assert_false(mim_id_valid(id));
}

/* ---- session tickets ---- */

static const struct mim_ticket base_ticket = {
    .gateway_id = "gw-1", .conn_id = 42, .uid = "alice", .device = "phone",
    .caps = 1, .issued_at = NOW - 10, .expires_at = LATER};

static void ticket_key(uint8_t key[MIM_TICKET_KEY_LEN]) {
  assert_int_equal(mim_ticket_key_derive(secret, SECRET_LEN, key), 0);
}

static void ticket_mint(const uint8_t *key, const struct mim_ticket *t,
                        uint8_t buf[MIM_TICKET_LEN]) {
  size_t len = 0;
  assert_int_equal(
      mim_ticket_sign(key, MIM_TICKET_KEY_LEN, t, buf, MIM_TICKET_LEN, &len),
      0);
  assert_int_equal(len, MIM_TICKET_LEN);
}

static int ticket_check(const uint8_t *key, const uint8_t *tk, size_t len,
                        struct mim_ticket t, int64_t now) {
  t.issued_at = t.expires_at = -1; /* outputs */
  return mim_ticket_verify(key, MIM_TICKET_KEY_LEN, tk, len, &t, now);
}

static void ticket_roundtrip(void **state) {
  (void)state;
  uint8_t key[MIM_TICKET_KEY_LEN], tk[MIM_TICKET_LEN];
  ticket_key(key);
  ticket_mint(key, &base_ticket, tk);
  struct mim_ticket t = base_ticket;
  t.issued_at = t.expires_at = 0;
  assert_int_equal(mim_ticket_verify(key, sizeof key, tk, sizeof tk, &t, NOW),
                   0);
  assert_int_equal(t.issued_at, NOW - 10);
  assert_int_equal(t.expires_at, LATER);
  /* A development session (expires_at 0) never expires. */
  struct mim_ticket dev = base_ticket;
  dev.expires_at = 0;
  ticket_mint(key, &dev, tk);
  assert_int_equal(ticket_check(key, tk, sizeof tk, dev, INT64_MAX), 0);
}

/* The key is HMAC-SHA256(secret, "mim session ticket v1"), not the secret. */
static void ticket_key_is_labelled_hmac(void **state) {
  (void)state;
  uint8_t key[MIM_TICKET_KEY_LEN], want[32];
  unsigned int n = 0;
  ticket_key(key);
  assert_non_null(HMAC(EVP_sha256(), secret, (int)SECRET_LEN,
                       (const uint8_t *)"mim session ticket v1", 21, want, &n));
  assert_int_equal(n, 32);
  assert_memory_equal(key, want, 32);
  assert_int_equal(mim_ticket_key_derive(secret, MIM_SECRET_MIN - 1, key),
                   -EINVAL);
}

static void ticket_expired_rejected(void **state) {
  (void)state;
  uint8_t key[MIM_TICKET_KEY_LEN], tk[MIM_TICKET_LEN];
  ticket_key(key);
  ticket_mint(key, &base_ticket, tk);
  assert_int_equal(ticket_check(key, tk, sizeof tk, base_ticket, LATER - 1), 0);
  assert_int_equal(ticket_check(key, tk, sizeof tk, base_ticket, LATER),
                   -MIM_ERR_TOKEN_EXPIRED);
  /* Pushing the expiry forward in the ticket breaks the MAC. */
  tk[16] ^= 0x01;
  assert_int_equal(ticket_check(key, tk, sizeof tk, base_ticket, LATER),
                   -MIM_ERR_TOKEN_INVALID);
}

/* Every bit of the ticket is covered: flipping any one fails. */
static void ticket_tampered_rejected(void **state) {
  (void)state;
  uint8_t key[MIM_TICKET_KEY_LEN], tk[MIM_TICKET_LEN];
  ticket_key(key);
  ticket_mint(key, &base_ticket, tk);
  for (size_t i = 0; i < sizeof tk; i++) {
    for (int b = 0; b < 8; b++) {
      tk[i] ^= (uint8_t)(1u << b);
      assert_int_equal(ticket_check(key, tk, sizeof tk, base_ticket, NOW),
                       -MIM_ERR_TOKEN_INVALID);
      tk[i] ^= (uint8_t)(1u << b);
    }
  }
  assert_int_equal(ticket_check(key, tk, sizeof tk, base_ticket, NOW), 0);
  /* Truncated, extended, empty. */
  uint8_t longer[MIM_TICKET_LEN + 1];
  memcpy(longer, tk, sizeof tk);
  longer[MIM_TICKET_LEN] = 0;
  assert_int_equal(ticket_check(key, tk, sizeof tk - 1, base_ticket, NOW),
                   -MIM_ERR_TOKEN_INVALID);
  assert_int_equal(ticket_check(key, longer, sizeof longer, base_ticket, NOW),
                   -MIM_ERR_TOKEN_INVALID);
  assert_int_equal(ticket_check(key, NULL, 0, base_ticket, NOW),
                   -MIM_ERR_TOKEN_INVALID);
}

/* A ticket is good only for exactly what it was minted for. */
static void ticket_other_fields_rejected(void **state) {
  (void)state;
  uint8_t key[MIM_TICKET_KEY_LEN], tk[MIM_TICKET_LEN];
  ticket_key(key);
  ticket_mint(key, &base_ticket, tk);
  struct mim_ticket t = base_ticket;
  t.gateway_id = "gw-2";
  assert_int_equal(ticket_check(key, tk, sizeof tk, t, NOW),
                   -MIM_ERR_TOKEN_INVALID);
  t = base_ticket;
  t.conn_id = 43;
  assert_int_equal(ticket_check(key, tk, sizeof tk, t, NOW),
                   -MIM_ERR_TOKEN_INVALID);
  t = base_ticket;
  t.uid = "mallory";
  assert_int_equal(ticket_check(key, tk, sizeof tk, t, NOW),
                   -MIM_ERR_TOKEN_INVALID);
  t = base_ticket;
  t.device = "default";
  assert_int_equal(ticket_check(key, tk, sizeof tk, t, NOW),
                   -MIM_ERR_TOKEN_INVALID);
  t = base_ticket;
  t.caps = 0;
  assert_int_equal(ticket_check(key, tk, sizeof tk, t, NOW),
                   -MIM_ERR_TOKEN_INVALID);
  /* Length prefixes: ("ab","c") and ("a","bc") differ. */
  struct mim_ticket a = base_ticket, b = base_ticket;
  a.uid = "ab";
  a.device = "c";
  b.uid = "a";
  b.device = "bc";
  ticket_mint(key, &a, tk);
  assert_int_equal(ticket_check(key, tk, sizeof tk, b, NOW),
                   -MIM_ERR_TOKEN_INVALID);
}

static void ticket_wrong_key_rejected(void **state) {
  (void)state;
  uint8_t key[MIM_TICKET_KEY_LEN], other[MIM_TICKET_KEY_LEN],
      tk[MIM_TICKET_LEN];
  static const uint8_t other_secret[] = "another-secret-0123456789abcdef";
  ticket_key(key);
  assert_int_equal(
      mim_ticket_key_derive(other_secret, sizeof other_secret - 1, other), 0);
  assert_memory_not_equal(key, other, sizeof key);
  ticket_mint(other, &base_ticket, tk);
  assert_int_equal(ticket_check(key, tk, sizeof tk, base_ticket, NOW),
                   -MIM_ERR_TOKEN_INVALID);
  /* Nor is the token secret itself the ticket key. */
  size_t len;
  assert_int_equal(mim_ticket_sign(secret, SECRET_LEN, &base_ticket, tk,
                                   sizeof tk, &len),
                   0);
  assert_int_equal(ticket_check(key, tk, sizeof tk, base_ticket, NOW),
                   -MIM_ERR_TOKEN_INVALID);
}

static void ticket_invalid_arguments(void **state) {
  (void)state;
  uint8_t key[MIM_TICKET_KEY_LEN], tk[MIM_TICKET_LEN];
  size_t len = 0;
  ticket_key(key);
  struct mim_ticket t = base_ticket;
  assert_int_equal(mim_ticket_sign(key, 15, &t, tk, sizeof tk, &len), -EINVAL);
  t.uid = "";
  assert_int_equal(mim_ticket_sign(key, sizeof key, &t, tk, sizeof tk, &len),
                   -EINVAL);
  t = base_ticket;
  t.gateway_id = NULL;
  assert_int_equal(mim_ticket_sign(key, sizeof key, &t, tk, sizeof tk, &len),
                   -EINVAL);
  t = base_ticket;
  t.issued_at = 0;
  assert_int_equal(mim_ticket_sign(key, sizeof key, &t, tk, sizeof tk, &len),
                   -EINVAL);
  t = base_ticket;
  assert_int_equal(
      mim_ticket_sign(key, sizeof key, &t, tk, MIM_TICKET_LEN - 1, &len),
      -ENOBUFS);
  assert_int_equal(len, MIM_TICKET_LEN);
  ticket_mint(key, &t, tk);
  assert_int_equal(mim_ticket_verify(key, 15, tk, sizeof tk, &t, NOW), -EINVAL);
  assert_int_equal(mim_ticket_verify(key, sizeof key, tk, sizeof tk, NULL, NOW),
                   -EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(valid_token_verifies_and_returns_expiry),
      cmocka_unit_test(expired_token_rejected),
      cmocka_unit_test(other_uid_rejected),
      cmocka_unit_test(other_device_rejected),
      cmocka_unit_test(deviceless_token_valid_for_every_device),
      cmocka_unit_test(length_prefixes_keep_fields_apart),
      cmocka_unit_test(other_secret_rejected),
      cmocka_unit_test(every_prefix_rejected),
      cmocka_unit_test(flipped_mac_character_rejected),
      cmocka_unit_test(garbage_rejected),
      cmocka_unit_test(bad_expiry_text_rejected),
      cmocka_unit_test(invalid_arguments_einval),
      cmocka_unit_test(small_buffer_enobufs),
      cmocka_unit_test(known_answer_matches_reference_hmac),
      cmocka_unit_test(fixed_vectors_from_python),
      cmocka_unit_test(id_valid_edge_cases),
      cmocka_unit_test(ticket_roundtrip),
      cmocka_unit_test(ticket_key_is_labelled_hmac),
      cmocka_unit_test(ticket_expired_rejected),
      cmocka_unit_test(ticket_tampered_rejected),
      cmocka_unit_test(ticket_other_fields_rejected),
      cmocka_unit_test(ticket_wrong_key_rejected),
      cmocka_unit_test(ticket_invalid_arguments),
  };
  return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
