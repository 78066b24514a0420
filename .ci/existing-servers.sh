#!/usr/bin/env bash
# Existing servers (docs/engines.md): the example suites against a Postgres
# and a Redis started from Debian's packages, as a CI job's `services:`
# would provide them, under both runners, and the room tests. Afterwards neither server holds
# anything of cleanroom's, and the server's own data is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."

major=$(ls /usr/lib/postgresql | sort -n | tail -1)
cluster=cleanroom_ci
pg_port=5499
redis_port=6391
redis_pid=/tmp/cleanroom-ci-redis.pid

stop_servers() {
  pg_dropcluster --stop "$major" "$cluster" 2>/dev/null || true
  if [ -f "$redis_pid" ]; then
    kill "$(cat "$redis_pid")" 2>/dev/null || true
    rm -f "$redis_pid"
  fi
}
stop_servers
trap stop_servers EXIT

pg_createcluster "$major" "$cluster" -p "$pg_port" >/dev/null
pg_ctlcluster "$major" "$cluster" start
psql_admin() { runuser -u postgres -- psql -p "$pg_port" -qAt "$@"; }
psql_admin -c "CREATE ROLE cleanroom_ci LOGIN PASSWORD 'ci-secret-pw' CREATEDB"
psql_admin -c "CREATE DATABASE app_data"
redis-server --port "$redis_port" --bind 127.0.0.1 --daemonize yes --save "" --appendonly no --pidfile "$redis_pid"
for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$redis_port" -n 0 set users-own-key 1 >/dev/null

export CLEANROOM_POSTGRES_URL="postgres://cleanroom_ci:ci-secret-pw@127.0.0.1:$pg_port/postgres"
export CLEANROOM_REDIS_URL="redis://127.0.0.1:$redis_port"
export CLEANROOM_REDIS_DATABASES=8-15
cargo test -p cleanroom-example-notes -p cleanroom-examples
cargo nextest run -p cleanroom-example-notes -p cleanroom-examples
# The room tests too (their `store` service is an image: it runs on Docker).
cargo test -p cleanroom-tests --test rooms

# The reaper removes what the run made once the runner has exited.
left=""
for _ in $(seq 1 40); do
  left=$(psql_admin -c "SELECT string_agg(datname, ' ') FROM pg_database WHERE datname LIKE 'cleanroom%'")
  keys=0
  for db in $(seq 8 15); do keys=$((keys + $(redis-cli -p "$redis_port" -n "$db" dbsize))); done
  [ -z "$left" ] && [ "$keys" -eq 0 ] && break
  sleep 0.5
done
if [ -n "$left" ] || [ "$keys" -ne 0 ]; then
  echo "ci: the existing servers kept cleanroom's databases ($left) or $keys key(s) in databases 8-15" >&2
  exit 1
fi
[ "$(psql_admin -c "SELECT count(*) FROM pg_database WHERE datname = 'app_data'")" = 1 ]
[ "$(redis-cli -p "$redis_port" -n 0 get users-own-key)" = 1 ]
echo "ci: existing servers: the example suites (both runners) and the room tests passed; nothing of cleanroom's is left on them"
