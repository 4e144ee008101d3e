/* Text rules: the one UTF-8 rule of the library and the id rule built on
 * it (mim_utf8_valid, mim_id_valid). */
#include "util/internal.h"

#include <string.h>

size_t mim__utf8_char_len(const uint8_t *s, size_t n) {
  uint8_t c = s[0];
  if (c < 0x80)
    return 1;
  size_t len;
  uint32_t cp, min;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2, cp = c & 0x1f, min = 0x80;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3, cp = c & 0x0f, min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0; /* 0x80..0xc1 (continuation, overlong lead), 0xf5..0xff */
  }
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return len;
}

bool mim_utf8_valid(const void *s, size_t len) {
  if (s == NULL)
    return len == 0;
  const uint8_t *p = s, *end = p + len;
  while (p < end) {
    /* message text is mostly ASCII: skip it a word at a time, so that
     * checking every stored and read message costs next to nothing */
    while ((size_t)(end - p) >= 8) {
      uint64_t w;
      memcpy(&w, p, sizeof w);
      if (w & UINT64_C(0x8080808080808080))
        break;
      p += 8;
    }
    if (p == end)
      break;
    if (*p < 0x80) {
      p++;
      continue;
    }
    size_t n = mim__utf8_char_len(p, (size_t)(end - p));
    if (n == 0)
      return false;
    p += n;
  }
  return true;
}

bool mim_id_valid(const char *id) {
  if (!id)
    return false;
  const unsigned char *s = (const unsigned char *)id;
  size_t len = 0;
  while (s[len]) {
    unsigned char c = s[len];
    if (c <= 0x20 || c == 0x7f) /* controls and space */
      return false;
    /* the NUL ends any sequence cut short, so this reads no further */
    size_t n = mim__utf8_char_len(s + len, 4);
    if (n == 0)
      return false;
    /* C1 controls U+0080..U+009F are encoded as C2 80..C2 9F. */
    if (n == 2 && c == 0xc2 && s[len + 1] < 0xa0)
      return false;
    len += n;
    if (len > MIM_ID_MAX)
      return false;
  }
  return len > 0;
}
