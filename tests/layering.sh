#!/bin/sh
# Checks that libmim's modules depend one way (docs/architecture.md):
# a folder includes only the folders below it, and inside lib/logic/ a
# module never calls a function of a module above it (conn.c < commit.c <
# the request families auth.c, send.c, group.c, read.c < admin.c < logic.c;
# upward calls go through struct logic_up). $1: the source root.
set -eu
lib=$1/lib
fail=0
# folder: the folders it must not include
check_folder() {
  dir=$1; shift
  for up in "$@"; do
    if grep -rn "#include \"$up/" "$lib/$dir" >/dev/null 2>&1; then
      echo "lib/$dir includes lib/$up:"; grep -rn "#include \"$up/" "$lib/$dir"
      fail=1
    fi
  done
}
check_folder util codec auth store route logic
check_folder codec auth store route logic
check_folder auth store route logic
check_folder store route logic
check_folder route logic
# inside lib/logic: functions defined in an upper module, called below it
# (conn.c < large.c < commit.c < ...)
defined_in() {
  grep -oE '^[a-z][a-z_ *]*\b(mim__logic_[a-z_0-9]+)\(' "$lib/logic/$1" |
    grep -oE 'mim__logic_[a-z_0-9]+' | sort -u
}
check_calls() {
  low=$1; shift
  for up in "$@"; do
    for fn in $(defined_in "$up"); do
      if grep -n "\\b$fn\\b" "$lib/logic/$low" >/dev/null; then
        echo "lib/logic/$low calls $fn of $up (a module above it)"
        fail=1
      fi
    done
  done
}
families="auth.c send.c group.c read.c conv.c change.c"
check_calls conn.c large.c commit.c $families admin.c logic.c
check_calls large.c commit.c $families admin.c logic.c
check_calls commit.c $families admin.c logic.c
for f in $families; do
  check_calls "$f" admin.c logic.c
done
check_calls admin.c logic.c
[ $fail -eq 0 ] && echo "ok: one-way"
exit $fail
