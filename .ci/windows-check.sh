#!/usr/bin/env bash
# `cargo check` of the published crates for Windows (docs/environments.md):
# the code behind `cfg(windows)` compiles, without warnings, for MSVC (the
# usual Windows toolchain) and for MinGW. Needs the targets' standard
# libraries (rustup) and C compilers for ring's build script: MinGW's from
# Debian; for MSVC (with LLVM's archiver), which has no SDK here, a stand-in (.ci/windows-check/clang)
# that makes empty objects, which a check never links. Says so loudly when
# it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

crates=(-p cleanroom-test -p cleanroom-test-macros -p cleanroom-test-runtime -p cargo-cleanroom)
for target in x86_64-pc-windows-msvc x86_64-pc-windows-gnu; do
  if ! rustup target list --installed | grep -qx "$target"; then
    if ! rustup target add "$target"; then
      echo "!!! SKIPPED: the Windows check for $target: rustup could not install its standard library !!!" >&2
      continue
    fi
  fi
done
if ! command -v clang >/dev/null || ! command -v llvm-ar >/dev/null || ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang llvm gcc-mingw-w64-x86-64 >/dev/null
fi

if rustup target list --installed | grep -qx x86_64-pc-windows-msvc; then
  CC_x86_64_pc_windows_msvc="$PWD/.ci/windows-check/clang" AR_x86_64_pc_windows_msvc=llvm-ar \
    RUSTFLAGS="-D warnings" cargo check --target x86_64-pc-windows-msvc "${crates[@]}"
fi
if rustup target list --installed | grep -qx x86_64-pc-windows-gnu; then
  RUSTFLAGS="-D warnings" cargo check --target x86_64-pc-windows-gnu "${crates[@]}"
fi
# Only the targets' own files: the check does not need them again.
rm -rf target/x86_64-pc-windows-msvc target/x86_64-pc-windows-gnu
