/* Address parsing shared by the daemons and mimctl (addr.h). */
#include "addr.h"

#include <stdlib.h>
#include <string.h>

int mimd_parse_addr(const char *addr, char **host, int *port,
                    char **unix_path) {
  *host = NULL;
  *port = 0;
  if (unix_path != NULL)
    *unix_path = NULL;
  if (addr == NULL || *addr == '\0')
    return -1;
  if (strncmp(addr, "unix:", 5) == 0) {
    if (unix_path == NULL || addr[5] == '\0')
      return -1;
    *unix_path = strdup(addr + 5);
    return *unix_path ? 0 : -1;
  }
  const char *colon = strrchr(addr, ':');
  const char *p = colon ? colon + 1 : addr;
  char *end;
  long x = strtol(p, &end, 10);
  if (*p == '\0' || *end != '\0' || x < 0 || x > 65535)
    return -1;
  *port = (int)x;
  if (colon == NULL || colon == addr)
    *host = strdup("127.0.0.1");
  else
    *host = strndup(addr, (size_t)(colon - addr));
  return *host ? 0 : -1;
}

char *mimd_addr_dial_host(const char *host) {
  size_t hl = strlen(host);
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
    host++;
    hl -= 2;
  }
  if (hl == 0 || (hl == 7 && strncmp(host, "0.0.0.0", 7) == 0) ||
      (hl == 1 && host[0] == '*'))
    return strdup("127.0.0.1");
  if (hl == 2 && strncmp(host, "::", 2) == 0)
    return strdup("::1");
  return strndup(host, hl);
}
