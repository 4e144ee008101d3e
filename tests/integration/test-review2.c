/* Attacker review of the front door and the bounds (docs/security.md):
 * regressions for what the review found, one meson test per case. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

/* Runs logicd with `extra` flags; returns its exit status (124: it was
 * still running after 10 s, i.e. it accepted the settings; --help exits
 * before the settings are checked) and its output in `out`. */
static int run_logicd(const char *extra, char *out, size_t cap) {
  char dir[] = "/tmp/mim-review2-XXXXXX", cmd[1024];
  assert_non_null(mkdtemp(dir));
  snprintf(cmd, sizeof cmd,
           "timeout 10 '%s' --dev-auth --listen 127.0.0.1:0 --data-dir %s/d %s "
           "2>&1 </dev/null",
           h_logicd_path(), dir, extra);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A GroupListResponse lists the whole group and is not cut by
 * reply_bytes_max: with 100,000 members of 128-byte ids it is ~13 MB. One
 * GROUP_LIST read after the pause mark must still fit under
 * rpc_queue_max, or one member of a big group cuts the link every user of
 * the gateway shares. Such settings are refused at start-up. */
static void group_list_bound_is_checked(void **state) {
  (void)state;
  h_watchdog(60, "group_list_bound_is_checked");
  char out[8192];
  assert_int_equal(run_logicd("--rpc-queue-max-mb 8 --rpc-queue-pause-kb 4096 "
                              "--group-members-max 100000",
                              out, sizeof out),
                   2);
  assert_non_null(strstr(out, "group_members_max"));
  /* 20,000 members (~2.6 MB) fit the same queue */
  assert_int_equal(run_logicd("--rpc-queue-max-mb 8 --rpc-queue-pause-kb 4096 "
                              "--group-members-max 20000",
                              out, sizeof out),
                   124);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(group_list_bound_is_checked),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  const char *only = argc > 1 ? argv[1] : NULL;
  struct CMUnitTest sel[COUNT(tests)];
  size_t n = 0;
  for (size_t i = 0; i < COUNT(tests); i++)
    if (only == NULL || strcmp(tests[i].name, only) == 0)
      sel[n++] = tests[i];
  if (n == 0) {
    fprintf(stderr, "no test named '%s'\n", only);
    return 2;
  }
  if (!h_daemons_built()) {
    printf("SKIP: daemons not built\n");
    return 77;
  }
  return _cmocka_run_group_tests("review2", sel, n, NULL, NULL) == 0 ? 0 : 1;
}
