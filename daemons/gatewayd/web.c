/* Serves the web chat page (docs/web.md) from the table embed-web.py
 * generated at build time: the installed daemon needs no path of its own,
 * and a request can only ever name one of these few exact paths (no file
 * system lookup, so no directory traversal). Each answer is one bounded
 * write of a file of the build (a few KiB); lws keeps what the socket does
 * not take at once and finishes it before the next request. */
#include "web.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

/* The page loads only its own scripts and styles and talks only to its own
 * origin: 'self' covers ws:// and wss:// to the same host and port (CSP
 * level 3, Chromium and Firefox), so no other socket can be opened even by
 * injected script. No inline script or style, no framing, no plugins. */
#define CSP                                                                   \
  "default-src 'self'; script-src 'self'; style-src 'self'; "                 \
  "img-src 'self'; connect-src 'self'; object-src 'none'; "                   \
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static const struct gw_web_asset *find(const char *uri) {
  for (const struct gw_web_asset *a = gw_web_assets; a->path != NULL; a++)
    if (strcmp(a->path, uri) == 0)
      return a;
  return NULL;
}

bool gw_web_is_page(const char *uri) { return find(uri) != NULL; }

static int add(struct lws *wsi, const char *name, const char *value,
               unsigned char **p, unsigned char *end) {
  return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                     (const unsigned char *)value,
                                     (int)strlen(value), p, end);
}

int gw_web_serve(struct lws *wsi, const char *uri) {
  const struct gw_web_asset *a = find(uri);
  bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
  bool head = lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0;
  unsigned char buf[LWS_PRE + 1024];
  unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;

  if (a == NULL || !(get || head)) {
    /* POST, PUT, …: nothing here changes */
    if (lws_return_http_status(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, NULL))
      return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
  }
  if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, a->type,
                                  (lws_filepos_t)a->len, &p, end) ||
      add(wsi, "content-security-policy:", CSP, &p, end) ||
      add(wsi, "x-content-type-options:", "nosniff", &p, end) ||
      add(wsi, "x-frame-options:", "DENY", &p, end) ||
      add(wsi, "referrer-policy:", "no-referrer", &p, end) ||
      /* revalidate every load: a new daemon serves a new page */
      add(wsi, "cache-control:", "no-cache", &p, end) ||
      lws_finalize_write_http_header(wsi, start, &p, end))
    return -1;
  if (head || a->len == 0)
    return lws_http_transaction_completed(wsi) ? -1 : 0;
  /* lws_write wants LWS_PRE writable bytes before the data: copy the file
   * into a buffer of its own (freed at once: lws copies what it buffers) */
  unsigned char *out = malloc(LWS_PRE + a->len);
  if (out == NULL)
    return -1;
  memcpy(out + LWS_PRE, a->data, a->len);
  int n = lws_write(wsi, out + LWS_PRE, a->len, LWS_WRITE_HTTP_FINAL);
  free(out);
  if (n != (int)a->len)
    return -1;
  return lws_http_transaction_completed(wsi) ? -1 : 0;
}
