#!/usr/bin/env bash
# Measures one 20-test suite (tests/runs.rs, child::suite: Postgres and Redis,
# a table insert and a Redis SET per test) under `cargo test` and under
# `cargo nextest run`, cold and with reuse, REPS times each, interleaved.
# Prints wall time and the containers Docker started (from its event stream,
# not from cleanroom) per cell, and what is left afterwards.
#
#   bench/runners.sh [REPS]     (default 3; run from the workspace root)
set -euo pipefail
reps=${1:-3}
cd "$(dirname "$0")/.."
cargo test -p cleanroom-tests --test runs --no-run -q 2>/dev/null
cargo nextest list -p cleanroom-tests --test runs >/dev/null 2>&1

events=$(mktemp); trap 'rm -f "$events"; kill $watch 2>/dev/null || true' EXIT
docker events --filter type=container --filter event=start --filter label=cleanroom.managed=true \
  --format '{{index .Actor.Attributes "cleanroom.service"}}' > "$events" &
watch=$!
sleep 1

run_cell() { # runner mode
  local runner=$1 mode=$2 before after start end
  unset CLEANROOM_SESSION
  # Reuse cells: a definition of their own (the startup timeout is part of
  # it), so no other reused service on this machine is touched.
  if [ "$mode" = reuse ]; then
    export CLEANROOM_REUSE=1 CLEANROOM_REUSE_TTL=60 CLEANROOM_STARTUP_TIMEOUT=62.5
  else
    unset CLEANROOM_REUSE CLEANROOM_REUSE_TTL CLEANROOM_STARTUP_TIMEOUT
  fi
  before=$(wc -l < "$events")
  start=$(date +%s.%N)
  if [ "$runner" = cargo-test ]; then
    cargo test -q -p cleanroom-tests --test runs -- --ignored child::suite:: --test-threads 2 >/dev/null 2>&1
  else
    cargo nextest run -p cleanroom-tests --test runs --run-ignored only -E 'test(/^child::suite::/)' >/dev/null 2>&1
  fi
  end=$(date +%s.%N)
  sleep 1
  after=$(wc -l < "$events")
  printf '%s\t%s\t%.2f\t%d\n' "$runner" "$mode" "$(echo "$end - $start" | bc)" "$((after - before))"
}

echo -e "runner\tmode\twall_s\tcontainers_started"
for rep in $(seq 1 "$reps"); do
  for runner in cargo-test nextest; do
    run_cell "$runner" cold
    run_cell "$runner" reuse   # the first reuse cell of a rep warms; later ones attach
  done
done
echo "(the reused services of the reuse cells are removed by their keeper 60 s after the last cell)" >&2
