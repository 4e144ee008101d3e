#include "writer.h"

#include "lmetrics.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct writer {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct mim_backend *be;
  struct mim_write_batch *todo; /* submitted, not yet picked up */
  struct mim_write_batch *done; /* committed, not yet collected */
  bool out;                     /* loop thread only: submitted, uncollected */
  bool quit;
  int health;                   /* mim_backend_health() after the last commit */
  void (*wake)(void *user);
  void *user;
};

static void *run(void *arg) {
  struct writer *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (w->todo == NULL && !w->quit)
      pthread_cond_wait(&w->cv, &w->mu);
    /* quit only once idle: a submitted batch is always committed, since
     * its requests are owed an answer and may already be durable-pending */
    if (w->todo == NULL)
      break;
    struct mim_write_batch *b = w->todo;
    w->todo = NULL;
    pthread_mutex_unlock(&w->mu);
    /* the outcome (including a failed commit: full disk, I/O error) is
     * recorded in the batch; the logic turns it into replies */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    (void)mim_backend_commit(w->be, b);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* observed here, on the writer thread: the histograms are atomic */
    mimd_histogram_observe(lmetrics_commit_seconds,
                           (double)(t1.tv_sec - t0.tv_sec) +
                               (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    mimd_histogram_observe(lmetrics_commit_ops,
                           (double)mim_write_batch_count(b));
    /* asked here, after each commit, so that the loop learns it together
     * with the batch whose failure made the store unusable */
    int health = mim_backend_health(w->be);
    pthread_mutex_lock(&w->mu);
    w->health = health;
    w->done = b;
    pthread_mutex_unlock(&w->mu);
    w->wake(w->user);
    pthread_mutex_lock(&w->mu);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

int writer_start(struct writer **out, struct mim_backend *be,
                 void (*wake)(void *user), void *user) {
  struct writer *w = calloc(1, sizeof *w);
  if (w == NULL)
    return -ENOMEM;
  w->be = be;
  w->wake = wake;
  w->user = user;
  int rc = pthread_mutex_init(&w->mu, NULL);
  if (rc != 0)
    goto fail_free;
  rc = pthread_cond_init(&w->cv, NULL);
  if (rc != 0)
    goto fail_mutex;
  /* the thread inherits this mask: stop signals must reach the loop thread,
   * whose handler wakes the loop */
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  rc = pthread_create(&w->thread, NULL, run, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0)
    goto fail_cond;
  *out = w;
  return 0;

fail_cond:
  pthread_cond_destroy(&w->cv);
fail_mutex:
  pthread_mutex_destroy(&w->mu);
fail_free:
  free(w);
  return rc == ENOMEM ? -ENOMEM : -EAGAIN;
}

int writer_submit(struct writer *w, struct mim_write_batch *b) {
  if (w->out)
    return -EBUSY;
  pthread_mutex_lock(&w->mu);
  w->todo = b;
  w->out = true;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  return 0;
}

struct mim_write_batch *writer_collect(struct writer *w) {
  pthread_mutex_lock(&w->mu);
  struct mim_write_batch *b = w->done;
  w->done = NULL;
  pthread_mutex_unlock(&w->mu);
  if (b != NULL)
    w->out = false;
  return b;
}

bool writer_busy(const struct writer *w) { return w->out; }

int writer_health(struct writer *w) {
  pthread_mutex_lock(&w->mu);
  int h = w->health;
  pthread_mutex_unlock(&w->mu);
  return h;
}

void writer_stop(struct writer *w, struct mim_write_batch **left) {
  *left = NULL;
  if (w == NULL)
    return;
  pthread_mutex_lock(&w->mu);
  w->quit = true;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  *left = w->done;
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
  free(w);
}
