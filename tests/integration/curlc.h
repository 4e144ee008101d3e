/* A JSON HTTP client on libcurl for the tests of logicd's HTTP API
 * (test-api.c, test-mpage.c): one request, the whole answer kept. */
#ifndef TESTS_CURLC_H
#define TESTS_CURLC_H

#include <jansson.h>
#include <stddef.h>

struct curlc_resp {
  long status;
  char body[1024 * 1024]; /* NUL-terminated; a longer body is cut */
  size_t len;
  char headers[4096];
  size_t hlen;
  json_t *json; /* the parsed body, or NULL */
};

/* `method` http://127.0.0.1:`port``path` with `key` as the bearer (NULL:
 * no Authorization) and a `body` (NULL: none) of `ctype` (NULL:
 * application/json). The answer replaces what `r` held (its json is
 * released first). Returns the status; a transport failure fails the
 * test (cmocka). */
long curlc_request(struct curlc_resp *r, int port, const char *method,
                   const char *path, const char *key, const char *body,
                   const char *ctype);

#endif
