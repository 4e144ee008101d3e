/* Errors, version and logging (lib/util/common.c). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mim/common.h>
#include <mim/version.h>

#include "util/internal.h"

static void version_matches_header(void **state) {
  (void)state;
  assert_string_equal(mim_version(), MIM_VERSION_STRING);
}

static void domain_errors_have_names_and_wire_codes(void **state) {
  (void)state;
  assert_string_equal(mim_err_name(-MIM_ERR_NOT_MEMBER), "MIM_ERR_NOT_MEMBER");
  assert_string_equal(mim_strerror(-MIM_ERR_NOT_MEMBER),
                      "not a member of the group");
  assert_int_equal(mim_err_wire_code(-MIM_ERR_NOT_MEMBER), 1008);
  assert_false(mim_err_retryable(-MIM_ERR_NOT_MEMBER));
  assert_true(mim_err_retryable(-MIM_ERR_UNAVAILABLE));
  assert_true(mim_err_retryable(-MIM_ERR_BUSY));
}

static void errno_errors_map_to_domain_codes(void **state) {
  (void)state;
  assert_string_equal(mim_err_name(-ENOMEM), "ENOMEM");
  assert_int_equal(mim_err_wire_code(-EINVAL), MIM_ERR_MALFORMED);
  assert_int_equal(mim_err_wire_code(-ENOMEM), MIM_ERR_BUSY);
  assert_int_equal(mim_err_wire_code(-EMSGSIZE), MIM_ERR_FRAME_TOO_BIG);
  assert_int_equal(mim_err_wire_code(0), 0);
  assert_true(mim_err_retryable(-EAGAIN));
  assert_false(mim_err_retryable(-EINVAL));
  assert_string_equal(mim_strerror(-ENOENT), strerror(ENOENT));
  assert_string_equal(mim_strerror(-99999), "unknown error");
}

static int lines;
static char last[512];
static void capture(void *user, enum mim_log_level level, const char *msg) {
  (void)level;
  *(int *)user += 1;
  snprintf(last, sizeof last, "%s", msg);
}

static void logging_is_silent_until_a_handler_is_set(void **state) {
  (void)state;
  lines = 0;
  mim__error("before %d", 1); /* no handler: dropped */
  mim_log_set_handler(capture, &lines, MIM_LOG_INFO);
  mim__info("hello %s", "world");
  mim__debug("too verbose");  /* above max level: dropped */
  assert_int_equal(lines, 1);
  assert_string_equal(last, "hello world");
  mim_log_set_handler(NULL, NULL, MIM_LOG_INFO);
  mim__error("after");
  assert_int_equal(lines, 1);
}

/* ---- UTF-8 ---- */

static bool valid(const char *s) { return mim_utf8_valid(s, strlen(s)); }

static void utf8_accepts_every_well_formed_sequence(void **state) {
  (void)state;
  assert_true(mim_utf8_valid(NULL, 0));
  assert_false(mim_utf8_valid(NULL, 1));
  assert_true(valid(""));
  assert_true(valid("plain ascii, long enough for the word-at-a-time path"));
  assert_true(mim_utf8_valid("a\0b", 3)); /* U+0000 is a character */
  assert_true(valid("\xc2\x80"));          /* U+0080, first 2-byte */
  assert_true(valid("\xdf\xbf"));          /* U+07FF */
  assert_true(valid("\xe0\xa0\x80"));      /* U+0800, first 3-byte */
  assert_true(valid("\xed\x9f\xbf"));      /* U+D7FF, below surrogates */
  assert_true(valid("\xee\x80\x80"));      /* U+E000, above them */
  assert_true(valid("\xef\xbf\xbf"));      /* U+FFFF */
  assert_true(valid("\xf0\x90\x80\x80"));  /* U+10000, first 4-byte */
  assert_true(valid("\xf4\x8f\xbf\xbf"));  /* U+10FFFF, the last */
  assert_true(valid("h\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac \xf0\x9f\x98\x80"));
  /* a multi-byte character right after 8 ASCII bytes, and at the end */
  assert_true(valid("abcdefgh\xc3\xa9" "abcdefg\xe2\x82\xac"));
}

static void utf8_refuses_what_proto3_parsers_refuse(void **state) {
  (void)state;
  static const char *const bad[] = {
      "\xc3\x28",             /* the reported one: lead + non-continuation */
      "\x80",                 /* stray continuation */
      "abcdefgh\xbf",         /* ... after the ASCII fast path */
      "\xc0\x80",             /* overlong NUL */
      "\xc1\xbf",             /* overlong U+007F */
      "\xe0\x9f\xbf",         /* overlong U+07FF */
      "\xf0\x8f\xbf\xbf",     /* overlong U+FFFF */
      "\xed\xa0\x80",         /* U+D800, a surrogate */
      "\xed\xbf\xbf",         /* U+DFFF */
      "\xf4\x90\x80\x80",     /* U+110000 */
      "\xf5\x80\x80\x80",     /* lead byte beyond U+10FFFF */
      "\xff",
      "\xfe",
      "\xc3",                 /* cut short at the end */
      "\xe2\x82",
      "\xf0\x9f\x98",
      "ok\xe2\x28\xa1",       /* second byte wrong */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    if (valid(bad[i]))
      fail_msg("bad[%zu] accepted", i);
  }
  /* a sequence cut by the length, not by a NUL */
  assert_false(mim_utf8_valid("\xe2\x82\xac", 2));
  assert_true(mim_utf8_valid("\xe2\x82\xac", 3));
}

static void utf8_has_its_own_error_code(void **state) {
  (void)state;
  assert_int_equal(mim_err_wire_code(-MIM_ERR_BAD_UTF8), 1022);
  assert_string_equal(mim_err_name(-MIM_ERR_BAD_UTF8), "MIM_ERR_BAD_UTF8");
  assert_false(mim_err_retryable(-MIM_ERR_BAD_UTF8));
}

/* Unicode's Table 3-7 (well-formed UTF-8 byte sequences), written as byte
 * ranges: an independent statement of the rule mim_utf8_valid() computes
 * from code points. */
static bool table37_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    uint8_t lo = 0x80, hi = 0xbf;
    size_t len;
    if (c <= 0x7f) {
      i++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c == 0xe0) {
      len = 3, lo = 0xa0;
    } else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) {
      len = 3;
    } else if (c == 0xed) {
      len = 3, hi = 0x9f;
    } else if (c == 0xf0) {
      len = 4, lo = 0x90;
    } else if (c >= 0xf1 && c <= 0xf3) {
      len = 4;
    } else if (c == 0xf4) {
      len = 4, hi = 0x8f;
    } else {
      return false;
    }
    if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
      return false;
    for (size_t k = 2; k < len; k++)
      if (s[i + k] < 0x80 || s[i + k] > 0xbf)
        return false;
    i += len;
  }
  return true;
}

/* `seq` (n bytes) after `pre` ASCII bytes, in a heap block of exactly that
 * size, so that the sanitizer build catches any read past the end (the
 * word-at-a-time ASCII path included). */
static bool valid_exact(const uint8_t *seq, size_t n, size_t pre) {
  uint8_t *b = malloc(pre + n + 1);
  assert_non_null(b);
  memset(b, 'a', pre);
  memcpy(b + pre, seq, n);
  bool got = mim_utf8_valid(b, pre + n);
  assert_int_equal(got, table37_valid(b, pre + n));
  free(b);
  return got;
}

/* Every sequence of 1 and 2 bytes, every 3-byte one, and the 4-byte ones
 * over every second byte (third and fourth at the edges of the
 * continuation range), at offsets before and after the ASCII fast path:
 * mim_utf8_valid() agrees with Table 3-7 on each, reading nothing past the
 * end. */
static void utf8_agrees_with_table_3_7(void **state) {
  (void)state;
  static const size_t pres[] = {0, 7, 8, 9};
  static const uint8_t edge[] = {0x00, 0x7f, 0x80, 0xbf, 0xc0, 0xff};
  uint8_t q[4];
  size_t n_valid = 0;
  for (size_t pi = 0; pi < sizeof pres / sizeof *pres; pi++) {
    size_t pre = pres[pi];
    for (unsigned a = 0; a < 256; a++) {
      q[0] = (uint8_t)a;
      n_valid += valid_exact(q, 1, pre);
      for (unsigned b = 0; b < 256; b++) {
        q[1] = (uint8_t)b;
        n_valid += valid_exact(q, 2, pre);
        if (pre != 0 && pre != 9)
          continue; /* 3- and 4-byte: two offsets are enough */
        if (a >= 0xe0 && a <= 0xef)
          for (unsigned c = 0; c < 256; c++) {
            q[2] = (uint8_t)c;
            n_valid += valid_exact(q, 3, pre);
          }
        if (a >= 0xf0 && a <= 0xf7)
          for (size_t c = 0; c < sizeof edge; c++)
            for (size_t d = 0; d < sizeof edge; d++) {
              q[2] = edge[c];
              q[3] = edge[d];
              n_valid += valid_exact(q, 4, pre);
            }
      }
    }
  }
  assert_true(n_valid > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(version_matches_header),
      cmocka_unit_test(domain_errors_have_names_and_wire_codes),
      cmocka_unit_test(errno_errors_map_to_domain_codes),
      cmocka_unit_test(logging_is_silent_until_a_handler_is_set),
      cmocka_unit_test(utf8_accepts_every_well_formed_sequence),
      cmocka_unit_test(utf8_refuses_what_proto3_parsers_refuse),
      cmocka_unit_test(utf8_has_its_own_error_code),
      cmocka_unit_test(utf8_agrees_with_table_3_7),
  };
  return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
