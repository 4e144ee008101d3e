/* A mim client for integration tests: login, request/reply by seq, pushes,
 * acks, pulls — over wsclient, against a harness's gateway. Helpers that
 * expect something assert it with cmocka (and say what they got instead),
 * so a test reads as the exchange it checks.
 *
 * Include <cmocka.h> (with its prerequisites) before this header.
 */
#ifndef MIM_TEST_TCLIENT_H
#define MIM_TEST_TCLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <mim/auth.h>
#include <mim/codec.h>
#include <mim/common.h>

#include "harness.h"
#include "wsclient.h"

/* Wire codes (docs/protocol.md §13). */
enum {
  E_MALFORMED = 1001,
  E_UNKNOWN_CMD = 1002,
  E_FRAME_TOO_BIG = 1003,
  E_UNAUTHENTICATED = 1004,
  E_TOKEN_INVALID = 1005,
  E_TOKEN_EXPIRED = 1006,
  E_NOT_MEMBER = 1008,
  E_FORBIDDEN = 1012,
  E_RATE_LIMITED = 1013,
  E_BUSY = 1014,
  E_UNAVAILABLE = 1015,
  E_BAD_VERSION = 1019,
};

/* How long a reply or an expected push may take. Generous: the suite runs
 * on 2 busy cores and every send waits for a synced commit. */
#define TC_REPLY_MS 10000
#define TC_PUSH_MS 10000

struct tc {
  struct harness *h;
  struct wsc_client *ws;
  char uid[MIM_ID_MAX + 1];
  char device[MIM_ID_MAX + 1];
  int64_t seq;                 /* last request seq used */
  /* from the last successful AuthResponse */
  uint64_t last_inbox_seq;
  uint64_t ack_seq;
  uint32_t caps;
  struct tc *next_;            /* the list of open clients (private) */
};

/* One message of a pull, copied out of the packet. */
struct tc_item {
  char *from, *to, *group, *content, *client_msg_id;
  uint64_t msg_id, inbox_seq, conv_seq;
  uint32_t type;
};

struct tc_items {
  struct tc_item *v;
  size_t n, cap;
};

void tc_items_free(struct tc_items *it);

/* "cmd=17 ERROR code=1015 seq=3 failed_cmd=6 retryable=1 msg='...'" and the
 * like, for failure messages. Returns `buf`. */
const char *tc_describe(const struct mim_packet *p, char *buf, size_t cap);

/* Connects to the harness's gateway (asserts success). */
struct tc *tc_open(struct harness *h);

/* A token for (uid, device) valid for an hour: signed with the harness's
 * token secret, or the seed's "token" in development mode. */
const char *tc_token(const struct harness *h, const char *uid,
                     const char *device, char buf[MIM_TOKEN_MAX]);

/* Sends an AuthRequest (with a fresh seq) and returns AuthResponse.status;
 * asserts the AuthResponse arrives and echoes the seq. On status 0 records
 * uid/device/last_inbox_seq/ack_seq/caps in `c`. `device` NULL: none sent. */
int32_t tc_auth(struct tc *c, const char *uid, const char *device,
                const char *token, uint32_t caps);

/* tc_open + tc_auth with tc_token, asserting status 0. */
struct tc *tc_login(struct harness *h, const char *uid, const char *device);
struct tc *tc_login_caps(struct harness *h, const char *uid,
                         const char *device, uint32_t caps);

/* Closes the connection (close handshake) and frees. NULL: no-op. */
void tc_free(struct tc *c);

/* tc_free on every client still open (test teardown). */
void tc_free_all(void);

/* Gives `req` a fresh seq, sends it and waits for the packet that echoes
 * that seq (the reply cmd or an Error); asserts it arrives. Pushes and other
 * packets stay queued. `rsp` is the caller's to finish. */
void tc_call(struct tc *c, struct mim_packet *req, struct mim_packet *rsp);

/* tc_call() of a group request `cmd` naming `group` and the `n` strings of
 * `members` (all borrowed for the call). `rsp` is the caller's to finish. */
void tc_group_call(struct tc *c, uint32_t cmd, const char *group,
                   const char *const *members, size_t n,
                   struct mim_packet *rsp);

/* Asserts `rsp` is the reply `cmd` (not an Error); prints it otherwise. */
void tc_expect_cmd(const struct mim_packet *rsp, uint32_t cmd);

/* Asserts `rsp` is an Error with `code` for a request of `failed_cmd`
 * (0: not checked). */
void tc_expect_error(const struct mim_packet *rsp, int32_t code,
                     uint32_t failed_cmd);

/* C2C / C2G send; asserts the send reply (cmd 7 / 11), echoed seq and a
 * valid msg_id (0 < id < 2^53) and returns msg_id. `cmid` may be NULL.
 * `rsp` (may be NULL) receives the reply. */
uint64_t tc_c2c(struct tc *c, const char *to, const char *content,
                const char *cmid, struct mim_packet *rsp);
uint64_t tc_c2g(struct tc *c, const char *group, const char *content,
                const char *cmid, struct mim_packet *rsp);

/* Sends a send request and returns whatever answers it (reply or Error)
 * in `rsp`, without asserting which. */
void tc_c2c_try(struct tc *c, const char *to, const char *content,
                const char *cmid, struct mim_packet *rsp);

/* Pull with after_seq (present) or seed-style (`has_after` false); asserts
 * a pull reply (cmd 15) echoing the seq. */
void tc_pull(struct tc *c, bool has_after, uint64_t after_seq, int32_t limit,
             struct mim_packet *rsp);

/* Pulls everything after `after_seq` (pages of 500 while has_more) and
 * appends copies of the items to `out`. Asserts ascending, contiguous
 * inbox_seq within and across pages. */
void tc_pull_all(struct tc *c, uint64_t after_seq, struct tc_items *out);

/* Waits for the next push of `cmd` (8, 12, 28) and asserts it arrives and
 * carries seq 0. */
void tc_push(struct tc *c, uint32_t cmd, struct mim_packet *out);

/* Waits for the push of `cmd` with `msg_id` (other packets stay queued). */
void tc_push_msg(struct tc *c, uint32_t cmd, uint64_t msg_id,
                 struct mim_packet *out);

/* Queues an ack (cmd 9, 13 or 29) with msg_id and/or inbox_seq (0: absent).
 * Acks have no reply; use tc_barrier to know it was processed. */
void tc_ack(struct tc *c, uint32_t cmd, uint64_t msg_id, uint64_t inbox_seq);

/* Heartbeat round trip: every reply to requests sent before it has arrived
 * and logicd has processed them (heartbeats are relayed and answered in
 * request order). */
void tc_barrier(struct tc *c);

/* Asserts nothing matching is queued right now (call after a barrier). */
void tc_assert_no_cmd(struct tc *c, uint32_t cmd);
void tc_assert_no_msg(struct tc *c, uint32_t cmd, uint64_t msg_id);

/* Frames a raw body as command `cmd` (header + body). `out` must have room
 * for MIM_HEADER_SIZE + len bytes. Returns the frame's length. */
size_t tc_frame(uint8_t *out, uint32_t cmd, const void *body, size_t len);

/* Milliseconds since the epoch (for `ts` fields). */
int64_t tc_now_ms(void);

#endif
