/* The LMDB backend: opening the environment, its databases and schema,
 * transactions and map growth, health, and the backend's ops table. */
#include "store/lmdb/lmdb_internal.h"
#include "store/lmdb/ginfo.h"

static const char *const db_names[DB__COUNT] = {
    "meta",  "ids",   "msgs",       "inbox",   "conv",    "groups",
    "members", "dedup", "dedup_time", "cursors", "ugroups",
    "uconv", "uclist",
    "ginfo", "hidden", "lastseen", "ularge",
};

/* Fills ugroups from members: a store made before the index existed
 * (same schema otherwise) gets it once, in the transaction that creates
 * the database. */
static int ugroups_rebuild(struct lmdb_store *s, MDB_txn *txn) {
  MDB_cursor *cur;
  int rc = lrc(mdb_cursor_open(txn, s->dbi[DB_MEMBERS], &cur));
  if (rc != 0)
    return rc;
  MDB_val k, v;
  size_t n = 0;
  rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_FIRST));
  while (rc == 0) {
    if (k.mv_size == 16) {
      uint8_t uk[16];
      const uint8_t *mk = k.mv_data;
      memcpy(uk, mk + 8, 8); /* (gid, uid) -> (uid, gid) */
      memcpy(uk + 8, mk, 8);
      MDB_val key = val(uk, sizeof uk), empty = val("", 0);
      if ((rc = lrc(mdb_put(txn, s->dbi[DB_UGROUPS], &key, &empty, 0))) != 0)
        break;
      n++;
    }
    rc = lrc(mdb_cursor_get(cur, &k, &v, MDB_NEXT));
  }
  mdb_cursor_close(cur);
  if (rc == MDB_NOTFOUND)
    rc = 0;
  if (rc == 0 && n > 0)
    mim__log_to(&s->log, MIM_LOG_INFO,
                "store: built the user-groups index (%zu memberships)", n);
  return rc;
}

/* Another process grew the map: adopt its size (no txn may be open). */
static int adopt_map_size(struct lmdb_store *s) {
  pthread_rwlock_wrlock(&s->map_lock);
  int rc = lrc(mdb_env_set_mapsize(s->env, 0));
  pthread_rwlock_unlock(&s->map_lock);
  return rc;
}

/* Begins a transaction with the map lock held shared; end it with
 * txn_end(). */
int mim__lmdb_txn_begin(struct lmdb_store *s, unsigned flags, MDB_txn **txn) {
  for (;;) {
    pthread_rwlock_rdlock(&s->map_lock);
    int rc = mdb_txn_begin(s->env, NULL, flags, txn);
    if (rc == 0)
      return 0;
    pthread_rwlock_unlock(&s->map_lock);
    if (rc != MDB_MAP_RESIZED)
      return lrc(rc);
    rc = adopt_map_size(s);
    if (rc != 0)
      return rc;
  }
}

/* Releases the map lock of a transaction already committed or aborted. */
void mim__lmdb_txn_unlock(struct lmdb_store *s) {
  pthread_rwlock_unlock(&s->map_lock);
}

void mim__lmdb_read_end(struct lmdb_store *s, MDB_txn *txn) {
  mdb_txn_abort(txn);
  mim__lmdb_txn_unlock(s);
}

/* Doubles the map (up to map_size_max). Called by the writer with no
 * transaction open; waits for running reads to finish. */
int mim__lmdb_grow_map(struct lmdb_store *s) {
  int rc = 0;
  pthread_rwlock_wrlock(&s->map_lock);
  MDB_envinfo info;
  mdb_env_info(s->env, &info);
  size_t cur = info.me_mapsize;
  if (cur >= s->map_size_max) {
    rc = -MIM_ERR_STORE_FULL;
    goto out;
  }
  size_t next = cur > s->map_size_max / 2 ? s->map_size_max : cur * 2;
  rc = lrc(mdb_env_set_mapsize(s->env, next));
  if (rc == 0)
    mim__log_to(&s->log, MIM_LOG_INFO, "store: map grown from %zu to %zu bytes", cur, next);
out:
  pthread_rwlock_unlock(&s->map_lock);
  return rc;
}

static void lmdb_destroy(void *impl) {
  struct lmdb_store *s = impl;
  if (s == NULL)
    return;
  mdb_env_close(s->env);
  pthread_mutex_destroy(&s->write_lock);
  pthread_rwlock_destroy(&s->map_lock);
  free(s->path);
  mim__store_arena_finish(&s->scratch);
  free(s->rcpt);
  free(s->idv);
  free(s->names);
  mim__store_cache_destroy(s->cache);
  free(s);
}

static int lmdb_health(void *impl) {
  struct lmdb_store *s = impl;
  int rc = atomic_load(&s->fatal);
  return rc == 0 ? 0 : map_err(rc);
}

static const struct mim_backend_ops lmdb_ops = {
    .commit = mim__lmdb_commit,
    .read_inbox = mim__lmdb_read_inbox,
    .read_conversation = mim__lmdb_read_conversation,
    .inbox_last_seq = mim__lmdb_inbox_last_seq,
    .cursor_get = mim__lmdb_cursor_get,
    .member_get = mim__lmdb_member_get,
    .members_list = mim__lmdb_members_list,
    .destroy = lmdb_destroy,
    .health = lmdb_health,
    .groups_of = mim__lmdb_groups_of,
    .conv_list = mim__lmdb_conv_list,
    .read_by = mim__lmdb_read_by,
    .group_info = mim__lmdb_group_info,
    .members_page = mim__lmdb_members_page,
    .last_seen = mim__lmdb_last_seen,
    .large_groups_of = mim__lmdb_large_groups_of,
};

void mim_lmdb_config_init(struct mim_lmdb_config *cfg) {
  if (cfg == NULL)
    return;
  memset(cfg, 0, sizeof(*cfg));
  cfg->map_size = DEFAULT_MAP_SIZE;
  cfg->map_size_max = DEFAULT_MAP_SIZE_MAX;
  cfg->dedup_window_ms = DEFAULT_DEDUP_WINDOW_MS;
  cfg->cursors_per_user_max = DEFAULT_CURSORS_PER_USER_MAX;
  cfg->group_members_max = MIM_GROUP_MEMBERS_MAX_DEFAULT;
  cfg->group_large_min = MIM_GROUP_LARGE_MIN_DEFAULT;
  cfg->log_level = MIM_LOG_INFO;
  cfg->size = sizeof *cfg;
}

/* As the logic's config_adopt(): a caller built with an older, smaller
 * struct gets the defaults for the fields it lacks; a size that is too
 * small to hold `path` or larger than this library's struct is -EINVAL. */
static int config_adopt(struct mim_lmdb_config *out,
                        const struct mim_lmdb_config *in) {
  size_t need = offsetof(struct mim_lmdb_config, path) + sizeof in->path;
  if (in->size < need || in->size > sizeof *out)
    return -EINVAL;
  mim_lmdb_config_init(out);
  memcpy(out, in, in->size);
  out->size = sizeof *out;
  return 0;
}

static int mkdir_p(const char *path) {
  char buf[PATH_MAX];
  size_t n = strlen(path);
  if (n >= sizeof buf)
    return -ENAMETOOLONG;
  memcpy(buf, path, n + 1);
  for (char *p = buf + 1; *p != '\0'; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
      return -errno;
    *p = '/';
  }
  if (mkdir(buf, 0700) != 0 && errno != EEXIST)
    return -errno;
  return 0;
}

static int meta_u64(MDB_txn *txn, const struct lmdb_store *s, const char *k,
                    uint64_t *x) {
  return mim__lmdb_get_u64(txn, s->dbi[DB_META], k, strlen(k), x);
}

/* Opens (and on a new store creates) the databases, refusing a store of
 * another schema version before anything is written: the check and the
 * creation share one write transaction, aborted on mismatch. */
static int open_dbs(struct lmdb_store *s) {
  MDB_txn *txn;
  int rc = lrc(mdb_txn_begin(s->env, NULL, 0, &txn));
  if (rc != 0)
    return rc;
  MDB_dbi meta;
  rc = lrc(mdb_dbi_open(txn, db_names[DB_META], 0, &meta));
  bool fresh = rc == MDB_NOTFOUND;
  if (rc == 0) {
    MDB_val v;
    rc = mim__lmdb_get(txn, meta, "schema", 6, &v);
    uint32_t version = 0;
    if (rc == 0 && v.mv_size == 4) {
      const uint8_t *p = v.mv_data;
      version = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                (uint32_t)p[2] << 8 | p[3];
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
      goto fail_txn;
    if (version != MIM_LMDB_SCHEMA_VERSION) {
      mim__log_to(&s->log, MIM_LOG_ERROR, "store: schema version %" PRIu32 ", this library needs %d",
                 version, MIM_LMDB_SCHEMA_VERSION);
      rc = -MIM_ERR_SCHEMA_MISMATCH;
      goto fail_txn;
    }
  } else if (fresh) {
    /* No meta: an empty environment, or someone else's LMDB files. */
    MDB_stat st;
    MDB_dbi main_db;
    if ((rc = lrc(mdb_dbi_open(txn, NULL, 0, &main_db))) != 0 ||
        (rc = lrc(mdb_stat(txn, main_db, &st))) != 0)
      goto fail_txn;
    if (st.ms_entries > 0) {
      mim__log_to(&s->log, MIM_LOG_ERROR, "store: the environment holds data but no libmim schema");
      rc = -MIM_ERR_SCHEMA_MISMATCH;
      goto fail_txn;
    }
  } else {
    goto fail_txn;
  }
  bool ugroups_new = false;
  if (!fresh) {
    MDB_dbi probe;
    rc = lrc(mdb_dbi_open(txn, db_names[DB_UGROUPS], 0, &probe));
    if (rc == MDB_NOTFOUND)
      ugroups_new = true;
    else if (rc != 0)
      goto fail_txn;
  }
  for (int i = 0; i < DB__COUNT; i++)
    if ((rc = lrc(mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i]))))
      goto fail_txn;
  if (ugroups_new && (rc = ugroups_rebuild(s, txn)) != 0)
    goto fail_txn;
  if (fresh) {
    uint8_t v4[4] = {0, 0, 0, MIM_LMDB_SCHEMA_VERSION};
    MDB_val k = val("schema", 6), v = val(v4, sizeof v4);
    if ((rc = lrc(mdb_put(txn, s->dbi[DB_META], &k, &v, 0))) != 0)
      goto fail_txn;
  }
  if ((rc = meta_u64(txn, s, "last_msg_id", &s->last_msg_id)) != 0 ||
      (rc = meta_u64(txn, s, "last_id", &s->last_id)) != 0)
    goto fail_txn;
  return lrc(mdb_txn_commit(txn));

fail_txn:
  mdb_txn_abort(txn);
  return rc;
}

static size_t round_page(size_t n) {
  long ps = sysconf(_SC_PAGESIZE);
  size_t p = ps > 0 ? (size_t)ps : 4096;
  return n > SIZE_MAX - p ? n : (n + p - 1) / p * p;
}

int mim_lmdb_open(struct mim_backend **out,
                  const struct mim_lmdb_config *caller_cfg) {
  struct mim_lmdb_config adopted;
  if (out == NULL || caller_cfg == NULL ||
      config_adopt(&adopted, caller_cfg) < 0)
    return -EINVAL;
  const struct mim_lmdb_config *cfg = &adopted;
  if (cfg->path == NULL || cfg->path[0] == '\0' || cfg->dedup_window_ms < 0)
    return -EINVAL;
  struct mim__log_sink log = {cfg->log, cfg->log_user, cfg->log_level};
  int rc = mkdir_p(cfg->path);
  if (rc != 0) {
    mim__log_to(&log, MIM_LOG_ERROR, "store: cannot create %s: %s",
                cfg->path, mim_strerror(rc));
    return rc;
  }
  struct mim_backend *be = calloc(1, sizeof(*be));
  struct lmdb_store *s = calloc(1, sizeof(*s));
  if (be == NULL || s == NULL || mim__store_cache_create(&s->cache) < 0) {
    rc = -ENOMEM;
    goto fail_alloc;
  }
  size_t map_size = round_page(cfg->map_size ? cfg->map_size
                                             : DEFAULT_MAP_SIZE);
  s->map_size_max = cfg->map_size_max ? cfg->map_size_max
                                      : DEFAULT_MAP_SIZE_MAX;
  if (s->map_size_max < map_size)
    s->map_size_max = map_size;
  s->dedup_window_ms = cfg->dedup_window_ms;
  s->read_bytes_max = cfg->read_bytes_max;
  s->cursors_per_user_max = cfg->cursors_per_user_max;
  s->group_members_max = cfg->group_members_max;
  s->group_large_min = cfg->group_large_min;
  s->clock_ms = INT64_MIN;
  s->log = log;
  if ((s->path = strdup(cfg->path)) == NULL) {
    rc = -ENOMEM;
    goto fail_alloc;
  }
  mim__store_arena_init(&s->scratch);

  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  /* A resize must not starve behind a steady stream of reads. */
  pthread_rwlockattr_setkind_np(&attr,
                                PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  rc = -pthread_rwlock_init(&s->map_lock, &attr);
  pthread_rwlockattr_destroy(&attr);
  if (rc != 0)
    goto fail_alloc;
  if ((rc = -pthread_mutex_init(&s->write_lock, NULL)) != 0)
    goto fail_rwlock;

  if ((rc = lrc(mdb_env_create(&s->env))) != 0)
    goto fail_mutex;
  if ((rc = lrc(mdb_env_set_maxdbs(s->env, DB__COUNT))) != 0 ||
      (rc = lrc(mdb_env_set_mapsize(s->env, map_size))) != 0)
    goto fail_env;
  /* NOTLS: read transactions are tied to their txn, not to a thread, so
   * readers on any thread never exhaust reader slots. NOSYNC only when a
   * test asks: durability is the point of the store. */
  unsigned flags = MDB_NOTLS | (cfg->no_sync ? MDB_NOSYNC : 0);
  if ((rc = lrc(mdb_env_open(s->env, cfg->path, flags, 0600))) != 0) {
    mim__log_to(&s->log, MIM_LOG_ERROR, "store: cannot open %s: %s", cfg->path, err_text(rc));
    goto fail_env;
  }
  int dead = 0;
  mdb_reader_check(s->env, &dead); /* slots of crashed processes */
  if ((rc = open_dbs(s)) != 0)
    goto fail_env;

  be->ops = &lmdb_ops;
  be->impl = s;
  *out = be;
  return 0;

fail_env:
  mdb_env_close(s->env);
fail_mutex:
  pthread_mutex_destroy(&s->write_lock);
fail_rwlock:
  pthread_rwlock_destroy(&s->map_lock);
fail_alloc:
  if (s != NULL) {
    mim__store_cache_destroy(s->cache);
    free(s->path);
  }
  free(s);
  free(be);
  /* errno values from opening the files stay what they are (-ENOSPC is
   * not "store full" here); LMDB's own codes become libmim's */
  return is_mdb_err(rc) ? map_err(rc) : rc;
}

void mim__store_lmdb_inject_failure(struct mim_backend *be, unsigned long nth,
                                    int err) {
  struct lmdb_store *s = be->impl;
  pthread_mutex_lock(&s->write_lock);
  s->inject_armed = true;
  s->inject_nth = nth;
  s->inject_err = err;
  pthread_mutex_unlock(&s->write_lock);
}

void mim__store_lmdb_txn_writes_max(struct mim_backend *be,
                                    unsigned long max) {
  struct lmdb_store *s = be->impl;
  pthread_mutex_lock(&s->write_lock);
  s->txn_writes_max = max;
  pthread_mutex_unlock(&s->write_lock);
}

size_t mim__store_lmdb_map_size(const struct mim_backend *be) {
  struct lmdb_store *s = be->impl;
  MDB_envinfo info;
  pthread_rwlock_rdlock(&s->map_lock);
  mdb_env_info(s->env, &info);
  pthread_rwlock_unlock(&s->map_lock);
  return info.me_mapsize;
}

uint64_t mim_lmdb_corrupt_skipped(const struct mim_backend *be) {
  if (be == NULL || be->ops != &lmdb_ops)
    return 0;
  const struct lmdb_store *s = be->impl;
  return (uint64_t)atomic_load(&s->corrupt);
}

int mim_lmdb_usage(const struct mim_backend *be, struct mim_lmdb_usage *out) {
  if (be == NULL || be->ops != &lmdb_ops || out == NULL)
    return -EINVAL;
  struct lmdb_store *s = be->impl;
  MDB_envinfo info;
  MDB_stat st;
  /* shared: mdb_env_set_mapsize() must not run under these reads */
  pthread_rwlock_rdlock(&s->map_lock);
  mdb_env_info(s->env, &info);
  mdb_env_stat(s->env, &st);
  pthread_rwlock_unlock(&s->map_lock);
  out->map_size = info.me_mapsize;
  out->map_size_max = s->map_size_max;
  out->page_size = st.ms_psize;
  out->used_bytes = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
  return 0;
}
