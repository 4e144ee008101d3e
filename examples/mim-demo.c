/* mim-demo: libmim embedded in one file, no sockets.
 *
 * Opens an LMDB store, creates the message logic, plays a gateway with three
 * connections (alice on two devices, bob), and prints every packet the logic
 * sends back: how a server developer drives libmim from their own loop.
 *
 *   mim-demo [DATA_DIR]      (default ./data/demo)
 *
 * Build against an installed libmim:
 *   cc mim-demo.c $(pkg-config --cflags --libs libmim) -o mim-demo
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mim/mim.h>
#include <mim/lmdb.h>

#define GATEWAY 1

static void die(const char *what, int err) {
  fprintf(stderr, "mim-demo: %s: %s\n", what, mim_strerror(err));
  exit(1);
}

/* Prints one packet the way a client would receive it. */
static void show(uint64_t conn, uint32_t cmd, const uint8_t *body, size_t len,
                 uint32_t seq_field, uint64_t inbox_seq) {
  uint8_t frame[MIM_HEADER_SIZE + MIM_MAX_BODY_DEFAULT + 16];
  size_t flen;
  if (mim_frame_encode_with_field(frame, sizeof frame, cmd, body, len,
                                  seq_field, inbox_seq, &flen) < 0)
    return;
  struct mim_packet p;
  mim_packet_init(&p);
  if (mim_packet_decode(&p, cmd, frame + MIM_HEADER_SIZE,
                        flen - MIM_HEADER_SIZE) < 0)
    return;
  printf("  conn %llu <- %-14s", (unsigned long long)conn, mim_cmd_name(cmd));
  switch (cmd) {
  case MIM_CMD_AUTH_RSP:
    printf(" status=%d inbox=%llu acked=%llu", p.status,
           (unsigned long long)p.last_inbox_seq, (unsigned long long)p.ack_seq);
    break;
  case MIM_CMD_C2C_SEND_RSP:
  case MIM_CMD_C2G_SEND_RSP:
    printf(" seq=%lld msg_id=%llu inbox_seq=%llu", (long long)p.seq,
           (unsigned long long)p.msg_id, (unsigned long long)p.inbox_seq);
    break;
  case MIM_CMD_C2C_PUSH:
  case MIM_CMD_C2G_PUSH:
    printf(" %s%s%s: \"%s\" (inbox_seq=%llu)", p.from,
           p.group[0] ? " in #" : " to ", p.group[0] ? p.group : p.to,
           p.content, (unsigned long long)p.inbox_seq);
    break;
  case MIM_CMD_PULL_RSP:
    printf(" %zu message(s), has_more=%d", p.n_items, p.has_more);
    for (size_t i = 0; i < p.n_items; i++)
      printf("\n      #%llu %s: \"%s\"",
             (unsigned long long)p.items[i].inbox_seq, p.items[i].from,
             p.items[i].content);
    break;
  case MIM_CMD_GROUP_CREATE_RSP:
    printf(" #%s with %zu members", p.group, p.n_members);
    break;
  case MIM_CMD_ERROR:
    printf(" code=%d \"%s\" retryable=%d", p.status, p.text, p.retryable);
    break;
  case MIM_CMD_KICK:
    printf(" reason=%d", p.reason);
    break;
  }
  printf("\n");
  mim_packet_finish(&p);
}

/* What a daemon does after each event: commit writes, deliver effects. */
static void run(struct mim_logic *logic) {
  mim_logic_flush(logic);
  struct mim_effect e;
  while (mim_logic_next_effect(logic, &e) == 0) {
    if (e.kind == MIM_EFFECT_DELIVER)
      for (size_t i = 0; i < e.n_targets; i++)
        show(e.targets[i].conn_id, e.cmd, e.body, e.body_len, e.seq_field,
             e.targets[i].inbox_seq);
    else if (e.kind == MIM_EFFECT_KICK)
      show(e.conn_id, e.cmd, e.body, e.body_len, 0, 0);
  }
}

static void request(struct mim_logic *logic, uint64_t conn,
                    const struct mim_packet *p, const char *what) {
  uint8_t body[4096];
  size_t len;
  int rc = mim_packet_encode_body(p, body, sizeof body, &len);
  if (rc < 0)
    die("encode", rc);
  printf("conn %llu -> %s: %s\n", (unsigned long long)conn,
         mim_cmd_name(p->cmd), what);
  rc = mim_logic_receive(logic, (struct mim_conn_ref){GATEWAY, conn}, p->cmd,
                         body, len);
  if (rc < 0)
    die("receive", rc);
  run(logic);
}

static void auth(struct mim_logic *logic, uint64_t conn, const char *uid,
                 const char *device) {
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_AUTH_REQ;
  p.uid = uid;
  p.device = device;
  p.token = "token"; /* development auth accepts any token */
  request(logic, conn, &p, uid);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "./data/demo";
  mkdir("./data", 0700);

  struct mim_lmdb_config scfg;
  mim_lmdb_config_init(&scfg);
  scfg.path = dir;
  struct mim_backend *store;
  int rc = mim_lmdb_open(&store, &scfg);
  if (rc < 0)
    die(dir, rc);

  struct mim_logic_config cfg;
  mim_logic_config_init(&cfg);
  cfg.backend = store;
  cfg.dev_auth = true;
  struct mim_logic *logic;
  if ((rc = mim_logic_create(&logic, &cfg)) < 0)
    die("logic", rc);
  mim_logic_gateway_up(logic, GATEWAY, "demo-gw");
  printf("libmim %s, store in %s (development auth)\n\n", mim_version(), dir);

  auth(logic, 1, "alice", "phone");
  auth(logic, 2, "alice", "laptop");
  auth(logic, 3, "bob", NULL);

  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_C2C_SEND_REQ;
  p.to = "bob";
  p.content = "hi bob!";
  p.client_msg_id = "demo-1";
  p.seq = 1;
  request(logic, 1, &p, "to bob, client_msg_id demo-1");
  request(logic, 1, &p, "the same again (a retry): same msg_id, no push");

  const char *members[] = {"bob"};
  mim_packet_init(&p);
  p.cmd = MIM_CMD_GROUP_CREATE_REQ;
  p.group = "demo-team";
  p.members = members;
  p.n_members = 1;
  p.seq = 2;
  request(logic, 1, &p, "create #demo-team with bob (fails if it exists)");

  mim_packet_init(&p);
  p.cmd = MIM_CMD_C2G_SEND_REQ;
  p.group = "demo-team";
  p.content = "hello team";
  p.seq = 3;
  request(logic, 3, &p, "bob to #demo-team");

  mim_packet_init(&p);
  p.cmd = MIM_CMD_PULL_REQ;
  p.has_after_seq = true;
  p.after_seq = 0;
  p.limit = 5;
  p.seq = 4;
  request(logic, 3, &p, "bob pulls his inbox from the start");

  auth(logic, 4, "bob", NULL); /* same uid and device: the first is kicked */

  mim_logic_destroy(logic);
  mim_backend_destroy(store);
  printf("\nrun it again: the store keeps everything (inbox seqs go on)\n");
  return 0;
}
