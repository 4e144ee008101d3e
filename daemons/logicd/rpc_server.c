/* The RPC server: links in, logic in the middle, effects and batches out.
 *
 * Every event (frames from a link, a link closing, a commit finishing, the
 * tick) ends in pump(): hand the next write batch to the writer if none is
 * out, then turn every queued effect into RPC frames on the right link.
 * Replies and pushes are effects of committed batches, so nothing is
 * acknowledged before it is durable (docs/architecture.md §4). */
#include "rpc_server_internal.h"
#include "rpc_in.h"
#include "rpc_out.h"

#include "log.h"
#include "notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROTOCOL_NAME "mim-rpc"
#define TICK_MAX_MS 1000         /* mim_logic_tick() at least this often */
#define FLUSH_GRACE_MS 2000      /* shutdown: time to write the last replies */
/* HELLO deadlines and silent links are looked at this often: deadlines
 * are whole seconds, so they are kept to within a quarter of one */
#define LIVENESS_EVERY_MS 250
/* What a link may send before its HELLO is accepted: a HELLO is a gateway
 * id (<= 128 bytes), a secret (<= LOGICD_SECRET_MAX) and a version. Without
 * it, anyone reaching the port could make logicd buffer a 16 MiB frame per
 * connection, no secret needed, for hello_timeout_s. */
#define HELLO_BYTES_MAX (16u * 1024)

struct pss {
  struct link *link;
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pump(struct server *s);
static void check_stop(struct server *s);
static void on_timer(void *user);

/* ---- batches and the tick ---- */

/* Arms the timer for the logic's next tick (at most TICK_MAX_MS away) or the
 * shutdown flush deadline, whichever is sooner, unless it already fires by
 * then. */
static void arm_timer(struct server *s) {
  int64_t now = now_ms();
  int64_t t = mim_logic_next_timeout(s->logic);
  if (t < 1 || t > TICK_MAX_MS)
    t = t == 0 ? 1 : TICK_MAX_MS; /* 0: due now; 1 ms keeps us from spinning */
  int64_t at = now + t;
  if (s->links != NULL && s->phase == RUNNING && s->next_liveness < at)
    at = s->next_liveness > now ? s->next_liveness : now + 1;
  if (s->phase == FLUSHING && s->flush_deadline < at)
    at = s->flush_deadline;
  if (s->timer_armed && s->timer_at <= at)
    return;
  s->timer_armed = true;
  s->timer_at = at;
  loop_timer(s->loop, at - now, on_timer, s);
}

static void submit_batch(struct server *s) {
  if (writer_busy(s->writer) || !mim_logic_has_writes(s->logic))
    return;
  struct mim_write_batch *b;
  if (mim_logic_take_batch(s->logic, &b) < 0)
    return;
  /* cannot fail: the writer holds at most the one batch the logic lets out,
   * and it is not busy */
  (void)writer_submit(s->writer, b);
}

static void pump(struct server *s) {
  if (s->tearing_down)
    return;
  do {
    submit_batch(s);
    struct mim_effect e;
    while (mim_logic_next_effect(s->logic, &e) == 0)
      rpc_route(s, &e);
    /* each link is doomed at most once, and reads that moved a cursor
     * leave a write only when the writer is idle, so this ends */
  } while (rpc_sweep_doomed(s) ||
           (!writer_busy(s->writer) && mim_logic_has_writes(s->logic)));
  if (mim_logic_next_timeout(s->logic) == 0 && !s->turn_wake) {
    /* the turn's reads are done: let the loop serve every other socket
     * once, then start the next turn (on_wake) */
    s->turn_wake = true;
    loop_wake(s->loop);
  }
  arm_timer(s);
  check_stop(s);
}

void server_pump(struct server *s) { pump(s); }

/* The store can never commit again (MDB_PANIC, a failed sync): a logicd
 * that went on answering heartbeats while every send fails would keep its
 * gateways from failing over. Stop as on a signal (the requests still
 * pending get their error replies) and exit non-zero for the supervisor to
 * restart us from the last durable state. */
static void store_failed(struct server *s, int err) {
  s->store_failed = err;
  mimd_error("store failure: %s (%s); the store cannot be written any more: "
             "logicd stops and exits with status %d so that its supervisor "
             "restarts it (nothing that failed was acknowledged)",
             mim_strerror(err), mim_err_name(err), LOGICD_EXIT_STORE);
  if (s->phase != RUNNING)
    return;
  s->phase = DRAINING;
  for (struct link *k = s->links; k != NULL; k = k->next)
    lws_rx_flow_control(k->wsi, 0);
}

static void batch_committed(struct server *s, struct mim_write_batch *b) {
  int st = mim_write_batch_status(b);
  size_t n = mim_write_batch_count(b);
  if (st < 0) {
    /* the logic answers each request with a (retryable) error; log the
     * first failure of a run, not every batch of a full disk */
    if (s->commit_failures++ == 0)
      mimd_error("store commit of %zu writes failed: %s (%s); requests get "
                 "errors until it recovers", n, mim_strerror(st),
                 mim_err_name(st));
  } else if (s->commit_failures > 0) {
    mimd_info("store commits succeed again after %u failed",
              s->commit_failures);
    s->commit_failures = 0;
  }
  int rc = mim_logic_batch_done(s->logic, b);
  if (rc < 0)
    mimd_error("batch_done: %s", mim_strerror(rc));
  int health = writer_health(s->writer);
  if (health < 0 && s->store_failed == 0)
    store_failed(s, health);
}

/* LWS_CALLBACK_EVENT_WAIT_CANCELLED: the writer finished, or a signal came.
 * It arrives once per vhost per wake; a second call just finds nothing. */
static void on_wake(struct server *s) {
  if (s->tearing_down)
    return;
  if (s->turn_wake) {
    s->turn_wake = false;
    mim_logic_tick(s->logic);
  }
  struct mim_write_batch *b = writer_collect(s->writer);
  if (b != NULL)
    batch_committed(s, b);
  /* a SIGHUP: cleared first, so that one arriving during the reload asks
   * for another; a stopping daemon does not reload */
  if (s->reload_flag != NULL && *s->reload_flag != 0 && s->phase == RUNNING &&
      s->reload != NULL) {
    *s->reload_flag = 0;
    s->reload(s->reload_user);
  }
  pump(s);
}

static void stop_now(struct server *s) {
  s->phase = STOPPED;
  loop_stop(s->loop);
}

static void on_timer(void *user) {
  struct server *s = user;
  s->timer_armed = false;
  if (s->tearing_down || s->phase == STOPPED)
    return;
  if (s->phase == FLUSHING && now_ms() >= s->flush_deadline) {
    mimd_warn("some peers did not take their last frames within %d ms",
              FLUSH_GRACE_MS);
    stop_now(s);
    return;
  }
  mim_logic_tick(s->logic);
  if (s->phase == RUNNING) {
    int64_t now = now_ms();
    if (now >= s->next_liveness) {
      s->next_liveness = now + LIVENESS_EVERY_MS;
      rpc_check_links(s, now);
    }
  }
  pump(s);
}

/* ---- shutdown ---- */

static bool all_flushed(const struct server *s) {
  if (api_writing(s->api))
    return false;
  for (const struct link *k = s->links; k != NULL; k = k->next)
    if (!k->closing &&
        (mimd_outq_len(&k->out) > 0 || lws_partial_buffered(k->wsi)))
      return false;
  return true;
}

/* RUNNING -> DRAINING (stop signal) -> FLUSHING (nothing left to commit) ->
 * STOPPED (every reply written, or the grace time is up). */
static void check_stop(struct server *s) {
  if (s->phase == RUNNING && *s->stop_flag != 0) {
    mimd_info("signal %d: stopping; new requests are refused, pending "
              "writes commit first", (int)*s->stop_flag);
    mimd_notify_stopping();
    s->phase = DRAINING;
    /* the gateways' unread requests stay in their sockets; they fail over
     * to UNAVAILABLE when the link drops */
    for (struct link *k = s->links; k != NULL; k = k->next)
      lws_rx_flow_control(k->wsi, 0);
  }
  if (s->phase == DRAINING && !writer_busy(s->writer) &&
      !mim_logic_has_writes(s->logic)) {
    s->phase = FLUSHING;
    s->flush_deadline = now_ms() + FLUSH_GRACE_MS;
    arm_timer(s);
  }
  if (s->phase == FLUSHING && all_flushed(s))
    stop_now(s);
}

/* ---- lws callbacks ---- */

static int on_adopt(struct server *s, struct lws *wsi, struct pss *pss) {
  if (s->phase != RUNNING)
    return -1; /* stopping: no new links */
  struct link *k;
  if (link_create(&k, wsi, s->link_queue_max) < 0) {
    mimd_error("out of memory: refusing an RPC link");
    return -1;
  }
  k->next = s->links;
  if (s->links != NULL)
    s->links->prev = k;
  s->links = k;
  pss->link = k;
  k->via_admin = loop_is_admin(s->loop, wsi);
  k->born_ms = k->heard_ms = now_ms();
  mimd_debug("RPC link from %s%s", k->peer,
             k->via_admin ? " on the admin socket" : "");
  return 0;
}

/* Hands the frames buffered in `k`'s decoder to the logic, until the link
 * pauses (its output is above the mark) or closes. Returns -1 to close. */
static int take_frames(struct server *s, struct link *k) {
  int rc, ret = 0;
  while (!k->closing && !k->doomed && !k->paused) {
    struct mim_frame f;
    rc = mim_stream_decoder_next(k->dec, &f);
    if (rc == -EAGAIN)
      break;
    if (rc < 0) {
      mimd_warn("%s: %s; closing", link_name(k), mim_strerror(rc));
      ret = -1;
      break;
    }
    if (rpc_on_frame(s, k, &f) < 0) {
      ret = -1;
      break;
    }
    /* an admin read answers at once (a gateway's wait for their turn):
     * its reply goes out now, so a link flooding them pauses in time */
    if (k->role == LINK_ADMIN)
      pump(s);
  }
  pump(s);
  return ret;
}

static int on_rx(struct server *s, struct link *k, const void *in,
                 size_t len) {
  if (k->closing || s->phase != RUNNING)
    return 0;
  k->heard_ms = now_ms();
  k->pinged_ms = 0;
  int rc = mim_stream_decoder_feed(k->dec, in, len);
  if (rc < 0) {
    mimd_warn("%s: %s; closing", link_name(k), mim_strerror(rc));
    return -1;
  }
  rc = take_frames(s, k);
  if (rc == 0 && k->role == LINK_NEW && !k->closing && !k->doomed &&
      mim_stream_decoder_pending(k->dec) > HELLO_BYTES_MAX) {
    mimd_warn("%s: more than %u bytes before HELLO; closing", link_name(k),
              HELLO_BYTES_MAX);
    return -1;
  }
  return rc;
}

/* After a write: a paused link whose queue drained below the resume mark
 * is read again, starting with the frames it already sent. */
static int maybe_resume(struct server *s, struct link *k) {
  if (!k->paused || mimd_outq_len(&k->out) > s->link_queue_resume)
    return 0;
  k->paused = false;
  mimd_debug("%s: %zu bytes queued: resumed", link_name(k),
             mimd_outq_len(&k->out));
  if (k->role == LINK_GATEWAY)
    (void)mim_logic_gateway_pause(s->logic, k->gateway, false);
  if (k->closing || s->phase != RUNNING)
    return 0; /* stopping: it stays unread */
  lws_rx_flow_control(k->wsi, 1);
  return take_frames(s, k);
}

static void on_close(struct server *s, struct link *k) {
  if (k->role == LINK_GATEWAY)
    mimd_info("gateway %s down", link_name(k));
  else if (k->role == LINK_ADMIN)
    mimd_debug("admin link %s closed", link_name(k));
  rpc_detach(s, k);
  for (struct admin_req *a = s->admin; a != NULL; a = a->next)
    if (a->link == k)
      a->link = NULL;
  if (k->prev != NULL)
    k->prev->next = k->next;
  else
    s->links = k->next;
  if (k->next != NULL)
    k->next->prev = k->prev;
  link_destroy(k);
  pump(s);
}

static int callback_rpc(struct lws *wsi, enum lws_callback_reasons reason,
                        void *user, void *in, size_t len) {
  struct server *s = lws_context_user(lws_get_context(wsi));
  struct pss *pss = user;
  if (s == NULL)
    return 0;
  switch (reason) {
  case LWS_CALLBACK_RAW_ADOPT:
    return on_adopt(s, wsi, pss);
  case LWS_CALLBACK_RAW_RX:
    return pss->link != NULL ? on_rx(s, pss->link, in, len) : -1;
  case LWS_CALLBACK_RAW_WRITEABLE: {
    struct link *k = pss->link;
    if (k == NULL)
      return -1;
    size_t before = mimd_outq_len(&k->out);
    if (link_on_writable(k) < 0)
      return -1;
    /* a paused link is not read, so its silence is ours: the peer taking
     * our output shows it is alive (a half-open link takes nothing) */
    if (k->paused && mimd_outq_len(&k->out) < before) {
      k->heard_ms = now_ms();
      k->pinged_ms = 0;
    }
    if (maybe_resume(s, k) < 0)
      return -1;
    if (s->phase == FLUSHING)
      check_stop(s);
    return 0;
  }
  case LWS_CALLBACK_RAW_CLOSE:
    if (pss != NULL && pss->link != NULL) {
      on_close(s, pss->link);
      pss->link = NULL;
    }
    return 0;
  case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
    on_wake(s);
    return 0;
  default:
    return 0;
  }
}

static const struct lws_protocols protocols[] = {
    {.name = PROTOCOL_NAME,
     .callback = callback_rpc,
     .per_session_data_size = sizeof(struct pss)},
    {.name = NULL},
};

/* ---- lifecycle ---- */

static void wake_from_writer(void *user) {
  struct server *s = user;
  loop_wake(s->loop);
}

int server_create(struct server **out, const struct server_config *cfg,
                  struct mim_logic *logic, struct mim_backend *be) {
  struct server *s = calloc(1, sizeof *s);
  if (s == NULL)
    return -ENOMEM;
  int rc = -ENOMEM;
  s->logic = logic;
  s->stop_flag = cfg->stop_flag;
  s->reload_flag = cfg->reload_flag;
  s->reload = cfg->reload;
  s->reload_user = cfg->reload_user;
  s->link_queue_max = cfg->link_queue_max;
  s->link_queue_pause = cfg->link_queue_pause;
  s->link_queue_resume = cfg->link_queue_resume;
  if (s->link_queue_pause == 0 || s->link_queue_pause > s->link_queue_max)
    s->link_queue_pause = s->link_queue_max; /* no pause mark set */
  s->rpc_secret = strdup(cfg->rpc_secret != NULL ? cfg->rpc_secret : "");
  if (s->rpc_secret == NULL) {
    free(s);
    return -ENOMEM;
  }
  s->rpc_secret_len = strlen(s->rpc_secret);
  s->hello_timeout_ms = cfg->hello_timeout_ms > 0 ? cfg->hello_timeout_ms
                                                  : 5000;
  s->ping_ms = cfg->ping_ms;
  s->dead_ms = cfg->dead_ms > 0 ? cfg->dead_ms : 20000;
  s->admin_secret = strdup(cfg->admin_secret != NULL ? cfg->admin_secret : "");
  if (s->admin_secret == NULL)
    goto fail_secret;
  s->admin_secret_len = strlen(s->admin_secret);
  if (cfg->admin_unix_path != NULL && cfg->admin_unix_path[0] != '\0' &&
      (s->admin_path = strdup(cfg->admin_unix_path)) == NULL)
    goto fail_secret;
  if (cfg->host != NULL && (s->host = strdup(cfg->host)) == NULL)
    goto fail_secret;
  if (cfg->unix_path != NULL && cfg->unix_path[0] != '\0' &&
      (s->unix_path = strdup(cfg->unix_path)) == NULL)
    goto fail_secret;

  struct loop_config lc = {
      .protocols = protocols,
      .accept_protocol = PROTOCOL_NAME,
      .user = s,
      .host = cfg->host,
      .port = cfg->port,
      .unix_path = cfg->unix_path,
      .admin_path = cfg->admin_unix_path,
      .prefer_libev = cfg->prefer_libev,
  };
  rc = loop_create(&s->loop, &lc);
  if (rc < 0)
    goto fail_secret;
  rc = writer_start(&s->writer, be, wake_from_writer, s);
  if (rc < 0) {
    mimd_error("cannot start the writer thread: %s", mim_strerror(rc));
    goto fail_loop;
  }
  if (cfg->api != NULL && cfg->api->host != NULL &&
      (rc = api_create(&s->api, s, cfg->api)) < 0) {
    struct mim_write_batch *none;
    writer_stop(s->writer, &none);
    goto fail_loop;
  }
  *out = s;
  return 0;

fail_loop:
  s->tearing_down = true;
  api_stop(s->api);
  loop_destroy(s->loop);
  api_destroy(s->api);
fail_secret:
  free(s->host);
  free(s->unix_path);
  free(s->admin_path);
  if (s->admin_secret != NULL)
    explicit_bzero(s->admin_secret, s->admin_secret_len);
  free(s->admin_secret);
  free(s->rpc_secret);
  free(s);
  return rc;
}

const char *server_loop_backend(const struct server *s) {
  return loop_backend(s->loop);
}

int server_port(const struct server *s) { return loop_port(s->loop); }

int server_http_port(const struct server *s) {
  return s->api != NULL ? api_port(s->api) : 0;
}

const char *server_address(struct server *s) {
  int n = 0;
  s->address[0] = '\0';
  if (s->host != NULL)
    n = snprintf(s->address, sizeof s->address, "%s:%d", s->host,
                 server_port(s));
  if (s->unix_path != NULL && n >= 0 && (size_t)n < sizeof s->address)
    n += snprintf(s->address + n, sizeof s->address - (size_t)n, "%sunix:%s",
                  n > 0 ? " and " : "", s->unix_path);
  if (s->admin_path != NULL && n >= 0 && (size_t)n < sizeof s->address)
    snprintf(s->address + n, sizeof s->address - (size_t)n,
             "%s(operators) unix:%s", n > 0 ? ", " : "", s->admin_path);
  return s->address;
}

void server_run(struct server *s) {
  arm_timer(s);
  check_stop(s);
  if (s->phase != STOPPED)
    loop_run(s->loop);
}

int server_store_failed(const struct server *s) { return s->store_failed; }

bool server_ready(const struct server *s) {
  return s->phase == RUNNING && s->store_failed == 0 &&
         writer_health(s->writer) == 0;
}

size_t server_gateway_links(const struct server *s) {
  size_t n = 0;
  for (const struct link *k = s->links; k != NULL; k = k->next)
    n += k->role == LINK_GATEWAY;
  return n;
}

size_t server_queue_bytes(const struct server *s) {
  size_t n = 0;
  for (const struct link *k = s->links; k != NULL; k = k->next)
    n += mimd_outq_len(&k->out);
  return n;
}

void server_wake(struct server *s) {
  if (s != NULL)
    loop_wake(s->loop);
}

void server_destroy(struct server *s) {
  if (s == NULL)
    return;
  s->tearing_down = true;
  struct mim_write_batch *left;
  writer_stop(s->writer, &left);
  if (left != NULL) {
    /* committed after the loop stopped (an early exit): hand it back so the
     * logic can free it; its replies have nowhere to go now */
    (void)mim_logic_batch_done(s->logic, left);
  }
  /* HTTP requests still waiting: answered (into connections about to
   * close) before the loop goes */
  for (struct admin_req **pp = &s->admin; *pp != NULL;) {
    struct admin_req *a = *pp;
    if (a->done == NULL) {
      pp = &a->next;
      continue;
    }
    *pp = a->next;
    s->n_admin--;
    a->done(a->done_user, NULL);
    free(a);
  }
  api_stop(s->api);
  loop_destroy(s->loop); /* may run on_close for the links */
  api_destroy(s->api);   /* after its connections went with the context */
  while (s->links != NULL) {
    struct link *k = s->links;
    s->links = k->next;
    link_destroy(k);
  }
  while (s->admin != NULL) {
    struct admin_req *a = s->admin;
    s->admin = a->next;
    free(a);
  }
  explicit_bzero(s->rpc_secret, s->rpc_secret_len);
  free(s->rpc_secret);
  explicit_bzero(s->admin_secret, s->admin_secret_len);
  free(s->admin_secret);
  free(s->host);
  free(s->unix_path);
  free(s->admin_path);
  free(s);
}
