#!/usr/bin/env bash
# The published crates build against the lowest versions of their direct
# dependencies that their manifests declare, so that adding cleanroom never
# forces a user's dependencies newer than it needs (docs/build-cost.md).
#
# A copy of the workspace with only the four published crates as members
# (the tests, examples and bench have dependencies of their own that would
# raise the floor), resolved with nightly Cargo's
# -Zdirect-minimal-versions, then checked with every feature and target.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "ci: minimal versions NOT CHECKED: no nightly toolchain here (rustup toolchain install nightly)" >&2
  exit 0
fi

work=target/minimal-versions
rm -rf "$work/workspace"
mkdir -p "$work/workspace"
tar --exclude=./target --exclude=./.git -cf - . | tar -xf - -C "$work/workspace"
cd "$work/workspace"
sed -i 's/^members = .*/members = ["cleanroom", "cleanroom-macros", "cleanroom-runtime", "cleanroom-cli"]/' Cargo.toml
cargo +nightly update -Zdirect-minimal-versions
CARGO_TARGET_DIR=../target cargo +nightly check --workspace --all-features --all-targets
cd ../../..
rm -rf "$work/workspace"
echo "ci: the published crates build with the lowest dependency versions they declare"
