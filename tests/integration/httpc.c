/* A tiny blocking HTTP/1.1 client for the integration tests (httpc.h). */
#include "httpc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int httpc_request(int port, const char *method, const char *path,
                  struct httpc_rsp *out) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  struct timeval tv = {.tv_sec = 5};
  char req[512];
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap + 1);
  int fd = socket(AF_INET, SOCK_STREAM, 0);

  memset(out, 0, sizeof *out);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || buf == NULL)
    goto fail;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
    goto fail;
  int n = snprintf(req, sizeof req,
                   "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Connection: close\r\nContent-Length: 0\r\n\r\n",
                   method, path, port);
  if (write(fd, req, (size_t)n) != n)
    goto fail;
  for (;;) {
    if (len == cap) {
      char *p = realloc(buf, 2 * cap + 1);
      if (p == NULL)
        goto fail;
      buf = p;
      cap *= 2;
    }
    ssize_t got = read(fd, buf + len, cap - len);
    if (got <= 0)
      break;
    len += (size_t)got;
    buf[len] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    const char *cl = strcasestr(buf, "content-length:");
    if (end != NULL && cl != NULL && cl < end &&
        len >= (size_t)(end + 4 - buf) + strtoul(cl + 15, NULL, 10))
      break;
  }
  buf[len] = '\0';
  char *end = strstr(buf, "\r\n\r\n");
  if (end == NULL || sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1)
    goto fail;
  size_t hl = (size_t)(end - buf);
  snprintf(out->head, sizeof out->head, "%.*s", (int)hl, buf);
  out->body_len = len - hl - 4;
  out->body = malloc(out->body_len + 1);
  if (out->body == NULL)
    goto fail;
  memcpy(out->body, end + 4, out->body_len);
  out->body[out->body_len] = '\0';
  free(buf);
  close(fd);
  return 0;
fail:
  free(buf);
  if (fd >= 0)
    close(fd);
  return -1;
}

/* The status of GET `path`, or -1. */
int httpc_status(int port, const char *path) {
  struct httpc_rsp r;
  if (httpc_request(port, "GET", path, &r) != 0)
    return -1;
  free(r.body);
  return r.status;
}

/* Polls GET `path` until it answers `status` (up to `ms`). */
bool httpc_wait_status(int port, const char *path, int status, int ms) {
  for (int waited = 0; waited <= ms; waited += 100) {
    if (httpc_status(port, path) == status)
      return true;
    usleep(100 * 1000);
  }
  return false;
}

void httpc_rsp_free(struct httpc_rsp *r) {
  free(r->body);
  r->body = NULL;
}
