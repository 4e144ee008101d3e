/* http_json.c: the JSON mapping of the HTTP gateway (docs/protocol.md
 * "HTTP and SSE"): request bodies -> client packets, replies, pushes and
 * errors -> JSON text. Depends on <mim/codec.h> and jansson only. */
#ifndef GATEWAYD_HTTP_JSON_H
#define GATEWAYD_HTTP_JSON_H

#include <mim/codec.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest nesting a request body may have: an object holding an array of
 * strings is 2. Checked before the parser runs. */
#define GW_JSON_DEPTH_MAX 4

/* A parsed request: `p`'s strings and members point into it. */
struct gw_json_req {
  struct mim_packet p;
  void *root;           /* json_t *, owned */
  const char **members; /* owned array, strings borrowed from root */
};

/* The request command of POST path name `name` ("send", "pull", ...), or
 * 0 when there is none. */
uint32_t gw_json_cmd(const char *name);

/* Parses `len` bytes at `buf` (borrowed for the call) as the JSON body of
 * request `cmd` into `out` (zeroed by the caller): an object whose members
 * are the protocol's field names for that request (docs/protocol.md §5);
 * an unknown member, a wrong type, a number out of range, invalid UTF-8,
 * a NUL inside a string, duplicate keys or nesting past GW_JSON_DEPTH_MAX
 * are refused. An empty body is an empty object. On error `why` (static
 * text) says what; out needs no freeing. Errors: -MIM_ERR_MALFORMED,
 * -ENOMEM. */
int gw_json_request(uint32_t cmd, const uint8_t *buf, size_t len,
                    struct gw_json_req *out, const char **why);
void gw_json_req_free(struct gw_json_req *r);

/* The JSON text (malloc'd, NUL-terminated, its length in *len) of reply
 * packet `p` (borrowed): the response message's fields by their protocol
 * names; items of pulls and histories as by gw_json_item(). NULL when out
 * of memory. */
char *gw_json_reply(const struct mim_packet *p, size_t *len);

/* The JSON text of one inbox entry: a pull item, or a push packet (8, 12,
 * 28) turned into the same shape. `payload` is base64. NULL: no memory. */
char *gw_json_item(const struct mim_pull_item *it, size_t *len);
/* Fills `it` from push packet `p` (strings borrowed from it). */
void gw_json_push_item(const struct mim_packet *p, struct mim_pull_item *it);

/* {"error":{"code","name","message","retryable"}} for wire code `code`
 * (`msg` borrowed, NULL: the standard text). NULL: no memory. */
char *gw_json_error(int32_t code, const char *msg, size_t *len);
/* A Kick as {"reason","name","message"}. */
char *gw_json_kick(int32_t reason, const char *msg, size_t *len);

/* The HTTP status an error of wire code `code` is answered with. */
int gw_json_http_status(int32_t code);

#endif
