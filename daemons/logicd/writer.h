/* The LMDB writer thread: commits one write batch at a time, off the loop.
 *
 * The loop thread hands over a batch (writer_submit), keeps serving reads and
 * gathering the next batch's writes while it commits (group commit), and is
 * woken through `wake` when it is done; it then collects the batch
 * (writer_collect) and returns it to the logic. A mutex and a condition
 * variable guard the two slots; nothing else is shared. */
#ifndef LOGICD_WRITER_H
#define LOGICD_WRITER_H

#include <mim/store.h>

struct writer;

/* Starts the thread. `be` is borrowed and must outlive the writer. `wake` is
 * called on the writer thread after each commit (it must be thread-safe:
 * lws_cancel_service). The thread blocks SIGINT/SIGTERM so that signal
 * handlers run on the loop thread. Errors: -ENOMEM, -EAGAIN (thread). */
int writer_start(struct writer **out, struct mim_backend *be,
                 void (*wake)(void *user), void *user);

/* Hands `b` to the thread (ownership passes until writer_collect returns
 * it). Errors: -EBUSY a batch is already out (the logic never allows it). */
int writer_submit(struct writer *w, struct mim_write_batch *b);

/* The committed batch, or NULL if the one out is still committing (or none
 * is out). Ownership passes back to the caller. */
struct mim_write_batch *writer_collect(struct writer *w);

/* Whether a batch was submitted and not collected yet. */
bool writer_busy(const struct writer *w);

/* mim_backend_health() of the store as of the last commit: 0, or the
 * error after which it can never commit again in this process. */
int writer_health(struct writer *w);

/* Stops and joins the thread after the batch in flight (if any) is
 * committed; a batch committed but not collected is returned in `*left`
 * (NULL if none) for the caller to hand back to the logic. NULL w: no-op. */
void writer_stop(struct writer *w, struct mim_write_batch **left);

#endif
