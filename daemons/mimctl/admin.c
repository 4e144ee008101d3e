/* mimctl's RPC admin client: one blocking-with-deadline link to logicd.
 *
 * docs/rpc.md: HELLO {gateway_id "mimctl", secret, version} -> HELLO_ACK;
 * then ADMIN {req_id, cmd, body} -> ADMIN_REPLY {req_id, cmd, body}. The
 * socket is non-blocking and every wait is a poll() bounded by the deadline
 * of the call, so a logicd that hangs costs the operator `timeout` seconds,
 * never forever. */
#include "ctl.h"
#include <mim/rpc.h>

#include <addr.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RPC_MAX_BODY (16u * 1024 * 1024) /* docs/rpc.md */

struct ctl_admin {
  int fd;
  int timeout_ms;
  uint64_t next_req_id;
  char *addr;
  struct mim_stream_decoder *dec;
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for `events` on `fd` until `deadline`. 0, or -ETIMEDOUT / -errno. */
static int wait_fd(int fd, short events, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0)
      return -ETIMEDOUT;
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, (int)left);
    if (n > 0)
      return 0; /* readiness, HUP or ERR: the next call tells which */
    if (n < 0 && errno != EINTR)
      return -errno;
  }
}

/* ---- connecting ---- */

static int connect_fd(int fd, const struct sockaddr *sa, socklen_t len,
                      int64_t deadline) {
  if (connect(fd, sa, len) == 0)
    return 0;
  if (errno != EINPROGRESS)
    return -errno;
  int rc = wait_fd(fd, POLLOUT, deadline);
  if (rc < 0)
    return rc;
  int err = 0;
  socklen_t el = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
    return -errno;
  return -err;
}

static int open_unix(const char *path, int64_t deadline) {
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sun.sun_path)
    return -ENAMETOOLONG;
  strcpy(sun.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int rc = connect_fd(fd, (struct sockaddr *)&sun, sizeof sun, deadline);
  if (rc < 0) {
    close(fd);
    return rc;
  }
  return fd;
}

static int open_tcp(const char *addr, int64_t deadline) {
  /* a wildcard host (what logicd may listen on) is reached on loopback */
  char *listen_host, *host;
  int port_n;
  if (mimd_parse_addr(addr, &listen_host, &port_n, NULL) < 0)
    return -EINVAL;
  host = mimd_addr_dial_host(listen_host);
  free(listen_host);
  if (host == NULL)
    return -ENOMEM;
  char port[8];
  snprintf(port, sizeof port, "%d", port_n);
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai, *p;
  int g = getaddrinfo(host, port, &hints, &ai);
  free(host);
  if (g != 0) {
    fprintf(stderr, "mimctl: cannot resolve %s: %s\n", addr, gai_strerror(g));
    return -EHOSTUNREACH;
  }
  int rc = -EHOSTUNREACH;
  for (p = ai; p != NULL; p = p->ai_next) {
    int fd = socket(p->ai_family, p->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    p->ai_protocol);
    if (fd < 0) {
      rc = -errno;
      continue;
    }
    rc = connect_fd(fd, p->ai_addr, p->ai_addrlen, deadline);
    if (rc == 0) {
      rc = fd;
      break;
    }
    close(fd);
  }
  freeaddrinfo(ai);
  return rc;
}

/* ---- frames ---- */

static int write_all(struct ctl_admin *a, const uint8_t *buf, size_t len,
                     int64_t deadline) {
  while (len > 0) {
    ssize_t n = send(a->fd, buf, len, MSG_NOSIGNAL);
    if (n > 0) {
      buf += n;
      len -= (size_t)n;
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR)
      return -errno;
    int rc = wait_fd(a->fd, POLLOUT, deadline);
    if (rc < 0)
      return rc;
  }
  return 0;
}

static int send_rpc(struct ctl_admin *a, const struct mim_rpc *r,
                    int64_t deadline) {
  size_t cap = mim_rpc_encoded_size(r), len;
  uint8_t *buf = malloc(cap ? cap : 1);
  if (buf == NULL)
    return -ENOMEM;
  int rc = mim_rpc_encode(r, buf, cap, &len);
  if (rc == 0)
    rc = write_all(a, buf, len, deadline);
  free(buf);
  return rc;
}

/* The next RPC frame; `f->body` is valid until the next call on `a`. */
static int read_frame(struct ctl_admin *a, struct mim_frame *f,
                      int64_t deadline) {
  for (;;) {
    int rc = mim_stream_decoder_next(a->dec, f);
    if (rc != -EAGAIN)
      return rc;
    uint8_t buf[65536];
    ssize_t n = recv(a->fd, buf, sizeof buf, 0);
    if (n == 0)
      return -ECONNRESET;
    if (n > 0) {
      if ((rc = mim_stream_decoder_feed(a->dec, buf, (size_t)n)) < 0)
        return rc;
      continue;
    }
    if (errno != EAGAIN && errno != EINTR)
      return -errno;
    if ((rc = wait_fd(a->fd, POLLIN, deadline)) < 0)
      return rc;
  }
}

static void report(const struct ctl_admin *a, const char *during, int rc) {
  if (rc == -ETIMEDOUT)
    fprintf(stderr, "mimctl: %s %s: no answer within %d ms\n", during,
            a->addr, a->timeout_ms);
  else if (rc == -ECONNRESET)
    fprintf(stderr, "mimctl: %s %s: logicd closed the connection\n", during,
            a->addr);
  else
    fprintf(stderr, "mimctl: %s %s: %s\n", during, a->addr,
            rc <= MIM_ERR__FIRST && rc >= MIM_ERR__LAST ? mim_strerror(rc)
                                                        : strerror(-rc));
}

/* ---- API ---- */

static int hello(struct ctl_admin *a, const char *secret, int64_t deadline) {
  struct mim_rpc r;
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_HELLO;
  r.gateway_id = "mimctl";
  r.secret = secret;
  r.version = MIM_RPC_VERSION;
  int rc = send_rpc(a, &r, deadline);
  struct mim_frame f;
  if (rc == 0)
    rc = read_frame(a, &f, deadline);
  if (rc < 0) {
    report(a, "talking to logicd at", rc);
    return rc;
  }
  if (f.header.cmd != MIM_RPC_HELLO_ACK ||
      mim_rpc_decode(&r, f.header.cmd, f.body, f.header.body_len) < 0) {
    fprintf(stderr, "mimctl: %s does not answer like logicd (cmd %u)\n",
            a->addr, f.header.cmd);
    return -EPROTO;
  }
  rc = 0;
  if (r.status != 0) {
    rc = -r.status;
    fprintf(stderr, "mimctl: logicd refused the link: %s (%s)%s\n",
            r.text && *r.text ? r.text : mim_strerror(rc), mim_err_name(rc),
            rc == -MIM_ERR_FORBIDDEN
                ? "; use logicd's admin socket, or check admin_secret / "
                  "--admin-secret"
                : "");
  }
  mim_rpc_finish(&r);
  return rc;
}

int ctl_admin_open(struct ctl_admin **out, const char *addr,
                   const char *secret, int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  struct ctl_admin *a = calloc(1, sizeof *a);
  if (a == NULL)
    return -ENOMEM;
  a->fd = -1;
  a->timeout_ms = timeout_ms;
  a->next_req_id = 1;
  a->addr = strdup(addr);
  int rc = a->addr ? mim_stream_decoder_create(&a->dec, RPC_MAX_BODY) : -ENOMEM;
  if (rc < 0)
    goto fail;
  if (strncmp(addr, "unix:", 5) == 0)
    rc = open_unix(addr + 5, deadline);
  else
    rc = open_tcp(addr, deadline);
  if (rc < 0) {
    report(a, "cannot connect to logicd at", rc);
    if (rc == -ENOENT || rc == -ECONNREFUSED)
      fprintf(stderr, "mimctl: is logicd running? (its admin socket is "
                      "DATA_DIR/admin.sock unless admin_listen says "
                      "otherwise; see --help)\n");
    goto fail;
  }
  a->fd = rc;
  if ((rc = hello(a, secret, deadline)) < 0)
    goto fail;
  *out = a;
  return 0;
fail:
  ctl_admin_close(a);
  return rc;
}

int ctl_admin_call(struct ctl_admin *a, const struct mim_packet *req,
                   struct mim_packet *reply) {
  int64_t deadline = now_ms() + a->timeout_ms;
  size_t cap = mim_packet_encoded_size(req), len = 0;
  uint8_t *body = malloc(cap ? cap : 1);
  if (body == NULL)
    return -ENOMEM;
  int rc = mim_packet_encode_body(req, body, cap, &len);
  if (rc < 0) {
    free(body);
    fprintf(stderr, "mimctl: cannot encode %s: %s\n", mim_cmd_name(req->cmd),
            mim_strerror(rc));
    return rc;
  }
  struct mim_rpc r;
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_ADMIN;
  r.req_id = a->next_req_id++;
  r.inner_cmd = req->cmd;
  r.body = body;
  r.body_len = len;
  uint64_t want = r.req_id;
  rc = send_rpc(a, &r, deadline);
  free(body);
  while (rc == 0) {
    struct mim_frame f;
    if ((rc = read_frame(a, &f, deadline)) < 0)
      break;
    if (f.header.cmd == MIM_RPC_PING) {
      /* logicd checks that a quiet link is alive */
      mim_rpc_init(&r);
      if ((rc = mim_rpc_decode(&r, f.header.cmd, f.body,
                               f.header.body_len)) < 0)
        break;
      r.cmd = MIM_RPC_PONG;
      rc = send_rpc(a, &r, deadline);
      mim_rpc_finish(&r);
      continue;
    }
    if (f.header.cmd != MIM_RPC_ADMIN_REPLY)
      continue; /* nothing else is meant for an admin link */
    mim_rpc_init(&r);
    if ((rc = mim_rpc_decode(&r, f.header.cmd, f.body, f.header.body_len)) < 0)
      break;
    if (r.req_id == want) {
      rc = mim_packet_decode(reply, r.inner_cmd, r.body, r.body_len);
      mim_rpc_finish(&r);
      if (rc < 0)
        break;
      return 0;
    }
    mim_rpc_finish(&r);
  }
  report(a, "request to logicd at", rc);
  return rc;
}

void ctl_admin_close(struct ctl_admin *a) {
  if (a == NULL)
    return;
  if (a->fd >= 0)
    close(a->fd);
  mim_stream_decoder_destroy(a->dec);
  free(a->addr);
  free(a);
}
