/* mimctl — operator CLI for logicd: shared declarations.
 *
 * main.c      global options, dispatch, usage
 * settings.c  [logic] section of the daemons' INI file + flags
 * admin.c     the RPC admin client (connect, HELLO, request/reply, timeout)
 * commands.c  token, group, inbox, push
 */
#ifndef MIMCTL_CTL_H
#define MIMCTL_CTL_H

#include <mim/codec.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes. */
enum {
  CTL_EXIT_OK = 0,
  CTL_EXIT_FAILED = 1, /* a request failed: refused, error reply, no logicd */
  CTL_EXIT_USAGE = 2,  /* bad arguments or configuration */
};

/* logicd's admin socket under its default data_dir */
#define CTL_DEFAULT_LOGIC "unix:./data/logicd/admin.sock"
#define CTL_DEFAULT_TIMEOUT_S 5

/* What the commands need, from flags over the [logic] section of --config.
 * Strings are malloc'd (or NULL); freed by ctl_settings_finish(). */
struct ctl_settings {
  char *config;            /* --config FILE */
  char *logic;             /* --logic ADDR: HOST:PORT or unix:/path */
  char *admin_secret;      /* --admin-secret */
  char *admin_secret_file; /* --admin-secret-file */
  char *token_secret;      /* --token-secret */
  char *token_secret_file; /* --token-secret-file */
  char *timeout;           /* --timeout SECONDS (text until resolved) */
  /* resolved by ctl_settings_resolve() */
  char *addr;              /* where to connect */
  char *secret;            /* the admin secret to send ("" = none) */
  int timeout_ms;
};

/* An option a command accepts; every option takes a value. `*value` gets a
 * pointer into argv (borrowed, valid for the program's life). */
struct ctl_opt {
  const char *name; /* without the leading "--" */
  const char **value;
};

/* Splits a command's arguments (`argc` entries of `argv`) into options of
 * `opts` (`--name VALUE` or `--name=VALUE`, anywhere) and positional
 * arguments, gathered in order into `pos` (at most `max_pos`, count in
 * `*n_pos`); "--" ends the options. Returns 0, or -1 after printing the
 * problem to stderr. */
int ctl_parse_opts(const char *what, int argc, char **argv,
                   const struct ctl_opt *opts, char **pos, int max_pos,
                   int *n_pos);

/* Reads --config (the [logic] section; other sections and unknown keys are
 * ignored, since logicd owns them) beneath the flags, and works out the
 * address and timeout. Returns 0 or -1 after printing why. */
int ctl_settings_resolve(struct ctl_settings *s);

/* The token secret (flags over config; a file's trailing newline stripped)
 * into `*out` (malloc'd), `*len` bytes. Returns 0, or -1 after printing why
 * (no secret configured, unreadable file). */
int ctl_settings_token_secret(const struct ctl_settings *s, uint8_t **out,
                              size_t *len);

void ctl_settings_finish(struct ctl_settings *s);

/* ---- admin client (admin.c) ---- */

struct ctl_admin;

/* Connects to logicd at `addr`, sends HELLO (gateway_id "mimctl", `secret`
 * borrowed, may be NULL: logicd's admin_secret) and waits for HELLO_ACK, all
 * within `timeout_ms`.
 * Errors (each printed to stderr first): -ETIMEDOUT, -ECONNREFUSED and other
 * connect/IO errnos, -ECONNRESET logicd closed the link, -EPROTO a reply
 * that makes no sense, or the negated HELLO_ACK status (-MIM_ERR_FORBIDDEN
 * for a wrong secret). */
int ctl_admin_open(struct ctl_admin **out, const char *addr,
                   const char *secret, int timeout_ms);

/* Sends `req` (borrowed; req->cmd is the client command) as an ADMIN
 * request and waits up to the link's timeout for its ADMIN_REPLY, decoded
 * into `reply` (initialised by the caller; finish it with
 * mim_packet_finish()). An Error packet (reply->cmd == MIM_CMD_ERROR) is a
 * successful call. Errors as ctl_admin_open(), printed. */
int ctl_admin_call(struct ctl_admin *a, const struct mim_packet *req,
                   struct mim_packet *reply);

/* NULL is a no-op. */
void ctl_admin_close(struct ctl_admin *a);

/* ---- commands (commands.c): each returns an exit code ---- */

int ctl_cmd_token(const struct ctl_settings *s, int argc, char **argv);
int ctl_cmd_group(const struct ctl_settings *s, int argc, char **argv);
int ctl_cmd_inbox(const struct ctl_settings *s, int argc, char **argv);
int ctl_cmd_push(const struct ctl_settings *s, int argc, char **argv);
int ctl_cmd_send(const struct ctl_settings *s, int argc, char **argv);

#endif
