/* mim-bench: histogram, bitmap, clocks and /proc readers. */
#include "mim-bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ---- histogram ---- */

#define HIST_SUB (1u << HIST_SUB_BITS)          /* 128 */
#define HIST_MAX_VALUE ((UINT64_C(1) << 40) - 1)

/* bucket b holds values with (v >> b) in [128, 256) (b >= 1) or v < 256
 * (b = 0); index = b * 128 + (v >> b) */
static uint32_t hist_index(uint64_t v) {
  if (v > HIST_MAX_VALUE)
    v = HIST_MAX_VALUE;
  if (v < 2 * HIST_SUB)
    return (uint32_t)v;
  int e = 63 - __builtin_clzll(v);      /* >= 8 */
  int b = e - HIST_SUB_BITS;            /* >= 1 */
  return (uint32_t)b * HIST_SUB + (uint32_t)(v >> b);
}

/* the middle of the values that land in bin `i` */
static uint64_t hist_value(uint32_t i) {
  if (i < 2 * HIST_SUB)
    return i;
  uint32_t b = i / HIST_SUB - 1;
  uint64_t m = i - b * HIST_SUB;        /* in [128, 256) */
  uint64_t lo = m << b;
  return lo + ((UINT64_C(1) << b) >> 1);
}

void hist_reset(struct hist *h) {
  memset(h, 0, sizeof *h);
}

void hist_add(struct hist *h, uint64_t ns) {
  h->bins[hist_index(ns)]++;
  if (h->count == 0 || ns < h->min)
    h->min = ns;
  if (ns > h->max)
    h->max = ns;
  h->count++;
  h->sum_us += ns / 1000;
}

void hist_merge(struct hist *dst, const struct hist *src) {
  if (src->count == 0)
    return;
  for (uint32_t i = 0; i < HIST_BINS; i++)
    dst->bins[i] += src->bins[i];
  if (dst->count == 0 || src->min < dst->min)
    dst->min = src->min;
  if (src->max > dst->max)
    dst->max = src->max;
  dst->count += src->count;
  dst->sum_us += src->sum_us;
}

uint64_t hist_quantile(const struct hist *h, double q) {
  if (h->count == 0)
    return 0;
  if (q <= 0)
    return h->min;
  uint64_t want = (uint64_t)(q * (double)h->count + 0.999999);
  if (want < 1)
    want = 1;
  if (want >= h->count)
    return h->max;
  uint64_t seen = 0;
  for (uint32_t i = 0; i < HIST_BINS; i++) {
    seen += h->bins[i];
    if (seen >= want) {
      uint64_t v = hist_value(i);
      if (v > h->max)
        v = h->max;
      if (v < h->min)
        v = h->min;
      return v;
    }
  }
  return h->max;
}

/* ---- bitmap ---- */

bool bm_test(const struct bitmap *b, uint64_t i) {
  uint64_t word = i >> 6;
  return word < b->nwords && (b->w[word] >> (i & 63)) & 1;
}

int bm_set(struct bitmap *b, uint64_t i) {
  uint64_t word = i >> 6;
  if (i >= (UINT64_C(1) << 32))
    return -ERANGE;
  if (word >= b->nwords) {
    uint64_t n = b->nwords ? b->nwords : 16;
    while (n <= word)
      n *= 2;
    uint64_t *nw = realloc(b->w, n * sizeof *nw);
    if (nw == NULL)
      return -ENOMEM;
    memset(nw + b->nwords, 0, (n - b->nwords) * sizeof *nw);
    b->w = nw;
    b->nwords = (uint32_t)n;
  }
  b->w[word] |= UINT64_C(1) << (i & 63);
  return 0;
}

void bm_free(struct bitmap *b) {
  free(b->w);
  b->w = NULL;
  b->nwords = 0;
}

uint64_t bm_count_andnot(const struct bitmap *a, const struct bitmap *b,
                         uint64_t n) {
  uint64_t count = 0;
  uint64_t words = (n + 63) / 64;
  for (uint64_t i = 0; i < words && i < a->nwords; i++) {
    uint64_t x = a->w[i] & ~(i < b->nwords ? b->w[i] : 0);
    if (i == words - 1 && (n & 63))
      x &= (UINT64_C(1) << (n & 63)) - 1;
    count += (uint64_t)__builtin_popcountll(x);
  }
  return count;
}

/* ---- clocks and /proc ---- */

int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t cpu_self_ns(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return 0;
  return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) *
             1000000000u +
         ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) *
             1000u;
}

int64_t proc_cpu_ns(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* the command name may hold spaces and parentheses: fields resume after
   * the last ')' with field 3 (state); utime and stime are fields 14, 15 */
  char *p = strrchr(buf, ')');
  if (p == NULL)
    return -1;
  p++;
  unsigned long long ut = 0, st = 0;
  int field = 2;
  char *save = NULL;
  for (char *tok = strtok_r(p, " ", &save); tok != NULL;
       tok = strtok_r(NULL, " ", &save)) {
    field++;
    if (field == 14)
      ut = strtoull(tok, NULL, 10);
    else if (field == 15) {
      st = strtoull(tok, NULL, 10);
      break;
    }
  }
  if (field != 15)
    return -1;
  long hz = sysconf(_SC_CLK_TCK);
  if (hz <= 0)
    hz = 100;
  return (int64_t)((ut + st) * (1000000000ull / (unsigned long long)hz));
}

int64_t proc_rss_kb(int pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  int64_t kb = -1;
  /* bounded by the file: /proc/PID/status has a few dozen lines */
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kb = strtoll(line + 6, NULL, 10);
      break;
    }
  }
  fclose(f);
  return kb;
}
