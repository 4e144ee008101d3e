/* bench-store: durable c2c messages per second through the group-commit API
 * of the LMDB store, for batch sizes 1, 64 and 512.
 *
 * Each message is what a c2c send stores: the message record, an entry in
 * the receiver's and the sender's inbox, a conversation entry and a dedup
 * entry (every message has a unique client_msg_id). Commits are synced
 * (no_sync false): these are durable messages, as the server acknowledges
 * them. Every run starts from an empty store.
 *
 *   bench-store [--messages N] [--runs R] [--users U] [--content BYTES]
 *               [--batch B] [DIR]
 *
 * --messages caps every run (default 2,000 at batch 1, 100,000 otherwise);
 * --batch runs one batch size instead of 1, 64 and 512.
 *
 * DIR (default: a new mkdtemp directory under /tmp) receives one store per
 * run, removed after the run. Uses only the public API. */
#include <mim/store.h>
#include <mim/lmdb.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 50
#define TIME_LIMIT_S 10.0

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void remove_store(const char *dir) {
  char path[4096 + 16];
  snprintf(path, sizeof path, "%s/data.mdb", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/lock.mdb", dir);
  unlink(path);
  rmdir(dir);
}

struct run_result {
  size_t messages;
  size_t commits;
  double seconds;
};

/* One run: `max_msgs` messages (or TIME_LIMIT_S) in batches of `batch`. */
static int run_once(const char *dir, size_t batch, size_t max_msgs,
                    size_t users, size_t content_len, unsigned run,
                    struct run_result *res) {
  struct mim_lmdb_config cfg;
  mim_lmdb_config_init(&cfg);
  cfg.path = dir;
  cfg.no_sync = false;
  struct mim_backend *be;
  int rc = mim_lmdb_open(&be, &cfg);
  if (rc != 0) {
    fprintf(stderr, "bench-store: open %s: %s\n", dir, mim_strerror(rc));
    return rc;
  }
  struct mim_write_batch *b;
  if ((rc = mim_write_batch_create(&b)) != 0) {
    mim_backend_destroy(be);
    return rc;
  }
  char (*names)[32] = calloc(users, sizeof(*names));
  uint8_t *content = malloc(content_len ? content_len : 1);
  if (names == NULL || content == NULL) {
    rc = -ENOMEM;
    goto out;
  }
  for (size_t u = 0; u < users; u++)
    snprintf(names[u], sizeof names[u], "user%zu", u);
  memset(content, 'm', content_len);

  /* A fixed pseudo-random sequence of (sender, receiver) pairs. */
  uint64_t x = 88172645463325252ull + run;
  size_t sent = 0, commits = 0;
  double t0 = now_s(), elapsed = 0;
  while (sent < max_msgs && elapsed < TIME_LIMIT_S) {
    mim_write_batch_reset(b);
    for (size_t i = 0; i < batch && sent + i < max_msgs; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      size_t from = (size_t)(x % users);
      size_t to = (from + 1 + (size_t)((x >> 32) % (users - 1))) % users;
      char cmid[40];
      snprintf(cmid, sizeof cmid, "r%u-%zu", run, sent + i);
      struct mim_message_in m = {
          .type = 0,
          .conv_kind = 1, /* MIM_CONV_C2C */
          .sender = names[from],
          .sender_device = "phone",
          .peer = names[to],
          .client_msg_id = cmid,
          .content = content,
          .content_len = content_len,
          .server_time = 1700000000000 + (int64_t)(sent + i),
      };
      if ((rc = mim_write_batch_add_message(b, &m, NULL)) != 0)
        goto out;
    }
    size_t n = mim_write_batch_count(b);
    if ((rc = mim_backend_commit(be, b)) != 0) {
      fprintf(stderr, "bench-store: commit: %s\n", mim_strerror(rc));
      goto out;
    }
    sent += n;
    commits++;
    elapsed = now_s() - t0;
  }
  res->messages = sent;
  res->commits = commits;
  res->seconds = elapsed;
out:
  free(content);
  free(names);
  mim_write_batch_destroy(b);
  mim_backend_destroy(be);
  return rc;
}

static void usage(void) {
  fprintf(stderr, "usage: bench-store [--messages N] [--runs R] [--users U] "
                  "[--content BYTES] [--batch B] [DIR]\n");
}

int main(int argc, char **argv) {
  size_t messages = 0; /* 0: per batch size defaults */
  unsigned runs = 3;
  size_t users = 1000, content_len = 64, only_batch = 0;
  const char *dir = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc)
      messages = strtoull(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
      runs = (unsigned)strtoul(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--users") == 0 && i + 1 < argc)
      users = strtoull(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
      only_batch = strtoull(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--content") == 0 && i + 1 < argc)
      content_len = strtoull(argv[++i], NULL, 10);
    else if (argv[i][0] == '-') {
      usage();
      return 2;
    } else {
      dir = argv[i];
    }
  }
  if (runs == 0 || runs > MAX_RUNS || users < 2) {
    usage();
    return 2;
  }
  char tmpl[] = "/tmp/mim-bench-XXXXXX";
  bool own_dir = dir == NULL;
  if (own_dir && (dir = mkdtemp(tmpl)) == NULL) {
    perror("bench-store: mkdtemp");
    return 1;
  }
  if (!own_dir && mkdir(dir, 0700) != 0 && errno != EEXIST) {
    perror("bench-store: mkdir");
    return 1;
  }

  printf("bench-store: durable c2c messages (synced commits), %zu users, "
         "%zu-byte content, unique client_msg_ids\n", users, content_len);
  printf("store: %s, %u runs per batch size, each run <= %.0f s\n\n", dir,
         runs, TIME_LIMIT_S);
  printf("%-6s %10s %14s %24s %12s\n", "batch", "msgs/run", "msgs/s median",
         "msgs/s min-max", "commits/s");

  static const size_t all_batches[] = {1, 64, 512};
  const size_t *batches = only_batch ? &only_batch : all_batches;
  size_t n_batches = only_batch ? 1 : sizeof all_batches / sizeof all_batches[0];
  int status = 0;
  for (size_t bi = 0; bi < n_batches; bi++) {
    size_t batch = batches[bi];
    size_t max_msgs = messages ? messages : batch == 1 ? 2000 : 100000;
    double rate[MAX_RUNS], crate[MAX_RUNS];
    size_t msgs = 0;
    for (unsigned r = 0; r < runs; r++) {
      char sub[4096];
      snprintf(sub, sizeof sub, "%s/b%zu-r%u", dir, batch, r);
      struct run_result res = {0};
      int rc = run_once(sub, batch, max_msgs, users, content_len, r, &res);
      remove_store(sub);
      if (rc != 0) {
        status = 1;
        goto done;
      }
      rate[r] = (double)res.messages / res.seconds;
      crate[r] = (double)res.commits / res.seconds;
      msgs = res.messages;
    }
    qsort(rate, runs, sizeof rate[0], cmp_double);
    qsort(crate, runs, sizeof crate[0], cmp_double);
    char range[64];
    snprintf(range, sizeof range, "%.0f-%.0f", rate[0], rate[runs - 1]);
    printf("%-6zu %10zu %14.0f %24s %12.0f\n", batch, msgs, rate[runs / 2],
           range, crate[runs / 2]);
    fflush(stdout);
  }
done:
  if (own_dir)
    rmdir(dir);
  return status;
}
