#!/usr/bin/env bash
# Installs the Debian packages libmim needs to build, test and run.
# Idempotent: does nothing when every package is already present.
#
#   scripts/install-deps.sh          what `make test` and `make run` need
#   scripts/install-deps.sh --fuzz   also clang and its libFuzzer runtime
#                                    (libclang-rt-dev), for `make fuzz` only
set -euo pipefail

pkgs=(
  meson ninja-build pkg-config gcc
  liblmdb-dev lmdb-utils
  libprotobuf-c-dev protobuf-c-compiler
  libcmocka-dev
  libssl-dev
  libwebsockets-dev libev-dev libjansson-dev
  libinih-dev
  libjansson-dev libcurl4-openssl-dev
  python3-prometheus-client
  libsystemd-dev
  openssl
  libcurl4-openssl-dev libjansson-dev
  # the web page's browser tests (tests/browser, docs/web.md): Debian's
  # Chromium, driven by playwright-core from npm
  chromium
)
# node and npm for those tests, unless a node is already installed (a
# nodesource nodejs carries its own npm and conflicts with Debian's npm)
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
if [ "${1:-}" = "--fuzz" ]; then
  # Debian's default clang and its compiler-rt (libFuzzer, ASan, UBSan).
  pkgs+=(clang libclang-rt-dev)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
