/* A small synchronous client of gatewayd's raw TCP listener for tests:
 * frames back to back on a plain or TLS (OpenSSL) stream, with every wait
 * bounded. Received bytes are split into frames with mim_frame_decode()
 * and decoded into packets, in arrival order.
 *
 * Return values: 0, or a negative errno: -ETIMEDOUT, -ENOTCONN (the server
 * ended the stream cleanly and nothing more is buffered), -ECONNRESET (the
 * stream was reset), -EBADMSG (a frame or body that does not decode),
 * -ECONNREFUSED, -EIO (TLS failure), -ENOMEM. */
#ifndef MIM_TEST_TCPCLIENT_H
#define MIM_TEST_TCPCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mim/codec.h>

struct tcpc;

/* Connects to 127.0.0.1:`port`, over TLS when `tls` (the certificate is
 * not verified: tests use a self-signed one). `rcvbuf` > 0 sets SO_RCVBUF
 * before the connect (a slow reader). */
int tcpc_connect(int port, bool tls, int rcvbuf, struct tcpc **out);
/* Writes all of `len` bytes (TCP_NODELAY is on: small writes leave as
 * they are written). */
int tcpc_send(struct tcpc *c, const void *bytes, size_t len);
/* Encodes `p` as one frame and writes it. */
int tcpc_send_packet(struct tcpc *c, const struct mim_packet *p);
/* The next packet, waiting up to `timeout_ms`; `out` is the caller's to
 * finish. */
int tcpc_recv(struct tcpc *c, int timeout_ms, struct mim_packet *out);
/* The next packet of `cmd`; others before it are dropped. */
int tcpc_recv_cmd(struct tcpc *c, uint32_t cmd, int timeout_ms,
                  struct mim_packet *out);
/* Reads until the stream ends: 0 at a clean end (FIN, or TLS
 * close_notify), -ECONNRESET, -ETIMEDOUT. Packets read meanwhile are
 * counted in `*packets` (may be NULL) and dropped. */
int tcpc_wait_closed(struct tcpc *c, int timeout_ms, size_t *packets);
/* AuthRequest{token "token", uid, device, seq 1, caps}; returns
 * AuthResponse.status, or a negative errno. */
int tcpc_login(struct tcpc *c, const char *uid, const char *device,
               uint32_t caps);
/* Closes and frees. NULL: no-op. */
void tcpc_close(struct tcpc *c);

#endif
