#!/usr/bin/env bash
# `make fuzz`: coverage-guided fuzzing of every fuzz target with libFuzzer
# (Debian's clang), each for a bounded time. docs/fuzzing.md explains it.
#
#   FUZZ_SECONDS=60    seconds per target
#   FUZZ_TARGETS="..." which targets (default: all of them)
#   FUZZ_BUILD=build-fuzz
#   FUZZ_MERGE=1       afterwards, merge what added coverage into the
#                      corpus in the repository (review its size first)
#
# Each target starts from tests/fuzz/corpus/<target>/ (in the repository,
# small) and grows a working corpus in $FUZZ_BUILD/corpus/<target>/ (kept
# between runs, never committed). Crashes, leaks and timeouts are written to
# $FUZZ_BUILD/artifacts/<target>/; the summary table goes to stdout and to
# $FUZZ_BUILD/fuzz-summary.md. Exits 1 if any target found something.
set -uo pipefail
cd "$(dirname "$0")/../.."

build=${FUZZ_BUILD:-build-fuzz}
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-"frame packet rpc record token config logic"}

max_len() {
  case $1 in
    token) echo 256 ;;
    record) echo 2048 ;;
    *) echo 4096 ;;
  esac
}

if [ ! -f "$build/build.ninja" ]; then
  # The library and daemons' config code are instrumented for coverage
  # (fuzzer-no-link); only the targets link libFuzzer itself.
  CC=clang meson setup "$build" -Dlibfuzzer=true \
    -Db_sanitize=address,undefined -Db_lundef=false -Dbenchmarks=false \
    -Dc_args=-fsanitize=fuzzer-no-link || exit 1
fi
nice ninja -C "$build" fuzz-targets || exit 1

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

summary="$build/fuzz-summary.md"
found=0
{
  echo "| target | seconds | execs | exec/s | cov | ft | corpus | crashes |"
  echo "|---|---|---|---|---|---|---|---|"
} > "$summary"

for t in $targets; do
  exe="$build/tests/fuzz/fuzz-$t"
  work="$build/corpus/$t"
  art="$build/artifacts/$t"
  log="$build/fuzz-$t.log"
  mkdir -p "$work" "$art"
  echo "== fuzz-$t: ${seconds}s (log: $log)"
  # The first corpus directory is the one libFuzzer adds to: the working
  # one, so the repository's corpus is only read.
  nice "$exe" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$art/" "$work" "tests/fuzz/corpus/$t" > "$log" 2>&1
  rc=$?
  execs=$(awk '/stat::number_of_executed_units:/{print $2}' "$log")
  rate=$(awk '/stat::average_exec_per_sec:/{print $2}' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -n1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
  crashes=$(find "$art" -type f | wc -l)
  echo "| $t | $seconds | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $crashes |" >> "$summary"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    found=1
    echo "   FOUND something (exit $rc): $art/"
    grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -n 5
    echo "   replay: $exe $art/<file>; once fixed, add the input to"
    echo "   tests/fuzz/regress/$t/ so the fuzz suite replays it"
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    # edges only (no hit counts, no comparisons): a few dozen files each
    nice "$exe" -merge=1 -use_counters=0 -use_cmp=0 \
      -max_len="$(max_len "$t")" "tests/fuzz/corpus/$t" \
      "$work" >> "$log" 2>&1
  fi
done

echo
cat "$summary"
if [ "${FUZZ_MERGE:-0}" = 1 ]; then
  echo
  echo "tests/fuzz/corpus is now $(du -sk tests/fuzz/corpus | cut -f1) KiB" \
    "(keep it under 100 KiB before committing)"
fi
exit "$found"
