/* Shared helpers for the cmocka unit tests. */
#ifndef MIM_TESTUTIL_H
#define MIM_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

/* Creates a fresh temporary directory ("/tmp/mim-test-XXXXXX") and returns
 * its path (malloc'd; free with tu_rmdir_free). Fails the test on error. */
char *tu_mkdtemp(void);

/* Removes `path` recursively and frees it. NULL is a no-op. */
void tu_rmdir_free(char *path);

/* A fake clock for mim_logic_config.now_ms: returns *(int64_t *)user. */
int64_t tu_fake_now(void *user);

#endif
