#!/usr/bin/env bash
# Starts the daemons of a build on config/dev.ini: both (default), or just
# one ("logic" or "gate", as the seed's make targets). Ctrl-C stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
what=${1:-both}
conf=config/dev.ini
mkdir -p data

pids=()
stop() {
  trap - INT TERM
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  exit 0
}
trap stop INT TERM

# start NAME ARGS...: runs a daemon and waits until it says "ready".
start() {
  local name=$1; shift
  local log=data/$name.log
  : > "$log"
  "$build/daemons/$name/$name" --config "$conf" "$@" 2> >(tee -a "$log" >&2) &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q "ready" "$log" && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || { echo "$name failed to start" >&2; stop; }
    sleep 0.1
  done
  echo "$name did not become ready" >&2
  stop
}

case "$what" in
  logic) start logicd ;;
  gate) start gatewayd ;;
  both) start logicd; start gatewayd ;;
  *) echo "usage: $0 [both|logic|gate]" >&2; exit 2 ;;
esac

# the HTTP API's address and key, as [logic] of the config sets them
http=$(sed -n '/^\[logic\]/,/^\[/s/^http_listen *= *//p' "$conf" | head -1)
key=$(sed -n '/^\[logic\]/,/^\[/s/^api_key *= *//p' "$conf" | head -1)

cat <<TXT

  libmim is running (DEVELOPMENT AUTH: any token is accepted)
    websocket:  ws://127.0.0.1:8080/ws   (binary frames, seed protocol)
    chat:       $build/examples/mim-chat alice     (in another terminal)
                $build/examples/mim-chat bob
    operator:   $build/daemons/mimctl/mimctl --config $conf group create team --members alice,bob
    HTTP API:   http://${http:-(off)}/api/v1/   API key: ${key:-(none)}   (docs/http-api.md)
                curl -H 'Authorization: Bearer ${key}' 'http://${http}/api/v1/presence?uid=alice'
  Ctrl-C stops both.

TXT
wait
