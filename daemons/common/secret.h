/* Secrets kept in files (token_secret_file, admin_secret_file): one reader
 * for every daemon and mimctl, so they agree on what a file holds. */
#ifndef MIMD_SECRET_H
#define MIMD_SECRET_H

#include <stddef.h>
#include <stdint.h>

/* Largest secret file read, in bytes: a secret, not a document. */
#define MIMD_SECRET_FILE_MAX 4096

/* Reads the secret in `path`: at most MIMD_SECRET_FILE_MAX bytes, trailing
 * newlines (\n, \r) stripped, since editors and `echo` add one that is not
 * part of the secret. On success `*out` is malloc'd and owned by the caller
 * (wipe it with explicit_bzero before free), `*len` bytes long, with room
 * for one more byte (a NUL the caller may store at (*out)[*len]).
 *
 * Errors (returns -1, `*out` untouched, the reason printed to stderr after
 * "`prog`: "): the file cannot be opened or read, it is larger than
 * MIMD_SECRET_FILE_MAX, or out of memory. */
int mimd_read_secret_file(const char *prog, const char *path, uint8_t **out,
                          size_t *len);

#endif
