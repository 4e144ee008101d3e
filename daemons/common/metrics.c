/* The metrics registry and its Prometheus text exposition (metrics.h).
 *
 * Values live in C11 atomics so that the writer thread (commit histograms)
 * and the loop thread update them without locks. A double is kept as its
 * bit pattern in an atomic uint64 and changed with compare-and-swap: C11
 * has no atomic add for floating types that does not need libatomic. */
#include "metrics.h"

#include <mim/version.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct mimd_metric {
  struct mimd_metric *next;
  enum mimd_metric_type type;
  const char *name, *help, *label;
  const char *const *values; /* label values, n of them (label != NULL) */
  size_t n;                  /* series (counters, gauges) */
  _Atomic uint64_t *u;       /* counters: counts; gauges: double bits */
  /* histograms */
  double bounds[MIMD_BUCKETS_MAX];
  size_t n_bounds;
  _Atomic uint64_t buckets[MIMD_BUCKETS_MAX + 1]; /* not cumulative; last
                                                     is +Inf */
  _Atomic uint64_t sum_bits;
  /* collectors */
  mimd_collect_fn collect;
  void *user;
};

static struct mimd_metric *head, *tail;

/* ---- doubles in atomics ---- */

static uint64_t bits_of(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

static double double_of(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

static void atomic_double_add(_Atomic uint64_t *a, double v) {
  uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(
      a, &old, bits_of(double_of(old) + v), memory_order_relaxed,
      memory_order_relaxed))
    ;
}

/* ---- registration ---- */

static bool name_ok(const char *s) {
  if (s == NULL || s[0] == '\0')
    return false;
  for (const char *p = s; *p; p++) {
    char c = *p;
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && c != ':' && !(p != s && c >= '0' && c <= '9'))
      return false;
  }
  return true;
}

/* Label names may not contain ':' nor start with "__" (reserved). */
static bool label_ok(const char *s) {
  return name_ok(s) && strchr(s, ':') == NULL && strncmp(s, "__", 2) != 0;
}

static bool registered(const char *name) {
  for (struct mimd_metric *m = head; m; m = m->next)
    if (strcmp(m->name, name) == 0)
      return true;
  return false;
}

static struct mimd_metric *family_new(enum mimd_metric_type type,
                                      const char *name, const char *help) {
  if (!name_ok(name) || help == NULL || registered(name))
    return NULL;
  struct mimd_metric *m = calloc(1, sizeof *m);
  if (m == NULL)
    return NULL;
  m->type = type;
  m->name = name;
  m->help = help;
  return m;
}

static void family_add(struct mimd_metric *m) {
  if (tail)
    tail->next = m;
  else
    head = m;
  tail = m;
}

struct mimd_metric *mimd_metric_new(enum mimd_metric_type type,
                                    const char *name, const char *help,
                                    const char *label,
                                    const char *const *values,
                                    size_t n_values) {
  if (type != MIMD_COUNTER && type != MIMD_GAUGE)
    return NULL;
  if (label != NULL && (!label_ok(label) || values == NULL || n_values == 0))
    return NULL;
  struct mimd_metric *m = family_new(type, name, help);
  if (m == NULL)
    return NULL;
  m->label = label;
  m->values = label ? values : NULL;
  m->n = label ? n_values : 1;
  m->u = calloc(m->n, sizeof *m->u);
  if (m->u == NULL) {
    free(m);
    return NULL;
  }
  for (size_t i = 0; i < m->n; i++)
    atomic_init(&m->u[i], type == MIMD_GAUGE ? bits_of(0.0) : 0);
  family_add(m);
  return m;
}

struct mimd_metric *mimd_histogram_new(const char *name, const char *help,
                                       const double *bounds, size_t n) {
  if (bounds == NULL || n == 0 || n > MIMD_BUCKETS_MAX)
    return NULL;
  for (size_t i = 0; i < n; i++)
    if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
      return NULL;
  struct mimd_metric *m = family_new(MIMD_HISTOGRAM, name, help);
  if (m == NULL)
    return NULL;
  memcpy(m->bounds, bounds, n * sizeof *bounds);
  m->n_bounds = n;
  for (size_t i = 0; i <= n; i++)
    atomic_init(&m->buckets[i], 0);
  atomic_init(&m->sum_bits, bits_of(0.0));
  family_add(m);
  return m;
}

struct mimd_metric *mimd_collector_new(enum mimd_metric_type type,
                                       const char *name, const char *help,
                                       mimd_collect_fn fn, void *user) {
  if ((type != MIMD_COUNTER && type != MIMD_GAUGE) || fn == NULL)
    return NULL;
  struct mimd_metric *m = family_new(type, name, help);
  if (m == NULL)
    return NULL;
  m->collect = fn;
  m->user = user;
  family_add(m);
  return m;
}

void mimd_metrics_reset(void) {
  struct mimd_metric *m = head;
  while (m) {
    struct mimd_metric *next = m->next;
    free(m->u);
    free(m);
    m = next;
  }
  head = tail = NULL;
}

/* ---- updates ---- */

void mimd_counter_add(struct mimd_metric *m, size_t i, uint64_t v) {
  if (m == NULL || m->type != MIMD_COUNTER || m->u == NULL || i >= m->n)
    return;
  atomic_fetch_add_explicit(&m->u[i], v, memory_order_relaxed);
}

void mimd_gauge_set(struct mimd_metric *m, size_t i, double v) {
  if (m == NULL || m->type != MIMD_GAUGE || m->u == NULL || i >= m->n)
    return;
  atomic_store_explicit(&m->u[i], bits_of(v), memory_order_relaxed);
}

void mimd_gauge_add(struct mimd_metric *m, size_t i, double v) {
  if (m == NULL || m->type != MIMD_GAUGE || m->u == NULL || i >= m->n)
    return;
  atomic_double_add(&m->u[i], v);
}

void mimd_histogram_observe(struct mimd_metric *m, double v) {
  if (m == NULL || m->type != MIMD_HISTOGRAM || isnan(v))
    return;
  size_t b = 0;
  while (b < m->n_bounds && v > m->bounds[b])
    b++;
  atomic_double_add(&m->sum_bits, v);
  atomic_fetch_add_explicit(&m->buckets[b], 1, memory_order_relaxed);
}

double mimd_metric_value(const struct mimd_metric *m, size_t i) {
  if (m == NULL || m->u == NULL || i >= m->n)
    return 0;
  uint64_t u = atomic_load_explicit(&m->u[i], memory_order_relaxed);
  return m->type == MIMD_GAUGE ? double_of(u) : (double)u;
}

/* ---- text output ---- */

struct buf {
  char *p;
  size_t len, cap;
  bool failed;
};

static void reserve(struct buf *b, size_t more) {
  if (b->failed || b->len + more + 1 <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more + 1)
    cap *= 2;
  char *p = realloc(b->p, cap);
  if (p == NULL) {
    b->failed = true;
    return;
  }
  b->p = p;
  b->cap = cap;
}

static void put(struct buf *b, const char *s, size_t n) {
  reserve(b, n);
  if (b->failed)
    return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

/* HELP text escapes backslash and newline; label values also '"'. */
static void put_escaped(struct buf *b, const char *s, bool quote) {
  for (const char *p = s; *p; p++) {
    if (*p == '\\')
      puts_(b, "\\\\");
    else if (*p == '\n')
      puts_(b, "\\n");
    else if (quote && *p == '"')
      puts_(b, "\\\"");
    else
      put(b, p, 1);
  }
}

static void put_number(struct buf *b, double v) {
  char s[64];
  if (isnan(v))
    snprintf(s, sizeof s, "NaN");
  else if (isinf(v))
    snprintf(s, sizeof s, v > 0 ? "+Inf" : "-Inf");
  else if (v == floor(v) && fabs(v) < 9007199254740992.0)
    snprintf(s, sizeof s, "%.0f", v);
  else
    snprintf(s, sizeof s, "%.17g", v);
  puts_(b, s);
}

static void put_u64(struct buf *b, uint64_t v) {
  char s[32];
  snprintf(s, sizeof s, "%llu", (unsigned long long)v);
  puts_(b, s);
}

static const char *type_name(enum mimd_metric_type t) {
  return t == MIMD_COUNTER ? "counter" : t == MIMD_GAUGE ? "gauge"
                                                         : "histogram";
}

/* `name`{labels} where labels are (k, v) pairs, then an optional extra
 * pair (the histogram's le). */
static void put_series(struct buf *b, const char *name, const char *suffix,
                       const char *const *labels, size_t n_pairs,
                       const char *extra_k, const char *extra_v) {
  puts_(b, name);
  if (suffix)
    puts_(b, suffix);
  if (n_pairs == 0 && extra_k == NULL)
    return;
  put(b, "{", 1);
  for (size_t i = 0; i < n_pairs; i++) {
    if (i > 0)
      put(b, ",", 1);
    puts_(b, labels[2 * i]);
    puts_(b, "=\"");
    put_escaped(b, labels[2 * i + 1], true);
    put(b, "\"", 1);
  }
  if (extra_k) {
    if (n_pairs > 0)
      put(b, ",", 1);
    puts_(b, extra_k);
    puts_(b, "=\"");
    puts_(b, extra_v);
    put(b, "\"", 1);
  }
  put(b, "}", 1);
}

struct mimd_sink {
  struct buf *b;
  const struct mimd_metric *m;
};

void mimd_sink_sample(struct mimd_sink *s, const char *const *labels,
                      double value) {
  size_t n = 0;
  if (labels != NULL)
    while (n < MIMD_LABELS_MAX && labels[2 * n] != NULL) {
      if (!label_ok(labels[2 * n]) || labels[2 * n + 1] == NULL)
        return;
      n++;
    }
  put_series(s->b, s->m->name, NULL, labels, n, NULL, NULL);
  put(s->b, " ", 1);
  put_number(s->b, value);
  put(s->b, "\n", 1);
}

static void render_histogram(struct buf *b, const struct mimd_metric *m) {
  uint64_t cum = 0;
  char le[64];
  for (size_t i = 0; i <= m->n_bounds; i++) {
    cum += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
    if (i < m->n_bounds)
      snprintf(le, sizeof le, "%.15g", m->bounds[i]);
    else
      snprintf(le, sizeof le, "+Inf");
    put_series(b, m->name, "_bucket", NULL, 0, "le", le);
    put(b, " ", 1);
    put_u64(b, cum);
    put(b, "\n", 1);
  }
  /* the sum is read after the buckets: a concurrent observation may be
   * in one and not yet the other, which scrapes tolerate */
  put_series(b, m->name, "_sum", NULL, 0, NULL, NULL);
  put(b, " ", 1);
  put_number(b, double_of(atomic_load(&m->sum_bits)));
  put(b, "\n", 1);
  put_series(b, m->name, "_count", NULL, 0, NULL, NULL);
  put(b, " ", 1);
  put_u64(b, cum);
  put(b, "\n", 1);
}

char *mimd_metrics_render(size_t *len) {
  struct buf b = {0};
  reserve(&b, 0);
  for (const struct mimd_metric *m = head; m; m = m->next) {
    puts_(&b, "# HELP ");
    puts_(&b, m->name);
    put(&b, " ", 1);
    put_escaped(&b, m->help, false);
    puts_(&b, "\n# TYPE ");
    puts_(&b, m->name);
    put(&b, " ", 1);
    puts_(&b, type_name(m->type));
    put(&b, "\n", 1);
    if (m->type == MIMD_HISTOGRAM) {
      render_histogram(&b, m);
    } else if (m->collect) {
      struct mimd_sink s = {&b, m};
      m->collect(m->user, &s);
    } else {
      for (size_t i = 0; i < m->n; i++) {
        const char *pair[2] = {m->label, m->label ? m->values[i] : NULL};
        put_series(&b, m->name, NULL, pair, m->label ? 1 : 0, NULL, NULL);
        put(&b, " ", 1);
        if (m->type == MIMD_COUNTER)
          put_u64(&b, atomic_load_explicit(&m->u[i], memory_order_relaxed));
        else
          put_number(&b, mimd_metric_value(m, i));
        put(&b, "\n", 1);
      }
    }
  }
  if (b.failed) {
    free(b.p);
    return NULL;
  }
  if (len)
    *len = b.len;
  return b.p;
}

/* ---- what every daemon exposes ---- */

static const char *build_daemon;
static double start_time;

static void collect_build(void *user, struct mimd_sink *out) {
  (void)user;
  const char *l[] = {"version", MIM_VERSION_STRING, "daemon", build_daemon,
                     NULL};
  mimd_sink_sample(out, l, 1);
}

static void collect_start(void *user, struct mimd_sink *out) {
  (void)user;
  mimd_sink_sample(out, NULL, start_time);
}

int mimd_metrics_register_process(const char *daemon) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
  build_daemon = daemon;
  if (registered("mim_build_info"))
    return -EEXIST;
  if (mimd_collector_new(MIMD_GAUGE, "mim_build_info",
                         "Always 1; the labels name the libmim version and "
                         "the daemon.",
                         collect_build, NULL) == NULL ||
      mimd_collector_new(MIMD_GAUGE, "process_start_time_seconds",
                         "Start time of the process since the Unix epoch in "
                         "seconds.",
                         collect_start, NULL) == NULL)
    return -ENOMEM;
  return 0;
}
