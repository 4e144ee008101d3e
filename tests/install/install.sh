#!/usr/bin/env bash
# The 'install' suite: `meson install --destdir` into a scratch directory,
# then check what an operator gets (docs/operations.md, section 13): the
# daemons in sbin, mimctl in bin, the library with its headers and
# pkg-config file, the systemd units pointing at the installed daemons and
# config files, the system user, the examples, and nothing under sysconfdir
# (an operator's /etc/libmim/*.ini are never overwritten). A tiny program
# builds against the installed library with pkg-config alone and runs.
#
#   install.sh BUILDDIR SRCDIR PREFIX SBINDIR BINDIR SYSCONFDIR DATADIR UNITDIR TYPE
#   (TYPE: the units' Type=, notify when built with libsystemd)
set -euo pipefail
builddir=$1 srcdir=$2 prefix=$3 sbindir=$4 bindir=$5 sysconfdir=$6 datadir=$7
unitdir=$8 type=$9
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
abs() { case $1 in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }

meson install -C "$builddir" --destdir "$dest" --no-rebuild >/dev/null
root="$dest"
sbin=$(abs "$sbindir") bin=$(abs "$bindir") etc=$(abs "$sysconfdir")
share=$(abs "$datadir")
[ -n "$unitdir" ] || unitdir="$prefix/lib/systemd/system"
doc="$share/doc/libmim"

for f in "$sbin/logicd" "$sbin/gatewayd" "$bin/mimctl"; do
  [ -x "$root$f" ] || fail "$f is not installed executable"
done
for f in "$bin/logicd" "$bin/gatewayd"; do
  [ ! -e "$root$f" ] || fail "$f: the daemons go to sbin"
done
for f in "$unitdir/logicd.service" "$unitdir/gatewayd.service" \
         "$prefix/lib/sysusers.d/libmim.conf" \
         "$doc/examples/logicd.ini" "$doc/examples/gatewayd.ini" \
         "$doc/examples/logicd.ini.example" \
         "$doc/examples/gatewayd.ini.example" \
         "$doc/examples/prometheus/prometheus.yml" \
         "$doc/examples/prometheus/libmim-alerts.yml" \
         "$doc/examples/nginx/libmim.conf" "$doc/operations.md"; do
  [ -f "$root$f" ] || fail "$f is not installed"
done
# never an operator's config
if [ -d "$root$etc" ] && [ -n "$(find "$root$etc" -type f)" ]; then
  fail "files installed under $etc: $(find "$root$etc" -type f)"
fi
hdr=$(find "$dest" -path '*/include/mim/mim.h' | head -n1)
[ -n "$hdr" ] || fail "include/mim/mim.h is not installed"
[ -n "$(find "$dest" -name 'libmim.so.0*' | head -n1)" ] || fail "libmim.so.0 is not installed"

# The units start the installed daemons on the config files the walkthrough
# puts in place, as Type=notify services, hardened.
for d in logicd gatewayd; do
  u="$root$unitdir/$d.service"
  grep -qx "ExecStart=$sbin/$d --config $etc/libmim/$d.ini" "$u" ||
    fail "$d.service: ExecStart is not $sbin/$d --config $etc/libmim/$d.ini"
  for line in "Type=$type" 'ExecReload=/bin/kill -HUP $MAINPID' \
              'Restart=on-failure' 'RestartPreventExitStatus=2' \
              'User=libmim' 'NoNewPrivileges=yes' 'ProtectSystem=strict' \
              'ProtectHome=yes' 'PrivateTmp=yes' 'CapabilityBoundingSet='; do
    grep -qxF "$line" "$u" || fail "$d.service lacks '$line'"
  done
  grep -q '^LimitNOFILE=[0-9]' "$u" || fail "$d.service lacks LimitNOFILE"
  ! grep -Eq '@[A-Z_]+@' "$u" || fail "$d.service: an unsubstituted @VAR@"
done
grep -qx 'StateDirectory=libmim' "$root$unitdir/logicd.service" ||
  fail "logicd.service lacks StateDirectory=libmim"

# systemd's own check, where systemd-analyze exists: on copies whose paths
# point into the scratch tree (verify wants ExecStart to be executable).
if command -v systemd-analyze >/dev/null 2>&1; then
  mkdir -p "$dest/verify"
  for d in logicd gatewayd; do
    sed -e "s|^ExecStart=$sbin/|ExecStart=$root$sbin/|" \
        "$root$unitdir/$d.service" >"$dest/verify/$d.service"
  done
  out=$(cd "$dest/verify" && SYSTEMD_LOG_LEVEL=warning \
        systemd-analyze verify --man=no ./logicd.service ./gatewayd.service 2>&1 || true)
  # without a running systemd, verify still parses every directive; an
  # unknown or malformed one is reported as such
  if printf '%s\n' "$out" | grep -Ei 'unknown (key|lvalue|section)|failed to parse|invalid|ignoring' ; then
    fail "systemd-analyze verify: $out"
  fi
  echo "systemd-analyze verify: ${out:-clean}"
fi

# The installed binaries run against the installed library.
libdir=$(dirname "$(find "$dest" -name 'libmim.so.0' | head -n1)")
LD_LIBRARY_PATH="$libdir" "$root$sbin/logicd" --version | grep -q . ||
  fail "installed logicd --version"
LD_LIBRARY_PATH="$libdir" "$root$sbin/gatewayd" --version | grep -q . ||
  fail "installed gatewayd --version"

# The example configs load in the installed daemons: the *.ini.example
# (every key at its default) parse, and the production pair of
# deploy/config starts for real and links up, with only what cannot exist
# here (paths under /var, /run, /etc; fixed ports) overridden.
for d in logicd gatewayd; do
  LD_LIBRARY_PATH="$libdir" "$root$sbin/$d" \
    --config "$root$doc/examples/$d.ini.example" --help >/dev/null 2>"$dest/err" ||
    fail "$d.ini.example does not load: $(cat "$dest/err")"
done
run="$dest/run"
mkdir -m 700 "$run"
head -c 32 /dev/urandom | base64 >"$run/token.secret"
echo "install-test-api-key-0123456789abcdef" >"$run/api.key"
chmod 600 "$run/token.secret" "$run/api.key"
# waits until `file` holds `text` (10 s at most)
wait_for() {
  for _ in $(seq 100); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
LD_LIBRARY_PATH="$libdir" "$root$sbin/logicd" \
  --config "$root$doc/examples/logicd.ini" --data-dir "$run/data" \
  --unix-socket "$run/logicd.sock" --token-secret-file "$run/token.secret" \
  --api-key-file "$run/api.key" --http-listen 127.0.0.1:0 \
  >"$run/logicd.log" 2>&1 &
lpid=$!
trap 'kill $lpid $gpid 2>/dev/null || true; rm -rf "$dest"' EXIT
gpid=
wait_for "$run/logicd.log" "logicd: ready" ||
  fail "logicd does not start on examples/logicd.ini: $(cat "$run/logicd.log")"
LD_LIBRARY_PATH="$libdir" "$root$sbin/gatewayd" \
  --config "$root$doc/examples/gatewayd.ini" --listen 127.0.0.1:0 \
  --logic "unix:$run/logicd.sock" --metrics-listen 127.0.0.1:0 \
  >"$run/gatewayd.log" 2>&1 &
gpid=$!
wait_for "$run/gatewayd.log" "link to logicd .* up" ||
  fail "gatewayd does not link up on examples/gatewayd.ini: $(cat "$run/gatewayd.log")"
kill "$gpid" "$lpid"
wait "$gpid" "$lpid" 2>/dev/null || true
trap 'rm -rf "$dest"' EXIT

# An outside program, with pkg-config alone.
pcdir=$(dirname "$(find "$dest" -name libmim.pc | head -n1)")
export PKG_CONFIG_SYSROOT_DIR="$dest" PKG_CONFIG_PATH="$pcdir"
cat >"$dest/tiny.c" <<'C'
#include <mim/mim.h>
#include <stdio.h>
#include <string.h>
int main(void) {
  /* the headers and the installed library agree */
  printf("libmim %s (headers %s): %s\n", mim_version(), MIM_VERSION_STRING,
         mim_strerror(-22));
  return strcmp(mim_version(), MIM_VERSION_STRING) == 0 ? 0 : 1;
}
C
cc -std=c11 -Wall -Wextra -Werror -pedantic "$dest/tiny.c" \
   $(pkg-config --cflags --libs libmim) -o "$dest/tiny"
LD_LIBRARY_PATH="$libdir" "$dest/tiny"
echo "install: ok"
