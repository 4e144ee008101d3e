/* Session tickets: what lets a gateway restore a session after logicd
 * restarts (<mim/auth.h>). */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <mim/auth.h>

#include "auth/auth_internal.h"
#include "util/internal.h"

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
