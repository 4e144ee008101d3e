/* A standalone main() for libFuzzer-style targets, so that the fuzz suite
 * runs with gcc and no fuzzing engine: deterministic random inputs and
 * mutations of the target's seeds, for a bounded number of inputs.
 *
 *   fuzz-x [--iterations N] [FILE...]
 *
 * With files, runs each file's bytes once (to replay a crash) and nothing
 * else. A crash is not caught: ASan, UBSan or abort() ends the process with
 * a failure status, which fails the test. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Optional, defined by targets that have seeds: writes seed `i` into `buf`
 * (`cap` bytes) and returns its size, or 0 when there are no more. */
__attribute__((weak)) size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap);

#define MAX_INPUT 2048
#define MAX_SEEDS 256
#define TIME_LIMIT_S 60

struct seed {
  uint8_t *data;
  size_t len;
};

/* xorshift64: fixed seed, so every run (and every failure) is repeatable. */
static uint64_t rng_state = UINT64_C(0x9e3779b97f4a7c15);

static uint64_t rng(void) {
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  rng_state = x;
  return x;
}

/* Uniform enough in 0..n-1 for fuzzing; n > 0. */
static size_t below(size_t n) { return (size_t)(rng() % n); }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Values that tend to hit boundaries in length and varint fields. */
static const uint8_t interesting[] = {0x00, 0x01, 0x02, 0x7f, 0x80,
                                      0x81, 0xfe, 0xff, 0x0a, 0x12};

/* Applies one random mutation to buf[0..*len), keeping *len <= MAX_INPUT. */
static void mutate(uint8_t *buf, size_t *len) {
  size_t n = *len;

  switch (below(6)) {
  case 0: /* flip a bit */
    if (n > 0)
      buf[below(n)] ^= (uint8_t)(1u << below(8));
    break;
  case 1: /* set a byte to a boundary value */
    if (n > 0)
      buf[below(n)] = interesting[below(sizeof(interesting))];
    break;
  case 2: /* set a byte at random */
    if (n > 0)
      buf[below(n)] = (uint8_t)rng();
    break;
  case 3: /* truncate */
    if (n > 0)
      n = below(n);
    break;
  case 4: { /* insert random bytes */
    size_t at = below(n + 1), k = 1 + below(8);
    if (n + k > MAX_INPUT)
      break;
    memmove(buf + at + k, buf + at, n - at);
    for (size_t i = 0; i < k; i++)
      buf[at + i] = (uint8_t)rng();
    n += k;
    break;
  }
  case 5: { /* duplicate a chunk: repeated fields, back-to-back frames */
    size_t from, k, at;
    if (n == 0)
      break;
    from = below(n);
    k = 1 + below(n - from);
    at = below(n + 1);
    if (n + k > MAX_INPUT)
      break;
    memmove(buf + at + k, buf + at, n - at);
    /* The chunk may have moved if it sat at or after `at`. */
    memmove(buf + at, buf + (from >= at ? from + k : from), k);
    n += k;
    break;
  }
  }
  *len = n;
}

/* Runs one input from an exactly-sized heap copy, so that ASan sees any
 * read past its end. */
static void run(const uint8_t *data, size_t len) {
  uint8_t *copy = malloc(len > 0 ? len : 1);

  if (copy == NULL) {
    fprintf(stderr, "fuzz: out of memory\n");
    exit(2);
  }
  if (len > 0)
    memcpy(copy, data, len);
  LLVMFuzzerTestOneInput(copy, len);
  free(copy);
}

static int replay(int argc, char **argv, int first) {
  static uint8_t buf[1 << 20];
  int runs = 0;

  for (int i = first; i < argc; i++) {
    FILE *f = fopen(argv[i], "rb");
    size_t len;

    if (f == NULL) {
      perror(argv[i]);
      return 1;
    }
    len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    run(buf, len);
    runs++;
  }
  printf("fuzz: %d inputs, 0 crashes\n", runs);
  return 0;
}

int main(int argc, char **argv) {
  static struct seed seeds[MAX_SEEDS];
  static uint8_t buf[MAX_INPUT];
  size_t n_seeds = 0, iterations = 20000, done = 0;
  double deadline;
  int first_file = argc;

  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
      iterations = strtoull(argv[++i], NULL, 10);
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "usage: %s [--iterations N] [FILE...]\n", argv[0]);
      return 2;
    } else {
      first_file = i;
      break;
    }
  }
  if (first_file < argc)
    return replay(argc, argv, first_file);

  if (fuzz_seed != NULL) {
    for (size_t i = 0; n_seeds < MAX_SEEDS; i++) {
      size_t len = fuzz_seed(i, buf, sizeof(buf));
      if (len == 0)
        break;
      if (len > sizeof(buf))
        len = sizeof(buf);
      seeds[n_seeds].data = malloc(len);
      if (seeds[n_seeds].data == NULL)
        return 2;
      memcpy(seeds[n_seeds].data, buf, len);
      seeds[n_seeds].len = len;
      n_seeds++;
    }
  }

  deadline = now_s() + TIME_LIMIT_S;
  /* The seeds as they are, first: they must pass before mutants mean much. */
  for (size_t i = 0; i < n_seeds && done < iterations; i++, done++)
    run(seeds[i].data, seeds[i].len);
  while (done < iterations) {
    size_t len;

    if (n_seeds == 0 || below(4) == 0) {
      /* Pure noise: random length, random bytes. */
      len = below(MAX_INPUT + 1);
      for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)rng();
    } else {
      const struct seed *s = &seeds[below(n_seeds)];
      size_t k = 1 + below(4);
      len = s->len;
      memcpy(buf, s->data, len);
      for (size_t i = 0; i < k; i++)
        mutate(buf, &len);
    }
    run(buf, len);
    done++;
    /* Bounded in time too, so a slow sanitizer build cannot stall CI. */
    if (done % 256 == 0 && now_s() > deadline)
      break;
  }
  for (size_t i = 0; i < n_seeds; i++)
    free(seeds[i].data);
  printf("fuzz: %zu inputs, 0 crashes\n", done);
  return 0;
}
