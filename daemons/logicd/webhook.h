/* logicd's webhooks: the logic's events (mim_logic_set_event_cb()) as
 * signed JSON batches POSTed to the application's receivers.
 *
 * The loop thread only turns an event into JSON and appends it to each
 * receiver's bounded queue (a mutex held for a few pointer moves); a
 * delivery thread of its own drives libcurl's multi interface
 * (curl_multi_poll) and POSTs. So neither the loop nor the writer thread
 * ever waits for a receiver. Per receiver: one request in flight, the
 * events of a batch leave the queue only once the receiver answered 2xx
 * (at-least-once, in order), failures are retried with exponential
 * backoff up to retry_max attempts or max_age_ms, and a full queue drops
 * new events (counted, logged at most every few seconds). The shapes and
 * the signature are in docs/http-api.md, "Webhooks". */
#ifndef LOGICD_WEBHOOK_H
#define LOGICD_WEBHOOK_H

#include <mim/logic.h>

#include <stddef.h>
#include <stdint.h>

/* Most receivers one logicd posts to. */
#define WEBHOOK_URLS_MAX 8

struct webhook_config {
  const char *const *urls;   /* n_urls http:// or https:// URLs, borrowed */
  size_t n_urls;
  const uint8_t *secret;     /* HMAC key (copied), secret_len bytes */
  size_t secret_len;
  uint32_t batch_max;        /* events per POST */
  uint32_t queue_max;        /* events queued per receiver; more are dropped */
  size_t queue_bytes_max;    /* JSON bytes queued per receiver; likewise */
  uint32_t timeout_ms;       /* one POST, connect included */
  uint32_t retry_max;        /* retries of a batch after its first attempt */
  uint32_t backoff_ms;       /* first retry delay; doubles per retry */
  uint32_t backoff_max_ms;   /* the delay never exceeds this */
  uint32_t max_age_ms;       /* an event queued longer is dropped, not sent */
  uint32_t content_max;      /* message content (+ payload) bytes included
                                in message.created; larger: size only */
};

struct webhook;

/* Counters since start, for metrics. */
struct webhook_stats {
  uint64_t deliveries; /* POSTs answered 2xx */
  uint64_t failures;   /* POSTs that failed (error, timeout, non-2xx) */
  uint64_t dropped;    /* events given up: queue full, retries or age */
  uint64_t events;     /* events delivered (in 2xx-answered POSTs) */
  uint64_t queued;     /* events waiting now, all receivers */
};

/* 0 when `url` is an absolute http:// or https:// URL with a host;
 * -EINVAL otherwise (other schemes are refused: file://, gopher://, ...). */
int webhook_check_url(const char *url);

/* Starts the delivery thread. Errors: -EINVAL no URL, too many, a URL
 * webhook_check_url() refuses, no secret, a zero bound; -ENOMEM; -EIO
 * libcurl or the thread could not start. `cfg` is borrowed for the call. */
int webhook_create(struct webhook **out, const struct webhook_config *cfg);

/* Stops taking events, lets the delivery thread try what is queued for at
 * most timeout_ms more, then stops it; what is still queued is dropped,
 * counted and logged. NULL is a no-op. */
void webhook_destroy(struct webhook *w);

/* The logic's event callback (mim_logic_event_fn); `user` is the webhook.
 * Loop thread only. */
void webhook_on_event(void *user, const struct mim_event *ev);

/* Counters; `w` NULL (webhooks off) gives zeros. Any thread. */
void webhook_stats(const struct webhook *w, struct webhook_stats *out);

#endif
