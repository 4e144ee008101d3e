/* The session ticket key of a logicd without a token secret (dev_auth):
 * a random key kept in the data directory, so that sessions granted before
 * a restart can be restored after it (docs/rpc.md). With a token secret
 * the logic derives the key from it and this file is not used. */
#ifndef LOGICD_TICKETKEY_H
#define LOGICD_TICKETKEY_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of the key file. */
#define TICKETKEY_LEN 32

/* Reads `dir`/session-ticket.key into `key` (TICKETKEY_LEN bytes), making
 * it (random, mode 0600, synced) if it does not exist. A file of another
 * size, not a regular file, or readable by group or others is refused: a
 * key others can read lets them mint sessions. Returns 0, or a negative
 * errno after logging why. */
int ticketkey_load(const char *dir, uint8_t *key);

#endif
