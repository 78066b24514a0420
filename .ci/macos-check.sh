#!/usr/bin/env bash
# `cargo check` of the published crates for macOS (docs/environments.md):
# the code behind `cfg(target_os = "macos")` compiles, without warnings.
# Needs the target's standard library (rustup) and clang; ring's C is not
# compiled for real (see macos-check/clang). Says so loudly when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-apple-darwin
if ! rustup target list --installed | grep -qx "$target"; then
  if ! rustup target add "$target"; then
    echo "!!! SKIPPED: the macOS check: rustup could not install the $target standard library !!!" >&2
    exit 0
  fi
fi
if ! command -v clang >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null
fi

export CC_x86_64_apple_darwin="$PWD/.ci/macos-check/clang" AR_x86_64_apple_darwin=ar
RUSTFLAGS="-D warnings" cargo check --target "$target" \
  -p cleanroom-test -p cleanroom-test-macros -p cleanroom-test-runtime -p cargo-cleanroom
# Only the target's own files: the check does not need them again.
rm -rf "target/$target"
