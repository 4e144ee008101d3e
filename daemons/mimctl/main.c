/* mimctl — operator CLI for a libmim deployment.
 *
 *   mimctl [GLOBAL OPTIONS] COMMAND [ARGS]
 *
 * Global options may appear anywhere before "--"; the first other word is
 * the command, which parses the rest itself (ctl_parse_opts()). `token`
 * works locally; everything else talks to logicd as the admin client
 * "mimctl", on logicd's admin socket or with its admin secret
 * (docs/rpc.md). */
#include "ctl.h"

#include <mim/version.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "Usage: mimctl [OPTIONS] COMMAND [ARGS]\n"
    "Operator tool for libmim: tokens, groups, inboxes and server pushes.\n"
    "\n"
    "Options (they override the [logic] section of --config):\n"
    "  --config FILE             INI file logicd uses; reads [logic]\n"
    "                            admin_listen, data_dir, admin_secret(_file),\n"
    "                            unix_socket, listen, token_secret(_file)\n"
    "  --logic ADDR              logicd address, unix:/path or HOST:PORT\n"
    "                            (default: logicd's admin socket, [logic]\n"
    "                            admin_listen or DATA_DIR/admin.sock; else\n"
    "                            " CTL_DEFAULT_LOGIC ")\n"
    "  --admin-secret S          operator secret ([logic] admin_secret);\n"
    "                            needed on logicd's RPC listener\n"
    "  --admin-secret-file F     file holding it\n"
    "  --token-secret S          token secret, for `token`\n"
    "  --token-secret-file F     file holding the token secret\n"
    "  --timeout SECONDS         per request (default 5)\n"
    "  --help, --version\n"
    "\n"
    "Commands:\n"
    "  token UID [DEVICE] [--ttl SECONDS]   mint a login token (default 1 day;\n"
    "                                       no DEVICE: valid on every device)\n"
    "  group create GID [--members A,B,C]   create a group\n"
    "  group add GID UID...                 add members\n"
    "  group remove GID UID...              remove members\n"
    "  group list GID                       print the members, one per line\n"
    "  inbox UID [--from SEQ] [--limit N]   print a user's inbox (read-only):\n"
    "                                       \"seq msg_id time from → to: text\"\n"
    "  push --text T [--payload-hex H] [--from NAME] UID...\n"
    "                                       server push to users\n"
    "\n"
    "Exit status: 0 ok, 1 the request failed, 2 usage or configuration "
    "error.\n";

struct command {
  const char *name;
  int (*run)(const struct ctl_settings *s, int argc, char **argv);
  const char *usage;
};

static const struct command commands[] = {
    {"token", ctl_cmd_token,
     "usage: mimctl token UID [DEVICE] [--ttl SECONDS]\n"
     "Prints a login token for UID signed with the token secret (no logicd\n"
     "involved). Without DEVICE it is valid on every device of UID.\n"
     "  --ttl SECONDS  lifetime (default 86400)\n"},
    {"group", ctl_cmd_group,
     "usage: mimctl group create GID [--members UID,UID,...]\n"
     "       mimctl group add GID UID...\n"
     "       mimctl group remove GID UID...\n"
     "       mimctl group list GID\n"
     "Changes are made with operator rights: no creator is added, anyone\n"
     "may be removed.\n"},
    {"inbox", ctl_cmd_inbox,
     "usage: mimctl inbox UID [--from SEQ] [--limit N]\n"
     "Prints UID's inbox, one line per message:\n"
     "  inbox_seq msg_id time(UTC) from → to|#group: content\n"
     "Read-only: no device's cursor moves.\n"
     "  --from SEQ   first inbox seq to print (default 1)\n"
     "  --limit N    print at most N messages (default 100)\n"},
    {"push", ctl_cmd_push,
     "usage: mimctl push --text T [--payload-hex H] [--from NAME] UID...\n"
     "Stores a server push (cmd 28) in each UID's inbox and pushes it to\n"
     "their connected devices.\n"
     "  --text T         content\n"
     "  --payload-hex H  opaque payload bytes, as hex\n"
     "  --from NAME      application-defined sender (default none)\n"},
    {"send", ctl_cmd_send,
     "usage: mimctl send --from UID (--to UID | --group GID) --text T "
     "[--id CLIENT_MSG_ID]\n"
     "Sends a message on behalf of UID, with every check of UID's own send\n"
     "(membership, content rules) and the same dedup: a retry with the same\n"
     "--id is stored once (the HTTP API's POST /api/v1/messages).\n"},
};

static int dup_opt(char **dst, const char *v) {
  if (v == NULL)
    return 0;
  *dst = strdup(v);
  return *dst ? 0 : -1;
}

int main(int argc, char **argv) {
  const char *config = NULL, *logic = NULL, *admin_secret = NULL,
             *admin_secret_file = NULL, *token_secret = NULL,
             *token_secret_file = NULL, *timeout = NULL;
  const struct ctl_opt opts[] = {
      {"config", &config},
      {"logic", &logic},
      {"admin-secret", &admin_secret},
      {"admin-secret-file", &admin_secret_file},
      {"token-secret", &token_secret},
      {"token-secret-file", &token_secret_file},
      {"timeout", &timeout},
      {NULL, NULL},
  };
  for (int i = 1; i < argc && argv[i][0] == '-' && strcmp(argv[i], "--"); i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(usage_text, stdout);
      return CTL_EXIT_OK;
    }
    if (strcmp(argv[i], "--version") == 0) {
      printf("mimctl (libmim) %s\n", mim_version());
      return CTL_EXIT_OK;
    }
  }
  /* Global options may stand anywhere before "--": take them out, and the
   * first word left is the command. No command option shares their names. */
  char **rest = calloc((size_t)argc + 1, sizeof *rest);
  int n_rest = 0;
  if (rest == NULL)
    return CTL_EXIT_FAILED;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const struct ctl_opt *o = NULL;
    size_t len = strcspn(a, "=");
    for (const struct ctl_opt *k = opts; k->name && !o && a[0] == '-' &&
                                         a[1] == '-';
         k++)
      if (strlen(k->name) == len - 2 && strncmp(k->name, a + 2, len - 2) == 0)
        o = k;
    if (strcmp(a, "--") == 0) {
      while (i < argc)
        rest[n_rest++] = argv[i++];
    } else if (o == NULL) {
      rest[n_rest++] = argv[i];
    } else if (a[len] == '=') {
      *o->value = a + len + 1;
    } else if (i + 1 < argc) {
      *o->value = argv[++i];
    } else {
      fprintf(stderr, "mimctl: %s needs a value\n", a);
      free(rest);
      return CTL_EXIT_USAGE;
    }
  }
  const struct command *cmd = NULL;
  for (size_t k = 0; n_rest > 0 && k < sizeof commands / sizeof *commands; k++)
    if (strcmp(rest[0], commands[k].name) == 0)
      cmd = &commands[k];
  if (cmd == NULL) {
    if (n_rest > 0 && rest[0][0] == '-')
      fprintf(stderr, "mimctl: unknown option '%s'\n\n", rest[0]);
    else if (n_rest > 0)
      fprintf(stderr, "mimctl: unknown command '%s'\n\n", rest[0]);
    fputs(usage_text, stderr);
    free(rest);
    return CTL_EXIT_USAGE;
  }
  for (int i = 1; i < n_rest && strcmp(rest[i], "--") != 0; i++) {
    if (strcmp(rest[i], "--help") == 0 || strcmp(rest[i], "-h") == 0) {
      fputs(cmd->usage, stdout);
      free(rest);
      return CTL_EXIT_OK;
    }
  }

  struct ctl_settings s = {0};
  int rc = CTL_EXIT_USAGE;
  if (dup_opt(&s.config, config) < 0 || dup_opt(&s.logic, logic) < 0 ||
      dup_opt(&s.admin_secret, admin_secret) < 0 ||
      dup_opt(&s.admin_secret_file, admin_secret_file) < 0 ||
      dup_opt(&s.token_secret, token_secret) < 0 ||
      dup_opt(&s.token_secret_file, token_secret_file) < 0 ||
      dup_opt(&s.timeout, timeout) < 0 || ctl_settings_resolve(&s) < 0)
    goto out;
  rc = cmd->run(&s, n_rest - 1, rest + 1);
out:
  ctl_settings_finish(&s);
  free(rest);
  return rc;
}
