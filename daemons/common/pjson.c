/* Protocol packets as JSON (pjson.h). */
#include "pjson.h"

#include <stddef.h>

static json_t *str_array(const char *const *v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; a != NULL && i < n; i++)
    json_array_append_new(a, json_string(v[i]));
  return a;
}

static json_t *conv_item(const struct mim_conv_item *it) {
  json_t *o = json_pack(
      "{s:s,s:s,s:I,s:I,s:I,s:s,s:i,s:s,s:b,s:I,s:I,s:I}", "peer", it->peer,
      "group", it->group, "last_msg_id", (json_int_t)it->last_msg_id,
      "last_conv_seq", (json_int_t)it->last_conv_seq, "last_time",
      (json_int_t)it->last_time, "last_from", it->last_from, "last_type",
      (int)it->last_type, "preview", it->preview, "preview_cut",
      it->preview_cut, "read_seq", (json_int_t)it->read_seq, "unread",
      (json_int_t)it->unread, "peer_read_seq", (json_int_t)it->peer_read_seq);
  if (o != NULL && it->last_state != 0) /* recalled, edited, deleted (§19) */
    json_object_set_new(o, "last_state", json_integer(it->last_state));
  if (o != NULL && it->large) /* a large group: sync it (§22) */
    json_object_set_new(o, "large", json_true());
  return o;
}

json_t *mimd_pjson_conv_list(const struct mim_packet *p) {
  json_t *a = json_array();
  for (size_t i = 0; a != NULL && i < p->n_convs; i++)
    json_array_append_new(a, conv_item(&p->convs[i]));
  return json_pack("{s:o,s:b}", "conversations", a, "has_more", p->has_more);
}

json_t *mimd_pjson_read_by(const struct mim_packet *p) {
  return json_pack("{s:s,s:I,s:I,s:I,s:o,s:b}", "group", p->group,
                   "conv_seq", (json_int_t)p->conv_seq, "read_count",
                   (json_int_t)p->read_count, "member_count",
                   (json_int_t)p->member_count, "readers",
                   str_array(p->members, p->n_members), "has_more",
                   p->has_more);
}

json_t *mimd_pjson_read_state(const struct mim_packet *p) {
  return json_pack("{s:s,s:s,s:I,s:I}", "peer", p->peer, "group", p->group,
                   "read_seq", (json_int_t)p->read_seq, "unread",
                   (json_int_t)p->unread);
}
