#!/usr/bin/env bash
# What adding cleanroom costs to compile (docs/build-cost.md): a new crate
# whose only dev-dependency is cleanroom (this checkout), against the same
# crate with only testcontainers and with only sqlx. Each is built clean, one
# after another: wall time of `cargo test --no-run`, crates compiled, the size
# of the test binary. Usage: bash bench/build-cost.sh [work dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work"
cd "$work"

make_crate() { # name, dev-dependencies, test
  rm -rf "$1"
  cargo new -q --lib "$1"
  printf '\n[dev-dependencies]\n%s\n' "$2" >> "$1/Cargo.toml"
  mkdir -p "$1/tests"
  printf '%s\n' "$3" > "$1/tests/t.rs"
}
make_crate with-cleanroom "cleanroom = { path = \"$root/cleanroom\", package = \"cleanroom-test\" }" \
'#[cleanroom::test(postgres)]
async fn connects(postgres: cleanroom::Postgres) {
    assert!(!postgres.url().is_empty());
}'
make_crate with-testcontainers 'testcontainers = "0.28"
tokio = { version = "1", features = ["macros", "rt-multi-thread"] }' \
'use testcontainers::{runners::AsyncRunner, GenericImage};

#[tokio::test]
async fn connects() {
    let _ = GenericImage::new("postgres", "17-alpine").start().await;
}'
make_crate with-sqlx 'sqlx = { version = "0.9", default-features = false, features = ["postgres", "runtime-tokio", "macros", "migrate"] }
tokio = { version = "1", features = ["macros", "rt-multi-thread"] }' \
'#[sqlx::test]
async fn connects(pool: sqlx::PgPool) {
    let _ = pool;
}'

echo "| crate | clean build of its tests | crates compiled | test binary (debug) |"
echo "|---|---:|---:|---:|"
for c in with-cleanroom with-testcontainers with-sqlx; do
  (
    cd "$c"
    cargo fetch -q
    start=$(date +%s.%N)
    CARGO_INCREMENTAL=0 CARGO_TARGET_DIR="$work/$c/target" cargo test --no-run >build.log 2>&1
    end=$(date +%s.%N)
    crates=$(grep -c "Compiling" build.log)
    binary=$(find target/debug/deps -maxdepth 1 -type f -name 't-*' ! -name '*.d' -printf '%s\n' | sort -n | tail -1)
    printf '| %s | %.0f s | %d | %.0f MB |\n' "$c" "$(echo "$end - $start" | bc)" "$crates" "$(echo "$binary / 1000000" | bc -l)"
    rm -rf target
  )
done
