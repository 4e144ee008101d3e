/* Base64 (RFC 4648, standard alphabet, with padding): what the JSON of the
 * HTTP API, the HTTP gateway and the webhooks carry binary payloads in. */
#ifndef MIMD_B64_H
#define MIMD_B64_H

#include <stddef.h>
#include <stdint.h>

/* `in` (n bytes) encoded, NUL-terminated, malloc'd (the caller frees);
 * NULL when out of memory. */
char *mimd_b64_encode(const uint8_t *in, size_t n);

/* Decodes `in` (strict: padding required, no whitespace) into a malloc'd
 * `*out` of `*len` bytes (the caller frees). Returns 0, or -1 when `in` is
 * not base64 or memory ran out (*out NULL, *len 0). */
int mimd_b64_decode(const char *in, uint8_t **out, size_t *len);

#endif
