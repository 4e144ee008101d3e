/* Runs the real daemons for integration tests: logicd and gatewayd as child
 * processes on free loopback ports, with a temporary data directory and
 * their output captured in log files there.
 *
 * The daemon executables come from the environment (LOGICD, GATEWAYD; set by
 * tests/integration/meson.build). Children get PR_SET_PDEATHSIG(SIGKILL) and
 * inherit no descriptor of the test process beyond stdio, and every pid is
 * registered so that a timeout, SIGTERM from the test runner or teardown
 * kills them: no daemon outlives its test.
 *
 * Functions return 0 or a negative errno and print what went wrong (with the
 * daemon's log) to stderr, so that a test can assert on the return value and
 * still leave a useful trace.
 */
#ifndef MIM_TEST_HARNESS_H
#define MIM_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wsclient.h"

struct h_opts {
  bool dev_auth;            /* logicd --dev-auth (default true) */
  const char *token_secret; /* logicd --token-secret; NULL: none */
  const char *rpc_secret;   /* both daemons; NULL: a random one */
  const char *const *logicd_args;   /* extra flags, NULL-terminated, or NULL */
  const char *const *gatewayd_args; /* extra flags, NULL-terminated, or NULL */
};

void h_opts_init(struct h_opts *o);

struct harness {
  struct wsc_ctx *ws;      /* borrowed: the process's client context */
  struct h_opts opts;      /* strings copied into the buffers below */
  char token_secret[128];
  char rpc_secret[128];
  char root[256];          /* the temporary directory */
  char data_dir[320];      /* logicd's data_dir (survives restarts) */
  char logic_log[320];     /* every logicd start appends here */
  char gw_log[320];
  int logic_port;          /* RPC port of logicd */
  int gw_port;             /* websocket port of gatewayd */
  pid_t logic_pid;         /* 0: not running */
  pid_t gw_pid;
  unsigned logic_starts, gw_starts;
};

/* Paths of the daemon executables, or NULL when not configured. */
const char *h_logicd_path(void);
const char *h_gatewayd_path(void);

/* A free loopback TCP port for a listener the harness does not pick
 * itself (metrics_listen, tcp_listen, ...): bound, read and released, so
 * that the daemon binds it next. Returns the port or -1. */
int h_free_port(void);

/* A TCP connection to 127.0.0.1:`port` (blocking, close-on-exec), for
 * tests that write raw bytes; -1 when it cannot be made. */
int h_tcp_connect(int port);

/* Whether both daemons exist and are executable (else the suite skips). */
bool h_daemons_built(void);

/* Makes the temporary directory and picks the ports; starts nothing.
 * `ws` is borrowed and must outlive the harness. */
int h_create(struct harness **out, struct wsc_ctx *ws, const struct h_opts *o);

/* Starts both daemons and waits until the gateway relays to logicd. */
int h_start(struct harness *h);

/* Starts logicd on the harness's port and data dir (a restart keeps both)
 * and waits for "ready" in its output (10 s). */
int h_start_logicd(struct harness *h);

/* Starts gatewayd on the harness's port and waits for "ready" (10 s). */
int h_start_gatewayd(struct harness *h);

/* Waits until the gateway accepts connections and relays requests to
 * logicd: an AuthRequest without uid is answered with an AuthResponse
 * (from logicd), not UNAVAILABLE (from a gateway without a logic link). */
int h_wait_linked(struct harness *h, int timeout_ms);

/* Sends `sig` to the daemon and waits (10 s) for it to exit. With SIGTERM
 * the exit status must be 0 (else -ECHILD, after printing the log); with
 * SIGKILL any death is fine. On timeout it is killed and -ETIMEDOUT
 * returned. Not running: -ESRCH. */
int h_stop_logicd(struct harness *h, int sig);
int h_stop_gatewayd(struct harness *h, int sig);

/* Whether the daemon is still running (reaps it if it died; prints how). */
bool h_logicd_alive(struct harness *h);
bool h_gatewayd_alive(struct harness *h);

/* Prints the tail of both daemons' logs to stderr. */
void h_dump_logs(const struct harness *h);

/* Kills what still runs (SIGKILL), removes the temporary directory (kept
 * when MIM_INTEG_KEEP is set in the environment) and frees. NULL: no-op. */
void h_destroy(struct harness *h);

/* A process-wide watchdog: after `seconds`, print `what`, kill every daemon,
 * dump their logs and exit(1). 0 cancels. Also installs handlers that do the
 * same on SIGTERM/SIGINT (the test runner's own timeout). */
void h_watchdog(unsigned seconds, const char *what);

/* ---- small helpers the test files share ---- */

/* CLOCK_MONOTONIC in milliseconds. */
int64_t h_mono_ms(void);

/* Sleeps `ms` milliseconds (nothing is serviced meanwhile). */
void h_sleep_ms(int ms);

/* How many lines of the file `path` contain `needle` (0 when the file
 * cannot be read). Lines longer than 4 KiB count once per 4 KiB piece. */
size_t h_log_count(const char *path, const char *needle);

/* The mimctl executable (MIMCTL, set by meson) when it is executable, or
 * NULL (the test then skips). */
const char *h_mimctl_path(void);

/* A fresh self-signed certificate and its key (PEM, RSA 2048, valid two
 * days, subject CN=`cn`) made with the openssl command as
 * <root>/<name>.crt and <root>/<name>.key; their paths are written to
 * `crt` and `key` (`cap` bytes each). Returns 0, or -1 when openssl
 * failed or a path did not fit. */
int h_make_cert(const struct harness *h, const char *name, const char *cn,
                char *crt, char *key, size_t cap);

/* Writes all `len` bytes of `p` to the socket `fd` (no SIGPIPE).
 * Returns 0 or -errno. */
int h_send_all(int fd, const void *p, size_t len);

/* Reads exactly `len` bytes from the socket `fd` into `p` within `ms`.
 * Returns 0, -ETIMEDOUT, -ECONNRESET (the peer closed) or -errno. */
int h_recv_all(int fd, void *p, size_t len, int ms);

/* ---- the per-case fixture most test files share ---- */

/* Starts a fresh pair for the test case `name`: arms h_watchdog(60) for the
 * start, h_create() + h_start() with `o` (borrowed) and `ws` (borrowed,
 * outlives the harness), then re-arms the watchdog with `timeout_s` for the
 * test body. Returns 0 with *out set, or -1 with *out NULL (what failed is
 * on stderr; nothing is left running). */
int h_begin(struct harness **out, struct wsc_ctx *ws, const struct h_opts *o,
            const char *name, unsigned timeout_s);

/* Flags of h_finish(): what a passed test must also leave behind. */
#define H_CHECK_GATEWAYD 1u /* fail if gatewayd was running and died */
#define H_CHECK_LOGICD 2u   /* fail if logicd was running and died */
#define H_STOP_GATEWAYD 4u  /* after a pass, SIGTERM a running gatewayd; fail
                             * unless it exits 0 */
#define H_STOP_LOGICD 8u    /* the same for logicd */

/* The teardown of test case `name`, under a 60 s watchdog: frees every
 * client (tc_free_all), SIGCONTs a logicd the test may have left stopped,
 * applies `flags`, prints the daemons' logs when the test did not pass
 * (`passed` false) or a check failed, and destroys `h` (taken; NULL is
 * fine). Returns 0, or -1 when a check or a stop failed. */
int h_finish(struct harness *h, const char *name, bool passed,
             unsigned flags);

struct CMUnitTest;

/* The main() of an integration test program: runs every test of `tests`
 * (`n` of them) as the cmocka group `group`, or only the one named by
 * argv[1]; `--list` prints the names. Creates the process's websocket
 * client context into `*ws` (which the tests use) and destroys it after;
 * `watchdog_s` > 0 arms h_watchdog() for the whole run. Returns the exit
 * status: 0, 1 a test failed, 2 no such test, 77 daemons not built. */
int h_main(int argc, char **argv, const char *group,
           const struct CMUnitTest *tests, size_t n, struct wsc_ctx **ws,
           unsigned watchdog_s);

#endif
