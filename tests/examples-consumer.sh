#!/usr/bin/env bash
# The 'examples' suite: install libmim into a scratch prefix and build an
# example with nothing but `pkg-config --cflags --libs libmim`, as an outside
# program would; then run it against a temporary store.
set -euo pipefail
builddir=$1
srcdir=$2
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$builddir" --destdir "$dest" --no-rebuild >/dev/null
pcdir=$(dirname "$(find "$dest" -name libmim.pc | head -n1)")
export PKG_CONFIG_SYSROOT_DIR="$dest"
export PKG_CONFIG_PATH="$pcdir"
flags=$(pkg-config --cflags --libs libmim)
echo "pkg-config: $flags"
cc -std=c11 -Wall -Wextra -Werror -pedantic "$srcdir/examples/mim-demo.c" $flags -o "$dest/mim-demo"
libdir=$(dirname "$(find "$dest" -name 'libmim.so' | head -n1)")
LD_LIBRARY_PATH="$libdir" "$dest/mim-demo" "$dest/store" | tee "$dest/out.txt"
grep -q 'C2C_PUSH.*hi bob!' "$dest/out.txt"
grep -q 'KICK' "$dest/out.txt"
