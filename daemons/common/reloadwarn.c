#include "reloadwarn.h"

#include "log.h"

#include <stdint.h>
#include <string.h>

bool mimd_reload_same_str(const char *a, const char *b) {
  return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

void mimd_reload_warn_restart(const void *old, const void *now,
                              const struct mimd_reload_key *strs,
                              size_t n_strs,
                              const struct mimd_reload_key *nums,
                              size_t n_nums) {
  const char *o = old, *n = now;
  for (size_t i = 0; i < n_strs; i++)
    if (!mimd_reload_same_str(*(char *const *)(o + strs[i].off),
                              *(char *const *)(n + strs[i].off)))
      mimd_warn("reload: %s changed; it takes effect at the next restart",
                strs[i].key);
  for (size_t i = 0; i < n_nums; i++)
    if (*(const int64_t *)(o + nums[i].off) !=
        *(const int64_t *)(n + nums[i].off))
      mimd_warn("reload: %s changed; it takes effect at the next restart",
                nums[i].key);
}
