/* Private codec entry points, for white-box tests. Never installed. */
#ifndef MIM_CODEC_INTERNAL_H
#define MIM_CODEC_INTERNAL_H

#include <stdbool.h>
#include <mim/rpc.h>
#include <stddef.h>
#include <stdint.h>

/* Checks that every protobuf field of every mapped message has exactly one
 * table row of a matching type, so a field added to a .proto without a
 * mapping fails the unit tests. Returns 0, or -EINVAL with the first
 * problem described in `why`. */
int mim__codec_check_tables(char *why, size_t why_cap);

struct mim_packet;

/* Encodes the body of `p` into a buffer malloc'ed to fit (*body, owned by
 * the caller; *len bytes), measuring it once. Errors: as
 * mim_packet_encode_body(), -ENOMEM. */
int mim__packet_encode_body_alloc(const struct mim_packet *p, uint8_t **body,
                                  size_t *len);

#endif
