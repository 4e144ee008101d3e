#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test suite: the normal
# build (unit, headers, fuzz, examples, integration), then the unit and fuzz
# suites again under AddressSanitizer + UndefinedBehaviorSanitizer.
# Ends with one plain line "N passed, N failed" and exits non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
status=0

# run_suite BUILDDIR [meson test args...]: builds and tests, adds the counts.
run_suite() {
  local dir=$1; shift
  local log
  log=$(mktemp)
  meson test -C "$dir" --print-errorlogs "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local ok fail timeout
  ok=$(awk '/^Ok:/{print $2}' "$log" | tail -n1)
  fail=$(awk '/^Fail:/{print $2}' "$log" | tail -n1)
  timeout=$(awk '/^Timeout:/{print $2}' "$log" | tail -n1)
  rm -f "$log"
  passed=$((passed + ${ok:-0}))
  failed=$((failed + ${fail:-0} + ${timeout:-0}))
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
echo "${passed} passed, ${failed} failed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
