#include "datalock.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int datalock_acquire(const char *dir) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s/logicd.lock", dir) >= (int)sizeof path)
    return -ENAMETOOLONG;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    mimd_error("cannot open %s: %s", path, strerror(err));
    return -err;
  }
  /* flock: released by the kernel however the process ends, SIGKILL
   * included, so a crash never leaves a stale lock behind */
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char pid[32] = "?";
    ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    if (n > 0)
      pid[n] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    close(fd);
    if (err == EWOULDBLOCK) {
      mimd_error("data directory %s is in use by another logicd (pid %s)",
                 dir, pid);
      return -EBUSY;
    }
    mimd_error("cannot lock %s: %s", path, strerror(err));
    return -err;
  }
  char pid[32];
  int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len)
    mimd_warn("cannot record our pid in %s: %s", path, strerror(errno));
  return fd;
}

void datalock_release(int fd) {
  if (fd >= 0)
    close(fd);
}
