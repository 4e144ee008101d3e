/* Daemon configuration: one table of options per daemon, read from an INI
 * file (libinih) and then from command-line flags, which override it.
 *
 *   --config FILE      read FILE first (default: none)
 *   --KEY VALUE        or --KEY=VALUE: set an option by its flag name
 *   --help, --version
 *
 * INI keys are "[section] key = value"; the flag of an option is its key with
 * '_' written '-' (data_dir → --data-dir). */
#ifndef MIMD_CONFIG_H
#define MIMD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mimd_opt_type {
  MIMD_STR,   /* char *: malloc'd copy (free with mimd_config_free) */
  MIMD_INT,   /* int64_t */
  MIMD_BOOL,  /* bool: true/false/yes/no/1/0/on/off */
  MIMD_LIST,  /* char *: like MIMD_STR, but each further occurrence (INI
                 line or flag) appends ",value": a repeatable key */
};

struct mimd_option {
  const char *section;   /* INI section */
  const char *key;       /* INI key; flag is --key with '_' → '-' */
  enum mimd_opt_type type;
  size_t offset;         /* of the field in the daemon's config struct */
  const char *def;       /* default, as text; NULL = empty / 0 / false */
  const char *help;
};

#define MIMD_OPT(sec, key, type, st, field, def, help)                         \
  {sec, key, type, offsetof(st, field), def, help}

/* Fills `cfg` from the defaults of `opts` (`n` entries), then the --config
 * file, then flags. Returns 0 to run, 1 when --help/--version was printed
 * (exit 0), or -1 after printing an error to stderr (exit 2). */
int mimd_config_load(void *cfg, const struct mimd_option *opts, size_t n,
                     int argc, char **argv, const char *prog,
                     const char *summary);

/* Frees the MIMD_STR and MIMD_LIST fields of `cfg`. */
void mimd_config_free(void *cfg, const struct mimd_option *opts, size_t n);

#endif
