/* Integration harness: the real daemons as child processes (harness.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "tclient.h" /* tc_free_all() in h_finish() */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mim/codec.h>
#include <mim/common.h>

#define READY_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 10000
#define LOG_TAIL_BYTES (48 * 1024)
#define POLL_MS 10
#define MAX_HARNESSES 8

/* Live harnesses, for the watchdog (which may run in a signal handler and
 * then only reads these fields and calls async-signal-safe functions). */
static struct harness *volatile live[MAX_HARNESSES];
static char watchdog_what[200];
static volatile sig_atomic_t keep_tmp; /* MIM_INTEG_KEEP, read at h_create */

int64_t h_mono_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

  nanosleep(&ts, NULL);
}

size_t h_log_count(const char *path, const char *needle) {
  FILE *fp = fopen(path, "r");
  char line[4096];
  size_t n = 0;

  if (fp == NULL)
    return 0;
  while (fgets(line, sizeof line, fp) != NULL)
    if (strstr(line, needle) != NULL)
      n++;
  fclose(fp);
  return n;
}

const char *h_mimctl_path(void) {
  const char *p = getenv("MIMCTL");

  return p != NULL && *p != '\0' && access(p, X_OK) == 0 ? p : NULL;
}

/* Waits `ms` while keeping the test's websocket clients serviced: a daemon
 * that closes its connections on the way down waits for their close
 * replies, and clients answer only while serviced. */
static void pause_ms(const struct harness *h, int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

  if (h != NULL && h->ws != NULL) {
    wsc_ctx_service(h->ws, ms);
    return;
  }
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

void h_opts_init(struct h_opts *o) {
  memset(o, 0, sizeof(*o));
  o->dev_auth = true;
}

const char *h_logicd_path(void) {
  const char *p = getenv("LOGICD");

  return p != NULL && *p ? p : NULL;
}

const char *h_gatewayd_path(void) {
  const char *p = getenv("GATEWAYD");

  return p != NULL && *p ? p : NULL;
}

bool h_daemons_built(void) {
  const char *l = h_logicd_path(), *g = h_gatewayd_path();

  return l != NULL && g != NULL && access(l, X_OK) == 0 &&
         access(g, X_OK) == 0;
}

/* ---- logs ---- */

/* Async-signal-safe: open, lseek, read, write. */
static void dump_file_tail(const char *title, const char *path) {
  char buf[4096];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  off_t size;
  ssize_t n;

  (void)!write(2, "\n----- ", 7);
  (void)!write(2, title, strlen(title));
  (void)!write(2, " (", 2);
  (void)!write(2, path, strlen(path));
  (void)!write(2, ") -----\n", 8);
  if (fd < 0) {
    (void)!write(2, "(no log)\n", 9);
    return;
  }
  size = lseek(fd, 0, SEEK_END);
  if (size > LOG_TAIL_BYTES) {
    (void)!write(2, "[...]\n", 6);
    lseek(fd, size - LOG_TAIL_BYTES, SEEK_SET);
  } else {
    lseek(fd, 0, SEEK_SET);
  }
  while ((n = read(fd, buf, sizeof(buf))) > 0)
    (void)!write(2, buf, (size_t)n);
  close(fd);
  (void)!write(2, "----- end -----\n", 16);
}

void h_dump_logs(const struct harness *h) {
  if (h == NULL)
    return;
  dump_file_tail("logicd log", h->logic_log);
  dump_file_tail("gatewayd log", h->gw_log);
}

/* Whether a line of the log at `path` after offset `from` says "ready":
 * the daemons log "<time> INFO logicd: ready" and "... gatewayd: ready (loop
 * ...)". A bare substring would also match "already". */
static bool log_says_ready(const char *path, off_t from) {
  FILE *f = fopen(path, "re");
  char line[4096];
  bool found = false;

  if (f == NULL)
    return false;
  if (fseeko(f, from, SEEK_SET) == 0) {
    while (!found && fgets(line, sizeof(line), f) != NULL) {
      const char *r = strstr(line, ": ready");

      found = r != NULL && (r[7] == '\0' || r[7] == '\n' || r[7] == ' ' ||
                            r[7] == '\r');
    }
  }
  fclose(f);
  return found;
}

/* ---- watchdog ---- */

static void kill_all_children(void) {
  for (int i = 0; i < MAX_HARNESSES; i++) {
    struct harness *h = live[i];

    if (h == NULL)
      continue;
    if (h->logic_pid > 0)
      kill(h->logic_pid, SIGKILL);
    if (h->gw_pid > 0)
      kill(h->gw_pid, SIGKILL);
  }
}

static void on_fatal_signal(int sig) {
  const char *msg = sig == SIGALRM ? "\n*** integration watchdog: timeout in "
                                   : "\n*** integration test interrupted in ";

  (void)!write(2, msg, strlen(msg));
  (void)!write(2, watchdog_what, strlen(watchdog_what));
  (void)!write(2, "; killing the daemons\n", 22);
  kill_all_children();
  for (int i = 0; i < MAX_HARNESSES; i++) {
    if (live[i] != NULL) {
      dump_file_tail("logicd log", live[i]->logic_log);
      dump_file_tail("gatewayd log", live[i]->gw_log);
    }
  }
  /* Remove the temporary directories (fork, execv and waitpid are
   * async-signal-safe; nftw is not). */
  for (int i = 0; i < MAX_HARNESSES && !keep_tmp; i++) {
    pid_t pid;

    if (live[i] == NULL || live[i]->root[0] == '\0')
      continue;
    pid = fork();
    if (pid == 0) {
      char *const argv[] = {"rm", "-rf", live[i]->root, NULL};

      execv("/bin/rm", argv);
      _exit(127);
    }
    if (pid > 0)
      waitpid(pid, NULL, 0);
  }
  _exit(1);
}

void h_watchdog(unsigned seconds, const char *what) {
  static bool installed;

  if (!installed) {
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    installed = true;
  }
  alarm(0);
  snprintf(watchdog_what, sizeof(watchdog_what), "%s", what ? what : "?");
  alarm(seconds);
}

/* ---- setup ---- */

static int pick_port(int *out, int keep_fd[2], int slot) {
  struct sockaddr_in a;
  socklen_t alen = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  if (fd < 0)
    return -errno;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
    int e = -errno;

    close(fd);
    return e;
  }
  *out = ntohs(a.sin_port);
  keep_fd[slot] = fd; /* held until both ports are picked: no duplicates */
  return 0;
}

int h_free_port(void) {
  int port = -1, keep[2] = {-1, -1};

  if (pick_port(&port, keep, 0) != 0)
    return -1;
  close(keep[0]);
  return port;
}

int h_tcp_connect(int port) {
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port)};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    fd = -1;
  }
  return fd;
}

static void random_hex(char *buf, size_t nbytes) {
  static const char hex[] = "0123456789abcdef";
  unsigned char raw[64];
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

  if (nbytes > sizeof(raw))
    nbytes = sizeof(raw);
  if (fd < 0 || read(fd, raw, nbytes) != (ssize_t)nbytes) {
    for (size_t i = 0; i < nbytes; i++)
      raw[i] = (unsigned char)(rand() ^ (int)getpid());
  }
  if (fd >= 0)
    close(fd);
  for (size_t i = 0; i < nbytes; i++) {
    buf[2 * i] = hex[raw[i] >> 4];
    buf[2 * i + 1] = hex[raw[i] & 15];
  }
  buf[2 * nbytes] = '\0';
}

int h_create(struct harness **out, struct wsc_ctx *ws, const struct h_opts *o) {
  struct harness *h = calloc(1, sizeof(*h));
  const char *tmp = getenv("TMPDIR");
  int keep[2] = {-1, -1};
  int r, slot;

  *out = NULL;
  if (h == NULL)
    return -ENOMEM;
  keep_tmp = getenv("MIM_INTEG_KEEP") != NULL && *getenv("MIM_INTEG_KEEP");
  h->ws = ws;
  h->opts = *o;
  h->opts.logicd_args = o->logicd_args;
  h->opts.gatewayd_args = o->gatewayd_args;
  if (o->token_secret != NULL)
    snprintf(h->token_secret, sizeof(h->token_secret), "%s", o->token_secret);
  if (o->rpc_secret != NULL)
    snprintf(h->rpc_secret, sizeof(h->rpc_secret), "%s", o->rpc_secret);
  else
    random_hex(h->rpc_secret, 16);
  h->opts.token_secret = o->token_secret ? h->token_secret : NULL;
  h->opts.rpc_secret = h->rpc_secret;

  snprintf(h->root, sizeof(h->root), "%s/mim-integ-XXXXXX",
           tmp != NULL && *tmp ? tmp : "/tmp");
  if (mkdtemp(h->root) == NULL) {
    r = -errno;
    fprintf(stderr, "harness: mkdtemp %s: %s\n", h->root, strerror(errno));
    free(h);
    return r;
  }
  snprintf(h->data_dir, sizeof(h->data_dir), "%s/data", h->root);
  snprintf(h->logic_log, sizeof(h->logic_log), "%s/logicd.log", h->root);
  snprintf(h->gw_log, sizeof(h->gw_log), "%s/gatewayd.log", h->root);
  if (mkdir(h->data_dir, 0700) != 0) {
    r = -errno;
    goto fail;
  }
  if ((r = pick_port(&h->logic_port, keep, 0)) != 0 ||
      (r = pick_port(&h->gw_port, keep, 1)) != 0)
    goto fail;
  close(keep[0]);
  close(keep[1]);
  for (slot = 0; slot < MAX_HARNESSES && live[slot] != NULL; slot++) {
  }
  if (slot < MAX_HARNESSES)
    live[slot] = h;
  *out = h;
  return 0;

fail:
  fprintf(stderr, "harness: setup failed: %s\n", strerror(-r));
  if (keep[0] >= 0)
    close(keep[0]);
  if (keep[1] >= 0)
    close(keep[1]);
  h_destroy(h);
  return r;
}

/* ---- processes ---- */

static pid_t spawn(const char *const *argv, const char *log_path,
                   off_t *log_start) {
  pid_t parent = getpid(), pid;
  int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

  if (fd < 0) {
    fprintf(stderr, "harness: open %s: %s\n", log_path, strerror(errno));
    return -1;
  }
  dprintf(fd, "===== harness: starting");
  for (const char *const *a = argv; *a != NULL; a++)
    dprintf(fd, " %s", *a);
  dprintf(fd, " =====\n");
  *log_start = lseek(fd, 0, SEEK_END);
  fflush(NULL);
  pid = fork();
  if (pid < 0) {
    fprintf(stderr, "harness: fork: %s\n", strerror(errno));
    close(fd);
    return -1;
  }
  if (pid == 0) {
    sigset_t none;
    int devnull;

    /* Dies with the test process, whatever kills it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
      dup2(devnull, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    /* No inherited client sockets: a daemon holding a copy of a test
     * client's socket would keep that connection alive after the test
     * closed it. */
    close_range(3, ~0u, 0);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(argv[0], (char *const *)argv);
    dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  close(fd);
  return pid;
}

static void describe_status(char *buf, size_t cap, int status) {
  if (WIFEXITED(status))
    snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, cap, "killed by signal %d (%s)%s", WTERMSIG(status),
             strsignal(WTERMSIG(status)),
             WCOREDUMP(status) ? ", core dumped" : "");
  else
    snprintf(buf, cap, "status 0x%x", status);
}

/* Reaps `*pid` if it exited; returns true while it runs. */
static bool alive(const struct harness *h, pid_t *pid, const char *name) {
  int status;
  pid_t r;

  if (*pid <= 0)
    return false;
  r = waitpid(*pid, &status, WNOHANG);
  if (r == 0)
    return true;
  if (r == *pid) {
    char how[128];

    describe_status(how, sizeof(how), status);
    fprintf(stderr, "harness: %s (pid %d) %s\n", name, (int)*pid, how);
    (void)h;
  }
  *pid = 0;
  return false;
}

bool h_logicd_alive(struct harness *h) {
  return alive(h, &h->logic_pid, "logicd");
}

bool h_gatewayd_alive(struct harness *h) {
  return alive(h, &h->gw_pid, "gatewayd");
}

static int wait_ready(struct harness *h, pid_t *pid, const char *name,
                      const char *log, off_t from) {
  int64_t deadline = h_mono_ms() + READY_TIMEOUT_MS;

  for (;;) {
    if (log_says_ready(log, from))
      return 0;
    if (!alive(h, pid, name)) {
      fprintf(stderr, "harness: %s died before it was ready\n", name);
      h_dump_logs(h);
      return -ECHILD;
    }
    if (h_mono_ms() >= deadline) {
      fprintf(stderr, "harness: %s did not print \"ready\" within %d ms\n",
              name, READY_TIMEOUT_MS);
      h_dump_logs(h);
      return -ETIMEDOUT;
    }
    pause_ms(h, POLL_MS);
  }
}

#define MAX_ARGS 48

static void add_extra(const char **argv, int *n, const char *const *extra) {
  for (; extra != NULL && *extra != NULL && *n < MAX_ARGS - 1; extra++)
    argv[(*n)++] = *extra;
}

int h_start_logicd(struct harness *h) {
  const char *argv[MAX_ARGS];
  const char *level = getenv("MIM_INTEG_LOG_LEVEL");
  char listen[64];
  off_t start;
  int n = 0;

  if (h->logic_pid > 0)
    return -EALREADY;
  if (h_logicd_path() == NULL)
    return -ENOENT;
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", h->logic_port);
  argv[n++] = h_logicd_path();
  argv[n++] = "--listen";
  argv[n++] = listen;
  argv[n++] = "--data-dir";
  argv[n++] = h->data_dir;
  argv[n++] = "--rpc-secret";
  argv[n++] = h->rpc_secret;
  if (h->opts.dev_auth)
    argv[n++] = "--dev-auth";
  if (h->opts.token_secret != NULL) {
    argv[n++] = "--token-secret";
    argv[n++] = h->opts.token_secret;
  }
  if (level != NULL && *level) {
    argv[n++] = "--log-level";
    argv[n++] = level;
  }
  add_extra(argv, &n, h->opts.logicd_args);
  argv[n] = NULL;
  h->logic_pid = spawn(argv, h->logic_log, &start);
  if (h->logic_pid < 0) {
    h->logic_pid = 0;
    return -ECHILD;
  }
  h->logic_starts++;
  return wait_ready(h, &h->logic_pid, "logicd", h->logic_log, start);
}

int h_start_gatewayd(struct harness *h) {
  const char *argv[MAX_ARGS];
  const char *level = getenv("MIM_INTEG_LOG_LEVEL");
  char listen[64], logic[64];
  off_t start;
  int n = 0;

  if (h->gw_pid > 0)
    return -EALREADY;
  if (h_gatewayd_path() == NULL)
    return -ENOENT;
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", h->gw_port);
  snprintf(logic, sizeof(logic), "127.0.0.1:%d", h->logic_port);
  argv[n++] = h_gatewayd_path();
  argv[n++] = "--id";
  argv[n++] = "gw-integ";
  argv[n++] = "--listen";
  argv[n++] = listen;
  argv[n++] = "--path";
  argv[n++] = "/ws";
  argv[n++] = "--logic";
  argv[n++] = logic;
  argv[n++] = "--rpc-secret";
  argv[n++] = h->rpc_secret;
  if (level != NULL && *level) {
    argv[n++] = "--log-level";
    argv[n++] = level;
  }
  add_extra(argv, &n, h->opts.gatewayd_args);
  argv[n] = NULL;
  h->gw_pid = spawn(argv, h->gw_log, &start);
  if (h->gw_pid < 0) {
    h->gw_pid = 0;
    return -ECHILD;
  }
  h->gw_starts++;
  return wait_ready(h, &h->gw_pid, "gatewayd", h->gw_log, start);
}

int h_wait_linked(struct harness *h, int timeout_ms) {
  int64_t deadline = h_mono_ms() + timeout_ms;
  struct wsc_client *c = NULL;
  int64_t seq = 0;
  int last = 0;

  while (h_mono_ms() < deadline) {
    struct mim_packet req, rsp;
    int r;

    if (!h_gatewayd_alive(h) || !h_logicd_alive(h)) {
      wsc_close(c);
      h_dump_logs(h);
      return -ECHILD;
    }
    if (c == NULL) {
      r = wsc_connect_timeout(h->ws, h->gw_port, "/ws", 2000, &c);
      if (r != 0) {
        c = NULL;
        wsc_ctx_service(h->ws, 20); /* refused: the listener is not up yet */
        continue;
      }
    }
    /* An AuthRequest is the one request only logicd answers (with an
     * AuthResponse; this one names no uid, so it is refused): the gateway
     * answers everything else from an unauthenticated connection itself,
     * and this with UNAVAILABLE while it has no link. */
    mim_packet_init(&req);
    req.cmd = MIM_CMD_AUTH_REQ;
    req.seq = ++seq;
    req.token = "link-probe";
    if (wsc_send_packet(c, &req) != 0) {
      wsc_close(c);
      c = NULL;
      continue;
    }
    r = wsc_recv(c, 2000, &rsp);
    if (r == 0 && rsp.cmd == MIM_CMD_AUTH_RSP) {
      mim_packet_finish(&rsp);
      wsc_close(c);
      return 0;
    }
    if (r == 0 && rsp.cmd == MIM_CMD_ERROR && rsp.status == 1015) {
      last = 1015;
      mim_packet_finish(&rsp);
      wsc_ctx_service(h->ws, 20); /* no logic link yet: ask again soon */
      continue;
    }
    fprintf(stderr,
            "harness: link probe: unexpected answer to an AuthRequest "
            "without uid: r=%d cmd=%u code=%d (%s)\n",
            r, rsp.cmd, rsp.status, r ? wsc_last_error() : "");
    mim_packet_finish(&rsp);
    wsc_close(c);
    c = NULL;
    last = r ? r : -EPROTO;
  }
  wsc_close(c);
  fprintf(stderr, "harness: gateway not linked to logicd after %d ms (%d)\n",
          timeout_ms, last);
  h_dump_logs(h);
  return -ETIMEDOUT;
}

int h_start(struct harness *h) {
  int r;

  if ((r = h_start_logicd(h)) != 0 || (r = h_start_gatewayd(h)) != 0)
    return r;
  return h_wait_linked(h, 10000);
}

static int stop(struct harness *h, pid_t *pid, const char *name, int sig) {
  int64_t deadline = h_mono_ms() + STOP_TIMEOUT_MS;
  int status;
  char how[128];

  if (*pid <= 0 || !alive(h, pid, name))
    return -ESRCH;
  kill(*pid, sig);
  for (;;) {
    pid_t r = waitpid(*pid, &status, WNOHANG);

    if (r == *pid)
      break;
    if (h_mono_ms() >= deadline) {
      fprintf(stderr, "harness: %s (pid %d) did not exit within %d ms of "
                      "signal %d; killing it\n",
              name, (int)*pid, STOP_TIMEOUT_MS, sig);
      kill(*pid, SIGKILL);
      waitpid(*pid, &status, 0);
      *pid = 0;
      h_dump_logs(h);
      return -ETIMEDOUT;
    }
    pause_ms(h, POLL_MS);
  }
  *pid = 0;
  if (sig == SIGKILL)
    return 0;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return 0;
  describe_status(how, sizeof(how), status);
  fprintf(stderr, "harness: %s %s after signal %d (want exit status 0)\n",
          name, how, sig);
  h_dump_logs(h);
  return -ECHILD;
}

int h_stop_logicd(struct harness *h, int sig) {
  return stop(h, &h->logic_pid, "logicd", sig);
}

int h_stop_gatewayd(struct harness *h, int sig) {
  return stop(h, &h->gw_pid, "gatewayd", sig);
}

/* ---- teardown ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

void h_destroy(struct harness *h) {
  if (h == NULL)
    return;
  for (int i = 0; i < MAX_HARNESSES; i++)
    if (live[i] == h)
      live[i] = NULL;
  if (h->gw_pid > 0) {
    kill(h->gw_pid, SIGKILL);
    waitpid(h->gw_pid, NULL, 0);
  }
  if (h->logic_pid > 0) {
    kill(h->logic_pid, SIGKILL);
    waitpid(h->logic_pid, NULL, 0);
  }
  if (h->root[0] != '\0') {
    const char *keep = getenv("MIM_INTEG_KEEP");

    if (keep != NULL && *keep)
      fprintf(stderr, "harness: kept %s\n", h->root);
    else
      nftw(h->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  }
  free(h);
}

int h_main(int argc, char **argv, const char *group,
           const struct CMUnitTest *tests, size_t n, struct wsc_ctx **ws,
           unsigned watchdog_s) {
  const char *only = argc > 1 ? argv[1] : NULL;
  struct CMUnitTest *sel = calloc(n > 0 ? n : 1, sizeof(*sel));
  size_t k = 0;
  int failed;

  if (sel == NULL)
    return 1;
  if (only != NULL && strcmp(only, "--list") == 0) {
    for (size_t i = 0; i < n; i++)
      printf("%s\n", tests[i].name);
    free(sel);
    return 0;
  }
  for (size_t i = 0; i < n; i++)
    if (only == NULL || strcmp(tests[i].name, only) == 0)
      sel[k++] = tests[i];
  if (k == 0) {
    fprintf(stderr, "no test named '%s' (--list shows them)\n", only);
    free(sel);
    return 2;
  }
  if (!h_daemons_built()) {
    printf("SKIP: daemons not built\n");
    free(sel);
    return 77;
  }
  signal(SIGPIPE, SIG_IGN);
  if (watchdog_s > 0)
    h_watchdog(watchdog_s, only != NULL ? only : group);
  if (wsc_ctx_create(ws) != 0) {
    fprintf(stderr, "cannot create the websocket client context\n");
    free(sel);
    return 1;
  }
  failed = _cmocka_run_group_tests(group, sel, k, NULL, NULL);
  wsc_ctx_destroy(*ws);
  free(sel);
  return failed == 0 ? 0 : 1;
}

int h_make_cert(const struct harness *h, const char *name, const char *cn,
                char *crt, char *key, size_t cap) {
  char cmd[1400];
  int n1 = snprintf(crt, cap, "%s/%s.crt", h->root, name);
  int n2 = snprintf(key, cap, "%s/%s.key", h->root, name);

  if (n1 < 0 || (size_t)n1 >= cap || n2 < 0 || (size_t)n2 >= cap)
    return -1;
  snprintf(cmd, sizeof cmd,
           "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=%s "
           "-keyout '%s' -out '%s' >/dev/null 2>&1",
           cn, key, crt);
  return system(cmd) == 0 ? 0 : -1;
}

int h_send_all(int fd, const void *p, size_t len) {
  const uint8_t *b = p;

  while (len > 0) {
    ssize_t n = send(fd, b, len, MSG_NOSIGNAL);

    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    b += n;
    len -= (size_t)n;
  }
  return 0;
}

int h_recv_all(int fd, void *p, size_t len, int ms) {
  uint8_t *b = p;
  int64_t end = h_mono_ms() + ms;

  while (len > 0) {
    struct pollfd q = {fd, POLLIN, 0};
    int64_t left = end - h_mono_ms();
    ssize_t n;

    if (left <= 0 || poll(&q, 1, (int)left) <= 0)
      return -ETIMEDOUT;
    n = recv(fd, b, len, 0);
    if (n == 0)
      return -ECONNRESET;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN)
        continue;
      return -errno;
    }
    b += n;
    len -= (size_t)n;
  }
  return 0;
}

/* ---- the per-case fixture ---- */

int h_begin(struct harness **out, struct wsc_ctx *ws, const struct h_opts *o,
            const char *name, unsigned timeout_s) {
  h_watchdog(60, name);
  *out = NULL;
  if (h_create(out, ws, o) != 0 || h_start(*out) != 0) {
    h_destroy(*out);
    *out = NULL;
    return -1;
  }
  h_watchdog(timeout_s, name);
  return 0;
}

int h_finish(struct harness *h, const char *name, bool passed,
             unsigned flags) {
  int r = 0;

  if (name == NULL)
    name = "teardown";
  h_watchdog(60, name);
  tc_free_all();
  if (h != NULL) {
    if (h->logic_pid > 0)
      kill(h->logic_pid, SIGCONT); /* a test that failed while stopped */
    if ((flags & H_CHECK_GATEWAYD) && h->gw_pid > 0 && !h_gatewayd_alive(h)) {
      fprintf(stderr, "[%s] gatewayd died during the test\n", name);
      r = -1;
    }
    if ((flags & H_CHECK_LOGICD) && h->logic_pid > 0 && !h_logicd_alive(h)) {
      fprintf(stderr, "[%s] logicd died during the test\n", name);
      r = -1;
    }
    if (!passed || r != 0) {
      fprintf(stderr, "[%s] failed; daemon logs follow\n", name);
      h_dump_logs(h);
    }
    if (passed && (flags & H_STOP_GATEWAYD) && h->gw_pid > 0 &&
        h_stop_gatewayd(h, SIGTERM) != 0)
      r = -1;
    if (passed && (flags & H_STOP_LOGICD) && h->logic_pid > 0 &&
        h_stop_logicd(h, SIGTERM) != 0)
      r = -1;
    h_destroy(h);
  }
  h_watchdog(0, NULL);
  return r;
}
