/* libmim — the LMDB storage backend: one LMDB environment on local disk,
 * one writer process (group commit), readers in any thread. Use it through
 * <mim/store.h>; the on-disk layout is described in lib/store/lmdb/.
 */
#ifndef MIM_LMDB_H
#define MIM_LMDB_H

#include <mim/store.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mim_lmdb_config {
  /* sizeof(struct mim_lmdb_config) as the caller was built with; set by
   * mim_lmdb_config_init(). Fields are only ever added at the end: for a
   * smaller size mim_lmdb_open() takes the fields it covers and the
   * defaults for the rest; a size larger than this library's struct is
   * -EINVAL. */
  size_t size;
  const char *path;          /* directory; created if missing */
  size_t map_size;           /* initial map size in bytes (default 64 MiB);
                                grows by doubling when full */
  size_t map_size_max;       /* growth limit (default 64 GiB) */
  int64_t dedup_window_ms;   /* how long client_msg_ids are remembered
                                (default 24 h) */
  bool no_sync;              /* tests only: skip fsync (NOT durable) */
  size_t read_bytes_max;     /* an inbox or conversation read stops (with
                                has_more) once the entries it returned hold
                                this many bytes of content, payload and ids;
                                at least one entry always. 0 = no limit
                                (default). Bounds what one read copies. */
  size_t cursors_per_user_max; /* read cursors kept per user, one per
                                device that acknowledged (default 64, 0 = no
                                limit): a new device's cursor beyond it
                                replaces the user's cursors that read least,
                                so a user inventing device names cannot grow
                                the store without bound. */
  /* Most members one group may have (default
   * MIM_GROUP_MEMBERS_MAX_DEFAULT; 0 = no limit). A group op that would
   * take a group past it fails alone with MIM_ERR_GROUP_FULL and changes
   * nothing. Bounds the writes of one group message, which are as many as
   * the group has members. */
  uint32_t group_members_max;
  /* Where this backend's log lines go: `log` (NULL: the process-wide
   * handler of mim_log_set_handler()) with `log_user`, for lines at
   * `log_level` or more severe (default MIM_LOG_INFO; used only with
   * `log`). Called from the thread that made the call that logs. */
  mim_log_fn log;
  void *log_user;
  enum mim_log_level log_level;
  /* The member count at which a group switches to read diffusion
   * (default MIM_GROUP_LARGE_MIN_DEFAULT; 0 = never): the create or add
   * whose commit makes a group this large marks it large, for good. A
   * large group's message is stored once, in the group's timeline, with
   * no inbox entry per member (docs/architecture.md §6.3), so its cost
   * does not grow with the member count; members sync it by conv seq. */
  uint32_t group_large_min;
};

/* The default of mim_lmdb_config.group_members_max. */
#define MIM_GROUP_MEMBERS_MAX_DEFAULT 10000
/* The default of mim_lmdb_config.group_large_min. */
#define MIM_GROUP_LARGE_MIN_DEFAULT 1000

/* Fills `cfg` with the defaults above, `size` and path NULL. */
MIM_API void mim_lmdb_config_init(struct mim_lmdb_config *cfg);

/* Opens (creating if needed) the LMDB environment at cfg->path and returns a
 * backend over it in `*out` (free with mim_backend_destroy()). `cfg` is
 * borrowed for the call. Only one backend may write an environment at a
 * time (logicd takes a lock file for it): the writer keeps the newest ids
 * and each timeline's last seq in memory (~2 MiB) between commits. Errors: -EINVAL no path, or cfg->size not set by
 * mim_lmdb_config_init() (see `size`); -MIM_ERR_SCHEMA_MISMATCH the
 * files were written by an incompatible schema version; -ENOMEM; -EIO,
 * -EACCES, -ENOSPC and other errno values from opening the files. */
MIM_API int mim_lmdb_open(struct mim_backend **out,
                          const struct mim_lmdb_config *cfg);

/* How many records reads and commits of the LMDB backend `be` (borrowed)
 * skipped because they could not be parsed (a record or index entry of the
 * wrong size, a record missing or not valid protobuf, a string not valid
 * UTF-8) since it was opened. Each skip is also logged (WARN; the first
 * few, then at every power of two). A corrupt record never fails a page or
 * a batch: a read leaves it out, a commit treats a corrupt dedup entry or
 * cursor as absent and overwrites it. 0 for a NULL or non-LMDB `be`. */
MIM_API uint64_t mim_lmdb_corrupt_skipped(const struct mim_backend *be);

/* How much of its map an LMDB backend uses (mim_lmdb_usage()). */
struct mim_lmdb_usage {
  uint64_t map_size;     /* the map now: it grows by doubling */
  uint64_t map_size_max; /* what it may grow to (map_size_max); past it
                            sends fail with MIM_ERR_STORE_FULL */
  uint64_t used_bytes;   /* pages in use up to the highest one written
                            (last page number + 1, times the page size);
                            freed pages inside are reused, not returned */
  uint64_t page_size;
};

/* Fills `out` (caller-owned) with the map use of the LMDB backend `be`
 * (borrowed). Callable from any thread; it waits only while the writer
 * grows the map. Errors: -EINVAL `be` is NULL or not an LMDB backend. */
MIM_API int mim_lmdb_usage(const struct mim_backend *be,
                           struct mim_lmdb_usage *out);

/* The schema version this library writes. */
#define MIM_LMDB_SCHEMA_VERSION 1

#ifdef __cplusplus
}
#endif

#endif /* MIM_LMDB_H */
