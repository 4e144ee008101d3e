/* The LMDB backend's group roles: the record of a group's owner, admins,
 * mutes, name and metadata (database "ginfo", key: the group's id as 8
 * big-endian bytes), how a uid's role is found, and the group_info read.
 *
 * Record: 'R', version 1, flags (bit 0: muted_all; bit 1: legacy rules,
 * a group older than roles that has no owner yet; bit 2: a large group,
 * read diffusion), then owner, name,
 * metadata as (u16 BE length, bytes), u16 BE admin count and the admins
 * as (length, bytes), u16 BE mute count and per mute (length, bytes,
 * until as 8 BE bytes). A group without a record predates roles
 * ("legacy": no owner, no admins, nobody muted). */
#include "store/lmdb/lmdb_internal.h"
#include "store/lmdb/ginfo.h"

static int take_str(const uint8_t **p, const uint8_t *end,
                    struct mim__store_arena *a, const char **out) {
  if (end - *p < 2)
    return MDB_CORRUPTED;
  size_t n = (size_t)(*p)[0] << 8 | (*p)[1];
  *p += 2;
  if ((size_t)(end - *p) < n || memchr(*p, 0, n) != NULL ||
      !mim_utf8_valid(*p, n))
    return MDB_CORRUPTED;
  char *s = mim__store_arena_alloc(a, n + 1);
  if (s == NULL)
    return -ENOMEM;
  memcpy(s, *p, n);
  s[n] = '\0';
  *p += n;
  *out = s;
  return 0;
}

static int take_u16(const uint8_t **p, const uint8_t *end, size_t *out) {
  if (end - *p < 2)
    return MDB_CORRUPTED;
  *out = (size_t)(*p)[0] << 8 | (*p)[1];
  *p += 2;
  return 0;
}

int mim__ginfo_load(MDB_txn *txn, const struct lmdb_store *s, uint64_t gid,
                    struct mim__store_arena *a, struct ginfo *gi) {
  memset(gi, 0, sizeof *gi);
  gi->owner = gi->name = gi->metadata = "";
  /* room for one more than the bounds, so a change can append */
  gi->admins = mim__store_arena_alloc(a, (MIM_GROUP_ADMINS_MAX + 1) *
                                             sizeof *gi->admins);
  gi->muted = mim__store_arena_alloc(a, (MIM_GROUP_MUTED_MAX + 1) *
                                            sizeof *gi->muted);
  gi->until = mim__store_arena_alloc(a, (MIM_GROUP_MUTED_MAX + 1) *
                                            sizeof *gi->until);
  if (gi->admins == NULL || gi->muted == NULL || gi->until == NULL)
    return -ENOMEM;
  uint8_t k[8];
  be64_put(k, gid);
  MDB_val v;
  int rc = mim__lmdb_get(txn, s->dbi[DB_GINFO], k, sizeof k, &v);
  if (rc == MDB_NOTFOUND) {
    gi->legacy = true;
    return 0;
  }
  if (rc != 0)
    return rc;
  const uint8_t *p = v.mv_data, *end = p + v.mv_size;
  if (v.mv_size < 3 || p[0] != 'R' || p[1] != 1)
    return MDB_CORRUPTED;
  gi->present = true;
  gi->muted_all = (p[2] & 1) != 0;
  gi->legacy = (p[2] & 2) != 0;
  gi->large = (p[2] & GINFO_LARGE) != 0;
  p += 3;
  size_t n;
  if ((rc = take_str(&p, end, a, &gi->owner)) != 0 ||
      (rc = take_str(&p, end, a, &gi->name)) != 0 ||
      (rc = take_str(&p, end, a, &gi->metadata)) != 0 ||
      (rc = take_u16(&p, end, &n)) != 0)
    return rc;
  if (n > MIM_GROUP_ADMINS_MAX)
    return MDB_CORRUPTED;
  for (size_t i = 0; i < n; i++)
    if ((rc = take_str(&p, end, a, &gi->admins[i])) != 0)
      return rc;
  gi->n_admins = n;
  if ((rc = take_u16(&p, end, &n)) != 0)
    return rc;
  if (n > MIM_GROUP_MUTED_MAX)
    return MDB_CORRUPTED;
  for (size_t i = 0; i < n; i++) {
    if ((rc = take_str(&p, end, a, &gi->muted[i])) != 0)
      return rc;
    if (end - p < 8)
      return MDB_CORRUPTED;
    gi->until[i] = u64_to_i64(be64_get(p));
    p += 8;
  }
  gi->n_muted = n;
  return p == end ? 0 : MDB_CORRUPTED;
}

int mim__ginfo_large(MDB_txn *txn, const struct lmdb_store *s, uint64_t gid,
                     bool *large) {
  uint8_t k[8];
  be64_put(k, gid);
  MDB_val v;
  *large = false;
  int rc = mim__lmdb_get(txn, s->dbi[DB_GINFO], k, sizeof k, &v);
  if (rc == MDB_NOTFOUND)
    return 0; /* no record: a legacy group, never switched */
  if (rc != 0)
    return rc;
  const uint8_t *p = v.mv_data;
  if (v.mv_size < 3 || p[0] != 'R' || p[1] != 1)
    return MDB_CORRUPTED;
  *large = (p[2] & GINFO_LARGE) != 0;
  return 0;
}

static void put_str(uint8_t **p, const char *s) {
  size_t n = strlen(s);
  (*p)[0] = (uint8_t)(n >> 8);
  (*p)[1] = (uint8_t)n;
  memcpy(*p + 2, s, n);
  *p += 2 + n;
}

int mim__ginfo_save(struct wtx *w, uint64_t gid, const struct ginfo *gi) {
  size_t size = 3 + 6 + strlen(gi->owner) + strlen(gi->name) +
                strlen(gi->metadata) + 4;
  for (size_t i = 0; i < gi->n_admins; i++)
    size += 2 + strlen(gi->admins[i]);
  for (size_t i = 0; i < gi->n_muted; i++)
    size += 10 + strlen(gi->muted[i]);
  uint8_t *buf = mim__store_arena_alloc(&w->s->scratch, size);
  if (buf == NULL)
    return -ENOMEM;
  uint8_t *p = buf;
  *p++ = 'R';
  *p++ = 1;
  *p++ = (uint8_t)((gi->muted_all ? 1 : 0) | (gi->legacy ? 2 : 0) |
                   (gi->large ? GINFO_LARGE : 0));
  put_str(&p, gi->owner);
  put_str(&p, gi->name);
  put_str(&p, gi->metadata);
  *p++ = (uint8_t)(gi->n_admins >> 8);
  *p++ = (uint8_t)gi->n_admins;
  for (size_t i = 0; i < gi->n_admins; i++)
    put_str(&p, gi->admins[i]);
  *p++ = (uint8_t)(gi->n_muted >> 8);
  *p++ = (uint8_t)gi->n_muted;
  for (size_t i = 0; i < gi->n_muted; i++) {
    put_str(&p, gi->muted[i]);
    be64_put(p, (uint64_t)gi->until[i]);
    p += 8;
  }
  uint8_t k[8];
  be64_put(k, gid);
  MDB_val v = val(buf, (size_t)(p - buf));
  return mim__lmdb_put(w, DB_GINFO, k, sizeof k, &v, 0);
}

ssize_t mim__ginfo_find(const char *const *list, size_t n, const char *uid) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(list[i], uid) == 0)
      return (ssize_t)i;
  return -1;
}

enum mim_group_role mim__ginfo_role(const struct ginfo *gi, const char *uid,
                                    bool member) {
  if (uid[0] == '\0')
    return MIM_ROLE_OPERATOR;
  if (!member)
    return MIM_ROLE_NONE;
  if (strcmp(gi->owner, uid) == 0)
    return MIM_ROLE_OWNER;
  if (mim__ginfo_find(gi->admins, gi->n_admins, uid) >= 0)
    return MIM_ROLE_ADMIN;
  return MIM_ROLE_MEMBER;
}

bool mim__ginfo_muted(const struct ginfo *gi, const char *uid,
                      enum mim_group_role role, int64_t now) {
  ssize_t i = mim__ginfo_find(gi->muted, gi->n_muted, uid);
  if (i >= 0 && (gi->until[i] == 0 || gi->until[i] > now))
    return true;
  return gi->muted_all && role < MIM_ROLE_ADMIN;
}

void mim__ginfo_forget(struct ginfo *gi, const char *uid) {
  if (strcmp(gi->owner, uid) == 0)
    gi->owner = ""; /* an operator removed the owner */
  ssize_t i = mim__ginfo_find(gi->admins, gi->n_admins, uid);
  if (i >= 0)
    gi->admins[i] = gi->admins[--gi->n_admins];
  i = mim__ginfo_find(gi->muted, gi->n_muted, uid);
  if (i >= 0) {
    gi->n_muted--;
    gi->muted[i] = gi->muted[gi->n_muted];
    gi->until[i] = gi->until[gi->n_muted];
  }
}

int mim__lmdb_group_info(void *impl, const char *group,
                         void (*fn)(void *user, const struct mim_group_info *i),
                         void *user) {
  struct lmdb_store *s = impl;
  if (s == NULL || group == NULL || fn == NULL)
    return -EINVAL;
  MDB_txn *txn;
  int rc = mim__lmdb_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return rc;
  struct mim__store_arena a;
  mim__store_arena_init(&a);
  uint64_t gid;
  struct ginfo gi;
  rc = mim__lmdb_group_find(txn, s, group, &gid);
  if (rc == MDB_NOTFOUND)
    rc = -MIM_ERR_NO_SUCH_GROUP;
  if (rc == 0)
    rc = mim__ginfo_load(txn, s, gid, &a, &gi);
  uint64_t count = 0;
  if (rc == 0)
    rc = mim__lmdb_group_members(txn, s, gid, NULL, &count);
  mim__lmdb_read_end(s, txn);
  if (rc == MDB_CORRUPTED)
    rc = -MIM_ERR_STORE;
  if (rc == 0) {
    struct mim_group_info info = {
        .group = group,
        .owner = gi.owner,
        .name = gi.name,
        .metadata = gi.metadata,
        .admins = gi.admins,
        .n_admins = gi.n_admins,
        .muted = gi.muted,
        .muted_until = gi.until,
        .n_muted = gi.n_muted,
        .muted_all = gi.muted_all,
        .legacy = gi.legacy,
        .large = gi.large,
        .member_count = count,
    };
    fn(user, &info);
  }
  mim__store_arena_finish(&a);
  return rc < 0 ? rc : lrc(rc);
}
