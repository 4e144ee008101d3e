/* What gatewayd's and logicd's SIGHUP reloads share: the rule that a
 * setting a reload does not apply is logged, so that a restart is not
 * forgotten (docs/operations.md, "Reloading"). Each daemon lists its own
 * restart-only settings as offsets into its config struct. Loop thread
 * only. */
#ifndef MIMD_RELOADWARN_H
#define MIMD_RELOADWARN_H

#include <stdbool.h>
#include <stddef.h>

/* One setting: its name as in the config file and its offset in the
 * daemon's config struct. String settings are `char *` (NULL counts as
 * ""), numeric ones `int64_t`. */
struct mimd_reload_key {
  const char *key;
  size_t off;
};

/* {"field", offsetof(type, field)}: the key is the field's name. */
#define MIMD_RELOAD_KEY(type, field) {#field, offsetof(type, field)}

/* Whether two optional strings are equal (NULL equals ""). */
bool mimd_reload_same_str(const char *a, const char *b);

/* Logs a warning ("reload: <key> changed; it takes effect at the next
 * restart") for each of `strs` (n_strs `char *` fields) and `nums`
 * (n_nums `int64_t` fields) that differs between the running config `old`
 * and the freshly loaded `now` (both borrowed, the same struct type). */
void mimd_reload_warn_restart(const void *old, const void *now,
                              const struct mimd_reload_key *strs,
                              size_t n_strs,
                              const struct mimd_reload_key *nums,
                              size_t n_nums);

#endif
