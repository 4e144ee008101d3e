/* Private codec entry points, for white-box tests. Never installed. */
#ifndef MIM_CODEC_INTERNAL_H
#define MIM_CODEC_INTERNAL_H

#include <stddef.h>

/* Checks that every protobuf field of every mapped message has exactly one
 * table row of a matching type, so a field added to a .proto without a
 * mapping fails the unit tests. Returns 0, or -EINVAL with the first
 * problem described in `why`. */
int mim__codec_check_tables(char *why, size_t why_cap);

#endif
