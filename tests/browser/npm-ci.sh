#!/bin/sh
# npm-ci.sh DIR STAMP: installs the browser tests' npm packages
# (package-lock.json, copied into DIR by meson) into DIR/node_modules, in
# the build directory: node_modules is never in the source tree.
set -eu
dir=$1 stamp=$2
npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
touch "$stamp"
