/* Fuzz target: arbitrary bytes as the daemons' INI config file, read by the
 * real loaders: logicd_config_load() (option table, ranges, listen address,
 * token secret), gw_config_load() (ranges, addresses, TLS pair) and mimctl's
 * ctl_settings_resolve() (its own libinih reader of [logic]).
 *
 * The loaders take a path, so each input is written to one file in a
 * directory made once per process. What they print about a bad file goes to
 * /dev/null while they run (set MIM_FUZZ_VERBOSE=1 to see it); the
 * sanitizers keep reporting to the real stderr.
 *
 * Checked: no crash, no leak, and a load that succeeds leaves a usable
 * config (every string set, ports in range). The loaders read the secret
 * files a config names (token_secret_file, admin_secret_file); reading
 * whatever path the input names (a FIFO, /dev/stdin) could block, and it is
 * not parsing. So when the input holds "_file" (no key can match one of
 * those without it), the *_secret_file keys are overridden with empty
 * flags, as an operator's flags override the file. */
#include "fuzz.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mim/auth.h>

#include "gatewayd/config.h"
#include "logicd/config.h"
#include "mimctl/ctl.h"

/* From the sanitizer runtime, when there is one. */
__attribute__((weak)) void __sanitizer_set_report_fd(void *fd);

static char dir[64];
static char path[96];
static int devnull = -1;
static bool verbose;

static void cleanup(void) {
  if (path[0] != '\0')
    unlink(path);
  if (dir[0] != '\0')
    rmdir(dir);
}

static void setup(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/mim-fuzz-config-XXXXXX",
           tmp != NULL && strlen(tmp) < 32 ? tmp : "/tmp");
  check(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/input.ini", dir);
  atexit(cleanup);
  verbose = getenv("MIM_FUZZ_VERBOSE") != NULL;
  devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  check(devnull >= 0);
  if (!verbose && __sanitizer_set_report_fd != NULL) {
    int report = fcntl(2, F_DUPFD_CLOEXEC, 3);
    check(report >= 0);
    __sanitizer_set_report_fd((void *)(intptr_t)report);
  }
}

/* fd 2 to /dev/null while a loader complains; returns the saved fd. */
static int quiet(void) {
  if (verbose)
    return -1;
  fflush(stderr);
  int saved = dup(2);
  check(saved >= 0 && dup2(devnull, 2) == 2);
  return saved;
}

static void loud(int saved) {
  if (saved < 0)
    return;
  fflush(stderr);
  check(dup2(saved, 2) == 2);
  close(saved);
}

static void load_logicd(bool names_file) {
  char *argv[] = {"logicd", "--config", path, "--token-secret-file=",
                  "--admin-secret-file=", NULL};
  struct logicd_config cfg;
  int saved = quiet();
  int rc = logicd_config_load(&cfg, names_file ? 5 : 3, argv);
  loud(saved);
  check(rc == 0 || rc == -1); /* 1 is --help/--version: not in a file */
  if (rc == 0) {
    check(cfg.listen != NULL && cfg.data_dir != NULL && cfg.data_dir[0]);
    check(cfg.listen_host != NULL || cfg.unix_socket[0] != '\0');
    check(cfg.listen_port >= 0 && cfg.listen_port <= 65535);
    check(cfg.dev_auth || cfg.secret_len >= MIM_SECRET_MIN);
    check(cfg.pull_limit_max >= 1 && cfg.content_max >= 1);
  }
  logicd_config_free(&cfg);
}

static void load_gatewayd(void) {
  char *argv[] = {"gatewayd", "--config", path, NULL};
  struct gw_config cfg;
  memset(&cfg, 0, sizeof cfg);
  int saved = quiet();
  int rc = gw_config_load(&cfg, 3, argv);
  loud(saved);
  check(rc == 0 || rc == -1);
  if (rc == 0) {
    check(cfg.id != NULL && cfg.path != NULL && cfg.log_level != NULL);
    check(cfg.listen_port >= 0 && cfg.listen_port <= 65535);
    check(cfg.logic_host != NULL || cfg.logic_unix != NULL);
    check(cfg.max_frame > 0);
  }
  gw_config_free(&cfg);
}

static void load_mimctl(bool names_file) {
  struct ctl_settings s;
  memset(&s, 0, sizeof s);
  s.config = strdup(path);
  check(s.config != NULL);
  if (names_file) {
    s.admin_secret_file = strdup("");
    check(s.admin_secret_file != NULL);
  }
  int saved = quiet();
  int rc = ctl_settings_resolve(&s);
  if (rc == 0 && (s.token_secret_file == NULL ||
                  s.token_secret_file[0] == '\0')) {
    /* the inline secret only, for the reason at the top */
    uint8_t *secret = NULL;
    size_t len = 0;
    if (ctl_settings_token_secret(&s, &secret, &len) == 0) {
      check(secret != NULL || len == 0);
      free(secret);
    }
  }
  loud(saved);
  check(rc == 0 || rc == -1);
  if (rc == 0)
    check(s.addr != NULL && s.timeout_ms > 0);
  ctl_settings_finish(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (devnull < 0)
    setup();
  FILE *f = fopen(path, "wb");
  check(f != NULL);
  check(fwrite(data, 1, size, f) == size && fclose(f) == 0);
  bool names_file = memmem(data, size, "_file", 5) != NULL;
  load_logicd(names_file);
  load_gatewayd();
  load_mimctl(names_file);
  return 0;
}

/* Valid files first (the example configs' shape), then the edges the
 * checks care about: ranges, addresses, booleans, duplicate keys. */
static const char *const seeds[] = {
    "[logic]\nlisten = 127.0.0.1:8090\ndata_dir = ./data/logicd\n"
    "dev_auth = true\nmap_size_mb = 64\npull_limit_max = 500\n"
    "content_max = 32768\n\n[gateway]\nid = gw1\nlisten = 127.0.0.1:8080\n"
    "path = /ws\nlogic = 127.0.0.1:8090\nmax_frame = 65536\n",
    "[logic]\nlisten = unix:/tmp/l.sock\nunix_socket = /tmp/l.sock\n"
    "token_secret = 0123456789abcdef0123456789abcdef\nrpc_secret = s\n"
    "[gateway]\nlogic = unix:/tmp/l.sock\ntls_cert = a.pem\ntls_key = b.pem\n",
    "[logic]\nlisten =\nmap_size_mb = 0x10\nmap_size_max_mb = 8\n"
    "rate_per_sec = -1\nlog_level = debug\nevent_loop = poll\n",
    "[gateway]\nlisten = :0\nmax_frame = 99999999999999999999\n"
    "auth_timeout_ms = 0\nsend_queue_bytes = 1\nid =\n",
    "; comment\n# comment\n[logic]\ndev_auth = yes\ndev_auth = off\n"
    "unknown_key = 1\n[other]\nx = y\n",
    "[logic\nlisten = 127.0.0.1:65536\n  continued line\n=novalue\n",
    "\xef\xbb\xbf[logic]\nlisten = [::1]:8090\ndata_dir = \"\"\n",
};

size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap) {
  if (i >= sizeof(seeds) / sizeof(seeds[0]))
    return 0;
  size_t n = strlen(seeds[i]);
  if (n > cap)
    n = cap;
  memcpy(buf, seeds[i], n);
  return n;
}
