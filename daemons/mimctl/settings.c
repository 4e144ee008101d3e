/* mimctl settings: flags over the [logic] section of the INI file logicd
 * reads, so an operator points both at one file. */
#include "ctl.h"

#include <secret.h>

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ctl_parse_opts(const char *what, int argc, char **argv,
                   const struct ctl_opt *opts, char **pos, int max_pos,
                   int *n_pos) {
  int np = 0;
  bool only_pos = false;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (only_pos || a[0] != '-' || a[1] == '\0') {
      if (np == max_pos) {
        fprintf(stderr, "mimctl %s: too many arguments at '%s'\n", what, a);
        return -1;
      }
      pos[np++] = argv[i];
      continue;
    }
    if (strcmp(a, "--") == 0) {
      only_pos = true;
      continue;
    }
    const char *name = a + (a[1] == '-' ? 2 : 1);
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const struct ctl_opt *o = NULL;
    for (const struct ctl_opt *k = opts; k && k->name && !o; k++)
      if (strlen(k->name) == len && strncmp(k->name, name, len) == 0)
        o = k;
    if (o == NULL) {
      fprintf(stderr, "mimctl %s: unknown option '%s' (see --help)\n", what, a);
      return -1;
    }
    if (eq != NULL) {
      *o->value = eq + 1;
    } else if (i + 1 < argc) {
      *o->value = argv[++i];
    } else {
      fprintf(stderr, "mimctl %s: %s needs a value\n", what, a);
      return -1;
    }
  }
  *n_pos = np;
  return 0;
}

/* ---- the [logic] section ---- */

struct logic_ini {
  char *listen, *unix_socket, *token_secret, *token_secret_file;
  char *admin_listen, *admin_secret, *admin_secret_file, *data_dir;
  bool oom;
};

static void logic_ini_free(struct logic_ini *c) {
  free(c->listen), free(c->unix_socket), free(c->token_secret);
  free(c->token_secret_file), free(c->admin_listen);
  if (c->admin_secret != NULL)
    explicit_bzero(c->admin_secret, strlen(c->admin_secret));
  free(c->admin_secret), free(c->admin_secret_file), free(c->data_dir);
}

static int keep(char **field, const char *value, struct logic_ini *c) {
  free(*field);
  *field = strdup(value);
  if (*field == NULL)
    c->oom = true;
  return 1;
}

/* inih's handler; only [logic] matters here and logicd itself rejects keys
 * it does not know, so everything else is skipped quietly. */
#if INI_HANDLER_LINENO
static int on_ini(void *user, const char *section, const char *key,
                  const char *value, int lineno) {
  (void)lineno;
#else
static int on_ini(void *user, const char *section, const char *key,
                  const char *value) {
#endif
  struct logic_ini *c = user;
  if (strcmp(section, "logic") != 0)
    return 1;
  if (strcmp(key, "listen") == 0)
    return keep(&c->listen, value, c);
  if (strcmp(key, "unix_socket") == 0)
    return keep(&c->unix_socket, value, c);
  if (strcmp(key, "admin_listen") == 0)
    return keep(&c->admin_listen, value, c);
  if (strcmp(key, "admin_secret") == 0)
    return keep(&c->admin_secret, value, c);
  if (strcmp(key, "admin_secret_file") == 0)
    return keep(&c->admin_secret_file, value, c);
  if (strcmp(key, "data_dir") == 0)
    return keep(&c->data_dir, value, c);
  if (strcmp(key, "token_secret") == 0)
    return keep(&c->token_secret, value, c);
  if (strcmp(key, "token_secret_file") == 0)
    return keep(&c->token_secret_file, value, c);
  return 1;
}

static bool empty(const char *s) { return s == NULL || *s == '\0'; }

static int read_config(struct ctl_settings *s) {
  struct logic_ini c = {0};
  int rc = ini_parse(s->config, on_ini, &c);
  if (rc < 0) {
    fprintf(stderr, "mimctl: cannot read config file %s\n", s->config);
  } else if (rc > 0) {
    fprintf(stderr, "mimctl: %s:%d: syntax error\n", s->config, rc);
  } else if (c.oom) {
    fprintf(stderr, "mimctl: out of memory\n");
  }
  if (rc != 0 || c.oom) {
    logic_ini_free(&c);
    return -1;
  }
  /* logicd's admin socket is the operator's way in, as logicd resolves
   * admin_listen: absent or "auto" = DATA_DIR/admin.sock, "" = none (then
   * the RPC listener, with admin_secret) */
  if (s->logic == NULL) {
    const char *al = c.admin_listen != NULL ? c.admin_listen : "auto";
    const char *dir = c.data_dir != NULL ? c.data_dir : "./data/logicd";
    size_t n = strlen(al) + strlen(dir) + 32;
    char *addr = malloc(n);
    if (addr == NULL) {
      logic_ini_free(&c);
      return -1;
    }
    if (strcmp(al, "auto") == 0)
      snprintf(addr, n, "unix:%s/admin.sock", dir);
    else if (!empty(al))
      snprintf(addr, n, "%s", al);
    else if (!empty(c.unix_socket))
      snprintf(addr, n, "unix:%s", c.unix_socket);
    else if (!empty(c.listen))
      snprintf(addr, n, "%s", c.listen);
    else
      addr[0] = '\0';
    s->logic = addr;
  }
  if (s->admin_secret == NULL && s->admin_secret_file == NULL) {
    s->admin_secret = c.admin_secret;
    s->admin_secret_file = c.admin_secret_file;
    c.admin_secret = c.admin_secret_file = NULL;
  }
  /* a secret given by flag, either way, hides both config keys */
  if (s->token_secret != NULL || s->token_secret_file != NULL) {
    free(c.token_secret);
    free(c.token_secret_file);
  } else {
    s->token_secret = c.token_secret;
    s->token_secret_file = c.token_secret_file;
  }
  c.token_secret = c.token_secret_file = NULL;
  logic_ini_free(&c);
  return 0;
}

int ctl_settings_resolve(struct ctl_settings *s) {
  if (s->config != NULL && read_config(s) < 0)
    return -1;
  s->addr = strdup(empty(s->logic) ? CTL_DEFAULT_LOGIC : s->logic);
  if (s->addr == NULL)
    return -1;
  if (!empty(s->admin_secret) && !empty(s->admin_secret_file)) {
    fprintf(stderr, "mimctl: admin_secret and admin_secret_file are both "
                    "set; set one\n");
    return -1;
  }
  if (!empty(s->admin_secret_file)) {
    uint8_t *buf;
    size_t len;
    if (mimd_read_secret_file("mimctl", s->admin_secret_file, &buf, &len) < 0)
      return -1;
    buf[len] = '\0'; /* the reader leaves room */
    s->secret = (char *)buf;
  } else {
    s->secret = strdup(s->admin_secret != NULL ? s->admin_secret : "");
    if (s->secret == NULL)
      return -1;
  }
  s->timeout_ms = CTL_DEFAULT_TIMEOUT_S * 1000;
  if (s->timeout != NULL) {
    char *end;
    double t = strtod(s->timeout, &end);
    if (*s->timeout == '\0' || *end != '\0' || !(t > 0) || t > 3600) {
      fprintf(stderr, "mimctl: --timeout wants seconds (0 < t <= 3600)\n");
      return -1;
    }
    s->timeout_ms = (int)(t * 1000 + 0.5);
    if (s->timeout_ms == 0)
      s->timeout_ms = 1;
  }
  return 0;
}

int ctl_settings_token_secret(const struct ctl_settings *s, uint8_t **out,
                              size_t *len) {
  if (!empty(s->token_secret) && !empty(s->token_secret_file)) {
    /* logicd refuses this too: which one it uses would be a guess */
    fprintf(stderr, "mimctl: token_secret and token_secret_file are both "
                    "set; set one\n");
    return -1;
  }
  if (!empty(s->token_secret)) {
    *len = strlen(s->token_secret);
    *out = malloc(*len + 1);
    if (*out == NULL)
      return -1;
    memcpy(*out, s->token_secret, *len + 1);
    return 0;
  }
  if (!empty(s->token_secret_file))
    return mimd_read_secret_file("mimctl", s->token_secret_file, out, len);
  fprintf(stderr, "mimctl: no token secret: set token_secret or "
                  "token_secret_file in [logic] of --config, or pass "
                  "--token-secret / --token-secret-file\n");
  return -1;
}

static void wipe(char *p) {
  if (p != NULL)
    explicit_bzero(p, strlen(p));
  free(p);
}

void ctl_settings_finish(struct ctl_settings *s) {
  free(s->config);
  free(s->logic);
  wipe(s->admin_secret);
  free(s->admin_secret_file);
  wipe(s->secret);
  wipe(s->token_secret);
  free(s->token_secret_file);
  free(s->timeout);
  free(s->addr);
  memset(s, 0, sizeof *s);
}
