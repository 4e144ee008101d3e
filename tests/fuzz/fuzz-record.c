/* Fuzz target: arbitrary bytes as a stored MessageRecord, read the way the
 * LMDB backend reads them (mim__store_record_push, a hand-written parser).
 * It may not crash; whatever protobuf-c unpacks
 * (mim__store_record_push_reference), it must accept too, with the same
 * message. */
#include "fuzz.h"
#include "reference.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"


/* Stored bytes come back NUL-terminated (store.h). */
static void same_stored_bytes(const uint8_t *a, size_t an, const uint8_t *b,
                              size_t bn) {
  same_bytes(a, an, b, bn);
  check(a[an] == '\0' && b[bn] == '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct mim_message_list ours, ref;
  mim_message_list_init(&ours);
  mim_message_list_init(&ref);
  int rc = mim__store_record_push(data, size, 7, 9, &ours);
  check(rc == 0 || rc == -MIM_ERR_STORE || rc == -ENOMEM);
  check(ours.count == (rc == 0 ? 1u : 0u));
  if (mim__store_record_push_reference(data, size, 7, 9, &ref) == 0) {
    check(rc == 0);
    const struct mim_message *a = &ours.items[0], *b = &ref.items[0];
    check(a->msg_id == 7 && a->inbox_seq == 9);
    check(a->type == b->type && a->conv_kind == b->conv_kind);
    check(a->server_time == b->server_time && a->conv_seq == b->conv_seq);
    /* protobuf-c keeps strings as C strings: compared as such */
    same_str(a->sender, b->sender);
    same_str(a->sender_device, b->sender_device);
    same_str(a->peer, b->peer);
    same_str(a->group, b->group);
    same_str(a->client_msg_id, b->client_msg_id);
    same_stored_bytes(a->content, a->content_len, b->content, b->content_len);
    same_stored_bytes(a->payload, a->payload_len, b->payload, b->payload_len);
  }
  mim_message_list_finish(&ref);
  mim_message_list_finish(&ours);
  return 0;
}

/* ---- seeds: records as the store writes them ---- */

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *p++ = (uint8_t)v;
  return p;
}

static uint8_t *put_num(uint8_t *p, unsigned field, uint64_t v) {
  return put_varint(put_varint(p, (uint64_t)field << 3), v);
}

static uint8_t *put_str(uint8_t *p, unsigned field, const char *s, size_t n) {
  p = put_varint(put_varint(p, (uint64_t)field << 3 | 2), n);
  memcpy(p, s, n);
  return p + n;
}

size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap) {
  uint8_t tmp[256], *p = tmp;
  switch (i) {
  case 0: /* every field, in the order protobuf-c writes them */
    p = put_num(p, 1, 1);
    p = put_num(p, 2, 2);
    p = put_str(p, 3, "alice", 5);
    p = put_str(p, 4, "phone", 5);
    p = put_num(p, 5, 1);
    p = put_str(p, 6, "bob", 3);
    p = put_str(p, 8, "hello \xe2\x9c\x93", 9);
    p = put_str(p, 9, "\x00\x01\x02", 3);
    p = put_num(p, 10, (uint64_t)INT64_C(-1700000000000));
    p = put_str(p, 11, "c-1", 3);
    p = put_num(p, 12, UINT64_MAX);
    break;
  case 1: /* a group message, an unknown field of each wire type */
    p = put_num(p, 5, 2);
    p = put_str(p, 7, "g", 1);
    p = put_str(p, 3, "carol", 5);
    p = put_num(p, 20, 5);
    p = put_str(p, 21, "xy", 2);
    p = put_varint(p, 22 << 3 | 1);
    memset(p, 1, 8);
    p += 8;
    p = put_varint(p, 23 << 3 | 5);
    memset(p, 2, 4);
    p += 4;
    break;
  case 2: /* empty */
    break;
  default:
    return 0;
  }
  size_t n = (size_t)(p - tmp);
  if (n > cap)
    return 0;
  memcpy(buf, tmp, n);
  return n;
}
