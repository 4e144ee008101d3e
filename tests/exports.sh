#!/bin/sh
# Fails when libmim.so exports a symbol outside its public API: every
# defined dynamic symbol must start with mim_ (not mim__, the internal
# prefix). $1: the shared library.
set -eu
lib=$1
bad=$(nm -D --defined-only "$lib" | awk '{print $NF}' |
      grep -v '^LIBMIM_' | grep -v '^mim_' || true)
internal=$(nm -D --defined-only "$lib" | awk '{print $NF}' | grep '^mim__' || true)
if [ -n "$bad$internal" ]; then
  echo "exported outside the public API:" $bad $internal
  exit 1
fi
n=$(nm -D --defined-only "$lib" | grep -c ' mim_' || true)
echo "ok: $n public symbols"
