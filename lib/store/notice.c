/* The group notice: the content of the SYSTEM message a group change
 * stores (<mim/store.h>, "group notices"). Backend-neutral, so every
 * backend stores the same bytes and the logic can rebuild them. */
#include <mim/store.h>

#include "store_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- the bounded JSON writer both kinds of notice share ---- */

void mim__notice_put(struct mim__notice_out *o, const char *s, size_t n) {
  if (o->full || o->cap - o->len <= n) { /* keep room for the NUL */
    o->full = true;
    return;
  }
  memcpy(o->buf + o->len, s, n);
  o->len += n;
}

void mim__notice_put_lit(struct mim__notice_out *o, const char *s) {
  mim__notice_put(o, s, strlen(s));
}

/* Any valid UTF-8: ids have no control characters (mim_id_valid), but a
 * group name may, and JSON wants them escaped. */
void mim__notice_put_str(struct mim__notice_out *o, const char *s) {
  mim__notice_put(o, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
    if (*p == '"' || *p == '\\') {
      mim__notice_put(o, "\\", 1);
      mim__notice_put(o, (const char *)p, 1);
    } else if (*p < 0x20) {
      char esc[8];
      snprintf(esc, sizeof esc, "\\u%04x", *p);
      mim__notice_put(o, esc, 6);
    } else {
      mim__notice_put(o, (const char *)p, 1);
    }
  }
  mim__notice_put(o, "\"", 1);
}

void mim__notice_head(struct mim__notice_out *o, const char *group,
                      const char *action, const char *actor,
                      const char *const *members, size_t n) {
  mim__notice_put_lit(o, "{\"v\":1,\"group\":");
  mim__notice_put_str(o, group);
  mim__notice_put_lit(o, ",\"action\":\"");
  mim__notice_put_lit(o, action);
  mim__notice_put_lit(o, "\",\"actor\":");
  mim__notice_put_str(o, actor);
  mim__notice_put_lit(o, ",\"members\":[");
  for (size_t i = 0; i < n && i < MIM_GROUP_NOTICE_NAMES_MAX; i++) {
    if (i > 0)
      mim__notice_put_lit(o, ",");
    mim__notice_put_str(o, members[i]);
  }
  char tail[48];
  int tl = snprintf(tail, sizeof tail, "],\"count\":%zu", n);
  mim__notice_put(o, tail, (size_t)tl);
}

int mim__notice_end(struct mim__notice_out *o, size_t *len) {
  mim__notice_put_lit(o, "}");
  if (o->full)
    return -ENOBUFS;
  o->buf[o->len] = '\0';
  *len = o->len;
  return 0;
}

int mim_group_notice_format(char *buf, size_t cap, size_t *len,
                            enum mim_write_op_kind kind, const char *group,
                            const char *actor, const char *const *members,
                            size_t n) {
  if (buf == NULL || len == NULL || group == NULL ||
      (members == NULL && n > 0))
    return -EINVAL;
  if (actor == NULL)
    actor = "";
  const char *action;
  switch (kind) {
  case MIM_OP_GROUP_CREATE:
    action = "create";
    break;
  case MIM_OP_GROUP_ADD:
    action = "add";
    break;
  case MIM_OP_GROUP_REMOVE:
    action = n == 1 && actor[0] != '\0' && strcmp(members[0], actor) == 0
                 ? "leave"
                 : "remove";
    break;
  default:
    return -EINVAL;
  }
  struct mim__notice_out o = {.buf = buf, .cap = cap};
  mim__notice_head(&o, group, action, actor, members, n);
  return mim__notice_end(&o, len);
}
