#include "ticketkey.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_FILE "session-ticket.key"

static int read_key(const char *path, int fd, uint8_t *key) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return -errno;
  if (!S_ISREG(st.st_mode) || st.st_size != TICKETKEY_LEN) {
    mimd_error("%s is not a %d-byte key file; remove it to make a new one "
               "(sessions then need a new login after the restart)",
               path, TICKETKEY_LEN);
    return -EINVAL;
  }
  if ((st.st_mode & 077) != 0) {
    mimd_error("%s is readable by group or others (mode %03o): whoever "
               "reads it can forge sessions; chmod 600 it",
               path, (unsigned)(st.st_mode & 0777));
    return -EPERM;
  }
  ssize_t n = pread(fd, key, TICKETKEY_LEN, 0);
  if (n != TICKETKEY_LEN)
    return n < 0 ? -errno : -EIO;
  return 0;
}

/* Writes a fresh key to a temporary file and renames it into place, so a
 * crash leaves either no key or a whole one. */
static int make_key(const char *dir, const char *path, uint8_t *key) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return -ENAMETOOLONG;
  size_t got = 0;
  while (got < TICKETKEY_LEN) {
    ssize_t n = getrandom(key + got, TICKETKEY_LEN - got, 0);
    if (n < 0 && errno != EINTR)
      return -errno;
    if (n > 0)
      got += (size_t)n;
  }
  (void)unlink(tmp);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                0600);
  if (fd < 0)
    return -errno;
  int rc = 0;
  if (write(fd, key, TICKETKEY_LEN) != TICKETKEY_LEN || fsync(fd) != 0)
    rc = errno ? -errno : -EIO;
  close(fd);
  if (rc == 0 && rename(tmp, path) != 0)
    rc = -errno;
  if (rc < 0) {
    (void)unlink(tmp);
    return rc;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)fsync(dfd);
    close(dfd);
  }
  mimd_info("made a new session ticket key in %s", path);
  return 0;
}

int ticketkey_load(const char *dir, uint8_t *key) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s/" KEY_FILE, dir) >= (int)sizeof path)
    return -ENAMETOOLONG;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  int rc;
  if (fd >= 0) {
    rc = read_key(path, fd, key);
    close(fd);
  } else if (errno == ENOENT) {
    rc = make_key(dir, path, key);
  } else {
    rc = -errno;
  }
  if (rc < 0 && rc != -EINVAL && rc != -EPERM)
    mimd_error("session ticket key %s: %s", path, strerror(-rc));
  return rc;
}
