#include "testutil.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *tu_mkdtemp(void) {
  const char *base = getenv("TMPDIR");
  char tmpl[512];
  snprintf(tmpl, sizeof tmpl, "%s/mim-test-XXXXXX", base && *base ? base : "/tmp");
  char *dir = mkdtemp(tmpl);
  assert_non_null(dir);
  char *copy = strdup(dir);
  assert_non_null(copy);
  return copy;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw) {
  (void)sb; (void)flag; (void)ftw;
  return remove(path);
}

void tu_rmdir_free(char *path) {
  if (path == NULL)
    return;
  nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  free(path);
}

int64_t tu_fake_now(void *user) { return *(int64_t *)user; }
