/* A small Prometheus metrics registry for the daemons, and its text
 * exposition (format 0.0.4: `# HELP`, `# TYPE`, one sample a line).
 *
 * The library (libmim) knows nothing of Prometheus: it exposes plain
 * counters (mim_logic_stats(), mim_lmdb_usage()); each daemon registers its
 * metrics here at start-up and turns those numbers into samples, either by
 * updating a metric as things happen or through a collector called at
 * scrape time.
 *
 * Label sets are bounded by construction: a metric's series are fixed when
 * it is registered (one label, its values from a fixed table such as the
 * command names or the error codes), and collectors emit labels from fixed
 * tables too. Nothing a client chooses ever becomes a label value.
 *
 * Threads: registration (mimd_metric_*_new) and mimd_metrics_reset() on one
 * thread, before other threads touch the metrics. Counters, gauges and
 * histograms may then be updated from any thread (C11 atomics, no locks).
 * mimd_metrics_render() runs the collectors, so it must run on the thread
 * that owns what they read (the daemon's loop thread). */
#ifndef MIMD_METRICS_H
#define MIMD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mimd_metric_type {
  MIMD_COUNTER = 1,
  MIMD_GAUGE = 2,
  MIMD_HISTOGRAM = 3,
};

struct mimd_metric;

/* Most label pairs one collector sample may carry. */
#define MIMD_LABELS_MAX 4
/* Most buckets of a histogram (besides +Inf). */
#define MIMD_BUCKETS_MAX 32

/* A counter (type MIMD_COUNTER) or gauge (MIMD_GAUGE) family `name` with
 * `help`, both static strings (borrowed for the process's life). With
 * `label` NULL it has one series (index 0); otherwise one series per entry
 * of `values` (`n_values` of them, static strings), indexed like it.
 * Returns NULL on a name or label that is not a valid Prometheus name, a
 * name already registered, n_values 0 with a label, or out of memory. */
struct mimd_metric *mimd_metric_new(enum mimd_metric_type type,
                                    const char *name, const char *help,
                                    const char *label,
                                    const char *const *values,
                                    size_t n_values);

/* A histogram `name` (static) with the upper bounds `bounds` (`n` of them,
 * strictly increasing, copied; +Inf is added). NULL as above, or on bad
 * bounds. */
struct mimd_metric *mimd_histogram_new(const char *name, const char *help,
                                       const double *bounds, size_t n);

/* What a collector writes into; opaque. */
struct mimd_sink;

/* Called at each render, on the rendering thread, to emit the samples of
 * its family with mimd_sink_sample(). */
typedef void (*mimd_collect_fn)(void *user, struct mimd_sink *out);

/* A counter or gauge family whose samples `fn` emits at scrape time (for
 * numbers kept elsewhere: the library's stats, queue lengths). `user` is
 * passed back. NULL as for mimd_metric_new(). */
struct mimd_metric *mimd_collector_new(enum mimd_metric_type type,
                                       const char *name, const char *help,
                                       mimd_collect_fn fn, void *user);

/* One sample of the family being collected. `labels` is NULL or a
 * NULL-terminated list of name, value, name, value... (at most
 * MIMD_LABELS_MAX pairs; more are ignored), borrowed for the call; values
 * are escaped. A label name that is not a valid Prometheus name drops the
 * sample. */
void mimd_sink_sample(struct mimd_sink *s, const char *const *labels,
                      double value);

/* Adds `v` to series `i` of counter `m` (any thread). A NULL `m` or an
 * index out of range is ignored, so a daemon built without metrics needs no
 * checks at each call site. */
void mimd_counter_add(struct mimd_metric *m, size_t i, uint64_t v);
static inline void mimd_counter_inc(struct mimd_metric *m, size_t i) {
  mimd_counter_add(m, i, 1);
}
/* Sets / adds to series `i` of gauge `m` (any thread; NULL ignored). */
void mimd_gauge_set(struct mimd_metric *m, size_t i, double v);
void mimd_gauge_add(struct mimd_metric *m, size_t i, double v);
/* Counts one observation `v` (any thread; NULL ignored). */
void mimd_histogram_observe(struct mimd_metric *m, double v);

/* The current value of series `i` (tests, readiness); 0 for NULL. */
double mimd_metric_value(const struct mimd_metric *m, size_t i);

/* Registers what every daemon exposes: mim_build_info{version,daemon} 1
 * and process_start_time_seconds (the time of this call). Returns 0 or
 * -ENOMEM / -EEXIST. */
int mimd_metrics_register_process(const char *daemon);

/* Renders every registered family, in registration order, as Prometheus
 * text format 0.0.4. Returns a NUL-terminated buffer the caller frees, its
 * length (without the NUL) in `*len`; NULL when out of memory. */
char *mimd_metrics_render(size_t *len);

/* Frees every registered family (tests, and daemons at exit). */
void mimd_metrics_reset(void);

/* The Content-Type of mimd_metrics_render()'s output. */
#define MIMD_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
