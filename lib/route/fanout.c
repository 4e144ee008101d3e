/* Delivery targets of one packet, grouped per gateway.
 *
 * One group per gateway, in order of first appearance, each with its own
 * growing array of targets; a small open-addressing index maps a gateway to
 * its group. Reset only zeroes counts: groups past the live ones keep their
 * arrays, so a fan-out object reused across packets stops allocating once it
 * has seen its largest packet.
 */
#include "util/internal.h"

#include <stdlib.h>
#include <string.h>

#include <mim/session.h>

struct group {
  uint32_t gateway;
  size_t n;       /* targets */
  size_t pending; /* room promised by the first pass of add_user */
  size_t cap;
  struct mim_rpc_target *t;
};

/* Index slot: `idx` is the group's position + 1; 0 marks an empty slot. */
struct slot {
  uint32_t gateway;
  uint32_t idx;
};

struct mim_fanout {
  struct group *groups;
  size_t n_groups;   /* live groups, each with at least one target */
  size_t cap_groups; /* allocated and zero-initialised */
  struct slot *index;
  size_t index_cap;  /* a power of two, >= 2 * live groups; 0 before use */
};

/* MurmurHash3's 32-bit finaliser: gateway handles are small consecutive
 * numbers, which it spreads over the low bits the index uses. */
static uint32_t mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

static struct group *find_group(const struct mim_fanout *f, uint32_t gateway) {
  if (f->index_cap == 0)
    return NULL;
  size_t mask = f->index_cap - 1;
  for (size_t i = mix32(gateway) & mask; f->index[i].idx; i = (i + 1) & mask)
    if (f->index[i].gateway == gateway)
      return &f->groups[f->index[i].idx - 1];
  return NULL;
}

static void index_put(struct slot *index, size_t cap, uint32_t gateway,
                      size_t pos) {
  size_t mask = cap - 1, i = mix32(gateway) & mask;
  while (index[i].idx)
    i = (i + 1) & mask;
  index[i].gateway = gateway;
  index[i].idx = (uint32_t)(pos + 1);
}

/* Refills the index from the live groups. */
static void index_rebuild(struct mim_fanout *f) {
  memset(f->index, 0, f->index_cap * sizeof *f->index);
  for (size_t i = 0; i < f->n_groups; i++)
    index_put(f->index, f->index_cap, f->groups[i].gateway, i);
}

/* Grows `g` to hold at least `need` targets. */
static int reserve_targets(struct group *g, size_t need) {
  if (need <= g->cap)
    return 0;
  size_t cap = g->cap ? g->cap : 8;
  while (cap < need) {
    if (cap > SIZE_MAX / 2 / sizeof *g->t)
      return -ENOMEM;
    cap *= 2;
  }
  struct mim_rpc_target *t = realloc(g->t, cap * sizeof *t);
  if (t == NULL)
    return -ENOMEM;
  g->t = t;
  g->cap = cap;
  return 0;
}

/* Opens a group for `gateway` at the end, with room for one target. Every
 * allocation comes before the group goes live, so a failure leaves `f` as it
 * was. */
static int open_group(struct mim_fanout *f, uint32_t gateway,
                      struct group **out) {
  size_t n = f->n_groups;
  if (n >= UINT32_MAX - 1)
    return -ENOMEM;
  if (n == f->cap_groups) {
    size_t cap = f->cap_groups ? f->cap_groups * 2 : 4;
    struct group *g = realloc(f->groups, cap * sizeof *g);
    if (g == NULL)
      return -ENOMEM;
    /* Zeroed so destroy can free every slot's array, live or not. */
    memset(g + f->cap_groups, 0, (cap - f->cap_groups) * sizeof *g);
    f->groups = g;
    f->cap_groups = cap;
  }
  if (f->index_cap < 2 * (n + 1)) { /* load <= 1/2 keeps probes short */
    size_t cap = f->index_cap ? f->index_cap * 2 : 8;
    struct slot *index = calloc(cap, sizeof *index);
    if (index == NULL)
      return -ENOMEM;
    free(f->index);
    f->index = index;
    f->index_cap = cap;
    index_rebuild(f);
  }
  struct group *g = &f->groups[n];
  int rc = reserve_targets(g, 1);
  if (rc < 0)
    return rc;
  g->gateway = gateway;
  g->n = 0;
  g->pending = 0;
  index_put(f->index, f->index_cap, gateway, n);
  f->n_groups = n + 1;
  *out = g;
  return 0;
}

/* The group of `gateway`, with room for one target beyond those already
 * there and those promised (`pending`). */
static int room(struct mim_fanout *f, uint32_t gateway, struct group **out) {
  struct group *g = find_group(f, gateway);
  if (g == NULL)
    return open_group(f, gateway, out);
  int rc = reserve_targets(g, g->n + g->pending + 1);
  if (rc < 0)
    return rc;
  *out = g;
  return 0;
}

int mim_fanout_create(struct mim_fanout **out) {
  if (out == NULL)
    return -EINVAL;
  struct mim_fanout *f = calloc(1, sizeof *f);
  if (f == NULL)
    return -ENOMEM;
  *out = f;
  return 0;
}

void mim_fanout_destroy(struct mim_fanout *f) {
  if (f == NULL)
    return;
  for (size_t i = 0; i < f->cap_groups; i++)
    free(f->groups[i].t);
  free(f->groups);
  free(f->index);
  free(f);
}

void mim_fanout_reset(struct mim_fanout *f) {
  if (f == NULL)
    return;
  f->n_groups = 0; /* open_group zeroes a group's count when it reuses it */
  if (f->index)
    memset(f->index, 0, f->index_cap * sizeof *f->index);
}

/* add_user runs over the uid's routes twice: first to make room for every
 * target, then to append them, so -ENOMEM never leaves half a user. */
struct add_ctx {
  struct mim_fanout *f;
  const struct mim_conn_ref *exclude;
  uint64_t inbox_seq;
  int err;
  int added;
};

static bool excluded(const struct add_ctx *c, const struct mim_route *r) {
  return c->exclude && c->exclude->gateway == r->conn.gateway &&
         c->exclude->conn_id == r->conn.conn_id;
}

static void make_room(void *user, const struct mim_route *r) {
  struct add_ctx *c = user;
  struct group *g;
  if (c->err || excluded(c, r))
    return;
  c->err = room(c->f, r->conn.gateway, &g);
  if (c->err == 0)
    g->pending++;
}

static void append(void *user, const struct mim_route *r) {
  struct add_ctx *c = user;
  if (excluded(c, r))
    return;
  struct group *g = find_group(c->f, r->conn.gateway); /* opened by make_room */
  g->t[g->n].conn_id = r->conn.conn_id;
  g->t[g->n].inbox_seq = c->inbox_seq;
  g->n++;
  g->pending--;
  c->added++;
}

int mim_fanout_add_user(struct mim_fanout *f, const struct mim_sessions *s,
                        const char *uid, uint64_t inbox_seq,
                        const struct mim_conn_ref *exclude) {
  if (f == NULL || s == NULL)
    return -EINVAL;
  struct add_ctx c = {f, exclude, inbox_seq, 0, 0};
  size_t before = f->n_groups;
  mim_sessions_foreach_device(s, uid, make_room, &c);
  if (c.err) {
    /* Groups opened by the first pass are still empty: drop them. */
    for (size_t i = 0; i < f->n_groups; i++)
      f->groups[i].pending = 0;
    if (f->n_groups != before) {
      f->n_groups = before;
      index_rebuild(f);
    }
    return c.err;
  }
  mim_sessions_foreach_device(s, uid, append, &c);
  return c.added;
}

int mim_fanout_add_conn(struct mim_fanout *f, struct mim_conn_ref conn,
                        uint64_t inbox_seq) {
  if (f == NULL)
    return -EINVAL;
  struct group *g;
  int rc = room(f, conn.gateway, &g);
  if (rc < 0)
    return rc;
  g->t[g->n].conn_id = conn.conn_id;
  g->t[g->n].inbox_seq = inbox_seq;
  g->n++;
  return 0;
}

size_t mim_fanout_gateway_count(const struct mim_fanout *f) {
  return f ? f->n_groups : 0;
}

int mim_fanout_gateway(const struct mim_fanout *f, size_t i,
                       uint32_t *gateway,
                       const struct mim_rpc_target **targets,
                       size_t *n_targets) {
  if (f == NULL || i >= f->n_groups)
    return -EINVAL;
  const struct group *g = &f->groups[i];
  if (gateway)
    *gateway = g->gateway;
  if (targets)
    *targets = g->t;
  if (n_targets)
    *n_targets = g->n;
  return 0;
}
