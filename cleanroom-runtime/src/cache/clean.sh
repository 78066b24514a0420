# Shared by the first check and the fill (prepended to both): what makes a
# cluster exactly a fresh one, on the server psql reaches by default
# (`PGHOST`/`PGPORT` name another).
db="${POSTGRES_DB:-$POSTGRES_USER}"; admin=postgres; [ "$db" = postgres ] && admin=template1
q() { psql -qAt -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" "$@"; }
# A cluster is made exactly a fresh one: no database but the main
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
