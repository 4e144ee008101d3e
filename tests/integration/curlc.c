#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "curlc.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

static size_t on_body(char *p, size_t sz, size_t n, void *u) {
  struct curlc_resp *r = u;
  size_t len = sz * n;
  if (r->len + len < sizeof r->body) {
    memcpy(r->body + r->len, p, len);
    r->len += len;
    r->body[r->len] = '\0';
  }
  return len;
}

static size_t on_header(char *p, size_t sz, size_t n, void *u) {
  struct curlc_resp *r = u;
  size_t len = sz * n;
  if (r->hlen + len < sizeof r->headers) {
    memcpy(r->headers + r->hlen, p, len);
    r->hlen += len;
    r->headers[r->hlen] = '\0';
  }
  return len;
}

long curlc_request(struct curlc_resp *r, int port, const char *method,
                   const char *path, const char *key, const char *body,
                   const char *ctype) {
  json_decref(r->json);
  memset(r, 0, sizeof *r);
  CURL *c = curl_easy_init();
  assert_non_null(c);
  char url[2048];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
  struct curl_slist *hs = NULL;
  char auth[512];
  if (key != NULL) {
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    hs = curl_slist_append(hs, auth);
  }
  char ct[256];
  if (body != NULL) {
    snprintf(ct, sizeof ct, "Content-Type: %s",
             ctype != NULL ? ctype : "application/json");
    hs = curl_slist_append(hs, ct);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  }
  hs = curl_slist_append(hs, "Expect:"); /* no 100-continue round trip */
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK)
    fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
  curl_slist_free_all(hs);
  curl_easy_cleanup(c);
  r->json = json_loadb(r->body, r->len, 0, NULL);
  return r->status;
}
