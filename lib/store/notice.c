/* The group notice: the content of the SYSTEM message a group change
 * stores (<mim/store.h>, "group notices"). Backend-neutral, so every
 * backend stores the same bytes and the logic can rebuild them. */
#include <mim/store.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct out {
  char *buf;
  size_t cap, len;
  bool full;
};

static void put(struct out *o, const char *s, size_t n) {
  if (o->full || o->cap - o->len <= n) { /* keep room for the NUL */
    o->full = true;
    return;
  }
  memcpy(o->buf + o->len, s, n);
  o->len += n;
}

static void put_lit(struct out *o, const char *s) { put(o, s, strlen(s)); }

/* A JSON string. Ids are valid UTF-8 without control characters
 * (mim_id_valid), so only '"' and '\\' need escaping. */
static void put_str(struct out *o, const char *s) {
  put(o, "\"", 1);
  for (const char *p = s; *p != '\0'; p++) {
    if (*p == '"' || *p == '\\')
      put(o, "\\", 1);
    put(o, p, 1);
  }
  put(o, "\"", 1);
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
  struct out o = {.buf = buf, .cap = cap};
  put_lit(&o, "{\"v\":1,\"group\":");
  put_str(&o, group);
  put_lit(&o, ",\"action\":\"");
  put_lit(&o, action);
  put_lit(&o, "\",\"actor\":");
  put_str(&o, actor);
  put_lit(&o, ",\"members\":[");
  for (size_t i = 0; i < n && i < MIM_GROUP_NOTICE_NAMES_MAX; i++) {
    if (i > 0)
      put_lit(&o, ",");
    put_str(&o, members[i]);
  }
  char tail[48];
  int tl = snprintf(tail, sizeof tail, "],\"count\":%zu}", n);
  put(&o, tail, (size_t)tl);
  if (o.full)
    return -ENOBUFS;
  buf[o.len] = '\0';
  *len = o.len;
  return 0;
}
