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

/* Whether `id` is a valid uid, group id or device id: 1..MIM_ID_MAX bytes of
 * printable ASCII or UTF-8, no control characters, no spaces. */
MIM_API bool mim_id_valid(const char *id);

#ifdef __cplusplus
}
#endif

#endif /* MIM_AUTH_H */
