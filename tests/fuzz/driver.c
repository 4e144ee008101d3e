/* A standalone main() for libFuzzer-style targets, so that the fuzz suite
 * runs with gcc and no fuzzing engine: deterministic random inputs and
 * mutations of the target's seeds, for a bounded number of inputs.
 *
 *   fuzz-x [--iterations N] [--seconds S] [--regress DIR] [--corpus DIR]
 *          [--dump-seeds DIR] [FILE...]
 *
 * --regress DIR   first replays every file of DIR (inputs that once crashed
 *                 a target: tests/fuzz/regress/<target>/); a missing DIR
 *                 holds none
 * --corpus DIR    adds the files of DIR to the seeds that get mutated
 *                 (tests/fuzz/corpus/<target>/, shared with libFuzzer)
 * --seconds S     stops after S seconds even if inputs remain (default 60)
 * --dump-seeds DIR  writes the target's built-in seeds to DIR/seed-NNN and
 *                 exits: how the corpus in the repository is made
 *
 * With files, runs each file's bytes once (to replay a crash) and nothing
 * else. A crash is not caught: ASan, UBSan or abort() ends the process with
 * a failure status, which fails the test. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Optional, defined by targets that have seeds: writes seed `i` into `buf`
 * (`cap` bytes) and returns its size, or 0 when there are no more. */
__attribute__((weak)) size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap);

#define INPUT_MAX 2048
#define MAX_SEEDS 256

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

/* Applies one random mutation to buf[0..*len), keeping *len <= INPUT_MAX. */
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
    if (n + k > INPUT_MAX)
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
    if (n + k > INPUT_MAX)
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

/* Reads at most `cap` bytes of `path` into `buf`; returns the size or -1. */
static long read_file(const char *path, uint8_t *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  size_t len;

  if (f == NULL) {
    perror(path);
    return -1;
  }
  len = fread(buf, 1, cap, f);
  fclose(f);
  return (long)len;
}

static int replay(int argc, char **argv, int first) {
  static uint8_t buf[1 << 20];
  int runs = 0;

  for (int i = first; i < argc; i++) {
    long len = read_file(argv[i], buf, sizeof(buf));
    if (len < 0)
      return 1;
    run(buf, (size_t)len);
    runs++;
  }
  printf("fuzz: %d inputs, 0 crashes\n", runs);
  return 0;
}

/* Calls fn(path) for each regular file of `dir`, in name order so runs are
 * repeatable. A directory that does not exist has no files; any other
 * error is fatal. Returns the number of files, or -1. */
static int each_file(const char *dir, int (*fn)(const char *path)) {
  struct dirent **names;
  int n = scandir(dir, &names, NULL, alphasort), done = 0, rc = 0;

  if (n < 0) {
    if (errno == ENOENT)
      return 0;
    perror(dir);
    return -1;
  }
  for (int i = 0; i < n; i++) {
    char path[4096];
    if (names[i]->d_name[0] != '.' && rc == 0) {
      snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
      rc = fn(path);
      done++;
    }
    free(names[i]);
  }
  free(names);
  return rc < 0 ? -1 : done;
}

static int replay_one(const char *path) {
  static uint8_t buf[1 << 20];
  long len = read_file(path, buf, sizeof(buf));

  if (len < 0)
    return -1;
  run(buf, (size_t)len);
  return 0;
}

static struct seed seeds[MAX_SEEDS];
static size_t n_seeds;

static int add_seed(const uint8_t *data, size_t len) {
  if (n_seeds >= MAX_SEEDS)
    return 0;
  if (len > INPUT_MAX)
    len = INPUT_MAX;
  seeds[n_seeds].data = malloc(len > 0 ? len : 1);
  if (seeds[n_seeds].data == NULL)
    return -1;
  if (len > 0)
    memcpy(seeds[n_seeds].data, data, len);
  seeds[n_seeds].len = len;
  n_seeds++;
  return 0;
}

static int add_seed_file(const char *path) {
  static uint8_t buf[INPUT_MAX];
  long len = read_file(path, buf, sizeof(buf));

  return len < 0 ? -1 : add_seed(buf, (size_t)len);
}

static int dump_seeds(const char *dir) {
  static uint8_t buf[INPUT_MAX];
  size_t i;

  if (fuzz_seed == NULL)
    return 0;
  for (i = 0;; i++) {
    char path[4096];
    size_t len = fuzz_seed(i, buf, sizeof(buf));
    FILE *f;
    if (len == 0)
      break;
    snprintf(path, sizeof(path), "%s/seed-%03zu", dir, i);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
      perror(path);
      return 1;
    }
  }
  printf("fuzz: %zu seeds written to %s\n", i, dir);
  return 0;
}

int main(int argc, char **argv) {
  static uint8_t buf[INPUT_MAX];
  size_t iterations = 20000, done = 0;
  double deadline, seconds = 60;
  const char *regress = NULL, *corpus = NULL;
  int first_file = argc, replayed = 0;

  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
      iterations = strtoull(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      seconds = strtod(argv[++i], NULL);
    } else if (strcmp(argv[i], "--regress") == 0 && i + 1 < argc) {
      regress = argv[++i];
    } else if (strcmp(argv[i], "--corpus") == 0 && i + 1 < argc) {
      corpus = argv[++i];
    } else if (strcmp(argv[i], "--dump-seeds") == 0 && i + 1 < argc) {
      return dump_seeds(argv[i + 1]);
    } else if (argv[i][0] == '-') {
      fprintf(stderr,
              "usage: %s [--iterations N] [--seconds S] [--regress DIR] "
              "[--corpus DIR] [--dump-seeds DIR] [FILE...]\n",
              argv[0]);
      return 2;
    } else {
      first_file = i;
      break;
    }
  }
  if (first_file < argc)
    return replay(argc, argv, first_file);

  /* Every input that ever crashed this target, before anything random. */
  if (regress != NULL && (replayed = each_file(regress, replay_one)) < 0)
    return 2;

  if (fuzz_seed != NULL) {
    for (size_t i = 0; n_seeds < MAX_SEEDS; i++) {
      size_t len = fuzz_seed(i, buf, sizeof(buf));
      if (len == 0)
        break;
      if (add_seed(buf, len) < 0)
        return 2;
    }
  }
  if (corpus != NULL && each_file(corpus, add_seed_file) < 0)
    return 2;

  deadline = now_s() + seconds;
  /* The seeds as they are, first: they must pass before mutants mean much. */
  for (size_t i = 0; i < n_seeds && done < iterations; i++, done++)
    run(seeds[i].data, seeds[i].len);
  while (done < iterations) {
    size_t len;

    if (n_seeds == 0 || below(4) == 0) {
      /* Pure noise: random length, random bytes. */
      len = below(INPUT_MAX + 1);
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
  printf("fuzz: %d regression inputs, %zu seeds, %zu inputs, 0 crashes\n",
         replayed, n_seeds, done);
  return 0;
}
