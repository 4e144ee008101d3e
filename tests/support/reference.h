/* The protobuf-c references of the library's fast paths
 * (tests/support/reference.c), for unit tests, fuzz targets and the codec
 * benchmark. */
#ifndef MIM_TEST_REFERENCE_H
#define MIM_TEST_REFERENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mim/store.h>

/* Encodes the body of `flat` (a struct mim_rpc when `rpc`, else a struct
 * mim_packet) through protobuf-c (build + pack): the reference the direct
 * encoder must match byte for byte. Same results as
 * mim_packet_encode_body(). */
int mim__codec_encode_reference(bool rpc, const void *flat, uint8_t *buf,
                                size_t cap, size_t *len);

/* Decodes `body` as command `cmd` into `flat` (a struct mim_rpc when
 * `rpc`, else a struct mim_packet, finished first) through protobuf-c's
 * unpack: the reference the direct decoder must match. Same results and
 * ownership as mim_packet_decode() / mim_rpc_decode(). */
int mim__codec_decode_reference(bool rpc, uint32_t cmd, const uint8_t *body,
                                size_t len, void *flat);

/* mim__store_record_push() through protobuf-c's unpack: the reference the
 * fuzz target compares it with. */
int mim__store_record_push_reference(const uint8_t *rec, size_t len,
                                     uint64_t msg_id, uint64_t inbox_seq,
                                     struct mim_message_list *out);

#endif /* MIM_TEST_REFERENCE_H */
