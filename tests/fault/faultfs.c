/* faultfs: an LD_PRELOAD shim that makes real storage calls fail, and
 * traces the order of syncs and socket I/O, for tests/integration/
 * test-faults.c.
 *
 * It wraps fdatasync, fsync, msync, pwrite and writev (the calls LMDB makes
 * to write and sync its data file) and, for the trace, write, send, sendto,
 * sendmsg, writev, read, recv and recvfrom on sockets. Everything is read
 * from the environment at the first call:
 *
 *   FAULTFS_PROC     act only in the program of that name (e.g. "logicd");
 *                    other processes that inherit LD_PRELOAD are untouched
 *   FAULTFS_PATH     only files whose path contains this (default data.mdb)
 *   FAULTFS_CALLS    which calls fail: a comma list of fdatasync, fsync,
 *                    msync, pwrite, writev (default: none)
 *   FAULTFS_ERRNO    EIO (default) or ENOSPC
 *   FAULTFS_AFTER    this many matching calls succeed first (default 0)
 *   FAULTFS_TIMES    then this many fail (default 1; 0 = every one)
 *   FAULTFS_ARM      a file: calls only count, and fail, while it exists,
 *                    so a test can let the daemon start and then arm it
 *   FAULTFS_OFF_MAX  pwrite only matches below this file offset (LMDB's
 *                    two meta pages are the first two pages of data.mdb)
 *   FAULTFS_TRACE    a file to append the trace to: one line per event,
 *                    "<n> sync <call> <fd>" after a sync of a matching file
 *                    returned, "<n> out <fd> <len>" before a socket write,
 *                    "<n> in <fd> <len>" after a socket read returned, each
 *                    out/in line followed by the bytes as hex on the next
 *                    line. <n> is one process-wide atomic counter, so the
 *                    lines' numbers order the events across threads.
 *
 * A failing call does nothing and returns -1 with errno set, which is what
 * a real I/O error or a full disk looks like to the caller. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
/* the wrappers define the plain symbols (pwrite, not the pwrite64 the
 * headers redirect to under 64-bit offsets); off_t is 64 bits anyway on
 * the 64-bit systems this runs on, and pwrite64 is wrapped too */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

enum call { C_FDATASYNC, C_FSYNC, C_MSYNC, C_PWRITE, C_WRITEV, C__N };
static const char *const call_names[C__N] = {"fdatasync", "fsync", "msync",
                                             "pwrite", "writev"};

static struct {
  bool active;          /* this is the process named by FAULTFS_PROC */
  const char *path;
  bool fail[C__N];
  int err;
  long after, times;
  const char *arm;
  long long off_max;
  int trace_fd;
} cfg = {.trace_fd = -1};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static atomic_long matched;  /* matching calls while armed */
static atomic_long failed;
static atomic_long event_no;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_send)(int, const void *, size_t, int);
/* glibc's own parameter types (transparent unions under _GNU_SOURCE) */
static ssize_t (*real_sendto)(int, const void *, size_t, int,
                              __CONST_SOCKADDR_ARG, socklen_t);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_recvfrom)(int, void *, size_t, int, __SOCKADDR_ARG,
                                socklen_t *);
static int (*real_fdatasync)(int);
static int (*real_fsync)(int);
static int (*real_msync)(void *, size_t, int);

/* dlsym() gives a void *; ISO C has no conversion to a function pointer,
 * so copy the bits (what POSIX guarantees to work). */
#define LOAD(fn)                                                               \
  do {                                                                         \
    void *p_ = dlsym(RTLD_NEXT, #fn);                                          \
    memcpy(&real_##fn, &p_, sizeof p_);                                        \
  } while (0)

static void setup(void) {
  LOAD(write);
  LOAD(pwrite);
  LOAD(writev);
  LOAD(send);
  LOAD(sendto);
  LOAD(sendmsg);
  LOAD(read);
  LOAD(recv);
  LOAD(recvfrom);
  LOAD(fdatasync);
  LOAD(fsync);
  LOAD(msync);

  const char *proc = getenv("FAULTFS_PROC");
  cfg.active = proc == NULL || strcmp(proc, program_invocation_short_name) == 0;
  if (!cfg.active)
    return;
  cfg.path = getenv("FAULTFS_PATH");
  if (cfg.path == NULL || cfg.path[0] == '\0')
    cfg.path = "data.mdb";
  const char *calls = getenv("FAULTFS_CALLS");
  for (int i = 0; calls != NULL && i < C__N; i++) {
    const char *p = strstr(calls, call_names[i]);
    size_t n = strlen(call_names[i]);
    cfg.fail[i] = p != NULL && (p == calls || p[-1] == ',') &&
                  (p[n] == '\0' || p[n] == ',');
  }
  const char *e = getenv("FAULTFS_ERRNO");
  cfg.err = e != NULL && strcmp(e, "ENOSPC") == 0 ? ENOSPC : EIO;
  e = getenv("FAULTFS_AFTER");
  cfg.after = e != NULL ? atol(e) : 0;
  e = getenv("FAULTFS_TIMES");
  cfg.times = e != NULL ? atol(e) : 1;
  cfg.arm = getenv("FAULTFS_ARM");
  e = getenv("FAULTFS_OFF_MAX");
  cfg.off_max = e != NULL ? atoll(e) : -1;
  e = getenv("FAULTFS_TRACE");
  if (e != NULL && e[0] != '\0')
    cfg.trace_fd = open(e, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static void init(void) { pthread_once(&once, setup); }

/* Whether `fd` is a file whose path contains cfg.path. */
static bool fd_matches(int fd) {
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n <= 0)
    return false;
  path[n] = '\0';
  return strstr(path, cfg.path) != NULL;
}

static bool is_socket(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* Whether this call of `c` on `fd` (a file) must fail; sets errno then. */
static bool inject(enum call c, int fd) {
  if (!cfg.active || !cfg.fail[c] || !fd_matches(fd))
    return false;
  if (cfg.arm != NULL && access(cfg.arm, F_OK) != 0)
    return false;
  long n = atomic_fetch_add(&matched, 1) + 1;
  if (n <= cfg.after)
    return false;
  if (cfg.times > 0 && atomic_fetch_add(&failed, 1) >= cfg.times)
    return false;
  errno = cfg.err;
  return true;
}

/* The trace is written with the raw syscall: our own write() wrapper must
 * not see it. */
static void trace_raw(const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = syscall(SYS_write, cfg.trace_fd, s, n);
    if (w <= 0)
      return;
    s += w;
    n -= (size_t)w;
  }
}

static void trace_sync(const char *call, int fd) {
  if (cfg.trace_fd < 0 || !cfg.active || !fd_matches(fd))
    return;
  char line[96];
  int n = snprintf(line, sizeof line, "%ld sync %s %d\n",
                   atomic_fetch_add(&event_no, 1) + 1, call, fd);
  trace_raw(line, (size_t)n);
}

/* One socket event with its bytes (the pieces of an iovec), as hex. The
 * line is built whole and written with one syscall (O_APPEND), so events
 * of two threads never interleave. */
static void trace_io(const char *dir, int fd, const struct iovec *iov,
                     int iovcnt, size_t len) {
  if (cfg.trace_fd < 0 || !cfg.active || len == 0 || !is_socket(fd))
    return;
  size_t cap = 64 + 2 * len + 2;
  char *buf = malloc(cap);
  if (buf == NULL)
    return;
  int n = snprintf(buf, cap, "%ld %s %d %zu\n",
                   atomic_fetch_add(&event_no, 1) + 1, dir, fd, len);
  size_t k = (size_t)n, left = len;
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < iovcnt && left > 0; i++) {
    const uint8_t *p = iov[i].iov_base;
    size_t m = iov[i].iov_len < left ? iov[i].iov_len : left;
    for (size_t j = 0; j < m; j++) {
      buf[k++] = hex[p[j] >> 4];
      buf[k++] = hex[p[j] & 15];
    }
    left -= m;
  }
  buf[k++] = '\n';
  trace_raw(buf, k);
  free(buf);
}

static void trace_out(int fd, const void *p, size_t len) {
  struct iovec v = {(void *)p, len};
  trace_io("out", fd, &v, 1, len);
}

static void trace_in(int fd, const void *p, ssize_t got) {
  if (got <= 0)
    return;
  struct iovec v = {(void *)p, (size_t)got};
  trace_io("in", fd, &v, 1, (size_t)got);
}

/* ---- storage calls ---- */

int fdatasync(int fd) {
  init();
  if (inject(C_FDATASYNC, fd))
    return -1;
  int rc = real_fdatasync(fd);
  if (rc == 0)
    trace_sync("fdatasync", fd);
  return rc;
}

int fsync(int fd) {
  init();
  if (inject(C_FSYNC, fd))
    return -1;
  int rc = real_fsync(fd);
  if (rc == 0)
    trace_sync("fsync", fd);
  return rc;
}

int msync(void *addr, size_t len, int flags) {
  init();
  /* no fd to match: msync only fails when asked for and armed */
  if (cfg.active && cfg.fail[C_MSYNC] &&
      (cfg.arm == NULL || access(cfg.arm, F_OK) == 0)) {
    long n = atomic_fetch_add(&matched, 1) + 1;
    if (n > cfg.after &&
        (cfg.times == 0 || atomic_fetch_add(&failed, 1) < cfg.times)) {
      errno = cfg.err;
      return -1;
    }
  }
  return real_msync(addr, len, flags);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  init();
  if ((cfg.off_max < 0 || off < cfg.off_max) && inject(C_PWRITE, fd))
    return -1;
  return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
  return pwrite(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
  init();
  if (inject(C_WRITEV, fd))
    return -1;
  size_t len = 0;
  for (int i = 0; i < iovcnt; i++)
    len += iov[i].iov_len;
  trace_io("out", fd, iov, iovcnt, len);
  return real_writev(fd, iov, iovcnt);
}

/* ---- socket I/O, traced only ---- */

ssize_t write(int fd, const void *buf, size_t n) {
  init();
  trace_out(fd, buf, n);
  return real_write(fd, buf, n);
}

ssize_t send(int fd, const void *buf, size_t n, int flags) {
  init();
  trace_out(fd, buf, n);
  return real_send(fd, buf, n, flags);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags,
               __CONST_SOCKADDR_ARG to, socklen_t tolen) {
  init();
  trace_out(fd, buf, n);
  return real_sendto(fd, buf, n, flags, to, tolen);
}

ssize_t sendmsg(int fd, const struct msghdr *m, int flags) {
  init();
  size_t len = 0;
  for (size_t i = 0; i < m->msg_iovlen; i++)
    len += m->msg_iov[i].iov_len;
  trace_io("out", fd, m->msg_iov, (int)m->msg_iovlen, len);
  return real_sendmsg(fd, m, flags);
}

ssize_t read(int fd, void *buf, size_t n) {
  init();
  ssize_t got = real_read(fd, buf, n);
  trace_in(fd, buf, got);
  return got;
}

ssize_t recv(int fd, void *buf, size_t n, int flags) {
  init();
  ssize_t got = real_recv(fd, buf, n, flags);
  trace_in(fd, buf, got);
  return got;
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, __SOCKADDR_ARG from,
                 socklen_t *restrict fromlen) {
  init();
  ssize_t got = real_recvfrom(fd, buf, n, flags, from, fromlen);
  trace_in(fd, buf, got);
  return got;
}
