/* mim-chat — a small interactive terminal client for gatewayd.
 *
 *   mim-chat [--url ws://127.0.0.1:8080/ws] [--token T] [--device D]
 *            [--all] [--insecure] [--verbose] UID
 *
 * One file, libmim's public codec plus libwebsockets' client API, in the
 * spirit of wlroots' tinywl: everything a real client must get right, and
 * nothing more.
 *
 *   - log in (token "token" works against a logicd in development mode),
 *   - pull what arrived while offline (everything after this device's ack
 *     cursor; --all: the whole inbox), page by page, and print it,
 *   - read commands from stdin (a terminal or a pipe), send them, and print
 *     replies, pushes and errors as they come; messages are pipelined, a
 *     /command waits for the replies before it and holds back what follows,
 *   - acknowledge every push with its inbox_seq, and pull when a push shows
 *     a gap, so each inbox entry is printed exactly once, in order,
 *   - give every message a random client_msg_id, so resending it after a
 *     retryable error or a reconnect can never store it twice,
 *   - after a lost connection: reconnect with backoff, log in, pull the gap,
 *     resend unanswered messages; a kick for another login is final,
 *   - at /quit or end of input: wait (bounded) for outstanding replies, log
 *     out, close. Exit status 0, or 1 when the session failed (no
 *     connection, login refused, kicked, replies that never came).
 *
 * stdin is adopted into the lws loop as a RAW_FILE descriptor, so one
 * poll() waits for the terminal and the socket alike.
 *
 * Commands:
 *   @bob hello                  message to user bob
 *   #team hi all                message to group team
 *   /create team alice,bob      create a group (you are always a member)
 *   /add team carol             add members
 *   /leave team                 leave a group
 *   /members team               list the members
 *   /history @bob [N]           the last N (20) messages with bob, or #team
 *   /help, /quit
 */
#include <libwebsockets.h>
#include <mim/auth.h>
#include <mim/codec.h>
#include <mim/common.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define PROTOCOL_NAME "mim-chat"
#define RX_MAX (32u * 1024 * 1024)  /* largest websocket message accepted */
#define PULL_PAGE 100
#define MAX_OUTSTANDING 64          /* requests in flight before stdin waits */
#define SEND_ATTEMPTS 5             /* tries of a send on retryable errors */
#define QUIT_WAIT_US (10 * LWS_US_PER_SEC) /* bound on the wait at exit */
#define RECONNECT_MAX_US (8 * LWS_US_PER_SEC)
#define WHAT_MAX (MIM_ID_MAX + 32)

enum state { ST_CONNECTING, ST_AUTH, ST_SYNC, ST_READY, ST_CLOSING };

/* A request waiting for its reply. Sends keep their encoded frame: they are
 * resent unchanged (same client_msg_id) after a retryable error or a
 * reconnect. */
struct request {
  struct request *next;
  int64_t seq;
  uint32_t cmd;
  char what[WHAT_MAX];         /* "@bob", "/create team", ... for messages */
  uint8_t *frame;              /* sends only: header + body */
  size_t frame_len;
  int attempts;
  bool retry_due;              /* waiting for the retry timer */
};

struct out_frame {
  struct out_frame *next;
  size_t len;
  uint8_t buf[];               /* LWS_PRE headroom, then the frame */
};

struct line {
  struct line *next;
  bool eof;                    /* end of input marker: quit after this */
  char text[];
};

struct chat {
  /* settings */
  const char *uid, *device, *token;
  char url[512];
  const char *host, *path;
  int port;
  bool tls, insecure, all;

  struct lws_context *ctx;
  struct lws_vhost *vhost;
  struct lws *ws;              /* the websocket, NULL while disconnected */
  lws_sorted_usec_list_t sul_reconnect, sul_quit, sul_retry, sul_resync;

  enum state state;
  bool quitting, quit_armed, logout_sent, done, no_reconnect, ever_ready;
  bool barrier;                /* a /command is out: later lines wait */
  bool input_done;             /* stdin reached its end */
  int exit_code;
  int64_t next_seq;
  lws_usec_t backoff;

  struct request *reqs;        /* awaiting their replies */
  size_t n_reqs;
  struct out_frame *out, **out_tail;
  struct line *lines, **lines_tail;
  char inbuf[8192];            /* a partial stdin line */
  size_t inlen;
  uint8_t *rx;                 /* websocket message being reassembled */
  size_t rx_len, rx_cap;

  /* the inbox as this process has seen it */
  uint64_t have;               /* every entry <= have was printed (or sent
                                  by us) */
  uint64_t acked;              /* highest inbox_seq acknowledged */
  uint64_t ahead[64];          /* our own sends beyond `have` */
  size_t n_ahead;
  bool pull_in_flight, pull_again;
};

static struct chat chat;
static volatile sig_atomic_t interrupted;

/* ---- small helpers ---- */

/* Prints `s` with control characters shown as '?', so one message is one
 * line and nothing from the network can drive the terminal. */
static void put_text(const char *s) {
  for (; s && *s; s++)
    putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
}

static const char *err_text(const struct mim_packet *e) {
  if (e->text != NULL && *e->text)
    return e->text;
  return mim_strerror(-e->status);
}

static void new_client_msg_id(char *out, size_t cap) {
  uint8_t r[12];
  if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
    /* never reuse ids: fall back to time and pid, still unique per run */
    snprintf(out, cap, "%lx-%lx", (unsigned long)time(NULL),
             (unsigned long)getpid() ^ (unsigned long)chat.next_seq);
    return;
  }
  for (size_t i = 0; i < sizeof r && 2 * i + 2 < cap; i++)
    snprintf(out + 2 * i, 3, "%02x", r[i]);
}

/* ---- output: frames queued for the WRITEABLE callback ---- */

static void queue_frame(const uint8_t *frame, size_t len) {
  struct out_frame *f = malloc(sizeof *f + LWS_PRE + len);
  if (f == NULL) {
    fprintf(stderr, "mim-chat: out of memory\n");
    exit(1);
  }
  f->next = NULL;
  f->len = len;
  memcpy(f->buf + LWS_PRE, frame, len);
  *chat.out_tail = f;
  chat.out_tail = &f->next;
  if (chat.ws != NULL)
    lws_callback_on_writable(chat.ws);
}

static void drop_output(void) {
  while (chat.out != NULL) {
    struct out_frame *f = chat.out;
    chat.out = f->next;
    free(f);
  }
  chat.out_tail = &chat.out;
}

/* Encodes `p` into a malloc'd frame. */
static uint8_t *encode(const struct mim_packet *p, size_t *len) {
  size_t cap = mim_packet_encoded_size(p);
  uint8_t *buf = malloc(cap ? cap : 1);
  if (buf == NULL || mim_packet_encode(p, buf, cap, len) < 0) {
    fprintf(stderr, "mim-chat: cannot encode %s\n", mim_cmd_name(p->cmd));
    exit(1);
  }
  return buf;
}

/* Sends a packet that gets no reply (acks). */
static void send_oneway(const struct mim_packet *p) {
  size_t len;
  uint8_t *buf = encode(p, &len);
  queue_frame(buf, len);
  free(buf);
}

/* Sends request `p` (its seq is assigned here) and remembers it until its
 * reply. `keep` keeps the frame for resending (message sends). */
static void send_request(struct mim_packet *p, const char *what, bool keep) {
  struct request *r = calloc(1, sizeof *r), **tail = &chat.reqs;
  if (r == NULL) {
    fprintf(stderr, "mim-chat: out of memory\n");
    exit(1);
  }
  p->seq = r->seq = chat.next_seq++;
  r->cmd = p->cmd;
  r->attempts = 1;
  snprintf(r->what, sizeof r->what, "%s", what);
  uint8_t *frame = encode(p, &r->frame_len);
  queue_frame(frame, r->frame_len);
  if (keep)
    r->frame = frame;
  else
    free(frame);
  while (*tail != NULL)
    tail = &(*tail)->next;
  *tail = r;
  chat.n_reqs++;
}

static struct request *take_request(int64_t seq) {
  for (struct request **pp = &chat.reqs; *pp != NULL; pp = &(*pp)->next) {
    if ((*pp)->seq == seq) {
      struct request *r = *pp;
      *pp = r->next;
      chat.n_reqs--;
      return r;
    }
  }
  return NULL;
}

static void free_request(struct request *r) {
  if (r != NULL)
    free(r->frame);
  free(r);
}

/* ---- the inbox: exactly-once, in-order printing ---- */

static bool is_ahead(uint64_t seq) {
  for (size_t i = 0; i < chat.n_ahead; i++)
    if (chat.ahead[i] == seq)
      return true;
  return false;
}

/* Moves `have` over our own sends that are now contiguous with it. */
static void absorb_ahead(void) {
  bool moved = true;
  while (moved) {
    moved = false;
    for (size_t i = 0; i < chat.n_ahead; i++) {
      if (chat.ahead[i] <= chat.have + 1) {
        if (chat.ahead[i] == chat.have + 1) {
          chat.have++;
          moved = true;
        }
        chat.ahead[i--] = chat.ahead[--chat.n_ahead];
      }
    }
  }
}

static void ack(uint32_t cmd) {
  if (chat.have <= chat.acked)
    return;
  struct mim_packet a;
  mim_packet_init(&a);
  a.cmd = cmd;
  a.inbox_seq = chat.have;
  send_oneway(&a);
  chat.acked = chat.have;
}

static void pull(void) {
  if (chat.pull_in_flight) {
    chat.pull_again = true;
    return;
  }
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_PULL_REQ;
  p.has_after_seq = true; /* a libmim pull: after our contiguous mark */
  p.after_seq = chat.have;
  p.limit = PULL_PAGE;
  chat.pull_in_flight = true;
  chat.pull_again = false;
  send_request(&p, "pull", false);
}

/* One message, as a push or a pulled entry. `when` (ms) prefixes the time,
 * for history. */
static void print_message(uint32_t type, const char *from, const char *to,
                          const char *group, const char *content,
                          const uint8_t *payload, size_t payload_len,
                          int64_t when) {
  if (when > 0) {
    time_t t = (time_t)(when / 1000);
    struct tm tm;
    char buf[32];
    strftime(buf, sizeof buf, "%H:%M:%S", localtime_r(&t, &tm));
    printf("%s ", buf);
  }
  bool mine = from != NULL && strcmp(from, chat.uid) == 0;
  if (type == MIM_MSG_PUSH) {
    printf("[push%s%s] ", from && *from ? " from " : "", from ? from : "");
  } else if (group != NULL && *group) {
    printf("[#%s] ", group);
    if (type == MIM_MSG_SYSTEM)
      fputs("* ", stdout);
    else
      printf("%s: ", mine ? "you" : from);
  } else if (mine) {
    printf("you → %s: ", to && *to ? to : "?");
  } else {
    printf("%s: ", from && *from ? from : "(server)");
  }
  put_text(content);
  if (payload_len > 0) {
    printf(" (payload %zu bytes:", payload_len);
    for (size_t i = 0; i < payload_len && i < 32; i++)
      printf(" %02x", payload[i]);
    fputs(payload_len > 32 ? " …)" : ")", stdout);
  }
  putchar('\n');
}

/* A push (cmd 8, 12 or 28) with its position in our inbox. */
static void on_push(const struct mim_packet *p, uint32_t ack_cmd) {
  uint64_t s = p->inbox_seq;
  if (s != 0 && (s <= chat.have || is_ahead(s)))
    return; /* seen already: at-least-once delivery */
  if (s > chat.have + 1) {
    pull(); /* something before it is missing: the pull brings both */
    return;
  }
  print_message(p->cmd == MIM_CMD_SERVER_PUSH ? MIM_MSG_PUSH : p->type,
                p->from, p->to, p->group, p->content, p->payload,
                p->payload_len, 0);
  if (s != 0) {
    chat.have = s;
    absorb_ahead();
    ack(ack_cmd);
  }
}

/* ---- stdin lines → requests ---- */

static void help(void) {
  puts("commands: @USER text | #GROUP text | /create GROUP [a,b,...] | "
       "/add GROUP USER... | /leave GROUP | /members GROUP | "
       "/history @USER|#GROUP [N] | /quit");
}

static void start_quit(void);
static void arm_quit_timer(void);

static void group_request(uint32_t cmd, const char *verb, char *args,
                          bool comma_list) {
  const char *members[64];
  size_t n = 0;
  char *save = NULL, what[WHAT_MAX];
  char *group = strtok_r(args, " ", &save);
  if (group != NULL && *group == '#')
    group++;
  if (group == NULL || !mim_id_valid(group)) {
    help();
    return;
  }
  const char *sep = comma_list ? ", " : " ";
  for (char *m; (m = strtok_r(NULL, sep, &save)) != NULL && n < 64;)
    members[n++] = m;
  if (cmd == MIM_CMD_GROUP_REMOVE_REQ) {
    members[0] = chat.uid; /* clients may only remove themselves */
    n = 1;
  } else if (cmd == MIM_CMD_GROUP_LIST_REQ) {
    n = 0;
  }
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = cmd;
  p.group = group;
  p.members = members;
  p.n_members = n;
  snprintf(what, sizeof what, "/%s %s", verb, group);
  send_request(&p, what, false);
}

static void send_message(bool to_group, char *rest) {
  char *text = strchr(rest, ' ');
  if (text != NULL)
    *text++ = '\0';
  while (text != NULL && *text == ' ')
    text++;
  if (!mim_id_valid(rest) || text == NULL || *text == '\0') {
    printf("usage: %s text\n", to_group ? "#GROUP" : "@USER");
    return;
  }
  char cmid[32], what[WHAT_MAX];
  new_client_msg_id(cmid, sizeof cmid);
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = to_group ? MIM_CMD_C2G_SEND_REQ : MIM_CMD_C2C_SEND_REQ;
  if (to_group)
    p.group = rest;
  else
    p.to = rest;
  p.content = text;
  p.client_msg_id = cmid;
  p.ts = (int64_t)time(NULL) * 1000;
  snprintf(what, sizeof what, "%c%s", to_group ? '#' : '@', rest);
  send_request(&p, what, true);
}

static void history(char *args) {
  char *save = NULL, what[WHAT_MAX];
  char *conv = strtok_r(args, " ", &save), *n = strtok_r(NULL, " ", &save);
  if (conv == NULL || (conv[0] != '@' && conv[0] != '#') ||
      !mim_id_valid(conv + 1)) {
    puts("usage: /history @USER|#GROUP [N]");
    return;
  }
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_HISTORY_REQ;
  if (conv[0] == '#')
    p.group = conv + 1;
  else
    p.peer = conv + 1;
  p.limit = n ? atoi(n) : 20;
  snprintf(what, sizeof what, "/history %s", conv);
  send_request(&p, what, false);
}

static void run_line(char *s) {
  if (*s == '@' || *s == '#') {
    send_message(*s == '#', s + 1);
    return;
  }
  char *args = strchr(s, ' ');
  if (args != NULL)
    *args++ = '\0';
  else
    args = s + strlen(s);
  if (strcmp(s, "/quit") == 0)
    start_quit();
  else if (strcmp(s, "/create") == 0)
    group_request(MIM_CMD_GROUP_CREATE_REQ, "create", args, true);
  else if (strcmp(s, "/add") == 0)
    group_request(MIM_CMD_GROUP_ADD_REQ, "add", args, true);
  else if (strcmp(s, "/leave") == 0)
    group_request(MIM_CMD_GROUP_REMOVE_REQ, "leave", args, false);
  else if (strcmp(s, "/members") == 0)
    group_request(MIM_CMD_GROUP_LIST_REQ, "members", args, false);
  else if (strcmp(s, "/history") == 0)
    history(args);
  else
    help();
}

/* Runs queued lines while the connection is ready and not too far ahead of
 * the server; the rest wait in order. Messages are pipelined; a /command
 * (and the end of input) waits until every earlier reply is in, and holds
 * back what follows until its own reply is: a script then reads like a
 * conversation ("/create team bob" is done before "/add team carol"). */
static void run_lines(void) {
  if (chat.barrier && chat.n_reqs == 0)
    chat.barrier = false;
  while (chat.lines != NULL && chat.state == ST_READY && !chat.quitting &&
         !chat.barrier && chat.n_reqs < MAX_OUTSTANDING) {
    struct line *l = chat.lines;
    bool command = l->eof || l->text[0] == '/';
    if (command && chat.n_reqs > 0)
      break;
    chat.barrier = command;
    chat.lines = l->next;
    if (chat.lines == NULL)
      chat.lines_tail = &chat.lines;
    size_t n = strlen(l->text);
    while (n > 0 && (l->text[n - 1] == '\r' || l->text[n - 1] == ' '))
      l->text[--n] = '\0';
    if (l->eof)
      start_quit();
    else if (n > 0)
      run_line(l->text);
    free(l);
  }
}

static void add_line(const char *s, size_t n, bool eof) {
  struct line *l = malloc(sizeof *l + n + 1);
  if (l == NULL) {
    fprintf(stderr, "mim-chat: out of memory\n");
    exit(1);
  }
  l->next = NULL;
  l->eof = eof;
  memcpy(l->text, s, n);
  l->text[n] = '\0';
  *chat.lines_tail = l;
  chat.lines_tail = &l->next;
}

/* End of input: whatever is left is the last line, then quit. lws reports a
 * pipe whose writer is gone either as a read of 0 bytes or, when no data
 * came with the hang-up, only by closing the descriptor: both end here. */
static void input_ended(void) {
  if (chat.input_done)
    return;
  chat.input_done = true;
  if (chat.inlen > 0) /* a last line without '\n' */
    add_line(chat.inbuf, chat.inlen, false);
  chat.inlen = 0;
  add_line("", 0, true);
  /* from here on, exiting is bounded even if the server never answers */
  arm_quit_timer();
  run_lines();
}

/* Reads what stdin has. Returns -1 at end of input (lws then closes it). */
static int read_stdin(void) {
  if (chat.inlen == sizeof chat.inbuf) { /* an endless line: cut it */
    add_line(chat.inbuf, chat.inlen, false);
    chat.inlen = 0;
  }
  ssize_t n = read(STDIN_FILENO, chat.inbuf + chat.inlen,
                   sizeof chat.inbuf - chat.inlen);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return 0;
  if (n <= 0) {
    input_ended();
    return -1;
  }
  chat.inlen += (size_t)n;
  char *start = chat.inbuf, *nl;
  while ((nl = memchr(start, '\n', chat.inlen - (size_t)(start - chat.inbuf)))) {
    add_line(start, (size_t)(nl - start), false);
    start = nl + 1;
  }
  chat.inlen -= (size_t)(start - chat.inbuf);
  memmove(chat.inbuf, start, chat.inlen);
  run_lines();
  return 0;
}

/* ---- leaving ---- */

static void finish(int code) {
  chat.done = true;
  chat.exit_code = code;
  lws_cancel_service(chat.ctx);
}

/* Leaves once nothing is outstanding: logs out (which saves this device's
 * cursor; only now, so that everything sent before counts), then closes.
 * Called whenever that may have become possible. */
static void maybe_close(void) {
  if (!chat.quitting || chat.n_reqs > 0 || chat.pull_in_flight)
    return;
  if (chat.ws == NULL) {
    finish(chat.exit_code);
  } else if (chat.state == ST_READY && !chat.logout_sent) {
    struct mim_packet p;
    mim_packet_init(&p);
    p.cmd = MIM_CMD_LOGOUT_REQ;
    chat.logout_sent = true;
    send_request(&p, "logout", false);
  } else if (chat.state != ST_CLOSING) {
    chat.state = ST_CLOSING;
    lws_callback_on_writable(chat.ws); /* flush, then close */
  }
}

static void start_quit(void) {
  if (chat.quitting)
    return;
  chat.quitting = true;
  arm_quit_timer();
  maybe_close();
}

static void quit_timeout(lws_sorted_usec_list_t *sul) {
  (void)sul;
  fprintf(stderr, "mim-chat: gave up waiting for %zu repl%s from the "
          "server\n", chat.n_reqs, chat.n_reqs == 1 ? "y" : "ies");
  finish(1);
}

/* Once input has ended, the server gets QUIT_WAIT_US from the last sign of
 * progress to answer what is outstanding. */
static void arm_quit_timer(void) {
  chat.quit_armed = true;
  lws_sul_schedule(chat.ctx, 0, &chat.sul_quit, quit_timeout, QUIT_WAIT_US);
}

/* ---- connecting ---- */

static void connect_now(lws_sorted_usec_list_t *sul) {
  (void)sul;
  struct lws_client_connect_info i;
  memset(&i, 0, sizeof i);
  i.context = chat.ctx;
  i.address = chat.host;
  i.port = chat.port;
  i.path = chat.path;
  i.host = chat.host;
  i.origin = chat.host;
  i.ssl_connection = chat.tls ? LCCSCF_USE_SSL : 0;
  if (chat.tls && chat.insecure)
    i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED |
                        LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                        LCCSCF_ALLOW_EXPIRED;
  i.local_protocol_name = PROTOCOL_NAME;
  i.pwsi = &chat.ws;
  chat.state = ST_CONNECTING;
  /* on failure the CONNECTION_ERROR callback has run and decided what next */
  lws_client_connect_via_info(&i);
}

/* After a lost connection: reconnect with backoff, or stop. */
static void connection_lost(const char *why) {
  chat.ws = NULL;
  if (chat.done)
    return; /* leaving anyway (a failed login, the context going away) */
  drop_output();
  chat.pull_in_flight = chat.pull_again = false;
  chat.logout_sent = false;
  /* sends are resent after the next login (same client_msg_id, so never
   * stored twice); other requests are reported and forgotten */
  for (struct request **pp = &chat.reqs; *pp != NULL;) {
    struct request *r = *pp;
    if (r->frame != NULL) {
      pp = &r->next;
      continue;
    }
    if (r->cmd != MIM_CMD_PULL_REQ && r->cmd != MIM_CMD_AUTH_REQ &&
        r->cmd != MIM_CMD_LOGOUT_REQ)
      printf("error: no reply to %s (connection lost)\n", r->what);
    *pp = r->next;
    chat.n_reqs--;
    free_request(r);
  }
  if (chat.quitting && chat.n_reqs == 0) {
    finish(chat.exit_code);
    return;
  }
  if (chat.no_reconnect || !chat.ever_ready) {
    if (!chat.no_reconnect) /* a kick has said why already */
      fprintf(stderr, "mim-chat: %s\n", why);
    finish(1);
    return;
  }
  chat.backoff = chat.backoff ? chat.backoff * 2 : LWS_US_PER_SEC / 2;
  if (chat.backoff > RECONNECT_MAX_US)
    chat.backoff = RECONNECT_MAX_US;
  fprintf(stderr, "mim-chat: %s; reconnecting in %.1f s\n", why,
          (double)chat.backoff / LWS_US_PER_SEC);
  chat.state = ST_CONNECTING;
  lws_sul_schedule(chat.ctx, 0, &chat.sul_reconnect, connect_now,
                   chat.backoff);
}

static void send_auth(void) {
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_AUTH_REQ;
  p.token = chat.token;
  p.uid = chat.uid;
  p.device = chat.device;
  p.ts = (int64_t)time(NULL) * 1000;
  chat.state = ST_AUTH;
  send_request(&p, "login", false);
}

/* Back to ready after (re)connecting: resend unanswered messages, go on
 * with stdin. */
static void become_ready(void) {
  bool first = !chat.ever_ready;
  chat.state = ST_READY;
  chat.ever_ready = true;
  chat.backoff = 0;
  ack(MIM_CMD_C2C_PUSH_ACK);
  if (!first) {
    for (struct request *r = chat.reqs; r != NULL; r = r->next) {
      if (r->frame != NULL) {
        r->retry_due = false;
        queue_frame(r->frame, r->frame_len);
      }
    }
  }
  run_lines();
  maybe_close();
}

/* ---- replies ---- */

static void retry_sends(lws_sorted_usec_list_t *sul) {
  (void)sul;
  for (struct request *r = chat.reqs; r != NULL; r = r->next) {
    if (r->retry_due && chat.ws != NULL && chat.state == ST_READY) {
      r->retry_due = false;
      queue_frame(r->frame, r->frame_len);
    }
  }
}

/* After a retryable error of the login or a pull (the gateway answers for
 * a logicd that is away): try again where we were. */
static void resync(lws_sorted_usec_list_t *sul) {
  (void)sul;
  if (chat.ws == NULL)
    return; /* a reconnect will log in and pull anyway */
  if (chat.state == ST_AUTH)
    send_auth();
  else if (chat.state == ST_SYNC || chat.state == ST_READY)
    pull();
}

/* An Error for request `r` (NULL: not tied to a request). Retryable send
 * errors are resent after a backoff, with the same client_msg_id. */
static bool on_error(struct request *r, const struct mim_packet *e) {
  if (r != NULL && r->frame != NULL && e->retryable &&
      r->attempts < SEND_ATTEMPTS) {
    lws_usec_t delay = (LWS_US_PER_SEC / 2) << (r->attempts - 1);
    r->attempts++;
    r->retry_due = true;
    printf("error: %s (%s); retrying in %.1f s\n", err_text(e), r->what,
           (double)delay / LWS_US_PER_SEC);
    lws_sul_schedule(chat.ctx, 0, &chat.sul_retry, retry_sends, delay);
    return true; /* keep the request */
  }
  if (r == NULL)
    printf("error: %s\n", err_text(e));
  else if (r->cmd == MIM_CMD_AUTH_REQ || r->cmd == MIM_CMD_PULL_REQ) {
    if (r->cmd == MIM_CMD_PULL_REQ)
      chat.pull_in_flight = false;
    if (!e->retryable) {
      fprintf(stderr, "mim-chat: %s failed: %s\n", r->what, err_text(e));
      finish(1);
    } else {
      fprintf(stderr, "mim-chat: %s failed: %s; retrying in 1 s\n", r->what,
              err_text(e));
      lws_sul_schedule(chat.ctx, 0, &chat.sul_resync, resync, LWS_US_PER_SEC);
    }
  } else
    printf("error: %s (%s)\n", err_text(e), r->what);
  return false;
}

static void on_auth(const struct mim_packet *p) {
  if (p->status != 0) {
    fprintf(stderr, "mim-chat: login failed: %s\n",
            p->text && *p->text ? p->text : mim_strerror(-p->status));
    chat.no_reconnect = true;
    finish(1);
    return;
  }
  if (!chat.ever_ready) {
    printf("logged in as %s (device %s); inbox: %" PRIu64 " entries, "
           "%" PRIu64 " unacknowledged\n",
           chat.uid, chat.device ? chat.device : MIM_DEFAULT_DEVICE,
           p->last_inbox_seq,
           p->last_inbox_seq > p->ack_seq ? p->last_inbox_seq - p->ack_seq : 0);
    /* no local store: everything after this device's cursor is "what came
     * while offline" (--all: the whole inbox) */
    chat.have = chat.all ? 0 : p->ack_seq;
    chat.acked = chat.have;
  }
  chat.state = ST_SYNC;
  pull();
}

static void on_pull(const struct mim_packet *p) {
  chat.pull_in_flight = false;
  for (size_t i = 0; i < p->n_items; i++) {
    const struct mim_pull_item *m = &p->items[i];
    if (m->inbox_seq <= chat.have)
      continue;
    if (!is_ahead(m->inbox_seq))
      print_message(m->type, m->from, m->to, m->group, m->content,
                    m->payload, m->payload_len, 0);
    chat.have = m->inbox_seq;
  }
  absorb_ahead();
  if ((p->has_more && p->n_items > 0) || chat.pull_again) {
    pull();
    return;
  }
  ack(MIM_CMD_C2C_PUSH_ACK);
  if (chat.state == ST_SYNC)
    become_ready();
}

static void on_history(const struct mim_packet *p) {
  for (size_t i = p->n_items; i-- > 0;) { /* newest first: print oldest up */
    const struct mim_pull_item *m = &p->items[i];
    print_message(m->type, m->from, m->to, m->group, m->content, m->payload,
                  m->payload_len, m->send_time);
  }
  if (p->n_items == 0)
    puts("(no messages)");
  else if (p->has_more)
    puts("(older messages exist)");
}

static void on_group(const struct request *r, const struct mim_packet *p) {
  static const char *const verbs[] = {"created", "added to", "left",
                                      "members of"};
  int k = (int)(r->cmd - MIM_CMD_GROUP_CREATE_REQ) / 2;
  printf("%s #%s:", verbs[k], p->group ? p->group : "?");
  for (size_t i = 0; i < p->n_members; i++)
    printf(" %s", p->members[i]);
  puts(p->n_members ? "" : " (nobody)");
}

static void on_reply(const struct mim_packet *p) {
  struct request *r = take_request(p->seq);
  if (p->cmd == MIM_CMD_ERROR) {
    if (on_error(r, p) && r != NULL) {
      r->next = chat.reqs; /* still waiting: put it back */
      chat.reqs = r;
      chat.n_reqs++;
      return;
    }
  } else if (r == NULL) {
    return; /* a reply we gave up on */
  } else if (p->cmd == MIM_CMD_AUTH_RSP) {
    on_auth(p);
  } else if (p->cmd == MIM_CMD_PULL_RSP) {
    on_pull(p);
  } else if (p->cmd == MIM_CMD_C2C_SEND_RSP || p->cmd == MIM_CMD_C2G_SEND_RSP) {
    printf("sent to %s: msg_id %" PRIu64 "\n", r->what, p->msg_id);
    /* our message is in our own inbox too; it counts as seen */
    if (p->inbox_seq == chat.have + 1) {
      chat.have++;
      absorb_ahead();
    } else if (p->inbox_seq > chat.have && !is_ahead(p->inbox_seq) &&
               chat.n_ahead < sizeof chat.ahead / sizeof chat.ahead[0]) {
      chat.ahead[chat.n_ahead++] = p->inbox_seq;
    }
  } else if (p->cmd == MIM_CMD_HISTORY_RSP) {
    on_history(p);
  } else if (p->cmd >= MIM_CMD_GROUP_CREATE_RSP &&
             p->cmd <= MIM_CMD_GROUP_LIST_RSP) {
    on_group(r, p);
  }
  free_request(r);
  if (chat.quit_armed)
    arm_quit_timer(); /* progress: the bound starts again */
  run_lines();
  maybe_close();
}

static void on_kick(const struct mim_packet *p) {
  static const char *const reasons[] = {"logged in elsewhere", "by an operator",
                                        "server shutting down", "too slow",
                                        "protocol error"};
  const char *why = p->reason >= 0 && p->reason <= 4 ? reasons[p->reason]
                                                      : "kicked";
  bool more = p->text && *p->text && strcmp(p->text, why) != 0;
  fprintf(stderr, "mim-chat: disconnected by the server: %s%s%s\n", why,
          more ? ": " : "", more ? p->text : "");
  /* another login of ours, or an operator: reconnecting would fight them */
  if (p->reason != MIM_KICK_SHUTDOWN && p->reason != MIM_KICK_SLOW)
    chat.no_reconnect = true;
}

static void on_packet(uint32_t cmd, const uint8_t *body, size_t len) {
  struct mim_packet p;
  mim_packet_init(&p);
  if (mim_packet_decode(&p, cmd, body, len) < 0) {
    fprintf(stderr, "mim-chat: undecodable %s from the server\n",
            mim_cmd_name(cmd));
    return;
  }
  switch (cmd) {
  case MIM_CMD_C2C_PUSH:
    on_push(&p, MIM_CMD_C2C_PUSH_ACK);
    break;
  case MIM_CMD_C2G_PUSH:
    on_push(&p, MIM_CMD_C2G_PUSH_ACK);
    break;
  case MIM_CMD_SERVER_PUSH:
    on_push(&p, MIM_CMD_SERVER_PUSH_ACK);
    break;
  case MIM_CMD_KICK:
    on_kick(&p);
    break;
  case MIM_CMD_HEARTBEAT_RSP:
    break;
  default:
    on_reply(&p);
    break;
  }
  mim_packet_finish(&p);
}

/* One whole websocket message: one frame (several only with MIM_CAP_BATCH,
 * which this client does not ask for, but accepting them costs nothing). */
static void on_message(const uint8_t *data, size_t len) {
  while (len > 0) {
    struct mim_frame f;
    size_t used;
    if (mim_frame_decode(data, len, RX_MAX, &f, &used) < 0) {
      fprintf(stderr, "mim-chat: malformed frame from the server\n");
      return;
    }
    on_packet(f.header.cmd, f.body, f.header.body_len);
    data += used;
    len -= used;
  }
}

/* ---- the lws callback: websocket and stdin ---- */

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len) {
  (void)user;
  switch (reason) {
  case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
    char why[1024];
    snprintf(why, sizeof why, "cannot connect to %s: %s", chat.url,
             in ? (const char *)in : "unknown error");
    connection_lost(why);
    return 0;
  }
  case LWS_CALLBACK_CLIENT_ESTABLISHED:
    chat.rx_len = 0;
    send_auth();
    return 0;
  case LWS_CALLBACK_CLIENT_RECEIVE:
    if (lws_frame_is_binary(wsi) == 0 && lws_is_first_fragment(wsi)) {
      fprintf(stderr, "mim-chat: ignoring a text message from the server\n");
    }
    if (chat.rx_len + len > RX_MAX) {
      fprintf(stderr, "mim-chat: message from the server too large\n");
      return -1;
    }
    if (chat.rx_len + len > chat.rx_cap) {
      size_t cap = chat.rx_cap ? chat.rx_cap : 4096;
      while (cap < chat.rx_len + len)
        cap *= 2;
      uint8_t *p = realloc(chat.rx, cap);
      if (p == NULL)
        return -1;
      chat.rx = p;
      chat.rx_cap = cap;
    }
    memcpy(chat.rx + chat.rx_len, in, len);
    chat.rx_len += len;
    if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
      size_t n = chat.rx_len;
      chat.rx_len = 0;
      if (lws_frame_is_binary(wsi))
        on_message(chat.rx, n);
    }
    return 0;
  case LWS_CALLBACK_CLIENT_WRITEABLE: {
    struct out_frame *f = chat.out;
    if (f == NULL) {
      if (chat.state == ST_CLOSING) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, (unsigned char *)"bye",
                         3);
        return -1;
      }
      return 0;
    }
    chat.out = f->next;
    if (chat.out == NULL)
      chat.out_tail = &chat.out;
    int n = lws_write(wsi, f->buf + LWS_PRE, f->len, LWS_WRITE_BINARY);
    free(f);
    if (n < 0)
      return -1;
    if (chat.out != NULL || chat.state == ST_CLOSING)
      lws_callback_on_writable(wsi);
    return 0;
  }
  case LWS_CALLBACK_CLIENT_CLOSED: /* only ever one websocket */
    connection_lost("connection closed");
    return 0;
  case LWS_CALLBACK_RAW_RX_FILE:
    return read_stdin();
  case LWS_CALLBACK_RAW_CLOSE_FILE:
    input_ended();
    return 0;
  case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
    if (interrupted && !chat.done) {
      interrupted = 0;
      start_quit();
    }
    return 0;
  default:
    return 0;
  }
}

static const struct lws_protocols protocols[] = {
    {PROTOCOL_NAME, callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void on_sigint(int sig) {
  (void)sig;
  if (interrupted || chat.quitting)
    _exit(130); /* a second ^C: leave now */
  interrupted = 1;
  lws_cancel_service(chat.ctx);
}

/* ---- main ---- */

static void usage(FILE *f) {
  fprintf(f,
          "Usage: mim-chat [--url URL] [--token T] [--device D] [--all] "
          "[--insecure] [--verbose] UID\n"
          "  --url URL    gateway (default ws://127.0.0.1:8080/ws; wss:// for "
          "TLS)\n"
          "  --token T    login token (default \"token\": development mode "
          "only)\n"
          "  --device D   device id (default \"default\")\n"
          "  --all        at start, print the whole inbox, not just what this "
          "device has not acknowledged\n"
          "  --insecure   wss: accept self-signed or mismatched "
          "certificates\n"
          "Reads commands from stdin; /help lists them.\n");
}

static int parse_url(const char *url) {
  static char buf[512], path[512];
  const char *prot, *host, *p;
  snprintf(chat.url, sizeof chat.url, "%s", url);
  snprintf(buf, sizeof buf, "%s", url);
  if (lws_parse_uri(buf, &prot, &host, &chat.port, &p) != 0)
    return -1;
  if (strcmp(prot, "wss") == 0)
    chat.tls = true;
  else if (strcmp(prot, "ws") != 0)
    return -1;
  snprintf(path, sizeof path, "/%s", p); /* lws_parse_uri eats the '/' */
  chat.host = host;
  chat.path = path;
  return 0;
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"url", required_argument, NULL, 'u'},
      {"token", required_argument, NULL, 't'},
      {"device", required_argument, NULL, 'd'},
      {"all", no_argument, NULL, 'a'},
      {"insecure", no_argument, NULL, 'k'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *url = "ws://127.0.0.1:8080/ws";
  bool verbose = false;
  int c;
  chat.token = "token";
  while ((c = getopt_long(argc, argv, "u:t:d:akvh", longopts, NULL)) != -1) {
    switch (c) {
    case 'u': url = optarg; break;
    case 't': chat.token = optarg; break;
    case 'd': chat.device = optarg; break;
    case 'a': chat.all = true; break;
    case 'k': chat.insecure = true; break;
    case 'v': verbose = true; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc - 1 || !mim_id_valid(argv[optind]) ||
      (chat.device != NULL && !mim_id_valid(chat.device))) {
    usage(stderr);
    return 2;
  }
  chat.uid = argv[optind];
  if (parse_url(url) < 0) {
    fprintf(stderr, "mim-chat: bad URL '%s' (want ws://HOST:PORT/PATH)\n",
            url);
    return 2;
  }
  /* A closed stdin would let the next descriptor opened (a socket of lws)
   * become fd 0, and we would read commands from it: make it /dev/null. */
  if (fcntl(STDIN_FILENO, F_GETFD) == -1 &&
      open("/dev/null", O_RDONLY) != STDIN_FILENO)
    return 1;
  setvbuf(stdout, NULL, _IOLBF, 0); /* lines appear as they happen, piped too */
  chat.next_seq = 1;
  chat.out_tail = &chat.out;
  chat.lines_tail = &chat.lines;

  lws_set_log_level(verbose ? LLL_ERR | LLL_WARN | LLL_NOTICE : LLL_ERR,
                    NULL);
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = protocols;
  info.options = chat.tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
  chat.ctx = lws_create_context(&info);
  if (chat.ctx == NULL) {
    fprintf(stderr, "mim-chat: cannot create the lws context\n");
    return 1;
  }
  chat.vhost = lws_get_vhost_by_name(chat.ctx, "default");
  lws_sock_file_fd_type fd = {.filefd = STDIN_FILENO};
  if (lws_adopt_descriptor_vhost(chat.vhost, LWS_ADOPT_RAW_FILE_DESC, fd,
                                 PROTOCOL_NAME, NULL) == NULL) {
    /* stdin cannot be polled (closed?): behave as at end of input */
    input_ended();
  }
  signal(SIGINT, on_sigint);
  connect_now(NULL);
  while (!chat.done && lws_service(chat.ctx, 0) >= 0)
    ;
  lws_context_destroy(chat.ctx);
  while (chat.reqs != NULL)
    free_request(take_request(chat.reqs->seq));
  drop_output();
  while (chat.lines != NULL) {
    struct line *l = chat.lines;
    chat.lines = l->next;
    free(l);
  }
  free(chat.rx);
  return chat.exit_code;
}
