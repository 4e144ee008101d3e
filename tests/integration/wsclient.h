/* A small synchronous websocket client for tests, on libwebsockets' client
 * API.
 *
 * One context per process (wsc_ctx_create) owns one lws context and every
 * client made from it. Nothing runs in the background: every blocking call
 * services the whole context (all clients) until its condition holds or its
 * timeout passes, so frames that arrive for other clients while one waits
 * are queued for them, never lost. Every wait is bounded by a timeout.
 *
 * Received websocket messages are decoded into client packets
 * (mim_frame_decode + mim_packet_decode) and queued per client, in arrival
 * order. A client that announced MIM_CAP_BATCH (wsc_set_batch) accepts
 * several frames per message; otherwise a message must hold exactly one
 * frame, and anything else (a text message from the server, a malformed
 * frame, extra bytes) is queued as an error entry that the next receive call
 * returns, so tests see protocol violations instead of silently skipping
 * them.
 *
 * Return values: 0 on success, negative errno otherwise: -ETIMEDOUT the
 * timeout passed; -ENOTCONN the connection is closed and nothing matching is
 * queued; -ECONNREFUSED the connection could not be set up; -EPROTO the
 * server broke the framing rules (text message, extra bytes); -EBADMSG a
 * frame or body that does not decode; -ENOMEM.
 */
#ifndef MIM_TEST_WSCLIENT_H
#define MIM_TEST_WSCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mim/codec.h>

struct wsc_ctx;
struct wsc_client;

/* Close code recorded when the connection ended without a close frame. */
#define WSC_CLOSE_ABNORMAL 1006

/* Creates the process's client context. Errors: -ENOMEM, -EIO. */
int wsc_ctx_create(struct wsc_ctx **out);

/* Closes every client still open (without waiting) and frees everything.
 * NULL is a no-op. */
void wsc_ctx_destroy(struct wsc_ctx *ctx);

/* Services the context for up to `ms` milliseconds (0: only what is ready). */
void wsc_ctx_service(struct wsc_ctx *ctx, int ms);

/* Opens ws://127.0.0.1:`port``path` (binary protocol, no subprotocol) and
 * waits up to `timeout_ms` for the upgrade to complete. On success `*out` is
 * an open client (free it with wsc_close). Errors: -ECONNREFUSED (refused,
 * rejected upgrade, ...; wsc_last_error() says why), -ETIMEDOUT, -ENOMEM. */
int wsc_connect_timeout(struct wsc_ctx *ctx, int port, const char *path,
                        int timeout_ms, struct wsc_client **out);

/* wsc_connect_timeout() with a 5 s timeout. */
int wsc_connect(struct wsc_ctx *ctx, int port, const char *path,
                struct wsc_client **out);

/* Why the last wsc_connect failed (static buffer, never NULL). */
const char *wsc_last_error(void);

/* Whether the client accepts several frames per message (MIM_CAP_BATCH).
 * wsc_send_packet sets it when it sends an AuthRequest with that bit. */
void wsc_set_batch(struct wsc_client *c, bool batch);

/* Encodes `p` (borrowed for the call) as one frame in one binary message
 * and sends it, waiting up to 5 s until lws has taken all of it. Errors:
 * -EINVAL unencodable packet; -ENOTCONN closed; -EPIPE closed before the
 * message went out; -ETIMEDOUT; -ENOMEM. */
int wsc_send_packet(struct wsc_client *c, const struct mim_packet *p);

/* Sends `len` raw bytes (copied) as one websocket message, binary or text.
 * Errors as wsc_send_packet. */
int wsc_send_raw(struct wsc_client *c, const void *bytes, size_t len,
                 bool binary);

/* Like wsc_send_raw but only queues the message; it leaves during the next
 * servicing. For pipelining many requests without waiting. */
int wsc_queue_raw(struct wsc_client *c, const void *bytes, size_t len,
                  bool binary);
int wsc_queue_packet(struct wsc_client *c, const struct mim_packet *p);

/* Takes the next received packet into `out` (initialised by the callee; the
 * caller finishes it with mim_packet_finish), waiting up to `timeout_ms`.
 * Errors: -ETIMEDOUT, -ENOTCONN, -EPROTO, -EBADMSG (with out->cmd set to
 * the frame's cmd where known). */
int wsc_recv(struct wsc_client *c, int timeout_ms, struct mim_packet *out);

/* Like wsc_recv but takes the first queued packet for which `match` returns
 * true; the others stay queued in order. An error entry ahead of the match
 * is returned (and removed) instead. */
typedef bool (*wsc_match_fn)(const struct mim_packet *p, void *user);
int wsc_recv_match(struct wsc_client *c, int timeout_ms, wsc_match_fn match,
                   void *user, struct mim_packet *out);

/* wsc_recv_match for "the first packet with command `cmd`". */
int wsc_recv_cmd(struct wsc_client *c, uint32_t cmd, int timeout_ms,
                 struct mim_packet *out);

/* Packets (and error entries) queued and not yet taken. Does not service. */
size_t wsc_pending(const struct wsc_client *c);

/* Whether the connection is still open. Does not service. */
bool wsc_is_open(const struct wsc_client *c);

/* Waits up to `timeout_ms` for the server to close the connection; then
 * `*close_code` (may be NULL) is the code of the close frame, or
 * WSC_CLOSE_ABNORMAL if the TCP connection ended without one. Received
 * packets stay queued. Errors: -ETIMEDOUT. */
int wsc_wait_closed(struct wsc_client *c, int timeout_ms, int *close_code);

/* Closes the connection (close frame 1000 if open, bounded wait) and frees
 * the client with everything queued. NULL is a no-op. */
void wsc_close(struct wsc_client *c);

/* Drops the TCP connection at once, without a close frame (a client that
 * vanishes), and frees the client. NULL is a no-op. */
void wsc_abort(struct wsc_client *c);

#endif
