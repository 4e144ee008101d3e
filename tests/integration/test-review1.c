/* Findings of the security review of the trust and store changes
 * (docs/security/review1.md), each tested against the real daemons.
 *
 *   test-review1 [NAME]   runs every test, or only the test called NAME
 *
 * Exit status 77 (skipped) when the daemons are not built.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define ADMIN_SECRET "operator-secret-0123456789abcdef"

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct run {
  int status; /* exit code, or 128 + signal, or -1 timed out (killed) */
  char err[16384];
};

/* Runs logicd with `flags` (NULL-terminated) for at most `timeout_ms`,
 * its stderr in res->err. A logicd still running then is killed: status -1
 * (it started, so the configuration was accepted). */
static void logicd_run(struct run *res, int timeout_ms,
                       const char *const *flags) {
  const char *argv[32];
  int n = 0;
  argv[n++] = h_logicd_path();
  while (*flags != NULL && n < 31)
    argv[n++] = *flags++;
  argv[n] = NULL;
  char ef[] = "/tmp/mim-review1-errXXXXXX";
  int e = mkstemp(ef);
  assert_true(e >= 0);
  unlink(ef);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(e, 2);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  int64_t deadline = mono_ms() + timeout_ms;
  int st = 0;
  res->status = -1;
  for (;;) {
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid) {
      res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (mono_ms() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      break;
    }
    usleep(20000);
  }
  lseek(e, 0, SEEK_SET);
  ssize_t got = read(e, res->err, sizeof res->err - 1);
  res->err[got > 0 ? got : 0] = '\0';
  close(e);
}

#define EXPECT_STATUS(r, st, what)                                             \
  do {                                                                         \
    if ((r)->status != (st))                                                   \
      fprintf(stderr, "%s: status %d\n--- stderr\n%s---\n", what,             \
              (r)->status, (r)->err);                                          \
    assert_int_equal((r)->status, (st));                                       \
  } while (0)

static void rm_rf(const char *dir) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "cannot remove %s\n", dir);
}

/* Without admin_secret, the admin socket's file mode (0600) is all that
 * stands between a local user and operator rights. logicd refuses to start
 * where that mode protects nothing: an abstract socket (no file, any local
 * user connects) and a directory others may write to (anyone can replace
 * the socket and receive mimctl's requests). With admin_secret the abstract
 * socket is allowed; a safe directory starts as before. */
static void admin_socket_unsafe_places(void **state) {
  (void)state;
  char root[] = "/tmp/mim-review1-XXXXXX";
  assert_non_null(mkdtemp(root));
  char data[300], open_dir[300], listen[400], abstract[100];
  snprintf(data, sizeof data, "%s/data", root);
  snprintf(open_dir, sizeof open_dir, "%s/open", root);
  assert_int_equal(mkdir(open_dir, 0700), 0);
  assert_int_equal(chmod(open_dir, 0777), 0); /* umask-proof */
  struct run res;

  /* an abstract socket without a secret */
  snprintf(abstract, sizeof abstract, "unix:@mim-review1-%d", (int)getpid());
  logicd_run(&res, 3000, (const char *const[]){
      "--data-dir", data, "--listen", "127.0.0.1:0", "--dev-auth",
      "--admin-listen", abstract, NULL});
  EXPECT_STATUS(&res, 2, "logicd abstract admin socket, no secret");
  assert_non_null(strstr(res.err, "abstract socket"));

  /* an admin socket in a world-writable directory */
  snprintf(listen, sizeof listen, "unix:%s/admin.sock", open_dir);
  logicd_run(&res, 3000, (const char *const[]){
      "--data-dir", data, "--listen", "127.0.0.1:0", "--dev-auth",
      "--admin-listen", listen, NULL});
  EXPECT_STATUS(&res, 2, "logicd admin socket in a 0777 directory");
  assert_non_null(strstr(res.err, "writable by others"));

  /* the default, data_dir/admin.sock, in a data_dir made 0777 */
  assert_int_equal(mkdir(data, 0700), 0);
  assert_int_equal(chmod(data, 0777), 0);
  logicd_run(&res, 3000, (const char *const[]){
      "--data-dir", data, "--listen", "127.0.0.1:0", "--dev-auth", NULL});
  EXPECT_STATUS(&res, 2, "logicd admin socket in a 0777 data_dir");
  assert_non_null(strstr(res.err, "writable by others"));

  /* accepted: the abstract socket with a secret, a 0700 data_dir (both keep
   * running until killed) */
  logicd_run(&res, 1500, (const char *const[]){
      "--data-dir", data, "--listen", "127.0.0.1:0", "--dev-auth",
      "--admin-listen", abstract, "--admin-secret", ADMIN_SECRET, NULL});
  EXPECT_STATUS(&res, -1, "logicd abstract admin socket with a secret");
  assert_int_equal(chmod(data, 0700), 0);
  logicd_run(&res, 1500, (const char *const[]){
      "--data-dir", data, "--listen", "127.0.0.1:0", "--dev-auth", NULL});
  EXPECT_STATUS(&res, -1, "logicd admin socket in a 0700 data_dir");
  rm_rf(root);
}

/* ---- main ---- */

static const struct CMUnitTest all_tests[] = {
    cmocka_unit_test(admin_socket_unsafe_places),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  const char *only = argc > 1 ? argv[1] : NULL;
  struct CMUnitTest sel[COUNT(all_tests)];
  size_t n = 0;
  if (only != NULL && strcmp(only, "--list") == 0) {
    for (size_t i = 0; i < COUNT(all_tests); i++)
      printf("%s\n", all_tests[i].name);
    return 0;
  }
  for (size_t i = 0; i < COUNT(all_tests); i++)
    if (only == NULL || strcmp(all_tests[i].name, only) == 0)
      sel[n++] = all_tests[i];
  if (n == 0) {
    fprintf(stderr, "no test named '%s' (--list shows them)\n", only);
    return 2;
  }
  if (!h_daemons_built()) {
    printf("SKIP: daemons not built\n");
    return 77;
  }
  signal(SIGPIPE, SIG_IGN);
  h_watchdog(170, only != NULL ? only : "test-review1");
  return _cmocka_run_group_tests("review1", sel, n, NULL, NULL) == 0 ? 0 : 1;
}
