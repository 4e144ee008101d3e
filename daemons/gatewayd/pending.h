/* pending.c: requests awaiting their answer (reply order, link loss).
 * Depends on client.h and tx.h. */
#ifndef GATEWAYD_PENDING_H
#define GATEWAYD_PENDING_H

#include "client.h"

struct gw;

/* Makes room for what a `cmd` request from `c` may add. Errors: -ENOBUFS
 * the client has GW_PENDING_MAX requests unanswered (it floods: the caller
 * cuts it off); -ENOMEM. */
int gw_pending_reserve(struct client *c, uint32_t cmd);
/* Request `h` + `body` (borrowed for the call) went to logicd; a reply
 * DELIVERed later answers it. Needs a successful gw_pending_reserve()
 * first; acks (9, 13, 29), which get no reply, are not recorded. */
void gw_pending_forwarded(struct client *c, const struct mim_header *h,
                          const uint8_t *body);
/* Answers request (seq, cmd) here: `answer` is GW_ANSWER_HEARTBEAT or a
 * negative libmim error. Sent at once if nothing is pending, otherwise
 * after the replies to the requests before it (needs a reservation). */
void gw_pending_answer(struct gw *gw, struct client *c, int64_t seq,
                       uint32_t cmd, int answer);
/* Whether a DELIVER of `cmd` (body `body`, borrowed) is the reply to a
 * forwarded request; pushes, kicks and Errors about acks are not. */
bool gw_pending_is_reply(uint32_t cmd, const uint8_t *body, size_t len);
/* A reply to `c` has been queued: the oldest request is answered, and the
 * local answers behind it go out. */
void gw_pending_replied(struct gw *gw, struct client *c);
/* The (seq, cmd) of the request the next reply from logicd answers, if
 * any is pending; false otherwise. */
bool gw_pending_head(const struct client *c, int64_t *seq, uint32_t *cmd);
/* The logicd link is gone: every forwarded request of `c` is answered
 * with UNAVAILABLE (heartbeats as usual), in request order. */
void gw_pending_link_down(struct gw *gw, struct client *c);
void gw_pending_free(struct client *c);
/* The seq of request `h` (body borrowed for the call), for its answer; 0
 * when the body does not parse (logicd's MALFORMED says 0 as well). */
int64_t gw_request_seq(const struct mim_header *h, const uint8_t *body);

#endif
