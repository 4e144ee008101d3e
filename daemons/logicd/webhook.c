/* Webhook delivery: events to JSON on the loop thread, bounded queues per
 * receiver, POSTs from a libcurl multi loop on a thread of its own. */
#include "webhook.h"

#include "b64.h"
#include "log.h"

#include <mim/version.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A POST holds at most this much JSON (and always at least one event). */
#define BATCH_BYTES_MAX (1024 * 1024)
/* Drops and failures are logged at most this often (ms): a receiver that
 * is down must not flood the log either. */
#define LOG_EVERY_MS 10000
/* The delivery thread looks at its queues at least this often (ms). */
#define POLL_MAX_MS 1000

/* One event as JSON, shared by the queues of every receiver that took it. */
struct event {
  int refs;          /* receivers holding it; changed under w->mu */
  int64_t born_ms;
  size_t len;
  char json[];
};

struct receiver {
  struct webhook *w;
  char *url;
  /* the queue, a ring of queue_max events; under w->mu */
  struct event **ring;
  size_t head, count;
  size_t bytes;
  /* delivery state: delivery thread only */
  CURL *easy;
  struct curl_slist *headers;
  char *body;        /* the batch in flight */
  size_t in_flight;  /* events at the head of the ring it holds; 0 = idle */
  uint32_t attempts; /* failed attempts of the head batch */
  int64_t next_at_ms;
  int64_t failed_logged_ms;
  uint64_t failed_unlogged;
  int64_t expired_logged_ms;
  uint64_t expired_unlogged;
};

struct webhook {
  struct webhook_config cfg;
  uint8_t *secret;
  struct receiver *rcv;
  size_t n_rcv;
  CURLM *multi;
  pthread_t thread;
  bool thread_started;
  pthread_mutex_t mu;
  bool stop;          /* under mu */
  /* event ids of kinds without a natural one: boot id + counter */
  char boot_id[17];
  uint64_t next_event;
  /* drop logging (loop thread) */
  int64_t drop_logged_ms;
  uint64_t drop_unlogged;
  /* counters (any thread) */
  _Atomic uint64_t deliveries, failures, dropped, events, queued;
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int webhook_check_url(const char *url) {
  if (url == NULL || url[0] == '\0')
    return -EINVAL;
  CURLU *u = curl_url();
  if (u == NULL)
    return -ENOMEM;
  int rc = -EINVAL;
  char *scheme = NULL, *host = NULL;
  /* no guessing: "example.com/x" is not taken for http://example.com/x */
  if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
      (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) &&
      host[0] != '\0')
    rc = 0;
  curl_free(scheme);
  curl_free(host);
  curl_url_cleanup(u);
  return rc;
}

/* ---- events to JSON (loop thread) ---- */

static const char *msg_type_name(uint32_t t) {
  switch (t) {
  case MIM_MSG_TEXT:
    return "text";
  case MIM_MSG_SYSTEM:
    return "system";
  case MIM_MSG_CUSTOM:
    return "custom";
  case MIM_MSG_PUSH:
    return "push";
  default:
    return "unknown";
  }
}

static const char *conv_name(uint32_t k) {
  switch (k) {
  case MIM_CONV_C2C:
    return "c2c";
  case MIM_CONV_GROUP:
    return "group";
  default:
    return "push";
  }
}

static json_t *string_array(const char *const *v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; a != NULL && i < n; i++)
    json_array_append_new(a, json_string(v[i]));
  return a;
}

/* Sets `key` to `s` when non-empty (ids are UTF-8: the logic checked). */
static void set_str(json_t *o, const char *key, const char *s) {
  if (s != NULL && s[0] != '\0')
    json_object_set_new(o, key, json_string(s));
}

static json_t *message_data(const struct webhook *w,
                            const struct mim_event *ev) {
  json_t *d = json_object();
  if (d == NULL)
    return NULL;
  json_object_set_new(d, "msg_id", json_integer((json_int_t)ev->msg_id));
  json_object_set_new(d, "type", json_string(msg_type_name(ev->msg_type)));
  json_object_set_new(d, "conv", json_string(conv_name(ev->conv_kind)));
  json_object_set_new(d, "from", json_string(ev->from));
  set_str(d, "from_device", ev->from_device);
  set_str(d, "to", ev->to);
  set_str(d, "group", ev->group);
  set_str(d, "client_msg_id", ev->client_msg_id);
  json_object_set_new(d, "time_ms", json_integer(ev->time_ms));
  /* a large message is announced, not copied: the queue holds events, and
   * the application reads the message through the API if it wants it */
  bool fits = ev->content_len + ev->payload_len <= w->cfg.content_max;
  json_t *content = NULL;
  if (fits)
    content = json_stringn((const char *)ev->content, ev->content_len);
  if (content != NULL)
    json_object_set_new(d, "content", content);
  json_object_set_new(d, "content_size", json_integer((json_int_t)ev->content_len));
  json_object_set_new(d, "content_truncated", json_boolean(content == NULL));
  if (ev->payload_len > 0) {
    json_object_set_new(d, "payload_size",
                        json_integer((json_int_t)ev->payload_len));
    if (fits) {
      char *b64 = mimd_b64_encode(ev->payload, ev->payload_len);
      if (b64 != NULL) {
        json_object_set_new(d, "payload_b64", json_string(b64));
        free(b64);
      }
    }
  }
  json_t *rc = json_array();
  for (size_t i = 0; rc != NULL && i < ev->n_recipients; i++) {
    json_t *r = json_object();
    if (r == NULL)
      break;
    json_object_set_new(r, "uid", json_string(ev->recipients[i].uid));
    json_object_set_new(r, "inbox_seq",
                        json_integer((json_int_t)ev->recipients[i].inbox_seq));
    json_array_append_new(rc, r);
  }
  json_object_set_new(d, "recipients", rc);
  json_object_set_new(d, "offline", string_array(ev->offline, ev->n_offline));
  if (ev->large) /* in no inbox: recipients and offline are empty */
    json_object_set_new(d, "large", json_true());
  return d;
}

static const char *change_name(enum mim_group_change c) {
  switch (c) {
  case MIM_GROUP_CREATED:
    return "created";
  case MIM_GROUP_MEMBERS_ADDED:
    return "members_added";
  default:
    return "members_removed";
  }
}

/* The event as one JSON object, in a new struct event; NULL when out of
 * memory or the event is of a kind this version does not know. */
static struct event *event_build(struct webhook *w,
                                 const struct mim_event *ev) {
  const char *type;
  char id[64];
  json_t *data;
  switch (ev->kind) {
  case MIM_EVENT_MESSAGE_CREATED:
    type = "message.created";
    /* stable across retries and restarts: msg ids are durable */
    snprintf(id, sizeof id, "msg-%" PRIu64, ev->msg_id);
    data = message_data(w, ev);
    break;
  case MIM_EVENT_USER_ONLINE:
  case MIM_EVENT_USER_OFFLINE:
    type = ev->kind == MIM_EVENT_USER_ONLINE ? "user.online" : "user.offline";
    data = json_object();
    if (data != NULL) {
      json_object_set_new(data, "uid", json_string(ev->uid));
      json_object_set_new(data, "device", json_string(ev->device));
    }
    break;
  case MIM_EVENT_GROUP_CHANGED:
    type = "group.changed";
    data = json_object();
    if (data != NULL) {
      json_object_set_new(data, "group", json_string(ev->group));
      json_object_set_new(data, "change", json_string(change_name(ev->change)));
      json_object_set_new(data, "members",
                          string_array(ev->members, ev->n_members));
    }
    break;
  default:
    return NULL;
  }
  if (ev->kind != MIM_EVENT_MESSAGE_CREATED)
    snprintf(id, sizeof id, "evt-%s-%" PRIu64, w->boot_id, ++w->next_event);
  json_t *o = json_object();
  if (o == NULL || data == NULL) {
    json_decref(o);
    json_decref(data);
    return NULL;
  }
  json_object_set_new(o, "type", json_string(type));
  json_object_set_new(o, "id", json_string(id));
  json_object_set_new(o, "time_ms", json_integer(ev->time_ms));
  json_object_set_new(o, "data", data);
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (s == NULL)
    return NULL;
  size_t len = strlen(s);
  struct event *e = malloc(sizeof *e + len + 1);
  if (e != NULL) {
    e->refs = 0;
    e->born_ms = now_ms();
    e->len = len;
    memcpy(e->json, s, len + 1);
  }
  free(s);
  return e;
}

static void note_drops(struct webhook *w, uint64_t n) {
  atomic_fetch_add(&w->dropped, n);
  w->drop_unlogged += n;
  int64_t now = now_ms();
  if (w->drop_logged_ms != 0 && now - w->drop_logged_ms < LOG_EVERY_MS)
    return;
  mimd_warn("webhook queue full: %" PRIu64 " event(s) dropped (queue max "
            "%" PRIu32 " events / %zu bytes per receiver; is a receiver "
            "down?)", w->drop_unlogged, w->cfg.queue_max,
            w->cfg.queue_bytes_max);
  w->drop_logged_ms = now;
  w->drop_unlogged = 0;
}

void webhook_on_event(void *user, const struct mim_event *ev) {
  struct webhook *w = user;
  struct event *e = event_build(w, ev);
  if (e == NULL) {
    note_drops(w, 1);
    return;
  }
  uint64_t dropped = 0;
  pthread_mutex_lock(&w->mu);
  for (size_t i = 0; i < w->n_rcv && !w->stop; i++) {
    struct receiver *r = &w->rcv[i];
    if (r->count >= w->cfg.queue_max ||
        r->bytes + e->len > w->cfg.queue_bytes_max) {
      dropped++;
      continue;
    }
    r->ring[(r->head + r->count) % w->cfg.queue_max] = e;
    r->count++;
    r->bytes += e->len;
    e->refs++;
    atomic_fetch_add(&w->queued, 1);
  }
  bool taken = e->refs > 0;
  pthread_mutex_unlock(&w->mu);
  if (!taken)
    free(e);
  if (dropped > 0)
    note_drops(w, dropped);
  if (taken)
    curl_multi_wakeup(w->multi);
}

/* ---- delivery (delivery thread) ---- */

/* Removes `n` events from the head of r's queue. */
static void pop_events(struct webhook *w, struct receiver *r, size_t n) {
  pthread_mutex_lock(&w->mu);
  for (size_t i = 0; i < n && r->count > 0; i++) {
    struct event *e = r->ring[r->head];
    r->ring[r->head] = NULL;
    r->head = (r->head + 1) % w->cfg.queue_max;
    r->count--;
    r->bytes -= e->len;
    atomic_fetch_sub(&w->queued, 1);
    if (--e->refs == 0)
      free(e);
  }
  pthread_mutex_unlock(&w->mu);
}

static size_t discard_body(char *p, size_t size, size_t n, void *user) {
  (void)p;
  (void)user;
  return size * n; /* the answer is its status; the body is not read */
}

static void hex(const uint8_t *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

/* Drops the events at the head of r's queue that are older than
 * max_age_ms: a receiver that was down for long gets what is recent, not
 * a backlog nobody wants any more. */
static void expire_old(struct webhook *w, struct receiver *r, int64_t now) {
  size_t n = 0;
  pthread_mutex_lock(&w->mu);
  while (n < r->count &&
         now - r->ring[(r->head + n) % w->cfg.queue_max]->born_ms >
             (int64_t)w->cfg.max_age_ms)
    n++;
  pthread_mutex_unlock(&w->mu);
  if (n == 0)
    return;
  pop_events(w, r, n);
  atomic_fetch_add(&w->dropped, n);
  r->expired_unlogged += n;
  if (r->expired_logged_ms != 0 && now - r->expired_logged_ms < LOG_EVERY_MS)
    return;
  mimd_warn("webhook %s: %" PRIu64 " event(s) older than %" PRIu32
            " ms dropped", r->url, r->expired_unlogged, w->cfg.max_age_ms);
  r->expired_logged_ms = now;
  r->expired_unlogged = 0;
}

/* Builds and starts the POST of the events at the head of r's queue.
 * The producer only writes ring slots past the tail, so the head events
 * can be read without the lock once counted. */
static void start_batch(struct webhook *w, struct receiver *r) {
  size_t avail;
  pthread_mutex_lock(&w->mu);
  avail = r->count;
  pthread_mutex_unlock(&w->mu);
  if (avail == 0)
    return;
  int64_t sent = wall_ms();
  char head[64];
  int hl = snprintf(head, sizeof head, "{\"sent_ms\":%" PRId64 ",\"events\":[",
                    sent);
  size_t n = 0, size = (size_t)hl + 3;
  while (n < avail && n < w->cfg.batch_max) {
    struct event *e = r->ring[(r->head + n) % w->cfg.queue_max];
    if (n > 0 && size + e->len + 1 > BATCH_BYTES_MAX)
      break;
    size += e->len + 1;
    n++;
  }
  char *body = malloc(size);
  if (body == NULL) {
    r->next_at_ms = now_ms() + w->cfg.backoff_ms;
    return;
  }
  size_t off = (size_t)hl;
  memcpy(body, head, off);
  for (size_t i = 0; i < n; i++) {
    struct event *e = r->ring[(r->head + i) % w->cfg.queue_max];
    if (i > 0)
      body[off++] = ',';
    memcpy(body + off, e->json, e->len);
    off += e->len;
  }
  body[off++] = ']';
  body[off++] = '}';
  body[off] = '\0';

  uint8_t mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  char sig[32 + 2 * EVP_MAX_MD_SIZE + 1];
  char ts[48];
  if (HMAC(EVP_sha256(), w->secret, (int)w->cfg.secret_len,
           (const unsigned char *)body, off, mac, &mac_len) == NULL) {
    free(body);
    r->next_at_ms = now_ms() + w->cfg.backoff_ms;
    return;
  }
  memcpy(sig, "X-Mim-Signature: sha256=", 24);
  hex(mac, mac_len, sig + 24);
  snprintf(ts, sizeof ts, "X-Mim-Timestamp: %" PRId64, sent);
  curl_slist_free_all(r->headers);
  /* no "100 continue" round trip before the body */
  const char *lines[] = {"Content-Type: application/json", sig, ts,
                         "Expect:"};
  struct curl_slist *h = NULL;
  for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
    struct curl_slist *next = curl_slist_append(h, lines[i]);
    if (next == NULL) {
      curl_slist_free_all(h);
      h = NULL;
      break;
    }
    h = next;
  }
  r->headers = h;
  if (h == NULL) {
    free(body);
    r->next_at_ms = now_ms() + w->cfg.backoff_ms;
    return;
  }
  CURL *c = r->easy;
  curl_easy_setopt(c, CURLOPT_URL, r->url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)off);
  free(r->body);
  r->body = body;
  r->in_flight = n;
  if (curl_multi_add_handle(w->multi, c) != CURLM_OK) {
    r->in_flight = 0;
    r->next_at_ms = now_ms() + w->cfg.backoff_ms;
  }
}

static uint32_t backoff(const struct webhook *w, uint32_t attempts) {
  uint64_t d = w->cfg.backoff_ms;
  for (uint32_t i = 1; i < attempts && d < w->cfg.backoff_max_ms; i++)
    d *= 2;
  if (d > w->cfg.backoff_max_ms)
    d = w->cfg.backoff_max_ms;
  /* up to a quarter more, so receivers restarted together are not hit
   * by every logicd at the same instant */
  uint32_t jitter = 0;
  if (d >= 4)
    RAND_bytes((unsigned char *)&jitter, sizeof jitter);
  return (uint32_t)(d + (d >= 4 ? jitter % (d / 4) : 0));
}

static void batch_done(struct webhook *w, struct receiver *r, CURLcode res) {
  long status = 0;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_multi_remove_handle(w->multi, r->easy);
  size_t n = r->in_flight;
  r->in_flight = 0;
  free(r->body);
  r->body = NULL;
  int64_t now = now_ms();
  if (res == CURLE_OK && status >= 200 && status < 300) {
    pop_events(w, r, n);
    atomic_fetch_add(&w->deliveries, 1);
    atomic_fetch_add(&w->events, n);
    if (r->attempts > 0)
      mimd_info("webhook %s: delivering again", r->url);
    r->attempts = 0;
    r->next_at_ms = 0;
    return;
  }
  atomic_fetch_add(&w->failures, 1);
  r->attempts++;
  r->failed_unlogged++;
  if (r->attempts == 1 || now - r->failed_logged_ms >= LOG_EVERY_MS) {
    if (res != CURLE_OK)
      mimd_warn("webhook %s: %s (%" PRIu64 " failure(s))", r->url,
                curl_easy_strerror(res), r->failed_unlogged);
    else
      mimd_warn("webhook %s: HTTP %ld (%" PRIu64 " failure(s))", r->url,
                status, r->failed_unlogged);
    r->failed_logged_ms = now;
    r->failed_unlogged = 0;
  }
  if (r->attempts > w->cfg.retry_max) {
    pop_events(w, r, n);
    atomic_fetch_add(&w->dropped, n);
    mimd_warn("webhook %s: %zu event(s) dropped after %" PRIu32 " attempts",
              r->url, n, r->attempts);
    r->attempts = 0;
    r->next_at_ms = 0;
    return;
  }
  r->next_at_ms = now + backoff(w, r->attempts);
}

static void *deliver_main(void *arg) {
  struct webhook *w = arg;
  int64_t deadline = 0; /* once stopping: when to give up */
  for (;;) {
    int64_t now = now_ms();
    pthread_mutex_lock(&w->mu);
    bool stopping = w->stop;
    pthread_mutex_unlock(&w->mu);
    if (stopping && deadline == 0)
      deadline = now + w->cfg.timeout_ms;
    bool busy = false, waiting = false;
    int64_t wait = POLL_MAX_MS;
    for (size_t i = 0; i < w->n_rcv; i++) {
      struct receiver *r = &w->rcv[i];
      if (r->in_flight == 0) {
        expire_old(w, r, now);
        if (r->next_at_ms <= now && !(stopping && r->attempts > 0))
          start_batch(w, r);
      }
      pthread_mutex_lock(&w->mu);
      bool queued = r->count > 0;
      pthread_mutex_unlock(&w->mu);
      busy |= r->in_flight > 0;
      /* stopping: a receiver that was failing gets no more tries */
      waiting |= r->in_flight > 0 || (queued && !(stopping && r->attempts > 0));
      if (r->in_flight == 0 && queued && !(stopping && r->attempts > 0) &&
          r->next_at_ms - now < wait)
        wait = r->next_at_ms > now ? r->next_at_ms - now : 0;
    }
    if (stopping && (!waiting || now >= deadline))
      break;
    int running = 0;
    curl_multi_perform(w->multi, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(w->multi, &left)) != NULL) {
      if (m->msg != CURLMSG_DONE)
        continue;
      struct receiver *r = NULL;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
      CURLcode res = m->data.result;
      if (r != NULL)
        batch_done(w, r, res);
      wait = 0; /* start the next batch now */
    }
    if (stopping && deadline - now < wait)
      wait = deadline > now ? deadline - now : 0;
    if (wait > 0 || busy)
      curl_multi_poll(w->multi, NULL, 0, (int)(wait > 0 ? wait : 0), NULL);
  }
  return NULL;
}

/* ---- lifecycle ---- */

static int receiver_init(struct webhook *w, struct receiver *r,
                         const char *url) {
  r->w = w;
  r->url = strdup(url);
  r->ring = calloc(w->cfg.queue_max, sizeof *r->ring);
  r->easy = curl_easy_init();
  if (r->url == NULL || r->ring == NULL || r->easy == NULL)
    return -ENOMEM;
  CURL *c = r->easy;
  curl_easy_setopt(c, CURLOPT_PRIVATE, (char *)r);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)w->cfg.timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)w->cfg.timeout_ms);
  /* the URL was checked, and redirects are not followed: a receiver
   * cannot send us (and the signed events) somewhere else */
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "libmim-logicd/" MIM_VERSION_STRING);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  return 0;
}

int webhook_create(struct webhook **out, const struct webhook_config *cfg) {
  if (cfg->n_urls == 0 || cfg->n_urls > WEBHOOK_URLS_MAX ||
      cfg->secret == NULL || cfg->secret_len == 0 || cfg->batch_max == 0 ||
      cfg->queue_max == 0 || cfg->queue_bytes_max == 0 ||
      cfg->timeout_ms == 0 || cfg->backoff_ms == 0 ||
      cfg->backoff_max_ms < cfg->backoff_ms)
    return -EINVAL;
  for (size_t i = 0; i < cfg->n_urls; i++)
    if (webhook_check_url(cfg->urls[i]) < 0)
      return -EINVAL;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return -EIO;
  struct webhook *w = calloc(1, sizeof *w);
  if (w == NULL) {
    curl_global_cleanup();
    return -ENOMEM;
  }
  w->cfg = *cfg;
  w->cfg.urls = NULL;
  pthread_mutex_init(&w->mu, NULL);
  int rc = -ENOMEM;
  w->secret = malloc(cfg->secret_len);
  w->rcv = calloc(cfg->n_urls, sizeof *w->rcv);
  if (w->secret == NULL || w->rcv == NULL)
    goto fail;
  memcpy(w->secret, cfg->secret, cfg->secret_len);
  w->n_rcv = cfg->n_urls;
  uint8_t boot[8];
  if (RAND_bytes(boot, sizeof boot) != 1) {
    rc = -EIO;
    goto fail;
  }
  hex(boot, sizeof boot, w->boot_id);
  rc = -EIO;
  if ((w->multi = curl_multi_init()) == NULL)
    goto fail;
  for (size_t i = 0; i < w->n_rcv; i++)
    if ((rc = receiver_init(w, &w->rcv[i], cfg->urls[i])) < 0)
      goto fail;
  if (pthread_create(&w->thread, NULL, deliver_main, w) != 0) {
    rc = -EIO;
    goto fail;
  }
  w->thread_started = true;
  *out = w;
  return 0;
fail:
  webhook_destroy(w);
  return rc;
}

void webhook_destroy(struct webhook *w) {
  if (w == NULL)
    return;
  if (w->thread_started) {
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_mutex_unlock(&w->mu);
    curl_multi_wakeup(w->multi);
    pthread_join(w->thread, NULL);
  }
  uint64_t left = 0;
  for (size_t i = 0; i < w->n_rcv; i++) {
    struct receiver *r = &w->rcv[i];
    if (r->easy != NULL) {
      if (r->in_flight > 0)
        curl_multi_remove_handle(w->multi, r->easy);
      curl_easy_cleanup(r->easy);
    }
    left += r->count;
    if (r->ring != NULL)
      pop_events(w, r, r->count);
    curl_slist_free_all(r->headers);
    free(r->body);
    free(r->ring);
    free(r->url);
  }
  if (left > 0) {
    atomic_fetch_add(&w->dropped, left);
    mimd_warn("webhooks: %" PRIu64 " queued event(s) not delivered at "
              "shutdown", left);
  }
  if (w->multi != NULL)
    curl_multi_cleanup(w->multi);
  if (w->secret != NULL) {
    OPENSSL_cleanse(w->secret, w->cfg.secret_len);
    free(w->secret);
  }
  free(w->rcv);
  pthread_mutex_destroy(&w->mu);
  free(w);
  curl_global_cleanup();
}

void webhook_stats(const struct webhook *w, struct webhook_stats *out) {
  memset(out, 0, sizeof *out);
  if (w == NULL)
    return;
  struct webhook *m = (struct webhook *)w; /* atomics load through non-const */
  out->deliveries = atomic_load(&m->deliveries);
  out->failures = atomic_load(&m->failures);
  out->dropped = atomic_load(&m->dropped);
  out->events = atomic_load(&m->events);
  out->queued = atomic_load(&m->queued);
}
