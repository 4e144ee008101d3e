/* Write batches, message lists and the thin backend wrappers.
 *
 * A batch owns deep copies of everything added to it, in one arena: the
 * caller's buffers are borrowed only for the add call, and a committed
 * batch can travel to the writer thread and back without anyone else's
 * memory. Reset rewinds the arena, so a batch reused for every group commit
 * stops allocating once it has reached its working size. */
#include "util/internal.h"
#include "store/store_internal.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

static const char *nz_(const char *s) { return s != NULL ? s : ""; }

static bool bytes_same(const uint8_t *a, size_t al, const uint8_t *b,
                       size_t bl) {
  return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

bool mim__message_same(const struct mim_message_in *a,
                       const struct mim_message_in *b) {
  return a->conv_kind == b->conv_kind && a->type == b->type &&
         strcmp(nz_(a->peer), nz_(b->peer)) == 0 &&
         strcmp(nz_(a->group), nz_(b->group)) == 0 &&
         bytes_same(a->content, a->content_len, b->content, b->content_len) &&
         bytes_same(a->payload, a->payload_len, b->payload, b->payload_len);
}

/* ---- arena ---- */

struct mim__store_arena_chunk {
  struct mim__store_arena_chunk *next;
  size_t size; /* bytes of data[] */
  size_t used;
  alignas(max_align_t) unsigned char data[];
};

enum { ARENA_FIRST_CHUNK = 4096 - sizeof(struct mim__store_arena_chunk),
       ARENA_MAX_CHUNK = 1 << 20 };

void mim__store_arena_init(struct mim__store_arena *a) {
  a->head = NULL;
  a->cur = NULL;
}

void mim__store_arena_finish(struct mim__store_arena *a) {
  struct mim__store_arena_chunk *c = a->head;
  while (c != NULL) {
    struct mim__store_arena_chunk *next = c->next;
    free(c);
    c = next;
  }
  mim__store_arena_init(a);
}

void mim__store_arena_reset(struct mim__store_arena *a) {
  a->cur = a->head;
  if (a->cur != NULL)
    a->cur->used = 0;
}

/* Allocates `n` bytes at a multiple of `align` (a power of two). */
static void *arena_alloc_aligned(struct mim__store_arena *a, size_t n,
                                 size_t align) {
  for (;;) {
    struct mim__store_arena_chunk *c = a->cur;
    if (c != NULL) {
      size_t off = (c->used + align - 1) & ~(align - 1);
      if (off <= c->size && c->size - off >= n) {
        c->used = off + n;
        return c->data + off;
      }
      /* Chunks kept by a reset are reused in order; one too small for this
       * request is skipped (its tail wasted until the next reset) rather
       * than searched again. */
      if (c->next != NULL) {
        a->cur = c->next;
        a->cur->used = 0;
        continue;
      }
    }
    size_t size = c != NULL ? c->size * 2 : ARENA_FIRST_CHUNK;
    if (size > ARENA_MAX_CHUNK)
      size = ARENA_MAX_CHUNK;
    if (size < n)
      size = n;
    if (size > SIZE_MAX - sizeof(*c))
      return NULL;
    struct mim__store_arena_chunk *fresh = malloc(sizeof(*fresh) + size);
    if (fresh == NULL)
      return NULL;
    fresh->next = NULL;
    fresh->size = size;
    fresh->used = 0;
    if (c != NULL)
      c->next = fresh;
    else
      a->head = fresh;
    a->cur = fresh;
  }
}

void *mim__store_arena_alloc(struct mim__store_arena *a, size_t n) {
  return arena_alloc_aligned(a, n, alignof(max_align_t));
}

void *mim__store_arena_memdup(struct mim__store_arena *a, const void *p,
                              size_t n) {
  void *d = arena_alloc_aligned(a, n, 1);
  if (d != NULL && n > 0)
    memcpy(d, p, n);
  return d;
}

char *mim__store_arena_strdup(struct mim__store_arena *a, const char *s) {
  if (s == NULL)
    s = "";
  return mim__store_arena_memdup(a, s, strlen(s) + 1);
}

/* ---- message lists ---- */

struct list_priv {
  struct mim__store_arena arena;
  size_t cap; /* of items */
};

void mim_message_list_init(struct mim_message_list *l) {
  l->items = NULL;
  l->count = 0;
  l->has_more = false;
  l->priv_ = NULL;
}

void mim_message_list_finish(struct mim_message_list *l) {
  if (l == NULL)
    return;
  struct list_priv *p = l->priv_;
  if (p != NULL) {
    mim__store_arena_finish(&p->arena);
    free(p);
  }
  free(l->items);
  mim_message_list_init(l);
}

/* Copies `n` bytes plus a NUL terminator (store.h promises one after content
 * and payload: they are protobuf strings, read as C strings by callers). A
 * zero-length field still gets a non-NULL pointer, so readers may pass it to
 * memcmp/memcpy. */
static const uint8_t *dup_bytes(struct mim__store_arena *a, const uint8_t *p,
                                size_t n) {
  uint8_t *d = mim__store_arena_alloc(a, n + 1);
  if (d == NULL)
    return NULL;
  if (n > 0)
    memcpy(d, p, n);
  d[n] = '\0';
  return d;
}

/* A NUL-terminated copy of the `n` bytes at `p`. */
static const char *dup_str(struct mim__store_arena *a, const char *p,
                           size_t n) {
  return (const char *)dup_bytes(a, (const uint8_t *)p, n);
}

int mim__message_list_push_slices(struct mim_message_list *l,
                                  const struct mim_message *m,
                                  const struct mim__message_strings *str) {
  if (l == NULL || m == NULL || str == NULL)
    return -EINVAL;
  struct list_priv *p = l->priv_;
  if (p == NULL) {
    p = calloc(1, sizeof(*p));
    if (p == NULL)
      return -ENOMEM;
    mim__store_arena_init(&p->arena);
    l->priv_ = p;
  }
  if (l->count == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 16;
    struct mim_message *items = realloc(l->items, cap * sizeof(*items));
    if (items == NULL)
      return -ENOMEM;
    l->items = items;
    p->cap = cap;
  }
  struct mim__store_arena *a = &p->arena;
  struct mim_message c = *m;
  c.sender = dup_str(a, str->sender, str->sender_len);
  c.sender_device = dup_str(a, str->sender_device, str->sender_device_len);
  c.peer = dup_str(a, str->peer, str->peer_len);
  c.group = dup_str(a, str->group, str->group_len);
  c.client_msg_id = dup_str(a, str->client_msg_id, str->client_msg_id_len);
  c.content = dup_bytes(a, m->content, m->content_len);
  c.payload = dup_bytes(a, m->payload, m->payload_len);
  if (!c.sender || !c.sender_device || !c.peer || !c.group ||
      !c.client_msg_id || !c.content || !c.payload)
    return -ENOMEM;
  l->items[l->count++] = c;
  return 0;
}

int mim_message_list_push(struct mim_message_list *l,
                          const struct mim_message *m) {
  if (l == NULL || m == NULL)
    return -EINVAL;
  const char *sender = m->sender ? m->sender : "";
  const char *device = m->sender_device ? m->sender_device : "";
  const char *peer = m->peer ? m->peer : "";
  const char *group = m->group ? m->group : "";
  const char *cmid = m->client_msg_id ? m->client_msg_id : "";
  struct mim__message_strings str = {
      sender, device, peer, group, cmid,
      strlen(sender), strlen(device), strlen(peer), strlen(group),
      strlen(cmid)};
  return mim__message_list_push_slices(l, m, &str);
}

/* ---- write batches ---- */

struct batch_op {
  enum mim_write_op_kind kind;
  struct mim_message_in msg;   /* MESSAGE: batch-owned copy */
  const char *uid, *device;    /* CURSOR */
  uint64_t seq;
  const char *group;           /* GROUP_* */
  const char *const *members;
  size_t n_members;
  int64_t server_time;
  const char *actor;           /* GROUP_*: "" = an operator */
  const char *peer;            /* READ: one-to-one peer, or "" */
  bool notice;                 /* GROUP_*: store the group notice */
  enum mim_group_action action; /* GROUP_MANAGE */
  const char *target;
  int64_t until;
  const char *name, *metadata;  /* NULL: unchanged */
  uint64_t msg_id;              /* CHANGE */
  enum mim_change_action change;
  const uint8_t *content;
  size_t content_len;
  int64_t recall_window_ms, edit_window_ms;
  struct mim_op_outcome outcome;
};

struct mim_write_batch {
  struct batch_op *ops;
  size_t n, cap;
  struct mim__store_arena arena;
  bool committed;
  int status;
};

int mim_write_batch_create(struct mim_write_batch **out) {
  if (out == NULL)
    return -EINVAL;
  struct mim_write_batch *b = calloc(1, sizeof(*b));
  if (b == NULL)
    return -ENOMEM;
  mim__store_arena_init(&b->arena);
  b->status = -EAGAIN;
  *out = b;
  return 0;
}

void mim_write_batch_destroy(struct mim_write_batch *b) {
  if (b == NULL)
    return;
  mim__store_arena_finish(&b->arena);
  free(b->ops);
  free(b);
}

void mim_write_batch_reset(struct mim_write_batch *b) {
  if (b == NULL)
    return;
  b->n = 0;
  b->committed = false;
  b->status = -EAGAIN;
  mim__store_arena_reset(&b->arena);
}

size_t mim_write_batch_count(const struct mim_write_batch *b) {
  return b != NULL ? b->n : 0;
}

/* Whether `s` is an acceptable id: the library's one id rule,
 * mim_id_valid(), or empty (NULL counts as empty) when not `required`. The
 * store enforces it too, so an application writing batches directly cannot
 * store an id a client could never send (and every string the store keeps
 * goes back out in protobuf `string` fields, which must be UTF-8). */
static bool id_ok(const char *s, bool required) {
  if (s == NULL || s[0] == '\0')
    return !required;
  return mim_id_valid(s);
}

/* A new op slot at the end, or NULL. A batch that committed successfully is
 * closed: its ops are durable and committing them again would store them
 * twice, so it takes nothing more until reset. A failed one may be extended
 * and committed again (nothing of it was stored). */
static struct batch_op *new_op(struct mim_write_batch *b) {
  if (b->committed && b->status == 0)
    return NULL;
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    struct batch_op *ops = realloc(b->ops, cap * sizeof(*ops));
    if (ops == NULL)
      return NULL;
    b->ops = ops;
    b->cap = cap;
  }
  struct batch_op *op = &b->ops[b->n];
  memset(op, 0, sizeof(*op));
  return op;
}

/* Makes the slot new_op() returned part of the batch. */
static size_t push_op(struct mim_write_batch *b, size_t *index) {
  if (index != NULL)
    *index = b->n;
  b->committed = false;
  b->status = -EAGAIN;
  return b->n++;
}

static int add_error(const struct mim_write_batch *b) {
  return b->committed && b->status == 0 ? -EINVAL : -ENOMEM;
}

/* Copies an array of `n` ids into the arena; NULL when out of memory. */
static const char *const *dup_ids(struct mim__store_arena *a,
                                  const char *const *ids, size_t n) {
  const char **copy = mim__store_arena_alloc(a, n * sizeof(*copy));
  if (copy == NULL)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    copy[i] = mim__store_arena_strdup(a, ids[i]);
    if (copy[i] == NULL)
      return NULL;
  }
  return copy;
}

/* Whether the text of `m` (content, client_msg_id) is UTF-8; ids are
 * id_ok()'s. */
static bool message_text_ok(const struct mim_message_in *m) {
  if (!mim_utf8_valid(m->content, m->content_len))
    return false;
  return m->client_msg_id == NULL ||
         mim_utf8_valid(m->client_msg_id,
                        strnlen(m->client_msg_id, MIM_CLIENT_MSG_ID_MAX + 1));
}

static bool message_ok(const struct mim_message_in *m) {
  if (m->type > MIM_MSG_PUSH)
    return false;
  if ((m->content == NULL && m->content_len > 0) ||
      (m->payload == NULL && m->payload_len > 0))
    return false;
  if (!id_ok(m->sender, false) || !id_ok(m->sender_device, false) ||
      !id_ok(m->peer, false) || !id_ok(m->group, false))
    return false;
  if (m->client_msg_id != NULL &&
      strnlen(m->client_msg_id, MIM_CLIENT_MSG_ID_MAX + 1) >
          MIM_CLIENT_MSG_ID_MAX)
    return false;
  switch (m->conv_kind) {
  case MIM_CONV_C2C:
    return id_ok(m->sender, true) && id_ok(m->peer, true);
  case MIM_CONV_GROUP:
    /* sender "" is the server (system messages) */
    return id_ok(m->group, true);
  case MIM_CONV_PUSH:
    if (m->n_recipients == 0 || m->recipients == NULL)
      return false;
    for (size_t i = 0; i < m->n_recipients; i++)
      if (!id_ok(m->recipients[i], true))
        return false;
    return true;
  default:
    return false;
  }
}

int mim_write_batch_add_message(struct mim_write_batch *b,
                                const struct mim_message_in *m,
                                size_t *index) {
  if (b == NULL || m == NULL || !message_ok(m))
    return -EINVAL;
  if (!message_text_ok(m))
    return -MIM_ERR_BAD_UTF8;
  struct batch_op *op = new_op(b);
  if (op == NULL)
    return add_error(b);
  struct mim__store_arena *a = &b->arena;
  struct mim_message_in *c = &op->msg;
  *c = *m;
  c->sender = mim__store_arena_strdup(a, m->sender);
  c->sender_device = mim__store_arena_strdup(a, m->sender_device);
  c->peer = mim__store_arena_strdup(a, m->peer);
  c->group = mim__store_arena_strdup(a, m->group);
  c->client_msg_id = mim__store_arena_strdup(a, m->client_msg_id);
  c->content = dup_bytes(a, m->content, m->content_len);
  c->payload = dup_bytes(a, m->payload, m->payload_len);
  if (m->conv_kind == MIM_CONV_PUSH) {
    c->recipients = dup_ids(a, m->recipients, m->n_recipients);
  } else {
    /* recipients mean something only for pushes */
    c->recipients = NULL;
    c->n_recipients = 0;
  }
  if (!c->sender || !c->sender_device || !c->peer || !c->group ||
      !c->client_msg_id || !c->content || !c->payload ||
      (m->conv_kind == MIM_CONV_PUSH && c->recipients == NULL))
    return -ENOMEM;
  op->kind = MIM_OP_MESSAGE;
  push_op(b, index);
  return 0;
}

int mim_write_batch_add_cursor(struct mim_write_batch *b, const char *uid,
                               const char *device, uint64_t seq,
                               size_t *index) {
  if (b == NULL || !id_ok(uid, true) || !id_ok(device, true))
    return -EINVAL;
  struct batch_op *op = new_op(b);
  if (op == NULL)
    return add_error(b);
  op->uid = mim__store_arena_strdup(&b->arena, uid);
  op->device = mim__store_arena_strdup(&b->arena, device);
  if (op->uid == NULL || op->device == NULL)
    return -ENOMEM;
  op->kind = MIM_OP_CURSOR;
  op->seq = seq;
  push_op(b, index);
  return 0;
}

int mim_write_batch_add_last_seen(struct mim_write_batch *b, const char *uid,
                                  int64_t ms, size_t *index) {
  if (b == NULL || !id_ok(uid, true) || ms <= 0)
    return -EINVAL;
  struct batch_op *op = new_op(b);
  if (op == NULL)
    return add_error(b);
  op->uid = mim__store_arena_strdup(&b->arena, uid);
  if (op->uid == NULL)
    return -ENOMEM;
  op->kind = MIM_OP_LAST_SEEN;
  op->seq = (uint64_t)ms;
  push_op(b, index);
  return 0;
}

int mim_write_batch_add_read(struct mim_write_batch *b, const char *uid,
                             const char *peer, const char *group,
                             uint64_t seq, size_t *index) {
  bool has_peer = peer != NULL && peer[0] != '\0';
  bool has_group = group != NULL && group[0] != '\0';
  if (b == NULL || !id_ok(uid, true) || has_peer == has_group ||
      !id_ok(peer, false) || !id_ok(group, false))
    return -EINVAL;
  struct batch_op *op = new_op(b);
  if (op == NULL)
    return add_error(b);
  op->uid = mim__store_arena_strdup(&b->arena, uid);
  op->peer = mim__store_arena_strdup(&b->arena, has_peer ? peer : "");
  op->group = mim__store_arena_strdup(&b->arena, has_group ? group : "");
  if (op->uid == NULL || op->peer == NULL || op->group == NULL)
    return -ENOMEM;
  op->kind = MIM_OP_READ;
  op->seq = seq;
  push_op(b, index);
  return 0;
}

int mim_write_batch_add_group(struct mim_write_batch *b,
                              enum mim_write_op_kind kind, const char *group,
                              const char *const *members, size_t n_members,
                              int64_t server_time, size_t *index) {
  if (b == NULL || !id_ok(group, true) ||
      (kind != MIM_OP_GROUP_CREATE && kind != MIM_OP_GROUP_ADD &&
       kind != MIM_OP_GROUP_REMOVE) ||
      (members == NULL && n_members > 0))
    return -EINVAL;
  for (size_t i = 0; i < n_members; i++)
    if (!id_ok(members[i], true))
      return -EINVAL;
  struct batch_op *op = new_op(b);
  if (op == NULL)
    return add_error(b);
  op->group = mim__store_arena_strdup(&b->arena, group);
  op->members = dup_ids(&b->arena, members, n_members);
  if (op->group == NULL || op->members == NULL)
    return -ENOMEM;
  op->kind = kind;
  op->n_members = n_members;
  op->server_time = server_time;
  op->actor = "";
  push_op(b, index);
  return 0;
}

/* Free text of a group's info: bounded, strict UTF-8, no NUL inside (it
 * is a C string). */
static int info_text_ok(const char *s, size_t max) {
  if (s == NULL)
    return 0;
  size_t n = strlen(s);
  if (n > max)
    return -MIM_ERR_TOO_LARGE;
  return mim_utf8_valid(s, n) ? 0 : -MIM_ERR_BAD_UTF8;
}

int mim_write_batch_add_group_manage(struct mim_write_batch *b,
                                     const char *group, const char *actor,
                                     enum mim_group_action action,
                                     const char *target, int64_t until,
                                     const char *name, const char *metadata,
                                     int64_t server_time, size_t *index) {
  if (actor == NULL)
    actor = "";
  if (target == NULL)
    target = "";
  if (b == NULL || !id_ok(group, true) || !id_ok(actor, false) ||
      action < MIM_GA_TRANSFER || action > MIM_GA_DISSOLVE)
    return -EINVAL;
  bool needs_target = action == MIM_GA_TRANSFER || action == MIM_GA_PROMOTE ||
                      action == MIM_GA_DEMOTE || action == MIM_GA_MUTE ||
                      action == MIM_GA_UNMUTE;
  if (!id_ok(target, needs_target) || (!needs_target && target[0] != '\0'))
    return -EINVAL;
  int rc;
  if ((rc = info_text_ok(name, MIM_GROUP_NAME_MAX)) < 0 ||
      (rc = info_text_ok(metadata, MIM_GROUP_METADATA_MAX)) < 0)
    return rc;
  struct batch_op *op = new_op(b);
  if (op == NULL)
    return add_error(b);
  op->group = mim__store_arena_strdup(&b->arena, group);
  op->actor = mim__store_arena_strdup(&b->arena, actor);
  op->target = mim__store_arena_strdup(&b->arena, target);
  op->name = name ? mim__store_arena_strdup(&b->arena, name) : NULL;
  op->metadata =
      metadata ? mim__store_arena_strdup(&b->arena, metadata) : NULL;
  op->members = dup_ids(&b->arena, NULL, 0);
  if (op->group == NULL || op->actor == NULL || op->target == NULL ||
      (name && op->name == NULL) || (metadata && op->metadata == NULL) ||
      op->members == NULL)
    return -ENOMEM;
  op->kind = MIM_OP_GROUP_MANAGE;
  op->n_members = 0;
  op->server_time = server_time;
  op->action = action;
  op->until = action == MIM_GA_MUTE ? until : 0;
  op->notice = true; /* a management change always tells the group */
  push_op(b, index);
  return 0;
}

int mim_write_batch_add_change(struct mim_write_batch *b, const char *actor,
                               uint64_t msg_id, enum mim_change_action action,
                               const char *peer, const char *group,
                               const uint8_t *content, size_t content_len,
                               int64_t server_time, int64_t recall_window_ms,
                               int64_t edit_window_ms, size_t *index) {
  if (actor == NULL)
    actor = "";
  bool has_peer = peer != NULL && peer[0] != '\0';
  bool has_group = group != NULL && group[0] != '\0';
  if (b == NULL || !id_ok(actor, false) || !id_ok(peer, false) ||
      !id_ok(group, false) || (has_peer && has_group) ||
      (actor[0] != '\0' && !has_peer && !has_group) || msg_id == 0 ||
      (action != MIM_CHANGE_RECALL && action != MIM_CHANGE_EDIT &&
       action != MIM_CHANGE_DELETE_FOR_ME) ||
      (action == MIM_CHANGE_DELETE_FOR_ME && actor[0] == '\0') ||
      (content == NULL && content_len > 0))
    return -EINVAL;
  if (action != MIM_CHANGE_EDIT)
    content_len = 0;
  if (content_len > 0 && !mim_utf8_valid(content, content_len))
    return -MIM_ERR_BAD_UTF8;
  struct batch_op *op = new_op(b);
  if (op == NULL)
    return add_error(b);
  op->actor = mim__store_arena_strdup(&b->arena, actor);
  op->peer = mim__store_arena_strdup(&b->arena, has_peer ? peer : "");
  op->group = mim__store_arena_strdup(&b->arena, has_group ? group : "");
  op->content = dup_bytes(&b->arena, content, content_len);
  if (op->actor == NULL || op->peer == NULL || op->group == NULL ||
      op->content == NULL)
    return -ENOMEM;
  op->kind = MIM_OP_CHANGE;
  op->msg_id = msg_id;
  op->change = action;
  op->content_len = content_len;
  op->server_time = server_time;
  op->recall_window_ms = recall_window_ms;
  op->edit_window_ms = edit_window_ms;
  push_op(b, index);
  return 0;
}

int mim_write_batch_set_notice(struct mim_write_batch *b, size_t index,
                              const char *actor) {
  if (actor == NULL)
    actor = "";
  if (b == NULL || index >= b->n || !id_ok(actor, false))
    return -EINVAL;
  struct batch_op *op = &b->ops[index];
  if (op->kind != MIM_OP_GROUP_CREATE && op->kind != MIM_OP_GROUP_ADD &&
      op->kind != MIM_OP_GROUP_REMOVE)
    return -EINVAL;
  const char *copy = mim__store_arena_strdup(&b->arena, actor);
  if (copy == NULL)
    return -ENOMEM;
  op->actor = copy;
  op->notice = true;
  return 0;
}

int mim_write_batch_outcome(const struct mim_write_batch *b, size_t index,
                            const struct mim_op_outcome **out) {
  if (b == NULL || out == NULL || index >= b->n)
    return -EINVAL;
  if (!b->committed)
    return -EAGAIN;
  *out = &b->ops[index].outcome;
  return 0;
}

int mim_write_batch_status(const struct mim_write_batch *b) {
  if (b == NULL)
    return -EINVAL;
  return b->committed ? b->status : -EAGAIN;
}

int mim_write_batch_op(const struct mim_write_batch *b, size_t index,
                       struct mim_write_op *out) {
  if (b == NULL || out == NULL || index >= b->n)
    return -EINVAL;
  const struct batch_op *op = &b->ops[index];
  memset(out, 0, sizeof(*out));
  out->kind = op->kind;
  switch (op->kind) {
  case MIM_OP_MESSAGE:
    out->message = &op->msg;
    break;
  case MIM_OP_CURSOR:
    out->uid = op->uid;
    out->device = op->device;
    out->seq = op->seq;
    break;
  case MIM_OP_LAST_SEEN:
    out->uid = op->uid;
    out->seq = op->seq; /* the time, ms */
    break;
  case MIM_OP_READ:
    out->uid = op->uid;
    out->peer = op->peer;
    out->group = op->group;
    out->seq = op->seq;
    break;
  case MIM_OP_CHANGE:
    out->actor = op->actor;
    out->peer = op->peer;
    out->group = op->group;
    out->server_time = op->server_time;
    out->msg_id = op->msg_id;
    out->change = op->change;
    out->content = op->content;
    out->content_len = op->content_len;
    out->recall_window_ms = op->recall_window_ms;
    out->edit_window_ms = op->edit_window_ms;
    break;
  default:
    out->group = op->group;
    out->members = op->members;
    out->n_members = op->n_members;
    out->server_time = op->server_time;
    out->actor = op->actor != NULL ? op->actor : "";
    out->notice = op->notice;
    out->action = op->action;
    out->target = op->target != NULL ? op->target : "";
    out->until = op->until;
    out->name = op->name;
    out->metadata = op->metadata;
    break;
  }
  return 0;
}

int mim_write_batch_set_outcome(struct mim_write_batch *b, size_t index,
                                const struct mim_op_outcome *o) {
  if (b == NULL || o == NULL || index >= b->n ||
      (o->recipients == NULL && o->n_recipients > 0) ||
      (o->members == NULL && o->n_members > 0))
    return -EINVAL;
  struct mim__store_arena *a = &b->arena;
  struct mim_op_outcome c = *o;
  /* An outcome without lists needs no memory, so a backend can always
   * record a failure (the retried outcome of a commit leaves the previous
   * copy in the arena until reset; commits retry rarely). */
  if (o->n_recipients > 0) {
    struct mim_recipient *r =
        mim__store_arena_alloc(a, o->n_recipients * sizeof(*r));
    if (r == NULL)
      return -ENOMEM;
    for (size_t i = 0; i < o->n_recipients; i++) {
      r[i].inbox_seq = o->recipients[i].inbox_seq;
      r[i].uid = mim__store_arena_strdup(a, o->recipients[i].uid);
      if (r[i].uid == NULL)
        return -ENOMEM;
    }
    c.recipients = r;
  } else {
    c.recipients = NULL;
  }
  if (o->n_members > 0) {
    c.members = dup_ids(a, o->members, o->n_members);
    if (c.members == NULL)
      return -ENOMEM;
  } else {
    c.members = NULL;
  }
  const char **cs[3] = {&c.change_sender, &c.change_peer, &c.change_group};
  for (int i = 0; i < 3; i++)
    if (*cs[i] != NULL && (*cs[i] = mim__store_arena_strdup(a, *cs[i])) == NULL)
      return -ENOMEM;
  b->ops[index].outcome = c;
  return 0;
}

void mim_write_batch_set_status(struct mim_write_batch *b, int status) {
  if (b == NULL)
    return;
  b->committed = true;
  b->status = status;
  /* A failed transaction stored nothing: make every outcome say so, even
   * for a backend that did not, so no caller can read a stale success. */
  if (status != 0)
    for (size_t i = 0; i < b->n; i++) {
      memset(&b->ops[i].outcome, 0, sizeof(b->ops[i].outcome));
      b->ops[i].outcome.status = status;
    }
}

/* ---- backend wrappers ---- */

int mim_backend_commit(struct mim_backend *be, struct mim_write_batch *b) {
  if (be == NULL || be->ops == NULL || be->ops->commit == NULL || b == NULL)
    return -EINVAL;
  /* Committing a batch twice would store its messages twice. */
  if (b->committed && b->status == 0)
    return -EINVAL;
  return be->ops->commit(be->impl, b);
}

int mim_backend_health(const struct mim_backend *be) {
  if (be == NULL || be->ops == NULL)
    return -EINVAL;
  if (be->ops->health == NULL)
    return 0;
  return be->ops->health(be->impl);
}

int mim_backend_group_info(struct mim_backend *be, const char *group,
                           void (*fn)(void *user,
                                      const struct mim_group_info *i),
                           void *user) {
  if (be == NULL || group == NULL || fn == NULL)
    return -EINVAL;
  if (be->ops->group_info == NULL)
    return -ENOTSUP;
  return be->ops->group_info(be->impl, group, fn, user);
}

int mim_backend_groups_of(struct mim_backend *be, const char *uid,
                          const char *after, size_t limit,
                          void (*fn)(void *user, const char *group),
                          void *user, bool *has_more) {
  if (be == NULL || be->ops == NULL || uid == NULL || fn == NULL ||
      has_more == NULL)
    return -EINVAL;
  if (be->ops->groups_of == NULL)
    return -ENOTSUP;
  return be->ops->groups_of(be->impl, uid, after != NULL ? after : "", limit,
                            fn, user, has_more);
}

int mim_backend_large_groups_of(struct mim_backend *be, const char *uid,
                                void (*fn)(void *user, const char *group),
                                void *user) {
  if (be == NULL || be->ops == NULL || uid == NULL || fn == NULL)
    return -EINVAL;
  if (be->ops->large_groups_of == NULL)
    return -ENOTSUP;
  return be->ops->large_groups_of(be->impl, uid, fn, user);
}

void mim_conv_list_init(struct mim_conv_list *l) {
  if (l == NULL)
    return;
  l->items = NULL;
  l->count = 0;
  l->has_more = false;
  l->priv_ = NULL;
}

void mim_conv_list_finish(struct mim_conv_list *l) {
  if (l == NULL)
    return;
  struct mim__store_arena *a = l->priv_; /* the strings (lmdb/conv.c) */
  if (a != NULL) {
    mim__store_arena_finish(a);
    free(a);
  }
  free(l->items);
  mim_conv_list_init(l);
}

int mim_backend_conv_list(struct mim_backend *be, const char *uid,
                          uint64_t before_msg_id, size_t limit,
                          size_t preview_max, struct mim_conv_list *out) {
  if (be == NULL || be->ops == NULL || uid == NULL || out == NULL)
    return -EINVAL;
  if (be->ops->conv_list == NULL)
    return -ENOTSUP;
  return be->ops->conv_list(be->impl, uid, before_msg_id, limit, preview_max,
                            out);
}

int mim_backend_read_by(struct mim_backend *be, const char *group,
                        uint64_t conv_seq, const char *after, size_t limit,
                        uint64_t *read_count, uint64_t *member_count,
                        void (*fn)(void *user, const char *uid), void *user,
                        bool *has_more) {
  if (be == NULL || be->ops == NULL || group == NULL || read_count == NULL ||
      member_count == NULL || has_more == NULL)
    return -EINVAL;
  if (be->ops->read_by == NULL)
    return -ENOTSUP;
  return be->ops->read_by(be->impl, group, conv_seq,
                          after != NULL ? after : "", limit, read_count,
                          member_count, fn, user, has_more);
}

int mim_backend_last_seen(struct mim_backend *be, const char *uid,
                          int64_t *ms) {
  if (be == NULL || be->ops == NULL || uid == NULL || ms == NULL)
    return -EINVAL;
  *ms = 0;
  if (be->ops->last_seen == NULL)
    return -ENOTSUP;
  return be->ops->last_seen(be->impl, uid, ms);
}

int mim_backend_members_page(struct mim_backend *be, const char *group,
                             const char *after, size_t limit,
                             void (*fn)(void *user, const char *uid),
                             void *user, bool *has_more) {
  if (be == NULL || be->ops == NULL || group == NULL || fn == NULL ||
      has_more == NULL)
    return -EINVAL;
  if (be->ops->members_page == NULL)
    return -ENOTSUP;
  return be->ops->members_page(be->impl, group, after != NULL ? after : "",
                               limit, fn, user, has_more);
}

void mim_backend_destroy(struct mim_backend *be) {
  if (be == NULL)
    return;
  if (be->ops != NULL && be->ops->destroy != NULL)
    be->ops->destroy(be->impl);
  free(be);
}
