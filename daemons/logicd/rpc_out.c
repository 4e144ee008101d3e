/* The logic's effects out to the links, and the link bookkeeping that goes
 * with it (finding a gateway by handle, cutting off a link that cannot keep
 * up). */
#include "rpc_out.h"

#include "rpc_server_internal.h"
#include <mim/rpc.h>

#include "log.h"

#include <stdlib.h>
#include <string.h>

/* Targets per DELIVER frame: ~20 bytes each, so a frame stays far below the
 * 16 MiB RPC body limit whatever the fan-out. */
#define DELIVER_TARGETS_MAX 8192

struct link *rpc_find_gateway(const struct server *s, uint32_t handle) {
  for (struct link *k = s->links; k != NULL; k = k->next)
    if (k->role == LINK_GATEWAY && k->gateway == handle && !k->closing)
      return k;
  return NULL;
}

struct link *rpc_find_gateway_id(const struct server *s, const char *id) {
  for (struct link *k = s->links; k != NULL; k = k->next)
    if (k->role == LINK_GATEWAY && strcmp(k->id, id) == 0)
      return k;
  return NULL;
}

uint32_t rpc_new_handle(struct server *s) {
  uint32_t h;
  do
    h = ++s->last_handle;
  while (h == 0 || rpc_find_gateway(s, h) != NULL);
  return h;
}

/* The link stops being a gateway: the logic drops its routes. */
void rpc_detach(struct server *s, struct link *k) {
  if (k->role != LINK_GATEWAY)
    return;
  int rc = mim_logic_gateway_down(s->logic, k->gateway);
  if (rc < 0)
    mimd_warn("%s: gateway_down: %s", link_name(k), mim_strerror(rc));
  k->role = LINK_NEW;
}

/* Queues a frame. A link whose queue overflows (it does not read) or that
 * lost a frame to a failed allocation is doomed: it is cut off after the
 * current round of effects, and its gateway reconnects and re-registers,
 * which is better than silently missing pushes. */
int rpc_send(struct link *k, const struct mim_rpc *r) {
  if (k->closing || k->doomed)
    return -EPIPE;
  int rc = link_send(k, r);
  if (rc == 0)
    return 0;
  if (rc == -ENOBUFS)
    mimd_warn("%s is not reading (%zu bytes queued): cutting it off",
              link_name(k), mimd_outq_len(&k->out));
  else
    mimd_warn("%s: cannot queue a frame: %s: cutting it off", link_name(k),
              mim_strerror(rc));
  k->doomed = true;
  return rc;
}

/* Kills the doomed links. Returns whether any was (the logic may then have
 * more effects to drain). */
bool rpc_sweep_doomed(struct server *s) {
  bool any = false;
  for (struct link *k = s->links; k != NULL; k = k->next) {
    if (!k->doomed || k->closing)
      continue;
    rpc_detach(s, k);
    link_kill(k);
    any = true;
  }
  return any;
}

void rpc_check_pause(struct server *s, struct link *k) {
  if (k->paused || k->closing || k->doomed ||
      mimd_outq_len(&k->out) <= s->link_queue_pause)
    return;
  /* Stop taking work from it instead of buffering without limit: its
   * frames wait in the socket (and in gatewayd's queue), its gateway's
   * reads wait in the logic. Pushes and acks to it still go out, so it is
   * cut off (rpc_queue_max_mb) only if it stops reading altogether. */
  k->paused = true;
  lws_rx_flow_control(k->wsi, 0);
  if (k->role == LINK_GATEWAY)
    (void)mim_logic_gateway_pause(s->logic, k->gateway, true);
  mimd_debug("%s: %zu bytes queued: paused", link_name(k),
             mimd_outq_len(&k->out));
}

/* ---- effects out ---- */

static void route_deliver(struct server *s, const struct mim_effect *e) {
  struct link *k = rpc_find_gateway(s, e->gateway);
  if (k == NULL)
    return; /* the gateway went down; its connections went with it */
  for (size_t off = 0; off < e->n_targets;) {
    size_t n = e->n_targets - off;
    if (n > DELIVER_TARGETS_MAX)
      n = DELIVER_TARGETS_MAX;
    struct mim_rpc r;
    mim_rpc_init(&r);
    r.cmd = MIM_RPC_DELIVER;
    r.inner_cmd = e->cmd;
    r.body = e->body;
    r.body_len = e->body_len;
    r.seq_field = e->seq_field;
    r.targets = e->targets + off;
    r.n_targets = n;
    if (rpc_send(k, &r) < 0)
      return;
    off += n;
  }
  rpc_check_pause(s, k);
}

static void route_kick(struct server *s, const struct mim_effect *e) {
  struct link *k = rpc_find_gateway(s, e->gateway);
  if (k == NULL)
    return;
  /* RpcKick carries the Kick packet's text, not the packet */
  struct mim_packet p;
  mim_packet_init(&p);
  if (e->body_len > 0 &&
      mim_packet_decode(&p, MIM_CMD_KICK, e->body, e->body_len) < 0)
    mim_packet_init(&p);
  struct mim_rpc r;
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_KICK;
  r.conn_id = e->conn_id;
  r.reason = e->reason;
  r.text = p.text;
  (void)rpc_send(k, &r);
  mim_packet_finish(&p);
  rpc_check_pause(s, k);
}

static void route_session(struct server *s, const struct mim_effect *e) {
  struct link *k = rpc_find_gateway(s, e->gateway);
  if (k == NULL)
    return; /* the gateway went down; its connections went with it */
  struct mim_rpc r;
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_SESSION;
  r.conn_id = e->conn_id;
  r.uid = e->uid;
  r.device = e->device;
  r.caps = e->caps;
  r.ticket = e->ticket;
  r.ticket_len = e->ticket_len;
  (void)rpc_send(k, &r);
}

struct admin_req *rpc_admin_take(struct server *s, uint64_t id) {
  for (struct admin_req **pp = &s->admin; *pp != NULL; pp = &(*pp)->next) {
    if ((*pp)->id == id) {
      struct admin_req *a = *pp;
      *pp = a->next;
      s->n_admin--;
      return a;
    }
  }
  return NULL;
}

static void route_admin_reply(struct server *s, const struct mim_effect *e) {
  struct admin_req *a = rpc_admin_take(s, e->req_id);
  if (a == NULL)
    return;
  if (a->done != NULL) {
    a->done(a->done_user, e);
  } else if (a->link != NULL) {
    struct mim_rpc r;
    mim_rpc_init(&r);
    r.cmd = MIM_RPC_ADMIN_REPLY;
    r.req_id = a->client_id;
    r.inner_cmd = e->cmd;
    r.body = e->body;
    r.body_len = e->body_len;
    (void)rpc_send(a->link, &r);
    rpc_check_pause(s, a->link);
  }
  free(a);
}

void rpc_route(struct server *s, const struct mim_effect *e) {
  switch (e->kind) {
  case MIM_EFFECT_DELIVER:
    route_deliver(s, e);
    break;
  case MIM_EFFECT_KICK:
    route_kick(s, e);
    break;
  case MIM_EFFECT_ADMIN_REPLY:
    route_admin_reply(s, e);
    break;
  case MIM_EFFECT_SESSION:
    route_session(s, e);
    break;
  }
}
