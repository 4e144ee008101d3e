/* mimctl commands: token (local), group / inbox / push (through logicd). */
#include "ctl.h"

#include <errno.h>
#include <mim/auth.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ARGS 1024
#define PULL_PAGE_MAX 500 /* logicd clamps larger pages (docs/protocol.md) */

/* Parses a decimal in [min, max]; false if `s` is anything else. */
static bool parse_u64(const char *s, uint64_t min, uint64_t max,
                      uint64_t *out) {
  char *end;
  if (s == NULL || *s < '0' || *s > '9')
    return false;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max)
    return false;
  *out = v;
  return true;
}

static bool ids_valid(const char *what, char **ids, int n) {
  for (int i = 0; i < n; i++) {
    if (!mim_id_valid(ids[i])) {
      fprintf(stderr, "mimctl: invalid %s '%s' (1..%d bytes, no spaces or "
                      "control characters)\n", what, ids[i], MIM_ID_MAX);
      return false;
    }
  }
  return true;
}

/* Prints an Error reply ("mimctl: group add team: no such group
 * (MIM_ERR_NO_SUCH_GROUP, 1009)") and returns CTL_EXIT_FAILED; or, for a
 * reply of an unexpected command, says so. */
static int reply_failed(const char *what, const struct mim_packet *r) {
  if (r->cmd != MIM_CMD_ERROR) {
    fprintf(stderr, "mimctl: %s: unexpected reply %s\n", what,
            mim_cmd_name(r->cmd));
    return CTL_EXIT_FAILED;
  }
  int err = -r->status;
  fprintf(stderr, "mimctl: %s: %s (%s, %d)%s\n", what,
          r->text && *r->text ? r->text : mim_strerror(err),
          mim_err_name(err), (int)r->status,
          r->retryable ? "; retryable: try again later" : "");
  return CTL_EXIT_FAILED;
}

/* One admin request on a fresh link. CTL_EXIT_OK with `reply` filled (an
 * Error packet included), or CTL_EXIT_FAILED after printing why. */
static int call_once(const struct ctl_settings *s, const struct mim_packet *req,
                     struct mim_packet *reply) {
  struct ctl_admin *a;
  if (ctl_admin_open(&a, s->addr, s->secret, s->timeout_ms) < 0)
    return CTL_EXIT_FAILED;
  int rc = ctl_admin_call(a, req, reply);
  ctl_admin_close(a);
  return rc < 0 ? CTL_EXIT_FAILED : CTL_EXIT_OK;
}

/* ---- token ---- */

int ctl_cmd_token(const struct ctl_settings *s, int argc, char **argv) {
  const char *ttl_s = NULL;
  const struct ctl_opt opts[] = {{"ttl", &ttl_s}, {NULL, NULL}};
  char *pos[2];
  int np;
  if (ctl_parse_opts("token", argc, argv, opts, pos, 2, &np) < 0)
    return CTL_EXIT_USAGE;
  uint64_t ttl = 86400;
  if (np < 1 || (ttl_s && !parse_u64(ttl_s, 1, INT32_MAX * 100ull, &ttl))) {
    fprintf(stderr, "usage: mimctl token UID [DEVICE] [--ttl SECONDS]\n");
    return CTL_EXIT_USAGE;
  }
  if (!ids_valid("uid", pos, 1) || (np == 2 && !ids_valid("device", pos + 1, 1)))
    return CTL_EXIT_USAGE;
  uint8_t *secret;
  size_t secret_len;
  if (ctl_settings_token_secret(s, &secret, &secret_len) < 0)
    return CTL_EXIT_USAGE;
  if (secret_len < MIM_SECRET_MIN) {
    fprintf(stderr, "mimctl: the token secret has %zu bytes; at least %d "
                    "are needed\n", secret_len, MIM_SECRET_MIN);
    explicit_bzero(secret, secret_len);
    free(secret);
    return CTL_EXIT_USAGE;
  }
  char token[MIM_TOKEN_MAX];
  int64_t expires = (int64_t)time(NULL) + (int64_t)ttl;
  int rc = mim_token_sign(secret, secret_len, pos[0], np == 2 ? pos[1] : NULL,
                          expires, token, sizeof token);
  explicit_bzero(secret, secret_len);
  free(secret);
  if (rc < 0) {
    fprintf(stderr, "mimctl: cannot sign a token: %s\n", mim_strerror(rc));
    return CTL_EXIT_FAILED;
  }
  printf("%s\n", token);
  return CTL_EXIT_OK;
}

/* ---- group ---- */

/* `empty` is what to say when the reply names nobody. */
static void print_members(const char *prefix, const struct mim_packet *r,
                          const char *empty) {
  printf("%s", prefix);
  for (size_t i = 0; i < r->n_members; i++)
    printf(" %s", r->members[i]);
  printf("%s\n", r->n_members ? "" : empty);
}

/* Splits "a,b,c" in place into `out` (at most `max`). Empty items skipped. */
static int split_list(char *list, char **out, int max) {
  int n = 0;
  for (char *save = NULL, *t = strtok_r(list, ",", &save); t != NULL;
       t = strtok_r(NULL, ",", &save)) {
    if (n == max)
      return -1;
    out[n++] = t;
  }
  return n;
}

/* `mimctl group list GID`: every member, read a page at a time (a large
 * group with long uids does not fit one reply), in the store's member
 * order. */
static int group_list_all(const struct ctl_settings *s, const char *group) {
  struct ctl_admin *a;
  if (ctl_admin_open(&a, s->addr, s->secret, s->timeout_ms) < 0)
    return CTL_EXIT_FAILED;
  char after[MIM_ID_MAX + 1] = "";
  bool more = true;
  int rc = CTL_EXIT_OK;
  while (more && rc == CTL_EXIT_OK) {
    struct mim_packet req, reply;
    mim_packet_init(&req);
    req.cmd = MIM_CMD_GROUP_LIST_REQ;
    req.group = group;
    req.limit = 500;
    req.after_member = after;
    mim_packet_init(&reply);
    if (ctl_admin_call(a, &req, &reply) < 0) {
      rc = CTL_EXIT_FAILED;
    } else if (reply.cmd != MIM_CMD_GROUP_LIST_RSP) {
      char what[64 + MIM_ID_MAX];
      snprintf(what, sizeof what, "group list %s", group);
      rc = reply_failed(what, &reply);
    } else {
      for (size_t i = 0; i < reply.n_members; i++)
        printf("%s\n", reply.members[i]);
      if (reply.n_members > 0)
        snprintf(after, sizeof after, "%s",
                 reply.members[reply.n_members - 1]);
      /* an empty page with has_more set would loop forever: stop */
      more = reply.has_more && reply.n_members > 0;
    }
    mim_packet_finish(&reply);
  }
  ctl_admin_close(a);
  return rc;
}

static const char group_usage[] =
    "usage: mimctl group create GID [--members UID,UID,...]\n"
    "       mimctl group add GID UID...\n"
    "       mimctl group remove GID UID...\n"
    "       mimctl group list GID\n";

int ctl_cmd_group(const struct ctl_settings *s, int argc, char **argv) {
  static char *pos[MAX_ARGS], *members[MAX_ARGS];
  const char *members_s = NULL;
  const struct ctl_opt opts[] = {{"members", &members_s}, {NULL, NULL}};
  int np = 0, nm = 0;
  char *list = NULL; /* --members, split in place */
  if (ctl_parse_opts("group", argc, argv, opts, pos, MAX_ARGS, &np) < 0)
    return CTL_EXIT_USAGE;
  if (np < 2) {
    fputs(group_usage, stderr);
    return CTL_EXIT_USAGE;
  }
  const char *verb = pos[0];
  struct mim_packet req, reply;
  mim_packet_init(&req);
  if (strcmp(verb, "create") == 0 && np == 2) {
    req.cmd = MIM_CMD_GROUP_CREATE_REQ;
    if (members_s != NULL && (list = strdup(members_s)) == NULL)
      return CTL_EXIT_FAILED;
    if (list != NULL)
      nm = split_list(list, members, MAX_ARGS);
  } else if ((strcmp(verb, "add") == 0 || strcmp(verb, "remove") == 0) &&
             np >= 3 && members_s == NULL) {
    req.cmd = verb[0] == 'a' ? MIM_CMD_GROUP_ADD_REQ : MIM_CMD_GROUP_REMOVE_REQ;
    nm = np - 2;
    memcpy(members, pos + 2, (size_t)nm * sizeof *members);
  } else if (strcmp(verb, "list") == 0 && np == 2 && members_s == NULL) {
    req.cmd = MIM_CMD_GROUP_LIST_REQ;
  } else {
    fputs(group_usage, stderr);
    return CTL_EXIT_USAGE;
  }
  if (nm < 0 || !ids_valid("group id", pos + 1, 1) ||
      !ids_valid("uid", members, nm)) {
    free(list);
    return CTL_EXIT_USAGE;
  }
  if (req.cmd == MIM_CMD_GROUP_LIST_REQ)
    return group_list_all(s, pos[1]);
  req.group = pos[1];
  req.members = (const char *const *)members;
  req.n_members = (size_t)nm;

  char what[64 + MIM_ID_MAX];
  snprintf(what, sizeof what, "group %s %s", verb, pos[1]);
  mim_packet_init(&reply);
  int rc = call_once(s, &req, &reply);
  if (rc != CTL_EXIT_OK) {
    /* already reported */
  } else if ((int)reply.cmd != mim_cmd_reply(req.cmd)) {
    rc = reply_failed(what, &reply);
  } else if (req.cmd == MIM_CMD_GROUP_LIST_REQ) {
    for (size_t i = 0; i < reply.n_members; i++)
      printf("%s\n", reply.members[i]);
  } else {
    char prefix[64 + MIM_ID_MAX];
    const char *fmt = req.cmd == MIM_CMD_GROUP_CREATE_REQ ? "created %s, members:"
                      : req.cmd == MIM_CMD_GROUP_ADD_REQ  ? "added to %s:"
                                                          : "removed from %s:";
    snprintf(prefix, sizeof prefix, fmt, pos[1]);
    print_members(prefix, &reply,
                  req.cmd == MIM_CMD_GROUP_CREATE_REQ
                      ? " (nobody yet)"
                      : " nobody (no change: already so)");
  }
  mim_packet_finish(&reply);
  free(list);
  return rc;
}

/* ---- inbox ---- */

/* Writes `s` with control characters escaped, so one message is one line. */
static void put_escaped(const char *s) {
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '\n')
      fputs("\\n", stdout);
    else if (c == '\t')
      fputs("\\t", stdout);
    else if (c == '\\')
      fputs("\\\\", stdout);
    else if (c < 0x20 || c == 0x7f)
      printf("\\x%02x", c);
    else
      putchar(c);
  }
}

static void print_item(const char *uid, const struct mim_pull_item *m) {
  char when[40] = "?";
  time_t secs = (time_t)(m->send_time / 1000);
  struct tm tm;
  if (gmtime_r(&secs, &tm) != NULL) {
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03dZ", (int)(m->send_time % 1000));
  }
  const char *from = m->from && *m->from ? m->from : "(server)";
  printf("%llu %llu %s %s → ", (unsigned long long)m->inbox_seq,
         (unsigned long long)m->msg_id, when, from);
  if (m->group && *m->group)
    printf("#%s", m->group);
  else
    printf("%s", m->to && *m->to ? m->to : uid);
  fputs(": ", stdout);
  if (m->type == MIM_MSG_SYSTEM)
    fputs("[system] ", stdout);
  else if (m->type == MIM_MSG_PUSH)
    fputs("[push] ", stdout);
  else if (m->type == MIM_MSG_CUSTOM)
    fputs("[custom] ", stdout);
  put_escaped(m->content);
  if (m->payload_len > 0) {
    fputs(" payload=", stdout);
    for (size_t i = 0; i < m->payload_len; i++)
      printf("%02x", m->payload[i]);
  }
  putchar('\n');
}

int ctl_cmd_inbox(const struct ctl_settings *s, int argc, char **argv) {
  const char *from_s = NULL, *limit_s = NULL;
  const struct ctl_opt opts[] = {
      {"from", &from_s}, {"limit", &limit_s}, {NULL, NULL}};
  char *pos[1];
  int np;
  if (ctl_parse_opts("inbox", argc, argv, opts, pos, 1, &np) < 0)
    return CTL_EXIT_USAGE;
  uint64_t from = 1, limit = 100;
  if (np != 1 || (from_s && !parse_u64(from_s, 0, UINT64_MAX, &from)) ||
      (limit_s && !parse_u64(limit_s, 1, UINT32_MAX, &limit))) {
    fprintf(stderr, "usage: mimctl inbox UID [--from SEQ] [--limit N]\n"
                    "  --from SEQ  first inbox seq to list (default 1)\n"
                    "  --limit N   list at most N messages (default 100)\n");
    return CTL_EXIT_USAGE;
  }
  if (!ids_valid("uid", pos, 1))
    return CTL_EXIT_USAGE;
  struct ctl_admin *a;
  if (ctl_admin_open(&a, s->addr, s->secret, s->timeout_ms) < 0)
    return CTL_EXIT_FAILED;
  uint64_t after = from > 0 ? from - 1 : 0, shown = 0;
  bool more = true;
  int rc = CTL_EXIT_OK;
  while (more && shown < limit && rc == CTL_EXIT_OK) {
    struct mim_packet req, reply;
    mim_packet_init(&req);
    req.cmd = MIM_CMD_PULL_REQ;
    req.uid = pos[0];
    req.has_after_seq = true;
    req.after_seq = after;
    uint64_t page = limit - shown;
    req.limit = (int32_t)(page > PULL_PAGE_MAX ? PULL_PAGE_MAX : page);
    mim_packet_init(&reply);
    if (ctl_admin_call(a, &req, &reply) < 0) {
      rc = CTL_EXIT_FAILED;
    } else if (reply.cmd != MIM_CMD_PULL_RSP) {
      rc = reply_failed("inbox", &reply);
    } else {
      for (size_t i = 0; i < reply.n_items && shown < limit; i++, shown++) {
        print_item(pos[0], &reply.items[i]);
        after = reply.items[i].inbox_seq;
      }
      /* an empty page with has_more set would loop forever: stop */
      more = reply.has_more && reply.n_items > 0;
    }
    mim_packet_finish(&reply);
  }
  ctl_admin_close(a);
  if (rc == CTL_EXIT_OK && more)
    fprintf(stderr, "mimctl: more messages follow; next: --from %llu\n",
            (unsigned long long)after + 1);
  return rc;
}

/* ---- push ---- */

static int nibble(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static int hex_decode(const char *hex, uint8_t **out, size_t *len) {
  size_t n = strlen(hex);
  uint8_t *b = n % 2 == 0 ? malloc(n / 2 + 1) : NULL;
  if (b == NULL)
    return -1;
  for (size_t i = 0; i < n / 2; i++) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      free(b);
      return -1;
    }
    b[i] = (uint8_t)(hi << 4 | lo);
  }
  *out = b;
  *len = n / 2;
  return 0;
}

int ctl_cmd_push(const struct ctl_settings *s, int argc, char **argv) {
  static char *uids[MAX_ARGS];
  const char *text = NULL, *hex = NULL, *from = NULL;
  const struct ctl_opt opts[] = {{"text", &text},
                                 {"payload-hex", &hex},
                                 {"from", &from},
                                 {NULL, NULL}};
  int nu;
  if (ctl_parse_opts("push", argc, argv, opts, uids, MAX_ARGS, &nu) < 0)
    return CTL_EXIT_USAGE;
  uint8_t *payload = NULL;
  size_t payload_len = 0;
  if (nu < 1 || (text == NULL && hex == NULL) ||
      (hex && hex_decode(hex, &payload, &payload_len) < 0)) {
    fprintf(stderr, "usage: mimctl push --text T [--payload-hex H] "
                    "[--from NAME] UID...\n"
                    "  (--text, --payload-hex or both; H: an even number of "
                    "hex digits)\n");
    return CTL_EXIT_USAGE;
  }
  if (!ids_valid("uid", uids, nu)) {
    free(payload);
    return CTL_EXIT_USAGE;
  }
  struct ctl_admin *a;
  if (ctl_admin_open(&a, s->addr, s->secret, s->timeout_ms) < 0) {
    free(payload);
    return CTL_EXIT_FAILED;
  }
  /* ServerPush carries one receiver (`to`): one request per uid, each stored
   * as its own message. */
  int rc = CTL_EXIT_OK;
  for (int i = 0; i < nu; i++) {
    struct mim_packet req, reply;
    mim_packet_init(&req);
    req.cmd = MIM_CMD_SERVER_PUSH;
    req.from = from;
    req.to = uids[i];
    req.content = text;
    req.payload = payload;
    req.payload_len = payload_len;
    req.type = MIM_MSG_PUSH;
    mim_packet_init(&reply);
    if (ctl_admin_call(a, &req, &reply) < 0) {
      mim_packet_finish(&reply);
      rc = CTL_EXIT_FAILED;
      break; /* the link is in an unknown state */
    }
    char what[32 + MIM_ID_MAX];
    snprintf(what, sizeof what, "push to %s", uids[i]);
    if (reply.cmd != MIM_CMD_SERVER_PUSH_ACK)
      rc = reply_failed(what, &reply);
    else
      printf("pushed to %s: msg_id %llu\n", uids[i],
             (unsigned long long)reply.msg_id);
    mim_packet_finish(&reply);
  }
  ctl_admin_close(a);
  free(payload);
  return rc;
}

int ctl_cmd_send(const struct ctl_settings *s, int argc, char **argv) {
  static char *pos[MAX_ARGS];
  const char *from = NULL, *to = NULL, *group = NULL, *text = NULL,
             *id = NULL;
  const struct ctl_opt opts[] = {{"from", &from}, {"to", &to},
                                 {"group", &group}, {"text", &text},
                                 {"id", &id}, {NULL, NULL}};
  int np;
  if (ctl_parse_opts("send", argc, argv, opts, pos, MAX_ARGS, &np) < 0)
    return CTL_EXIT_USAGE;
  if (np != 0 || from == NULL || text == NULL ||
      (to == NULL) == (group == NULL)) {
    fprintf(stderr, "usage: mimctl send --from UID (--to UID | --group GID) "
                    "--text T [--id CLIENT_MSG_ID]\n");
    return CTL_EXIT_USAGE;
  }
  char *ids[2] = {(char *)from, (char *)(to != NULL ? to : group)};
  if (!ids_valid("id", ids, 2))
    return CTL_EXIT_USAGE;
  struct ctl_admin *a;
  if (ctl_admin_open(&a, s->addr, s->secret, s->timeout_ms) < 0)
    return CTL_EXIT_FAILED;
  struct mim_packet req, reply;
  mim_packet_init(&req);
  req.cmd = to != NULL ? MIM_CMD_C2C_SEND_REQ : MIM_CMD_C2G_SEND_REQ;
  req.from = from;
  req.to = to;
  req.group = group;
  req.content = text;
  req.client_msg_id = id;
  mim_packet_init(&reply);
  int rc = CTL_EXIT_OK;
  if (ctl_admin_call(a, &req, &reply) < 0)
    rc = CTL_EXIT_FAILED;
  else if (reply.cmd != (uint32_t)mim_cmd_reply(req.cmd))
    rc = reply_failed("send", &reply);
  else
    printf("sent: msg_id %llu\n", (unsigned long long)reply.msg_id);
  mim_packet_finish(&reply);
  ctl_admin_close(a);
  return rc;
}
