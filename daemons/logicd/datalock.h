/* One logicd per data directory (docs/architecture.md §6: one logicd owns one LMDB
 * environment, its writer thread being the only writer). LMDB itself would
 * let two processes share the files; the logic's in-memory state (dedup of
 * in-flight sends, routes) would then be split in two. */
#ifndef LOGICD_DATALOCK_H
#define LOGICD_DATALOCK_H

/* Takes an exclusive lock on DIR/logicd.lock (created; it records our pid)
 * and returns its descriptor, held for the process's lifetime. Errors:
 * -EBUSY another process holds it (logged with its pid), or -errno. */
int datalock_acquire(const char *dir);

/* Releases the lock (closes `fd`; the file stays). fd < 0: no-op. */
void datalock_release(int fd);

#endif
