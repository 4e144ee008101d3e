#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test suite: the normal
# build (unit, headers, fuzz, examples, integration), then the unit and fuzz
# suites again under AddressSanitizer + UndefinedBehaviorSanitizer.
# Ends with one plain line "N passed, N failed, N skipped" and exits non-zero
# on failure.
#
# Skipped tests: every suite this script runs is expected to run, since it
# builds everything the tests need itself (a test exits 77 only when
# something it needs is missing, e.g. the integration tests when the daemons
# were not built). So a skipped test fails the run, on CI (.ci/run runs
# `make test`) and everywhere else, unless it is allowed explicitly:
#   MIM_TEST_ALLOW_SKIP="e2e-production_auth integration"  (test names or
#   suites, space or comma separated; "all" allows every skip)
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh || { echo "0 passed, 1 failed, 0 skipped"; exit 1; }

passed=0
failed=0
skipped=0
skipped_bad=()
status=0
allow_skip=" ${MIM_TEST_ALLOW_SKIP:-} "
allow_skip=${allow_skip//,/ }

# skip_allowed SUITE NAME: whether MIM_TEST_ALLOW_SKIP lets this test skip.
skip_allowed() {
  [[ $allow_skip == *" all "* || $allow_skip == *" $1 "* ||
     $allow_skip == *" $2 "* ]]
}

# run_suite BUILDDIR [meson test args...]: builds and tests, adds the counts.
run_suite() {
  local dir=$1; shift
  local log
  log=$(mktemp)
  meson test -C "$dir" --print-errorlogs "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local ok xfail fail xpass skip timeout suite name named=0
  ok=$(awk '/^Ok:/{print $2}' "$log" | tail -n1)
  xfail=$(awk '/^Expected Fail:/{print $3}' "$log" | tail -n1)
  fail=$(awk '/^Fail:/{print $2}' "$log" | tail -n1)
  xpass=$(awk '/^Unexpected Pass:/{print $3}' "$log" | tail -n1)
  skip=$(awk '/^Skipped:/{print $2}' "$log" | tail -n1)
  timeout=$(awk '/^Timeout:/{print $2}' "$log" | tail -n1)
  # "12/40 libmim:integration / e2e-c2c_online   SKIP   0.01s   exit status 77"
  while read -r suite name; do
    named=$((named + 1))
    skip_allowed "$suite" "$name" || skipped_bad+=("$dir: $suite / $name")
  done < <(sed -n 's|^ *[0-9]*/[0-9]* [^ :]*:\([^ ]*\) / \([^ ]*\) *SKIP .*|\1 \2|p' "$log")
  # skips whose line did not parse are not let through silently
  if [ "${skip:-0}" -gt "$named" ] && ! skip_allowed all all; then
    skipped_bad+=("$dir: $((skip - named)) more (see the log above)")
  fi
  rm -f "$log"
  passed=$((passed + ${ok:-0} + ${xfail:-0}))
  failed=$((failed + ${fail:-0} + ${timeout:-0} + ${xpass:-0}))
  skipped=$((skipped + ${skip:-0}))
  if [ "$rc" -ne 0 ]; then
    status=1
    # a build failure reports no counts: count it as one failure
    [ -z "$ok" ] && failed=$((failed + 1))
  fi
}

setup() {
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" || return 1
  fi
  ninja -C "$dir" || return 1
}

if setup build; then
  run_suite build --no-suite bench
else
  status=1; failed=$((failed + 1))
fi

if setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbenchmarks=false -Dfuzz_iterations=30000; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite build-asan --suite unit --suite fuzz
else
  status=1; failed=$((failed + 1))
fi

echo
if [ ${#skipped_bad[@]} -gt 0 ]; then
  status=1
  echo "Skipped, but expected to run (allow with MIM_TEST_ALLOW_SKIP):"
  printf '  %s\n' "${skipped_bad[@]}"
fi
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
