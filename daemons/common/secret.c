/* The secret file reader shared by logicd and mimctl (secret.h). */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int mimd_read_secret_file(const char *prog, const char *path, uint8_t **out,
                          size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "%s: cannot open secret file %s: %s\n", prog, path,
            strerror(errno));
    return -1;
  }
  enum { CAP = MIMD_SECRET_FILE_MAX };
  /* one byte more than allowed: a read that fills it is a file too big */
  uint8_t *buf = malloc(CAP + 1);
  size_t n = 0;
  int rc = -1;
  if (buf == NULL) {
    fprintf(stderr, "%s: out of memory\n", prog);
    goto out;
  }
  for (;;) {
    ssize_t r = read(fd, buf + n, CAP + 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      fprintf(stderr, "%s: cannot read %s: %s\n", prog, path, strerror(errno));
      goto out;
    }
    if (r == 0)
      break;
    n += (size_t)r;
    if (n > CAP) {
      fprintf(stderr, "%s: %s is larger than %d bytes: not a secret\n", prog,
              path, CAP);
      goto out;
    }
  }
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    n--;
  *out = buf;
  *len = n;
  buf = NULL;
  rc = 0;
out:
  if (buf != NULL) {
    explicit_bzero(buf, CAP + 1);
    free(buf);
  }
  close(fd);
  return rc;
}
