/* libmim — login tokens: HMAC-SHA256 over (uid, device, expiry).
 *
 * The application backend (or `mimctl token`) mints tokens with a secret it
 * shares with logicd; logicd verifies them. Format (ASCII, no spaces):
 *   "v1." <expiry, decimal unix seconds> "." <base64url(HMAC), no padding>
 * The MAC input is lp("mim-token-v1") lp(uid) lp(device) lp(expiry), where
 * lp(x) is x's length as a 4-byte big-endian number followed by x's bytes and
 * expiry is the same decimal text as in the token; the prefixes keep every
 * (uid, device, expiry) triple's input distinct. A token minted for device ""
 * is valid for every device of that uid. docs/protocol.md has a test vector
 * for backends written in other languages.
 */
#ifndef MIM_AUTH_H
#define MIM_AUTH_H

#include <mim/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest token mim_token_sign() writes, including the NUL. */
#define MIM_TOKEN_MAX 80

/* Shortest secret accepted, in bytes. */
#define MIM_SECRET_MIN 16

/* Writes a NUL-terminated token for (`uid`, `device`, `expires_at`) into
 * `buf` (`cap` bytes, MIM_TOKEN_MAX is enough). `device` NULL or "" makes a
 * token valid for every device. All pointers are borrowed for the call.
 * Errors: -EINVAL secret shorter than MIM_SECRET_MIN, uid empty or longer
 * than MIM_ID_MAX, expires_at <= 0; -ENOBUFS `cap` too small; -ENOMEM or
 * -EIO from libcrypto. */
MIM_API int mim_token_sign(const uint8_t *secret, size_t secret_len,
                           const char *uid, const char *device,
                           int64_t expires_at, char *buf, size_t cap);

/* Checks that `token` was signed with `secret` for `uid` and `device` (or for
 * every device) and has not expired at `now` (unix seconds). The MAC is
 * compared in constant time. `expires_at` may be NULL; on success it gets the
 * token's expiry. Errors: -MIM_ERR_TOKEN_INVALID malformed, truncated, other
 * uid/device or other secret; -MIM_ERR_TOKEN_EXPIRED expiry <= now; -EINVAL
 * a NULL argument or a secret shorter than MIM_SECRET_MIN. */
MIM_API int mim_token_verify(const uint8_t *secret, size_t secret_len,
                             const char *token, const char *uid,
                             const char *device, int64_t now,
                             int64_t *expires_at);

/* mim_id_valid(), the id rule, is in <mim/common.h>. */


/* ---- session tickets ----
 *
 * logicd grants a ticket with every session it binds and hands it to the
 * gateway that carries the connection; after a logicd restart the gateway
 * presents it in RPC SESSIONS, and logicd restores only sessions whose
 * ticket it can verify. A ticket binds (gateway_id, conn_id, uid, device,
 * caps, issue time, token expiry) under a key only logicd holds, so a
 * gateway (or anyone holding the RPC secret) cannot restore a session that
 * logicd did not grant it, nor one whose token has expired.
 *
 * Format (MIM_TICKET_LEN bytes, binary):
 *   0x01  issued_at (int64 BE)  expires_at (int64 BE)  HMAC-SHA256 (32 bytes)
 * MAC input: lp("mim-ticket-v1") lp(gateway_id) u64(conn_id) lp(uid)
 * lp(device) u32(caps) u64(issued_at) u64(expires_at), where lp(x) is a
 * 4-byte big-endian length followed by x's bytes and uN are big-endian
 * numbers. The ids themselves travel beside the ticket (RpcSession). */

/* Length of a ticket key and of a ticket, in bytes. */
#define MIM_TICKET_KEY_LEN 32
#define MIM_TICKET_LEN 49

/* What a ticket binds. Strings are borrowed. */
struct mim_ticket {
  const char *gateway_id; /* the gateway's HELLO gateway_id */
  uint64_t conn_id;       /* the gateway's id for the client connection */
  const char *uid;
  const char *device;
  uint32_t caps;          /* the capabilities granted (MIM_CAP_*) */
  int64_t issued_at;      /* unix seconds */
  int64_t expires_at;     /* the login token's expiry, unix seconds; 0 =
                             never (development auth) */
};

/* Derives the ticket key from the token secret: HMAC-SHA256(secret,
 * "mim session ticket v1"). Any holder of the token secret can mint
 * tokens anyway; the distinct label keeps a ticket from ever being usable
 * as a token MAC and the other way round. `key` gets MIM_TICKET_KEY_LEN
 * bytes. Errors: -EINVAL NULL pointers or a secret shorter than
 * MIM_SECRET_MIN; -EIO from libcrypto. */
MIM_API int mim_ticket_key_derive(const uint8_t *secret, size_t secret_len,
                                  uint8_t *key);

/* Writes the ticket for `t` (borrowed) into `buf` (`cap` bytes,
 * MIM_TICKET_LEN is enough); `*len` gets MIM_TICKET_LEN. Errors: -EINVAL a
 * NULL pointer, a key shorter than MIM_SECRET_MIN, an id (gateway_id, uid,
 * device) empty or longer than MIM_ID_MAX, issued_at <= 0 or expires_at < 0;
 * -ENOBUFS `cap` too small (`*len` = MIM_TICKET_LEN); -EIO from libcrypto. */
MIM_API int mim_ticket_sign(const uint8_t *key, size_t key_len,
                            const struct mim_ticket *t, uint8_t *buf,
                            size_t cap, size_t *len);

/* Checks that `ticket` (`len` bytes, borrowed) was minted with `key` for
 * exactly t->gateway_id, conn_id, uid, device and caps, and that the token
 * it carries has not expired at `now` (unix seconds). The MAC is compared in
 * constant time. On success t->issued_at and t->expires_at are set from the
 * ticket. Errors: -MIM_ERR_TOKEN_INVALID wrong length or version, another
 * key, or any bound field differs; -MIM_ERR_TOKEN_EXPIRED expires_at != 0
 * and <= now; -EINVAL a NULL pointer or a key shorter than MIM_SECRET_MIN;
 * -EIO from libcrypto. */
MIM_API int mim_ticket_verify(const uint8_t *key, size_t key_len,
                              const uint8_t *ticket, size_t len,
                              struct mim_ticket *t, int64_t now);

#ifdef __cplusplus
}
#endif

#endif /* MIM_AUTH_H */
