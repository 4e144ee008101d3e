/* INI file + flags → a daemon's config struct, driven by an option table. */
#include "config.h"

#include <ini.h>
#include <mim/version.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int set_value(void *cfg, const struct mimd_option *o, const char *v) {
  char *field = (char *)cfg + o->offset;
  switch (o->type) {
  case MIMD_STR:
  as_str: {
    char *copy = strdup(v ? v : "");
    if (copy == NULL)
      return -1;
    free(*(char **)field);
    *(char **)field = copy;
    return 0;
  }
  case MIMD_LIST: {
    const char *old = *(char **)field;
    if (old == NULL || old[0] == '\0' || v == NULL || v[0] == '\0')
      goto as_str;
    size_t n = strlen(old) + 1 + strlen(v) + 1;
    char *joined = malloc(n);
    if (joined == NULL)
      return -1;
    snprintf(joined, n, "%s,%s", old, v);
    free(*(char **)field);
    *(char **)field = joined;
    return 0;
  }
  case MIMD_INT: {
    char *end;
    long long x = strtoll(v ? v : "0", &end, 0);
    if (v == NULL || *v == '\0' || *end != '\0')
      return -1;
    *(int64_t *)field = x;
    return 0;
  }
  case MIMD_BOOL:
    if (v == NULL || !strcasecmp(v, "true") || !strcasecmp(v, "yes") ||
        !strcmp(v, "1") || !strcasecmp(v, "on"))
      *(bool *)field = true;
    else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") ||
             !strcmp(v, "0") || !strcasecmp(v, "off"))
      *(bool *)field = false;
    else
      return -1;
    return 0;
  }
  return -1;
}

struct ini_ctx {
  void *cfg;
  const struct mimd_option *opts;
  size_t n;
  const char *path;
  int errors;
};

/* Debian's inih is built without INI_HANDLER_LINENO: no line numbers. */
static int on_ini_entry(void *user, const char *section, const char *key,
                        const char *value) {
  struct ini_ctx *c = user;
  for (size_t i = 0; i < c->n; i++) {
    const struct mimd_option *o = &c->opts[i];
    if (strcmp(o->section, section) == 0 && strcmp(o->key, key) == 0) {
      if (set_value(c->cfg, o, value) < 0) {
        fprintf(stderr, "%s: bad value for %s.%s: %s\n", c->path, section,
                key, value);
        c->errors++;
      }
      return 1;
    }
  }
  /* sections of the other daemon share the file: ignore them quietly, but
   * flag unknown keys in sections this daemon reads */
  for (size_t i = 0; i < c->n; i++) {
    if (strcmp(c->opts[i].section, section) == 0) {
      fprintf(stderr, "%s: unknown key %s.%s\n", c->path, section, key);
      c->errors++;
      break;
    }
  }
  return 1;
}

static bool flag_matches(const struct mimd_option *o, const char *flag,
                         size_t len) {
  size_t klen = strlen(o->key);
  if (klen != len)
    return false;
  for (size_t i = 0; i < len; i++) {
    char k = o->key[i] == '_' ? '-' : o->key[i];
    if (k != flag[i])
      return false;
  }
  return true;
}

static void usage(const struct mimd_option *opts, size_t n, const char *prog,
                  const char *summary) {
  printf("Usage: %s [--config FILE] [--OPTION VALUE ...]\n%s\n\nOptions "
         "(INI section.key, default):\n",
         prog, summary);
  printf("  --config FILE                 INI file to read first\n");
  for (size_t i = 0; i < n; i++) {
    char flag[64];
    snprintf(flag, sizeof flag, "%s", opts[i].key);
    for (char *p = flag; *p; p++)
      if (*p == '_')
        *p = '-';
    printf("  --%-28s %s [%s.%s, default: %s]\n", flag, opts[i].help,
           opts[i].section, opts[i].key, opts[i].def ? opts[i].def : "none");
  }
  printf("  --help, --version\n");
}

int mimd_config_load(void *cfg, const struct mimd_option *opts, size_t n,
                     int argc, char **argv, const char *prog,
                     const char *summary) {
  for (size_t i = 0; i < n; i++)
    if (opts[i].def != NULL && set_value(cfg, &opts[i], opts[i].def) < 0)
      return -1;
  /* the config file first, whatever its position, so flags override it */
  for (int i = 1; i < argc; i++) {
    const char *path = NULL;
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
      path = argv[i + 1];
    else if (strncmp(argv[i], "--config=", 9) == 0)
      path = argv[i] + 9;
    if (path == NULL)
      continue;
    struct ini_ctx c = {cfg, opts, n, path, 0};
    int rc = ini_parse(path, on_ini_entry, &c);
    if (rc < 0) {
      fprintf(stderr, "%s: cannot read config file %s\n", prog, path);
      return -1;
    }
    if (rc > 0 || c.errors > 0) {
      if (rc > 0)
        fprintf(stderr, "%s:%d: syntax error\n", path, rc);
      return -1;
    }
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(opts, n, prog, summary);
      return 1;
    }
    if (strcmp(a, "--version") == 0) {
      printf("%s (libmim) %s\n", prog, mim_version());
      return 1;
    }
    if (strncmp(a, "--", 2) != 0) {
      fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog, a);
      return -1;
    }
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    if (len == 6 && strncmp(name, "config", 6) == 0) {
      if (eq == NULL)
        i++;
      continue;
    }
    const struct mimd_option *o = NULL;
    for (size_t k = 0; k < n && o == NULL; k++)
      if (flag_matches(&opts[k], name, len))
        o = &opts[k];
    if (o == NULL) {
      fprintf(stderr, "%s: unknown option '%s' (see --help)\n", prog, a);
      return -1;
    }
    const char *value = eq ? eq + 1 : NULL;
    if (value == NULL && o->type != MIMD_BOOL) {
      if (i + 1 >= argc) {
        fprintf(stderr, "%s: %s needs a value\n", prog, a);
        return -1;
      }
      value = argv[++i];
    }
    if (set_value(cfg, o, value) < 0) {
      fprintf(stderr, "%s: bad value for %s\n", prog, a);
      return -1;
    }
  }
  return 0;
}

void mimd_config_free(void *cfg, const struct mimd_option *opts, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (opts[i].type == MIMD_STR || opts[i].type == MIMD_LIST) {
      char **f = (char **)((char *)cfg + opts[i].offset);
      free(*f);
      *f = NULL;
    }
  }
}
