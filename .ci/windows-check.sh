#!/usr/bin/env bash
# `cargo check` of the published crates for Windows (docs/environments.md):
# the code behind `cfg(windows)` compiles, without warnings. Needs the
# target's standard library (rustup) and MinGW's C compiler (ring's build
# script compiles C for the target; nothing is linked or run). Says so
# loudly when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-pc-windows-gnu
if ! rustup target list --installed | grep -qx "$target"; then
  if ! rustup target add "$target"; then
    echo "!!! SKIPPED: the Windows check: rustup could not install the $target standard library !!!" >&2
    exit 0
  fi
fi
if ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-mingw-w64-x86-64 >/dev/null
fi

RUSTFLAGS="-D warnings" cargo check --target "$target" \
  -p cleanroom-test -p cleanroom-test-macros -p cleanroom-test-runtime -p cargo-cleanroom
# Only the target's own files: the check does not need them again.
rm -rf "target/$target"
