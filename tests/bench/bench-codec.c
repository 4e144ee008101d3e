/* bench-codec: nanoseconds per message to encode and decode a pull reply
 * (the biggest packet the server builds, and the one an offline sync is
 * made of), with libmim's direct wire codec and, for comparison in the
 * same run, with the protobuf-c path it replaced (the reference the tests
 * compare it with).
 *
 *   bench-codec [--items N] [--reps R] [--runs K]
 *
 * Prints the median of K runs (default 5) of R encodes/decodes (default
 * 2,000) of one reply of N messages (default 500, the pull page limit). */
#include <mim/codec.h>

#include "codec/codec_internal.h"
#include "reference.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_RUNS 50

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[n / 2];
}

static long arg_long(int argc, char **argv, const char *name, long def) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0)
      return strtol(argv[i + 1], NULL, 10);
  return def;
}

int main(int argc, char **argv) {
  long items = arg_long(argc, argv, "--items", 500);
  long reps = arg_long(argc, argv, "--reps", 2000);
  long runs = arg_long(argc, argv, "--runs", 5);
  if (items < 1 || items > 100000 || reps < 1 || runs < 1 || runs > MAX_RUNS) {
    fprintf(stderr, "usage: bench-codec [--items 1..100000] [--reps R] "
                    "[--runs 1..%d]\n", MAX_RUNS);
    return 2;
  }
  /* messages shaped like mim-bench's: ids, a cmid and ~40 bytes of text */
  struct mim_pull_item *it = calloc((size_t)items, sizeof *it);
  char (*content)[64] = calloc((size_t)items, sizeof *content);
  size_t cap = (size_t)items * 256 + 64;
  uint8_t *buf = malloc(cap);
  if (it == NULL || content == NULL || buf == NULL)
    return 1;
  for (long i = 0; i < items; i++) {
    snprintf(content[i], sizeof content[i], "message %ld of the benchmark", i);
    it[i] = (struct mim_pull_item){
        .from = "mbtp6shahro-u12", .to = "mbtp6shahro-u13",
        .content = content[i], .client_msg_id = "c-123456",
        .msg_id = (uint64_t)(1000 + i), .send_time = 1700000000000 + i,
        .inbox_seq = (uint64_t)(i + 1), .conv_seq = (uint64_t)(i + 1),
        .type = 1};
  }
  struct mim_packet p, q;
  mim_packet_init(&p);
  mim_packet_init(&q);
  p.cmd = MIM_CMD_PULL_RSP;
  p.items = it;
  p.n_items = (size_t)items;
  p.seq = 5;
  p.ts = 1700000000000;
  p.has_more = true;
  p.last_inbox_seq = 9999;
  size_t len;
  if (mim_packet_encode(&p, buf, cap, &len) != 0) {
    fprintf(stderr, "bench-codec: encode failed\n");
    return 1;
  }
  const char *names[4] = {"encode, direct", "encode, protobuf-c",
                          "decode, direct", "decode, protobuf-c"};
  double ns[4][MAX_RUNS];
  for (long r = 0; r < runs; r++) {
    for (int k = 0; k < 4; k++) {
      double t0 = now_s();
      for (long i = 0; i < reps; i++) {
        size_t n;
        int rc;
        switch (k) {
        case 0: rc = mim_packet_encode(&p, buf, cap, &n); break;
        case 1:
          rc = mim__codec_encode_reference(false, &p, buf + MIM_HEADER_SIZE,
                                           cap - MIM_HEADER_SIZE, &n);
          break;
        case 2:
          rc = mim_packet_decode(&q, MIM_CMD_PULL_RSP, buf + MIM_HEADER_SIZE,
                                 len - MIM_HEADER_SIZE);
          break;
        default:
          rc = mim__codec_decode_reference(false, MIM_CMD_PULL_RSP,
                                           buf + MIM_HEADER_SIZE,
                                           len - MIM_HEADER_SIZE, &q);
          break;
        }
        if (rc != 0 || (k >= 2 && q.n_items != (size_t)items)) {
          fprintf(stderr, "bench-codec: %s failed\n", names[k]);
          return 1;
        }
      }
      ns[k][r] = (now_s() - t0) * 1e9 / (double)reps / (double)items;
    }
  }
  printf("bench-codec: a pull reply of %ld messages (%zu bytes), %ld x %ld "
         "reps\n", items, len, runs, reps);
  for (int k = 0; k < 4; k++)
    printf("  %-20s %7.0f ns/message (median)\n", names[k],
           median(ns[k], (int)runs));
  mim_packet_finish(&q);
  free(buf);
  free(content);
  free(it);
  return 0;
}
