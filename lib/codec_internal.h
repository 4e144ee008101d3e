/* Private codec entry points, for white-box tests. Never installed. */
#ifndef MIM_CODEC_INTERNAL_H
#define MIM_CODEC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Checks that every protobuf field of every mapped message has exactly one
 * table row of a matching type, so a field added to a .proto without a
 * mapping fails the unit tests. Returns 0, or -EINVAL with the first
 * problem described in `why`. */
int mim__codec_check_tables(char *why, size_t why_cap);

/* Encodes the body of `flat` (a struct mim_rpc when `rpc`, else a struct
 * mim_packet) through protobuf-c (build + pack): the reference the direct
 * encoder must match byte for byte. Same
 * results as mim_packet_encode_body(). */
int mim__codec_encode_reference(bool rpc, const void *flat, uint8_t *buf,
                                size_t cap, size_t *len);

/* Decodes `body` as command `cmd` into `flat` (a struct mim_rpc when
 * `rpc`, else a struct mim_packet, finished first) through protobuf-c's
 * unpack: the reference the direct decoder must match. Same results and
 * ownership as mim_packet_decode() / mim_rpc_decode(). */
int mim__codec_decode_reference(bool rpc, uint32_t cmd, const uint8_t *body,
                                size_t len, void *flat);

struct mim_packet;

/* Encodes the body of `p` into a buffer malloc'ed to fit (*body, owned by
 * the caller; *len bytes), measuring it once. Errors: as
 * mim_packet_encode_body(), -ENOMEM. */
int mim__packet_encode_body_alloc(const struct mim_packet *p, uint8_t **body,
                                  size_t *len);

#endif
