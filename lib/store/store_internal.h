/* Private to the store module (lib/store/batch.c, lib/store/lmdb/) and its
 * white-box test. Never installed; no LMDB types here either, so the test
 * can include it without LMDB headers. */
#ifndef MIM_STORE_LMDB_H
#define MIM_STORE_LMDB_H

#include <mim/store.h>
#include <mim/lmdb.h>
#include <mim/backend.h>

/* ---- arena: bump allocation in chunks, freed all at once ----
 *
 * Batches and message lists own many small strings whose lifetimes end
 * together; an arena makes that one free (and, with reset, no free at all
 * when a batch is reused). Chunks never move, so pointers stay valid until
 * reset or finish. */

struct mim__store_arena_chunk;

struct mim__store_arena {
  struct mim__store_arena_chunk *head; /* first chunk, kept across resets */
  struct mim__store_arena_chunk *cur;  /* the chunk being filled */
};

void mim__store_arena_init(struct mim__store_arena *a);

/* Frees every chunk and re-initialises `a`. */
void mim__store_arena_finish(struct mim__store_arena *a);

/* Forgets every allocation but keeps the chunks for reuse. */
void mim__store_arena_reset(struct mim__store_arena *a);

/* `n` bytes aligned for any type; NULL when out of memory. n == 0 gives a
 * valid unique pointer. */
void *mim__store_arena_alloc(struct mim__store_arena *a, size_t n);

/* A copy of `n` bytes of `p` (p may be NULL when n is 0), never NULL unless
 * out of memory; byte-aligned. */
void *mim__store_arena_memdup(struct mim__store_arena *a, const void *p,
                              size_t n);

/* A copy of `s` ("" when NULL); NULL only when out of memory. */
char *mim__store_arena_strdup(struct mim__store_arena *a, const char *s);

/* ---- message lists ---- */

/* The strings of a message as (pointer, length) slices that need not be
 * NUL-terminated, e.g. straight out of an LMDB value. */
struct mim__message_strings {
  const char *sender, *sender_device, *peer, *group, *client_msg_id;
  size_t sender_len, sender_device_len, peer_len, group_len,
      client_msg_id_len;
};

/* mim_message_list_push() for a message whose strings are slices: `m`
 * gives everything else (its string members are ignored). */
int mim__message_list_push_slices(struct mim_message_list *l,
                                  const struct mim_message *m,
                                  const struct mim__message_strings *str);

/* Appends the stored MessageRecord `rec` (`len` bytes) to `out` as message
 * `msg_id` at `inbox_seq`: how reads turn records into messages, without
 * protobuf-c. Errors: -MIM_ERR_STORE malformed record or a text in it not
 * valid UTF-8, -ENOMEM. */
int mim__store_record_push(const uint8_t *rec, size_t len, uint64_t msg_id,
                           uint64_t inbox_seq, struct mim_message_list *out);


/* ---- LMDB backend test hooks ---- */

/* Makes the LMDB backend of `be` fail its next commit with `err` (negative):
 * at its `nth` write (put or delete, 1-based, counted from the start of that
 * commit) or, when `nth` is 0, in place of mdb_txn_commit() after every op
 * was applied. One shot. Only for tests: the commit then behaves as if LMDB
 * returned the error, which is how we check that a failed transaction
 * leaves nothing behind. */
void mim__store_lmdb_inject_failure(struct mim_backend *be, unsigned long nth,
                                    int err);

/* Makes every write transaction of the LMDB backend of `be` fail with
 * MDB_TXN_FULL at its write number `max` + 1 (put or delete), as LMDB does
 * once a transaction dirties more pages than it can track; 0 turns it off.
 * Only for tests: LMDB 0.9 spills dirty pages to disk before it would
 * refuse, so a real MDB_TXN_FULL needs a batch far too big for a unit
 * test; this models it at a small scale. */
void mim__store_lmdb_txn_writes_max(struct mim_backend *be,
                                    unsigned long max);

/* The current map size of the LMDB backend of `be`, in bytes. */
size_t mim__store_lmdb_map_size(const struct mim_backend *be);

/* ---- group notices (notice.c): the JSON both notice kinds share ---- */

/* A bounded writer into buf[cap]: `full` once something did not fit (one
 * byte is always kept for the NUL). */
struct mim__notice_out {
  char *buf;
  size_t cap, len;
  bool full;
};

void mim__notice_put(struct mim__notice_out *o, const char *s, size_t n);
void mim__notice_put_lit(struct mim__notice_out *o, const char *s);
/* `s` as a JSON string (valid UTF-8; quotes, backslashes and control
 * characters escaped). */
void mim__notice_put_str(struct mim__notice_out *o, const char *s);
/* The keys every notice starts with, up to and including "count" (at most
 * MIM_GROUP_NOTICE_NAMES_MAX members named); the caller adds its own keys,
 * then calls mim__notice_end(). */
void mim__notice_head(struct mim__notice_out *o, const char *group,
                      const char *action, const char *actor,
                      const char *const *members, size_t n);
/* Closes the object and NUL-terminates: 0 with *len, or -ENOBUFS. */
int mim__notice_end(struct mim__notice_out *o, size_t *len);

#endif /* MIM_STORE_LMDB_H */
