#include "b64.h"

#include <stdlib.h>
#include <string.h>

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int value(char c) {
  const char *p = c != '\0' ? strchr(alphabet, c) : NULL;
  return p != NULL ? (int)(p - alphabet) : -1;
}

char *mimd_b64_encode(const uint8_t *in, size_t n) {
  char *s = malloc((n + 2) / 3 * 4 + 1);
  if (s == NULL)
    return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t w = (uint32_t)in[i] << 16;
    if (i + 1 < n)
      w |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n)
      w |= in[i + 2];
    s[o++] = alphabet[w >> 18 & 63];
    s[o++] = alphabet[w >> 12 & 63];
    s[o++] = i + 1 < n ? alphabet[w >> 6 & 63] : '=';
    s[o++] = i + 2 < n ? alphabet[w & 63] : '=';
  }
  s[o] = '\0';
  return s;
}

int mimd_b64_decode(const char *in, uint8_t **out, size_t *len) {
  size_t n = strlen(in);
  *out = NULL;
  *len = 0;
  if (n % 4 != 0)
    return -1;
  uint8_t *buf = malloc(n / 4 * 3 + 1);
  if (buf == NULL)
    return -1;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; k++) {
      char c = in[i + k];
      if (c == '=' && i + 4 == n && k >= 2) {
        v[k] = 0;
        pad++;
      } else if (pad > 0 || (v[k] = value(c)) < 0) {
        free(buf);
        return -1;
      }
    }
    uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
                 (uint32_t)v[2] << 6 | (uint32_t)v[3];
    buf[o++] = (uint8_t)(w >> 16);
    if (pad < 2)
      buf[o++] = (uint8_t)(w >> 8);
    if (pad < 1)
      buf[o++] = (uint8_t)w;
  }
  *out = buf;
  *len = o;
  return 0;
}
