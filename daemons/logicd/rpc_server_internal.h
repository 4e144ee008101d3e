/* The RPC server's state, shared as data by its parts: rpc_server.c (lws
 * callbacks, batches, the tick, shutdown), rpc_in.c (frames from links into
 * the logic), rpc_out.c (the logic's effects out to links). Each part's
 * functions are in its own header; the calls go one way:
 *
 *   rpc_link, loop, writer -> rpc_out -> rpc_in -> rpc_server -> main
 *
 * Private to logicd. */
#ifndef LOGICD_RPC_SERVER_INTERNAL_H
#define LOGICD_RPC_SERVER_INTERNAL_H

#include "api.h"
#include "loop.h"
#include "rpc_link.h"
#include "rpc_server.h"
#include "writer.h"

#include <mim/logic.h>
#include <mim/rpc.h>

#define ADMIN_ID "mimctl"        /* the gateway_id operator links send */
#define ADMIN_PENDING_MAX 4096   /* admin requests awaiting their reply */

enum phase {
  RUNNING,   /* serving */
  DRAINING,  /* stop asked: no new requests; pending writes commit */
  FLUSHING,  /* nothing left to commit; last frames go out */
  STOPPED,
};

/* An admin request waiting for its reply. logicd numbers them itself: two
 * mimctl links may well use the same req_id. */
struct admin_req {
  struct admin_req *next;
  uint64_t id;        /* ours, given to the logic */
  uint64_t client_id; /* the asker's req_id */
  struct link *link;  /* NULL once the asker is gone */
  /* An HTTP API request (api.c) instead of a link: called with the reply
   * effect, or with NULL when logicd drops the request at exit. */
  void (*done)(void *user, const struct mim_effect *e);
  void *done_user;
};

struct server {
  struct mim_logic *logic;
  struct loop *loop;
  struct writer *writer;
  struct link *links;
  struct admin_req *admin;
  size_t n_admin;
  uint32_t last_handle;
  uint64_t last_admin_id;
  char *rpc_secret;
  size_t rpc_secret_len;
  char *admin_secret;       /* "" = none */
  size_t admin_secret_len;
  int64_t hello_timeout_ms;
  int64_t ping_ms;          /* 0 = no PINGs */
  int64_t dead_ms;
  int64_t next_liveness;    /* monotonic ms of the next rpc_check_links() */
  uint64_t last_nonce;
  size_t link_queue_max;
  size_t link_queue_pause, link_queue_resume;
  bool turn_wake;           /* woken to start a new turn of reads */
  const volatile sig_atomic_t *stop_flag;
  volatile sig_atomic_t *reload_flag; /* NULL = no reloads */
  void (*reload)(void *user);
  void *reload_user;
  enum phase phase;
  bool tearing_down;
  unsigned commit_failures; /* consecutive failed commits */
  int store_failed;         /* 0, or why the store became unusable */
  bool timer_armed;
  int64_t timer_at;         /* monotonic ms */
  int64_t flush_deadline;   /* monotonic ms */
  char *host;               /* listeners, for server_address() */
  char *unix_path;
  char *admin_path;         /* the operator socket, NULL = none */
  char address[768];
  struct api *api;          /* the HTTP API, NULL = none (api.c) */
};

/* Feeds the writer and routes every queued effect: what every event that
 * touched the logic ends with. */
void server_pump(struct server *s);

#endif
