#!/usr/bin/env bash
# Runs mim-bench's standard set against freshly started daemons and prints
# one combined table (make bench). Every scenario runs in both framings:
# seed (one frame per websocket message) and MIM_CAP_BATCH.
#
#   scripts/bench.sh            the standard set (under five minutes)
#   scripts/bench.sh idle100k   100,000 idle connections: one logicd, six
#                               gatewayds, six generator processes (the
#                               open-file limit is 20,000 per process)
#   scripts/bench.sh large      large groups by read diffusion: per round,
#                               the write-diffusion group 1 x 1,000 (the
#                               baseline, group_large_min 0), then 1 group of
#                               10,000 members with 1,000 online (--large,
#                               batch, window 64; over websockets and raw
#                               TCP); then 100,000 members, 1,000 online
#
# Environment: BUILD (build dir, default build), BENCH_DURATION (measured
# seconds per throughput run, default 10), VERBOSE=1 (progress lines),
# KEEP=1 (keep the temporary directory with logs, data and results),
# BENCH_ROUNDS (large: rounds, default 3), BENCH_WS (the generator's
# websocket client for ws:// URLs: raw = its own, parsing frames in bulk,
# the default; lws = libwebsockets' client, to compare with figures taken
# with it; tcp:// runs have no websocket).
#
# The daemons are configured for measuring, not for production: logicd runs
# with --dev-auth (any token), --rate-per-sec 0 (the per-connection send
# limit would cap every sender at 200 msg/s) and --map-size-mb 4096 (a map
# that grows while measuring stalls every write for up to a second);
# gatewayd without its per-connection rate limits and per-address cap.
# Everything listens on 127.0.0.1; every daemon is stopped on exit.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

mode=${1:-standard}
build=${BUILD:-build}
dur=${BENCH_DURATION:-10}
case "${BENCH_WS:-raw}" in
  raw) ws_opt=--ws-raw ;;
  lws) ws_opt=--ws-lws ;;
  *) echo "bench.sh: BENCH_WS is raw or lws" >&2; exit 2 ;;
esac
bench=$build/tests/bench/mim-bench
logicd=$build/daemons/logicd/logicd
gatewayd=$build/daemons/gatewayd/gatewayd

for f in "$bench" "$logicd" "$gatewayd"; do
  if [ ! -x "$f" ]; then
    echo "bench.sh: $f is missing: build first (ninja -C $build)" >&2
    exit 2
  fi
done
case "$mode" in
  standard|idle100k|large) ;;
  *) echo "usage: $0 [standard|idle100k|large]" >&2; exit 2 ;;
esac

tmp=$(mktemp -d /tmp/mim-bench.XXXXXX)
rows=$tmp/rows.tsv
: > "$rows"
failures=0
logic_pid=""
logic_port=""
gw_pids=()
gw_urls=()
gw_tcp_url=""   # large: gw1's raw TCP listener
run_url=""      # run(): the generator's URL instead of gw1's websocket one

# stop_pid PID: SIGTERM, up to 5 s for an orderly stop, then SIGKILL.
stop_pid() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

stop_gateways() {
  local p
  for p in "${gw_pids[@]}"; do stop_pid "$p"; done
  gw_pids=()
  gw_urls=()
  gw_tcp_url=""
}

cleanup() {
  trap - EXIT INT TERM
  stop_gateways
  stop_pid "$logic_pid"
  if [ "${KEEP:-0}" = 1 ] || [ "$failures" -gt 0 ]; then
    echo "bench.sh: logs and results kept in $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port below the ephemeral range (the generator's own
# connections take ports from that range).
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
      echo "$p"
      return 0
    fi
  done
  echo "bench.sh: no free port found" >&2
  return 1
}

# wait_ready NAME PID LOG [SKIP]: until LOG says "ready" after its first
# SKIP lines (a restarted daemon appends to its predecessor's log) (10 s at
# most).
wait_ready() {
  local name=$1 pid=$2 log=$3 skip=${4:-0}
  for _ in $(seq 100); do
    tail -n +$((skip + 1)) "$log" 2>/dev/null | grep -q "ready" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "bench.sh: $name exited; its log:" >&2
      tail -n 20 "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "bench.sh: $name did not become ready in 10 s" >&2
  return 1
}

# start_logic [NAME [OPTION VALUE...]]: logicd with its own data directory
# $tmp/NAME (default data) and any extra settings.
start_logic() {
  local name=${1:-data}
  [ $# -gt 0 ] && shift
  logic_port=$(free_port) || exit 2
  local log=$tmp/logicd.log skip
  skip=$(cat "$log" 2>/dev/null | wc -l)
  "$logicd" --listen "127.0.0.1:$logic_port" --data-dir "$tmp/$name" \
    --dev-auth --rate-per-sec 0 --map-size-mb 4096 --log-level info "$@" \
    2>>"$log" &
  logic_pid=$!
  wait_ready logicd "$logic_pid" "$log" "$skip" || exit 2
}

# start_gateway N [tcp]: gatewayd gwN behind the logicd; with "tcp" also a
# raw TCP listener (gw_tcp_url).
start_gateway() {
  local n=$1 port log skip tcp=()
  port=$(free_port) || exit 2
  if [ "${2:-}" = tcp ]; then
    gw_tcp_url="tcp://127.0.0.1:$(free_port)" || exit 2
    tcp=(--tcp-listen "${gw_tcp_url#tcp://}")
  fi
  log=$tmp/gatewayd-$n.log
  skip=$(cat "$log" 2>/dev/null | wc -l)
  # no per-connection rate limits and no per-address cap: every generator
  # connection comes from 127.0.0.1 and sends as fast as it can
  "$gatewayd" --id "gw$n" --listen "127.0.0.1:$port" \
    --logic "127.0.0.1:$logic_port" --log-level info \
    --rate-requests-per-s 0 --rate-bytes-per-s 0 --max-conns-per-ip 0 \
    "${tcp[@]}" 2>>"$log" &
  gw_pids+=($!)
  gw_urls+=("ws://127.0.0.1:$port/ws")
  wait_ready "gatewayd gw$n" "$!" "$log" "$skip" || exit 2
}

# run NAME ARGS...: one mim-bench run; its summary goes to $tmp/NAME.out,
# one row to the table.
run() {
  local name=$1; shift
  local args=(--label "$name" --tsv "$rows" --logic-pid "$logic_pid" "$ws_opt")
  local i
  for i in "${!gw_pids[@]}"; do
    args+=(--gateway-pid "${gw_pids[$i]}")
    if [ "$i" = 0 ]; then args+=(--url "${run_url:-${gw_urls[$i]}}")
    else args+=(--gateway-url "${gw_urls[$i]}"); fi
  done
  [ "${VERBOSE:-0}" = 1 ] || args+=(--quiet)
  printf '  %-16s ' "$name" >&2
  local t0=$SECONDS rc
  "$bench" "$@" "${args[@]}" >"$tmp/$name.out" 2>"$tmp/$name.err"
  rc=$?
  local row
  row=$(grep -P "^\Q$name\E\t" "$rows" | tail -n1)
  if [ -n "$row" ]; then
    printf '%s %s  checks %s  (%ds)\n' "$(cut -f5 <<<"$row")" \
      "$(cut -f6 <<<"$row")" "$(cut -f12 <<<"$row")" $((SECONDS - t0)) >&2
  else
    printf 'no result (exit %d): %s\n' "$rc" \
      "$(grep -m1 'failed\|mim-bench:' "$tmp/$name.err")" >&2
    printf '%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\tno result (exit %d)\t-\t-\t-\t-\n' \
      "$name" "$rc" >>"$rows"
  fi
  [ "$rc" = 0 ] || failures=$((failures + 1))
  return 0
}

# The measured rate of a run (column 5 of its row), as an integer.
rate_of() {
  grep -P "^\Q$1\E\t" "$rows" | tail -n1 | cut -f5 | cut -d. -f1
}

print_table() {
  echo
  echo "mim-bench: $mode set, $(nproc) CPU(s), open files $(ulimit -n)," \
       "measured ${dur} s per throughput run; logicd + gatewayd from $build;" \
       "websocket client ${BENCH_WS:-raw}"
  {
    printf 'run\tscenario\tframes\tconns\trate\tunit\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tchecks\tgen cpu\tgw cpu\tlogic cpu\tnotes\n'
    cat "$rows"
  } | column -t -s $'\t'
  echo
  echo "latency: c2c/group send->push, idle connect+auth, sync pull request->reply;"
  echo "cpu: % of one core over the measured window (gen = mim-bench itself)"
}

echo "bench.sh: logs in $tmp" >&2

if [ "$mode" = large ]; then
  # Each round on fresh daemons. The baseline is the standard group-batch
  # run, by write diffusion (group_large_min 0 = never large); the large
  # runs need group_members_max up to 100,000 and group_large_min at its
  # default 1,000, so the group switches to read diffusion at creation
  # (the first request names 1,000 members).
  # window 64: 4 senders x 16 in flight at ~100 ms per message would cap
  # the rate at ~640 messages/s (Little's law), below the 1,000/s that
  # 1,000,000 deliveries/s to 999 connections take
  rounds=${BENCH_ROUNDS:-3}
  for i in $(seq "$rounds"); do
    echo "bench.sh: round $i: group 1 x 1,000, write diffusion (baseline)" >&2
    start_logic "data-base-$i" --group-large-min 0
    start_gateway 1
    run "group-batch-$i" group --groups 1 --members 1000 --senders 4 \
      --duration "$dur" --warmup 2 --batch
    stop_gateways
    stop_pid "$logic_pid"
    echo "bench.sh: round $i: 1 group of 10,000, 1,000 online, large" >&2
    start_logic "data-large-$i" --group-large-min 1000 \
      --group-members-max 100000
    start_gateway 1 tcp
    run "large10k-$i" group --groups 1 --members 10000 --online 1000 \
      --senders 4 --window 64 --large --batch --duration "$dur" --warmup 2
    # the same over gatewayd's raw TCP listener: no websocket framing at
    # all (with BENCH_WS=lws it shows what lws 4.1's client, which parses
    # payload byte by byte, costs the websocket run)
    run_url=$gw_tcp_url run "large10k-tcp-$i" group --groups 1 \
      --members 10000 --online 1000 --senders 4 --window 64 --large --batch \
      --duration "$dur" --warmup 2
    stop_gateways
    stop_pid "$logic_pid"
    echo "bench.sh: round $i: 1 group of 100,000, 1,000 online, large" >&2
    start_logic "data-huge-$i" --group-large-min 1000 \
      --group-members-max 100000
    start_gateway 1
    run "large100k-$i" group --groups 1 --members 100000 --online 1000 \
      --senders 4 --window 64 --large --batch --duration "$dur" --warmup 2 \
      --setup-timeout 600
    stop_gateways
    stop_pid "$logic_pid"
  done
  logic_pid=""
  print_table
  [ "$failures" = 0 ]
  exit
fi

# the standard group runs (1,000 members) measure write diffusion, as
# before large groups: group_large_min 0 keeps them from switching
start_logic data --group-large-min 0

if [ "$mode" = idle100k ]; then
  for n in 1 2 3 4 5 6; do start_gateway "$n"; done
  run idle100k-seed idle --conns 100000 --hold "$dur" --processes 6 --concurrency 128 \
    --connect-timeout 300
  print_table
  [ "$failures" = 0 ]
  exit
fi

start_gateway 1
echo "bench.sh: c2c, 100 pairs, window 16, as fast as possible" >&2
run c2c-seed c2c --pairs 100 --window 16 --duration "$dur" --warmup 2
run c2c-batch c2c --pairs 100 --window 16 --duration "$dur" --warmup 2 --batch

echo "bench.sh: c2c at half the measured maximum (latency)" >&2
r=$(rate_of c2c-seed)
if [ -n "$r" ] && [ "$r" -gt 1 ]; then
  run c2c-rate-seed c2c --pairs 100 --rate $((r / 2)) --duration "$dur" --warmup 2
fi
r=$(rate_of c2c-batch)
if [ -n "$r" ] && [ "$r" -gt 1 ]; then
  run c2c-rate-batch c2c --pairs 100 --rate $((r / 2)) --duration "$dur" \
    --warmup 2 --batch
fi

echo "bench.sh: group, 1 group of 1,000 members, 4 senders" >&2
run group-seed group --groups 1 --members 1000 --senders 4 --duration "$dur" --warmup 2
run group-batch group --groups 1 --members 1000 --senders 4 --duration "$dur" \
  --warmup 2 --batch

# 1,000 messages each: two pages of 500 per user, so paging is exercised
echo "bench.sh: sync, 200 users x 1,000 messages, pages of 500" >&2
run sync-seed sync --users 200 --messages 1000 --pull-limit 500 --duration 60
run sync-batch sync --users 200 --messages 1000 --pull-limit 500 --duration 60 \
  --batch

# Idle last, each on a fresh gatewayd: its memory growth is then the
# connections' alone. 19,000 connections in one gatewayd, from 2 generator
# processes of 9,500 (each process stays below its 20,000 open files).
echo "bench.sh: idle, 19,000 connections, 2 generator processes" >&2
for framing in seed batch; do
  stop_gateways
  start_gateway 1
  extra=()
  [ "$framing" = batch ] && extra=(--batch)
  run "idle-$framing" idle --conns 19000 --hold "$dur" --processes 2 "${extra[@]}"
done

print_table
[ "$failures" = 0 ]
