set -e
state=/tmp/cleanroom-volume-cache; fill=$1
db="${POSTGRES_DB:-$POSTGRES_USER}"; admin=postgres; [ "$db" = postgres ] && admin=template1
if [ -e "$state" ] && [ ! -e "$state.done" ]; then
  psql -qAt -U "$POSTGRES_USER" -d "$admin" -c 'SELECT 1' >/dev/null
  mkdir "$state.lock"
  if [ -e "$state.done" ]; then :
  elif grep -q '^restored' "$state"; then
    force=""; [ "$(psql -qAt -U "$POSTGRES_USER" -d "$admin" -c 'SHOW server_version_num')" -ge 130000 ] && force=" WITH (FORCE)"
    if drops=$(psql -qAt -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$admin" -c "SELECT format('DROP DATABASE IF EXISTS %I;', datname) FROM pg_database WHERE NOT datistemplate AND (datname LIKE 'cleanroom\_t\_%' OR datname LIKE 'cleanroom\_tpl\_%\_build')") \
      && { printf '%s\n' "$drops"; echo "DROP DATABASE IF EXISTS \"$db\"$force; CREATE DATABASE \"$db\";"; } | psql -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$admin" >/dev/null
    then echo cleaned > "$state.done"
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
psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c "ALTER ROLE \"$POSTGRES_USER\" PASSWORD '$POSTGRES_PASSWORD'"
