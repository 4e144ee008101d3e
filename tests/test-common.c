/* Errors, version and logging (lib/common.c). */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include <mim/common.h>
#include <mim/version.h>

#include "internal.h"

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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(version_matches_header),
      cmocka_unit_test(domain_errors_have_names_and_wire_codes),
      cmocka_unit_test(errno_errors_map_to_domain_codes),
      cmocka_unit_test(logging_is_silent_until_a_handler_is_set),
  };
  return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
