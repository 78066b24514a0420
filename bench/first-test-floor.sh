#!/usr/bin/env bash
# The floor under bench/first-test.sh, without cleanroom: with the docker
# CLI, a network, then a Redis and a Postgres started at once on it, the
# Postgres copying the newest generation of a cache volume into its tmpfs
# data directory as cleanroom's restore does; the time from the start to the
# server accepting connections on its published port (`pg_isready` from
# this host, every 5 ms). No password set, no login, no room: what the
# engine and the server cost before cleanroom does anything
# (docs/startup.md, "The process that creates").
#
#   bench/first-test.sh <suite> new                       # fills the cache once
#   bench/first-test-floor.sh cleanroom-cache-postgres-<hash>
#
# Prints: network <ms>, run returned <ms>, accepting <ms>. Needs `pg_isready`
# on this host (Debian's postgresql-client). Removes what it made, by name.
set -euo pipefail
volume=$1
postgres_image=${CLEANROOM_POSTGRES_IMAGE:-postgres:15}
redis_image=${CLEANROOM_REDIS_IMAGE:-redis:7}
tag=first-test-floor-$$
cleanup() {
  docker rm -f "$tag-redis" "$tag-postgres" >/dev/null 2>&1 || true
  docker network rm "$tag" >/dev/null 2>&1 || true
}
trap cleanup EXIT
# `docker run -v` would make a missing volume, empty.
docker volume inspect "$volume" >/dev/null
# shellcheck disable=SC2016 # expanded in the container
restore='src=""; for d in /cleanroom-cache/gen-*; do [ -f "$d/.complete" ] && src=$d; done
[ -n "$src" ] || { echo "no complete generation in the cache volume" >&2; exit 9; }
mkdir -p "$PGDATA" && cp -a "$src"/. "$PGDATA"/ && rm -f "$PGDATA/.complete" "$PGDATA/.clean"
exec docker-entrypoint.sh "$@"'
start=$(date +%s%N)
docker network create --label cleanroom.bench=floor "$tag" >/dev/null
network=$(date +%s%N)
docker run -d --name "$tag-redis" --label cleanroom.bench=floor --network "$tag" -p 127.0.0.1::6379 \
  "$redis_image" redis-server --save "" --appendonly no >/dev/null &
docker run -d --name "$tag-postgres" --label cleanroom.bench=floor --network "$tag" \
  --tmpfs /var/lib/postgresql/data --shm-size 268435456 -e POSTGRES_USER=cleanroom -e POSTGRES_PASSWORD=x \
  -e POSTGRES_DB=cleanroom -v "$volume:/cleanroom-cache:ro" -p 127.0.0.1::5432 "$postgres_image" \
  sh -c "$restore" sh postgres -c fsync=off -c synchronous_commit=off -c full_page_writes=off >/dev/null
returned=$(date +%s%N)
port=$(docker port "$tag-postgres" 5432 | head -n 1 | sed 's/.*://')
for _ in $(seq 2000); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.005
done
accepting=$(date +%s%N)
wait
ms() { echo $(( ($1 - start) / 1000000 )); }
echo "network $(ms "$network") ms, run returned $(ms "$returned") ms, accepting $(ms "$accepting") ms"
