/* Protocol packets as JSON: the one mapping of the objects that the HTTP
 * API (logicd) and the HTTP gateway (gatewayd) both answer with, so a
 * conversation or a read position looks the same on both (docs/http-api.md,
 * docs/protocol.md §16). Field names are the protobuf names. */
#ifndef MIMD_PJSON_H
#define MIMD_PJSON_H

#include <jansson.h>

#include <mim/codec.h>

/* A ConvListResponse: {"conversations": [ConvItem…], "has_more"}. Returns a
 * new reference, NULL when out of memory. */
json_t *mimd_pjson_conv_list(const struct mim_packet *p);

/* A ReadByResponse: {"group", "conv_seq", "read_count", "member_count",
 * "readers": [uid…], "has_more"}. A new reference, or NULL. */
json_t *mimd_pjson_read_by(const struct mim_packet *p);

/* A ReadState (the reply to a mark-read): {"peer", "group", "read_seq",
 * "unread"}. A new reference, or NULL. */
json_t *mimd_pjson_read_state(const struct mim_packet *p);

#endif
