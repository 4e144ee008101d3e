/* Addresses in settings and on command lines: "HOST:PORT", ":PORT",
 * "PORT", "[V6]:PORT" and "unix:/path". One parser for every daemon and
 * mimctl, so that an address means the same everywhere. */
#ifndef MIMD_ADDR_H
#define MIMD_ADDR_H

/* Splits "HOST:PORT" (or ":PORT", "PORT") into host (malloc'd; "127.0.0.1"
 * when omitted, NULL on error) and port. "unix:/path" gives host = NULL and
 * `*unix_path` (malloc'd); with `unix_path` NULL a unix address is an
 * error. The caller frees what is returned. Returns 0, or -1 on a
 * malformed address (port not a number in 0..65535, empty path) or out of
 * memory, with nothing allocated. */
int mimd_parse_addr(const char *addr, char **host, int *port,
                    char **unix_path);

/* The host to connect to for `host` as mimd_parse_addr() gave it, where a
 * server may listen: "[V6]" loses its brackets, and a wildcard ("",
 * "0.0.0.0", "*", "::") becomes loopback. Returns a malloc'd string the
 * caller frees, or NULL when out of memory. */
char *mimd_addr_dial_host(const char *host);

#endif
