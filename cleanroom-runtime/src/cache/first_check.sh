set -e
state=/tmp/cleanroom-volume-cache; fill=$1
db="${POSTGRES_DB:-$POSTGRES_USER}"; admin=postgres; [ "$db" = postgres ] && admin=template1
# The real server, not the image entrypoint's temporary one: that one listens
# on no TCP port, and it shuts down under whatever runs against it. Waited
# for here, 20 ms at a time for up to 3 s, rather than by the check's next
# round: each round is an exec, and a restored cluster is up ~100 ms after
# its container starts.
n=0
until pg_isready -q -h 127.0.0.1 -p "${PGPORT:-5432}"; do
  n=$((n + 1)); [ "$n" -lt 150 ] || exit 1
  sleep 0.02 2>/dev/null || sleep 1
done
q() { psql -qAt -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" "$@"; }
# A restored cluster is made exactly a fresh one: no database but the main
# one (made anew), `postgres` and the templates; no role but the bootstrap
# superuser and the predefined ones. Templates are kept (they spare a run its
# migrations) unless a role was made, which they may depend on: then they go
# too, and the migrations run again.
clean() {
  force=""; [ "$(q -d "$admin" -c 'SHOW server_version_num')" -ge 130000 ] && force=" WITH (FORCE)"
  roles=$(q -d "$admin" -c "SELECT string_agg(quote_ident(rolname), ', ') FROM pg_roles WHERE rolname !~ '^pg_' AND rolname <> current_user") || return 1
  if [ -n "$roles" ]; then
    q -d "$admin" -c "SELECT format('ALTER DATABASE %I IS_TEMPLATE false; DROP DATABASE %I$force;', datname, datname) FROM pg_database WHERE datname LIKE 'cleanroom\_tpl\_%'" \
      | q -d "$admin" >/dev/null || return 1
  fi
  q -d "$admin" -c "SELECT format('DROP DATABASE IF EXISTS %I$force;', datname) FROM pg_database WHERE NOT datistemplate AND datname <> '$admin'" \
    | q -d "$admin" >/dev/null || return 1
  if [ -n "$roles" ]; then
    for d in "$admin" template1; do q -d "$d" -c "DROP OWNED BY $roles" >/dev/null || return 1; done
    q -d "$admin" -c "DROP ROLE $roles" >/dev/null || return 1
  fi
  q -d "$admin" -c "CREATE DATABASE \"$db\"" >/dev/null || return 1
}
if [ -e "$state" ] && [ ! -e "$state.done" ]; then
  q -d "$admin" -c 'SELECT 1' >/dev/null
  mkdir "$state.lock"
  if [ -e "$state.done" ]; then :
  elif grep -q '^restored' "$state"; then
    if clean; then echo cleaned > "$state.done"
    else rmdir "$state.lock"; exit 1
    fi
  else
    rc=0; out=$(sh -c "$fill" 2>&1) || rc=$?
    if [ "$rc" = 0 ]; then echo "filled $(echo "$out" | tail -n 1)" > "$state.done"
    else echo "fill-failed ($rc) $(echo "$out" | tail -n 3 | tr '\n' ' ')" > "$state.done"
    fi
  fi
  rmdir "$state.lock"
fi
# psql quotes the name and the password itself (a password may hold quotes).
printf '%s\n' "ALTER ROLE :\"u\" PASSWORD :'pw'" \
  | psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v u="$POSTGRES_USER" -v pw="$POSTGRES_PASSWORD"
