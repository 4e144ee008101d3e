/* The route table: who is connected where.
 *
 * Each route is one heap node holding its own copies of uid and device. The
 * node sits in three hash tables with separate chaining through intrusive
 * links, so binding allocates exactly one node and the tables never allocate
 * per entry:
 *   by_conn  (gateway, conn_id) -> node   bind, unbind, lookup
 *   by_key   (uid, device)      -> node   duplicate-login detection
 *   by_uid   uid                -> head   fan-out to every device of a uid
 * The routes of one uid form a circular doubly linked list; only its head is
 * chained in by_uid. All three tables share one bucket count, kept at or
 * above the number of routes (load <= 1), so chains stay short.
 *
 * Device ids are chosen by clients, so the string hash is keyed per table
 * (SipHash-1-3 with a random key, htable.h): nobody can precompute
 * colliding ids and turn a chain into a linear list.
 */
#include "util/htable.h"
#include "util/internal.h"

#include <stdlib.h>
#include <string.h>

#include <mim/auth.h>
#include <mim/session.h>

#define MIN_BUCKETS 16

struct node {
  struct mim_route r;     /* r.uid and r.device point into name[] */
  struct node *next_conn; /* chain in by_conn */
  struct node *next_key;  /* chain in by_key */
  struct node *next_uid;  /* chain in by_uid; meaningful on heads only */
  struct node *dev_prev;  /* the uid's routes, a circular list in login */
  struct node *dev_next;  /* order: head->dev_prev is the newest device */
  uint64_t h_uid;
  uint64_t h_key;
  char name[];            /* uid NUL device NUL */
};

struct mim_sessions {
  struct node **by_conn;
  struct node **by_key;
  struct node **by_uid;
  size_t mask;  /* bucket count - 1; the count is a power of two */
  size_t count; /* routes */
  size_t user_max; /* routes per uid; 0 = no limit */
  uint64_t k0, k1;
};

/* ---- hashing ---- */

/* MurmurHash3's 64-bit finaliser: every input bit reaches every output bit,
 * so the low bits used as a bucket index are well spread. */
static uint64_t mix64(uint64_t k) {
  k ^= k >> 33;
  k *= UINT64_C(0xff51afd7ed558ccd);
  k ^= k >> 33;
  k *= UINT64_C(0xc4ceb9fe1a85ec53);
  k ^= k >> 33;
  return k;
}

/* Connection ids come from our own gateways, not from clients, so a keyed
 * mix (no full PRF) is enough. */
static uint64_t hash_conn(const struct mim_sessions *s,
                          struct mim_conn_ref c) {
  return mix64(mix64(c.conn_id ^ s->k0) ^ c.gateway ^ s->k1);
}

static uint64_t hash_uid(const struct mim_sessions *s, const char *uid,
                         size_t len) {
  return mim__siphash13(s->k0, s->k1, uid, len);
}

/* Keying the device hash with the uid's hash makes (uid, device) hash as a
 * pair without building a concatenated string. */
static uint64_t hash_key(const struct mim_sessions *s, uint64_t h_uid,
                         const char *device, size_t len) {
  return mim__siphash13(s->k0 ^ h_uid, s->k1, device, len);
}

static void seed(struct mim_sessions *s) {
  struct mim__hkey k;
  mim__hkey_init(&k, s);
  s->k0 = k.k0;
  s->k1 = k.k1;
}

/* ---- ids ---- */

/* One rule for ids everywhere (mim_id_valid: 1..MIM_ID_MAX bytes of UTF-8,
 * no controls, no spaces), so a route can never hold an id that the rest of
 * the library would refuse. Sets *len. */
static bool id_ok(const char *id, size_t *len) {
  if (!mim_id_valid(id))
    return false;
  *len = strlen(id);
  return true;
}

/* ---- lookups ---- */

static bool same_conn(struct mim_conn_ref a, struct mim_conn_ref b) {
  return a.gateway == b.gateway && a.conn_id == b.conn_id;
}

static struct node **conn_bucket(const struct mim_sessions *s,
                                 struct mim_conn_ref c) {
  return &s->by_conn[hash_conn(s, c) & s->mask];
}

static struct node *find_conn(const struct mim_sessions *s,
                              struct mim_conn_ref c) {
  for (struct node *n = *conn_bucket(s, c); n; n = n->next_conn)
    if (same_conn(n->r.conn, c))
      return n;
  return NULL;
}

static struct node *find_key(const struct mim_sessions *s, uint64_t h_key,
                             const char *uid, const char *device) {
  for (struct node *n = s->by_key[h_key & s->mask]; n; n = n->next_key)
    if (n->h_key == h_key && strcmp(n->r.uid, uid) == 0 &&
        strcmp(n->r.device, device) == 0)
      return n;
  return NULL;
}

static struct node *find_uid(const struct mim_sessions *s, uint64_t h_uid,
                             const char *uid) {
  for (struct node *n = s->by_uid[h_uid & s->mask]; n; n = n->next_uid)
    if (n->h_uid == h_uid && strcmp(n->r.uid, uid) == 0)
      return n;
  return NULL;
}

/* ---- table maintenance ---- */

/* Rebuilds the three tables with `nb` buckets (a power of two). On -ENOMEM
 * the old tables stay as they were. */
static int resize(struct mim_sessions *s, size_t nb) {
  struct node **bc = calloc(nb, sizeof *bc);
  struct node **bk = calloc(nb, sizeof *bk);
  struct node **bu = calloc(nb, sizeof *bu);
  if (bc == NULL || bk == NULL || bu == NULL) {
    free(bc);
    free(bk);
    free(bu);
    return -ENOMEM;
  }
  size_t old_nb = s->mask + 1, mask = nb - 1;
  for (size_t i = 0; i < old_nb; i++) {
    for (struct node *n = s->by_conn[i], *next; n; n = next) {
      next = n->next_conn;
      struct node **b = &bc[hash_conn(s, n->r.conn) & mask];
      n->next_conn = *b;
      *b = n;
    }
    for (struct node *n = s->by_key[i], *next; n; n = next) {
      next = n->next_key;
      n->next_key = bk[n->h_key & mask];
      bk[n->h_key & mask] = n;
    }
    for (struct node *n = s->by_uid[i], *next; n; n = next) {
      next = n->next_uid;
      n->next_uid = bu[n->h_uid & mask];
      bu[n->h_uid & mask] = n;
    }
  }
  free(s->by_conn);
  free(s->by_key);
  free(s->by_uid);
  s->by_conn = bc;
  s->by_key = bk;
  s->by_uid = bu;
  s->mask = mask;
  return 0;
}

/* Makes room for one more route before anything changes, so a failed bind
 * leaves the table untouched. */
static int reserve_one(struct mim_sessions *s) {
  size_t nb = s->mask + 1;
  if (s->count < nb)
    return 0;
  if (nb > SIZE_MAX / 2 / sizeof(struct node *))
    return -ENOMEM;
  return resize(s, nb * 2);
}

/* After mass removal (a gateway went down) gives memory back. Best effort:
 * a failed shrink leaves a valid, merely roomy table. */
static void maybe_shrink(struct mim_sessions *s) {
  size_t nb = s->mask + 1;
  if (nb <= MIN_BUCKETS || s->count >= nb / 8)
    return;
  /* Halve while the result keeps load <= 1/2, so the next few binds do not
   * grow it straight back. */
  while (nb / 2 >= MIN_BUCKETS && nb / 2 >= s->count * 2)
    nb /= 2;
  (void)resize(s, nb);
}

/* Unlinks `n` from its uid's device list and, if it heads that list, hands
 * the by_uid slot to the next device (or frees the slot). */
static void unlink_device(struct mim_sessions *s, struct node *n) {
  struct node *next = n->dev_next == n ? NULL : n->dev_next;
  for (struct node **p = &s->by_uid[n->h_uid & s->mask]; *p;
       p = &(*p)->next_uid) {
    if (*p == n) {
      if (next) {
        next->next_uid = n->next_uid;
        *p = next;
      } else {
        *p = n->next_uid;
      }
      break;
    }
  }
  n->dev_prev->dev_next = n->dev_next;
  n->dev_next->dev_prev = n->dev_prev;
}

static void unlink_conn(struct mim_sessions *s, struct node *n) {
  for (struct node **p = conn_bucket(s, n->r.conn); *p; p = &(*p)->next_conn)
    if (*p == n) {
      *p = n->next_conn;
      return;
    }
}

static void unlink_key(struct mim_sessions *s, struct node *n) {
  for (struct node **p = &s->by_key[n->h_key & s->mask]; *p;
       p = &(*p)->next_key)
    if (*p == n) {
      *p = n->next_key;
      return;
    }
}

static void link_conn(struct mim_sessions *s, struct node *n) {
  struct node **b = conn_bucket(s, n->r.conn);
  n->next_conn = *b;
  *b = n;
}

static void remove_node(struct mim_sessions *s, struct node *n) {
  unlink_conn(s, n);
  unlink_key(s, n);
  unlink_device(s, n);
  free(n);
  s->count--;
}

/* ---- public API ---- */

int mim_sessions_create(struct mim_sessions **out) {
  if (out == NULL)
    return -EINVAL;
  struct mim_sessions *s = calloc(1, sizeof *s);
  if (s == NULL)
    return -ENOMEM;
  s->by_conn = calloc(MIN_BUCKETS, sizeof *s->by_conn);
  s->by_key = calloc(MIN_BUCKETS, sizeof *s->by_key);
  s->by_uid = calloc(MIN_BUCKETS, sizeof *s->by_uid);
  if (s->by_conn == NULL || s->by_key == NULL || s->by_uid == NULL) {
    mim_sessions_destroy(s);
    return -ENOMEM;
  }
  s->mask = MIN_BUCKETS - 1;
  seed(s);
  *out = s;
  return 0;
}

void mim_sessions_destroy(struct mim_sessions *s) {
  if (s == NULL)
    return;
  if (s->by_conn) {
    for (size_t i = 0; i <= s->mask; i++)
      for (struct node *n = s->by_conn[i], *next; n; n = next) {
        next = n->next_conn;
        free(n);
      }
  }
  free(s->by_conn);
  free(s->by_key);
  free(s->by_uid);
  free(s);
}

void mim_sessions_set_user_max(struct mim_sessions *s, size_t max) {
  if (s != NULL)
    s->user_max = max;
}

int mim_sessions_bind(struct mim_sessions *s, const char *uid,
                      const char *device, struct mim_conn_ref conn,
                      uint32_t caps, struct mim_conn_ref *replaced,
                      bool *did_replace) {
  size_t uid_len, dev_len;
  if (did_replace)
    *did_replace = false; /* a caller that skips the return code kicks no one */
  if (s == NULL || !id_ok(uid, &uid_len) || !id_ok(device, &dev_len))
    return -EINVAL;
  if (find_conn(s, conn))
    return -EEXIST;

  uint64_t h_uid = hash_uid(s, uid, uid_len);
  uint64_t h_key = hash_key(s, h_uid, device, dev_len);
  struct node *old = find_key(s, h_key, uid, device);
  if (old) {
    /* Duplicate login: the node moves to the new connection in place. Its
     * strings and device-list position stay; nothing is allocated, so this
     * path cannot fail half-way. */
    struct mim_conn_ref prev = old->r.conn;
    unlink_conn(s, old);
    old->r.conn = conn;
    old->r.caps = caps;
    link_conn(s, old);
    if (replaced)
      *replaced = prev;
    if (did_replace)
      *did_replace = true;
    return 0;
  }

  struct node *head = find_uid(s, h_uid, uid);
  if (head != NULL && s->user_max > 0) {
    /* walking the uid's ring costs at most user_max steps */
    size_t k = 0;
    const struct node *d = head;
    do {
      k++;
      d = d->dev_next;
    } while (d != head && k < s->user_max);
    if (k >= s->user_max)
      return -MIM_ERR_TOO_MANY_DEVICES;
  }
  int rc = reserve_one(s);
  if (rc < 0)
    return rc;
  struct node *n = malloc(sizeof *n + uid_len + 1 + dev_len + 1);
  if (n == NULL)
    return -ENOMEM;
  memcpy(n->name, uid, uid_len + 1);
  memcpy(n->name + uid_len + 1, device, dev_len + 1);
  n->r.conn = conn;
  n->r.uid = n->name;
  n->r.device = n->name + uid_len + 1;
  n->r.caps = caps;
  n->h_uid = h_uid;
  n->h_key = h_key;
  n->next_uid = NULL;

  link_conn(s, n);
  n->next_key = s->by_key[h_key & s->mask];
  s->by_key[h_key & s->mask] = n;

  head = find_uid(s, h_uid, uid); /* same table; resize keeps the node */
  if (head) { /* append: foreach_device sees devices in login order */
    n->dev_prev = head->dev_prev;
    n->dev_next = head;
    head->dev_prev->dev_next = n;
    head->dev_prev = n;
  } else {
    n->dev_prev = n->dev_next = n;
    n->next_uid = s->by_uid[h_uid & s->mask];
    s->by_uid[h_uid & s->mask] = n;
  }
  s->count++;
  return 0;
}

int mim_sessions_unbind(struct mim_sessions *s, struct mim_conn_ref conn) {
  if (s == NULL)
    return -EINVAL;
  /* Compare-and-delete falls out of keying by connection: a connection whose
   * login was replaced no longer owns any node, so it finds nothing. */
  struct node *n = find_conn(s, conn);
  if (n == NULL)
    return -ENOENT;
  remove_node(s, n);
  maybe_shrink(s);
  return 0;
}

int mim_sessions_lookup(const struct mim_sessions *s, struct mim_conn_ref conn,
                        struct mim_route *out) {
  if (s == NULL)
    return -EINVAL;
  const struct node *n = find_conn(s, conn);
  if (n == NULL)
    return -ENOENT;
  if (out)
    *out = n->r;
  return 0;
}

size_t mim_sessions_unbind_gateway(
    struct mim_sessions *s, uint32_t gateway,
    void (*fn)(void *user, const struct mim_route *r), void *user) {
  if (s == NULL)
    return 0;
  /* A full scan: a gateway going down is rare and usually takes a large
   * share of the routes with it, so a per-gateway index would cost every
   * bind more than it saves here. */
  size_t removed = 0;
  for (size_t i = 0; i <= s->mask; i++) {
    for (struct node *n = s->by_conn[i], *next; n; n = next) {
      next = n->next_conn; /* remove_node frees n, never next */
      if (n->r.conn.gateway != gateway)
        continue;
      if (fn)
        fn(user, &n->r);
      remove_node(s, n);
      removed++;
    }
  }
  maybe_shrink(s); /* only after the scan: it rebuilds the buckets */
  return removed;
}

size_t mim_sessions_foreach_device(
    const struct mim_sessions *s, const char *uid,
    void (*fn)(void *user, const struct mim_route *r), void *user) {
  size_t len;
  if (s == NULL || !id_ok(uid, &len))
    return 0;
  const struct node *head = find_uid(s, hash_uid(s, uid, len), uid);
  if (head == NULL)
    return 0;
  size_t k = 0;
  const struct node *n = head;
  do {
    const struct node *next = n->dev_next;
    if (fn)
      fn(user, &n->r);
    k++;
    n = next;
  } while (n != head);
  return k;
}

size_t mim_sessions_count(const struct mim_sessions *s) {
  return s ? s->count : 0;
}
