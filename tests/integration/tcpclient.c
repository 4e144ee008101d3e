/* See tcpclient.h. */
#include "tcpclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The largest server frame a test expects (docs/protocol.md §2). */
#define MAX_FRAME_BODY (16u << 20)

struct tcpc {
  int fd;
  SSL_CTX *ctx;
  SSL *ssl;
  uint8_t *buf;
  size_t len, cap;
  bool eof;
  int err; /* sticky read error */
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tcpc_connect(int port, bool tls, int rcvbuf, struct tcpc **out) {
  struct tcpc *c = calloc(1, sizeof *c);
  if (c == NULL)
    return -ENOMEM;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    free(c);
    return -errno;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (rcvbuf > 0)
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  /* a blocking socket, bounded: a TLS record cut short cannot hang us */
  struct timeval tv = {10, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
    tcpc_close(c);
    return -ECONNREFUSED;
  }
  if (tls) {
    c->ctx = SSL_CTX_new(TLS_client_method());
    c->ssl = c->ctx ? SSL_new(c->ctx) : NULL;
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
        SSL_connect(c->ssl) != 1) {
      ERR_clear_error();
      tcpc_close(c);
      return -EIO;
    }
  }
  *out = c;
  return 0;
}

int tcpc_send(struct tcpc *c, const void *bytes, size_t len) {
  const uint8_t *p = bytes;
  while (len > 0) {
    ssize_t n;
    if (c->ssl) {
      int w = SSL_write(c->ssl, p, len > 1 << 30 ? 1 << 30 : (int)len);
      n = w > 0 ? w : -1;
      if (w <= 0)
        errno = EPIPE;
    } else {
      n = send(c->fd, p, len, MSG_NOSIGNAL);
    }
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return errno == EAGAIN ? -ETIMEDOUT : -errno;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int tcpc_send_packet(struct tcpc *c, const struct mim_packet *p) {
  size_t size = mim_packet_encoded_size(p), len;
  uint8_t *b = size ? malloc(size) : NULL;
  if (b == NULL)
    return size ? -ENOMEM : -EINVAL;
  int r = mim_packet_encode(p, b, size, &len);
  if (r == 0)
    r = tcpc_send(c, b, len);
  free(b);
  return r;
}

/* Reads what is there (waiting up to `ms`). 0: some bytes, or the end. */
static int fill(struct tcpc *c, int ms) {
  if (c->err)
    return c->err;
  if (c->eof)
    return -ENOTCONN;
  if (!(c->ssl && SSL_pending(c->ssl) > 0)) {
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int r = poll(&pfd, 1, ms < 0 ? 0 : ms);
    if (r == 0)
      return -ETIMEDOUT;
    if (r < 0)
      return errno == EINTR ? -ETIMEDOUT : -errno;
  }
  if (c->cap - c->len < 65536) {
    size_t cap = c->cap ? c->cap * 2 : 131072;
    uint8_t *b = realloc(c->buf, cap);
    if (b == NULL)
      return -ENOMEM;
    c->buf = b;
    c->cap = cap;
  }
  ssize_t n;
  if (c->ssl) {
    int r = SSL_read(c->ssl, c->buf + c->len, (int)(c->cap - c->len));
    if (r > 0) {
      n = r;
    } else {
      int e = SSL_get_error(c->ssl, r);
      ERR_clear_error();
      if (e == SSL_ERROR_WANT_READ)
        return 0;
      if (e == SSL_ERROR_ZERO_RETURN) {
        n = 0;
      } else {
        /* an EOF without close_notify counts as an end too (OpenSSL 3
         * reports it as SSL_ERROR_SSL) unless the socket says reset */
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (errno == ECONNRESET || soerr == ECONNRESET) {
          c->err = -ECONNRESET;
          return c->err;
        }
        n = 0;
      }
    }
  } else {
    n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN)
        return 0;
      c->err = errno == ECONNRESET ? -ECONNRESET : -errno;
      return c->err;
    }
  }
  if (n == 0) {
    c->eof = true;
    return -ENOTCONN;
  }
  c->len += (size_t)n;
  return 0;
}

/* A whole frame at the head of the buffer into `out`: 1, 0 none yet. */
static int take(struct tcpc *c, struct mim_packet *out) {
  struct mim_frame f;
  size_t used;
  int r = mim_frame_decode(c->buf, c->len, MAX_FRAME_BODY, &f, &used);
  if (r == -EAGAIN)
    return 0;
  if (r < 0)
    return -EBADMSG;
  mim_packet_init(out);
  r = mim_packet_decode(out, f.header.cmd, f.body, f.header.body_len);
  out->cmd = f.header.cmd;
  memmove(c->buf, c->buf + used, c->len - used);
  c->len -= used;
  return r < 0 ? -EBADMSG : 1;
}

int tcpc_recv(struct tcpc *c, int timeout_ms, struct mim_packet *out) {
  int64_t deadline = now_ms() + timeout_ms;
  mim_packet_init(out);
  for (;;) {
    int r = c->len ? take(c, out) : 0;
    if (r != 0)
      return r < 0 ? r : 0;
    int64_t left = deadline - now_ms();
    if (left <= 0)
      return -ETIMEDOUT;
    r = fill(c, (int)left);
    if (r < 0 && r != -ETIMEDOUT)
      return r;
  }
}

int tcpc_recv_cmd(struct tcpc *c, uint32_t cmd, int timeout_ms,
                  struct mim_packet *out) {
  int64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    int64_t left = deadline - now_ms();
    int r = tcpc_recv(c, left > 0 ? (int)left : 0, out);
    if (r != 0 || out->cmd == cmd)
      return r;
    mim_packet_finish(out);
  }
}

int tcpc_wait_closed(struct tcpc *c, int timeout_ms, size_t *packets) {
  int64_t deadline = now_ms() + timeout_ms;
  size_t n = 0;
  int r;
  for (;;) {
    struct mim_packet p;
    int64_t left = deadline - now_ms();
    r = tcpc_recv(c, left > 0 ? (int)left : 0, &p);
    if (r != 0)
      break;
    mim_packet_finish(&p);
    n++;
  }
  if (packets)
    *packets = n;
  return r == -ENOTCONN ? 0 : r;
}

int tcpc_login(struct tcpc *c, const char *uid, const char *device,
               uint32_t caps) {
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_AUTH_REQ;
  p.seq = 1;
  p.token = "token";
  p.uid = uid;
  p.device = device;
  p.caps = caps;
  int r = tcpc_send_packet(c, &p);
  if (r < 0)
    return r;
  r = tcpc_recv_cmd(c, MIM_CMD_AUTH_RSP, 10000, &p);
  if (r < 0)
    return r;
  int32_t status = p.status;
  mim_packet_finish(&p);
  return status;
}

void tcpc_close(struct tcpc *c) {
  if (c == NULL)
    return;
  if (c->ssl)
    SSL_free(c->ssl);
  if (c->ctx)
    SSL_CTX_free(c->ctx);
  if (c->fd >= 0)
    close(c->fd);
  free(c->buf);
  free(c);
}
