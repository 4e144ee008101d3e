/* The LMDB backend's group role records (ginfo.c). */
#ifndef MIM_STORE_LMDB_GINFO_H
#define MIM_STORE_LMDB_GINFO_H

#include <sys/types.h>

/* A group's role record, decoded; strings and arrays live in an arena.
 * The arrays have room for one entry past their bound. */
/* The record's flag bit of a large group. */
#define GINFO_LARGE 4

struct ginfo {
  bool present; /* false: a group older than roles (legacy) */
  bool muted_all;
  bool legacy;  /* old rules (every member adds) until an owner is set:
                   a group older than roles, even once it has a record */
  bool large;   /* read diffusion (docs/architecture.md §6.3), for good */
  const char *owner, *name, *metadata;
  const char **admins;
  size_t n_admins;
  const char **muted;
  int64_t *until;
  size_t n_muted;
};

/* Loads the record of `gid` (none: a legacy, empty one). Errors: LMDB
 * codes (MDB_CORRUPTED for a record that does not parse), -ENOMEM. */
int mim__ginfo_load(MDB_txn *txn, const struct lmdb_store *s, uint64_t gid,
                    struct mim__store_arena *a, struct ginfo *gi);
/* Whether group `gid` is large (flag GINFO_LARGE), without parsing the
 * rest of its record. Errors: LMDB codes. */
int mim__ginfo_large(MDB_txn *txn, const struct lmdb_store *s, uint64_t gid,
                     bool *large);
/* Stores `gi` as the record of `gid` in the write transaction. */
int mim__ginfo_save(struct wtx *w, uint64_t gid, const struct ginfo *gi);
/* Index of `uid` in `list`, -1 if absent. */
ssize_t mim__ginfo_find(const char *const *list, size_t n, const char *uid);
/* The role of `uid` ("" = operator) who is (`member`) or is not a member. */
enum mim_group_role mim__ginfo_role(const struct ginfo *gi, const char *uid,
                                    bool member);
/* Whether `uid` of `role` may not send at time `now`. */
bool mim__ginfo_muted(const struct ginfo *gi, const char *uid,
                      enum mim_group_role role, int64_t now);
/* Drops `uid` from the admins and the mutes (a member who left). */
void mim__ginfo_forget(struct ginfo *gi, const char *uid);
/* The backend's group_info op. */
int mim__lmdb_group_info(void *impl, const char *group,
                         void (*fn)(void *user, const struct mim_group_info *i),
                         void *user);

#endif
