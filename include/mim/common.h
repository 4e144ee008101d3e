/* libmim — common definitions: export macro, errors, logging, shared enums.
 *
 * Every libmim call that can fail returns an int: 0 on success, a negative
 * error code otherwise. Codes are negated errno values where one fits
 * (-ENOMEM, -EINVAL, -EAGAIN, -ENOBUFS, ...) and values in the private range
 * MIM_ERR__FIRST..MIM_ERR__LAST (all below -1000) for domain errors. Never
 * NULL-plus-errno, never a positive error.
 */
#ifndef MIM_COMMON_H
#define MIM_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(MIM_BUILDING_LIBRARY) && defined(__GNUC__)
#define MIM_API __attribute__((visibility("default")))
#else
#define MIM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Domain errors. XX(NAME, value, retryable, "description").
 * `retryable` says whether the very same request can succeed later. The
 * value is also the code sent to clients in Error packets and
 * AuthResponse.status (docs/protocol.md lists them); calls return it
 * negated. */
#define MIM_ERR_MAP(XX)                                                        \
  XX(MALFORMED, 1001, false, "malformed request")                            \
  XX(UNKNOWN_CMD, 1002, false, "unknown command")                            \
  XX(FRAME_TOO_BIG, 1003, false, "frame larger than the maximum")            \
  XX(UNAUTHENTICATED, 1004, false, "not authenticated")                      \
  XX(TOKEN_INVALID, 1005, false, "invalid token")                            \
  XX(TOKEN_EXPIRED, 1006, false, "token expired")                            \
  XX(ALREADY_AUTHENTICATED, 1007, false, "already authenticated")            \
  XX(NOT_MEMBER, 1008, false, "not a member of the group")                   \
  XX(NO_SUCH_GROUP, 1009, false, "no such group")                            \
  XX(GROUP_EXISTS, 1010, false, "group already exists")                      \
  XX(DEDUP_CONFLICT, 1011, false,                                             \
     "client_msg_id reused with other content or target")                     \
  XX(FORBIDDEN, 1012, false, "not allowed")                                  \
  XX(RATE_LIMITED, 1013, true, "too many requests")                          \
  XX(BUSY, 1014, true, "server busy")                                        \
  XX(UNAVAILABLE, 1015, true, "logic server unavailable")                    \
  XX(SCHEMA_MISMATCH, 1016, false, "store schema version mismatch")          \
  XX(STORE, 1017, true, "storage failure")                                   \
  XX(TOO_LARGE, 1018, false, "content too large")                            \
  XX(BAD_VERSION, 1019, false, "unsupported protocol version")               \
  XX(STORE_FULL, 1020, true, "storage full")                                 \
  XX(TOO_MANY_DEVICES, 1021, false,                                           \
     "too many devices of this user are logged in")                           \
  XX(BAD_UTF8, 1022, false, "text is not valid UTF-8")                      \
  XX(GROUP_FULL, 1023, false, "the group would exceed its member limit")   \
  XX(MUTED, 1040, false, "muted in this group")                             \
  XX(NOT_FOUND, 1041, false, "no such message in that conversation")       \
  XX(WINDOW_PASSED, 1042, false, "too late to change that message")

enum mim_err {
#define MIM_ERR_ENUM_(name, value, retry, text) MIM_ERR_##name = (value),
  MIM_ERR_MAP(MIM_ERR_ENUM_)
#undef MIM_ERR_ENUM_
  MIM_ERR__FIRST = 1001,
  MIM_ERR__LAST = 1042, /* codes between may be unassigned */
};

/* A static, human-readable description of `err`, a negative libmim or errno
 * code as returned by a call. Never NULL; unknown codes give
 * "unknown error". */
MIM_API const char *mim_strerror(int err);

/* The symbolic name of `err` (-MIM_ERR_NOT_MEMBER → "MIM_ERR_NOT_MEMBER",
 * -ENOMEM → "ENOMEM", 0 → "OK"). */
MIM_API const char *mim_err_name(int err);

/* Whether a request that failed with `err` may succeed if sent again
 * unchanged (busy, unavailable, storage hiccups, -EAGAIN, -ENOMEM). */
MIM_API bool mim_err_retryable(int err);

/* The positive code that represents `err` (negative) on the wire
 * (Error.code, AuthResponse.status): -MIM_ERR_X gives MIM_ERR_X; errno
 * codes map onto the nearest domain code
 * (-EINVAL and -EBADMSG to MALFORMED, -ENOMEM to BUSY, -EMSGSIZE to
 * FRAME_TOO_BIG, ...); 0 stays 0. */
MIM_API int32_t mim_err_wire_code(int err);

/* Whether the `len` bytes at `s` are valid UTF-8, strictly (RFC 3629): no
 * overlong forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF,
 * no truncated sequence at the end. U+0000 is valid. `s` is borrowed for
 * the call and may be NULL when `len` is 0. Every protobuf `string` field
 * the library stores or sends passes this check (proto3 parsers reject
 * anything else). */
MIM_API bool mim_utf8_valid(const void *s, size_t len);

/* Whether `id` is a valid uid, group id or device id: 1..MIM_ID_MAX bytes of
 * printable ASCII or UTF-8, no control characters, no spaces. */
MIM_API bool mim_id_valid(const char *id);

/* Logging. The library never prints: it hands lines to the handler installed
 * here, and is silent until one is installed. */
enum mim_log_level {
  MIM_LOG_ERROR = 0,
  MIM_LOG_WARN = 1,
  MIM_LOG_INFO = 2,
  MIM_LOG_DEBUG = 3,
};

/* `msg` is borrowed for the call and has no trailing newline. */
typedef void (*mim_log_fn)(void *user, enum mim_log_level level,
                           const char *msg);

/* Installs `fn` (NULL: silence) for lines at `max_level` or more severe.
 * `user` is passed back to `fn` untouched. Not thread-safe against
 * concurrent logging: call it at start-up. This is the process-wide
 * default: an object whose config has its own `log` handler (struct
 * mim_logic_config, struct mim_lmdb_config) logs there instead; code with
 * no object (codec, auth) logs here. */
MIM_API void mim_log_set_handler(mim_log_fn fn, void *user,
                                 enum mim_log_level max_level);

/* Message types (stored record and MessageRecord.type / *.type on the wire). */
enum mim_msg_type {
  MIM_MSG_TEXT = 0,
  MIM_MSG_SYSTEM = 1,  /* generated by the server (group changes, ...) */
  MIM_MSG_CUSTOM = 2,  /* application-defined; content is opaque */
  MIM_MSG_PUSH = 3,    /* server push (ServerPush, cmd 28) */
};

/* Conversation kinds. */
enum mim_conv_kind {
  MIM_CONV_C2C = 1,
  MIM_CONV_GROUP = 2,
  /* A server push: stored once, one inbox entry per listed recipient, no
   * conversation timeline. */
  MIM_CONV_PUSH = 3,
};

/* Capability bits a client announces in AuthRequest.caps. */
enum mim_caps {
  /* The client accepts several framed packets in one websocket message. */
  MIM_CAP_BATCH = 1u << 0,
  /* A transient session (one HTTP request, a script's one-off call): it
   * registers no route, so it receives no pushes, never replaces (kicks)
   * the live session of the same uid + device and does not count towards
   * user_devices_max. Its acks still move the device's cursor (cursors
   * only move forward). */
  MIM_CAP_TRANSIENT = 1u << 1,
  /* Pulls of this session never move the device's cursor (after_seq is a
   * position only); only push acks (cmds 9, 13, 29) do. For a gateway that
   * pages a catch-up stream it cannot know the client processed (SSE). */
  MIM_CAP_PULL_NO_ACK = 1u << 2,
  /* The client wants the receipt pushes: READ_SYNC (its own read
   * positions, moved by its other devices), READ_RECEIPT (a peer read its
   * messages) and DELIVERED (a peer's device received them). Without it a
   * connection gets none (seed clients see nothing new); the requests
   * (cmds 30, 32, 36) work either way. */
  MIM_CAP_READ = 1u << 3,
  /* Push MSG_CHANGED (cmd 46) when a message of one's conversations is
   * recalled or edited, or deleted by the user on another device, and the
   * change entries of pulls (docs/protocol.md §19). Without it a
   * connection gets neither; the request (cmd 44) works either way. */
  MIM_CAP_CHANGE = 1u << 4,
  /* The client wants TYPING pushes (cmd 49) from the people it talks to
   * (docs/protocol.md §20). Without it a connection gets none. */
  MIM_CAP_TYPING = 1u << 5,
  /* The client wants PRESENCE pushes (cmd 52) for the users it subscribed
   * to with PresenceRequest.subscribe (docs/protocol.md §21). */
  MIM_CAP_PRESENCE = 1u << 6,
  /* The client follows large groups (docs/protocol.md §22): their messages
   * are in no inbox, so it is pushed them with conv_seq and inbox_seq 0
   * (no ack needed) and fills gaps with GROUP_SYNC. Without it a
   * connection gets no live push of a large group's messages. */
  MIM_CAP_LARGE = 1u << 7,
};

/* Kick reasons (Kick.reason). */
enum mim_kick_reason {
  MIM_KICK_OTHER_LOGIN = 0, /* same uid and device logged in elsewhere */
  MIM_KICK_ADMIN = 1,
  MIM_KICK_SHUTDOWN = 2,
  MIM_KICK_SLOW = 3,        /* the send queue overflowed */
  MIM_KICK_PROTOCOL = 4,    /* the client broke the protocol */
  MIM_KICK_TOKEN_EXPIRED = 5, /* the login token expired (or the session
                                 could not be restored): log in again with
                                 a fresh token */
  MIM_KICK_IDLE = 6,          /* nothing heard from the client (no frame, no
                                 pong) for the gateway's idle timeout */
};

/* The default device id of clients that name none. */
#define MIM_DEFAULT_DEVICE "default"

/* Largest msg_id: JavaScript numbers are exact below 2^53. */
#define MIM_MSG_ID_MAX ((UINT64_C(1) << 53) - 1)

/* Length limits of identifiers, in bytes (excluding the NUL). */
#define MIM_ID_MAX 128          /* uid, group id, device id */
#define MIM_CLIENT_MSG_ID_MAX 64

#ifdef __cplusplus
}
#endif

#endif /* MIM_COMMON_H */
