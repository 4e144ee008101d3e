/* A tiny blocking HTTP/1.1 client for the integration tests: one request
 * per connection to 127.0.0.1 ("Connection: close", no body sent), with a
 * 5 s receive timeout. Enough to check the daemons' HTTP endpoints
 * (/metrics, /readyz, /healthz, ...); not a general client (no chunked
 * decoding, no redirects). */
#ifndef MIM_TEST_HTTPC_H
#define MIM_TEST_HTTPC_H

#include <stdbool.h>
#include <stddef.h>

struct httpc_rsp {
  int status;       /* e.g. 200 */
  char *body;       /* malloc'd, NUL-terminated; httpc_rsp_free() */
  size_t body_len;  /* bytes of body (as read, before the NUL) */
  char head[1024];  /* status line and headers, truncated to fit */
};

/* Sends `method` `path` to 127.0.0.1:`port` on a fresh connection and reads
 * until the server closes or Content-Length bytes of body arrived. On
 * success fills `*out` (the caller frees out->body) and returns 0; returns
 * -1 when there is no connection, no parsable answer within 5 s, or no
 * memory (then out->body is NULL). */
int httpc_request(int port, const char *method, const char *path,
                  struct httpc_rsp *out);

/* The status of GET `path`, or -1 (as httpc_request() fails). */
int httpc_status(int port, const char *path);

/* Polls GET `path` every 100 ms until it answers `status`; false when it
 * did not within `ms`. */
bool httpc_wait_status(int port, const char *path, int status, int ms);

/* Frees r->body (NULL is fine). */
void httpc_rsp_free(struct httpc_rsp *r);

#endif
