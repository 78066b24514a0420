set -e
state=/tmp/cleanroom-volume-cache; fill=$1
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
if [ -e "$state" ] && [ ! -e "$state.done" ]; then
  q -d "$admin" -c 'SELECT 1' >/dev/null
  mkdir "$state.lock"
  if [ -e "$state.done" ]; then :
  elif grep -q '^restored' "$state"; then
    # A generation the fill settled is clean already (`fill.sh`).
    if [ -e "$state.clean" ]; then echo settled > "$state.done"
    elif clean; then echo cleaned > "$state.done"
    else rmdir "$state.lock"; exit 1
    fi
  else
    # Nothing but the entrypoint touched this cluster: it is clean as it is.
    rc=0; out=$(sh -c "$fill" cleanroom-fill fresh 2>&1) || rc=$?
    if [ "$rc" = 0 ]; then echo "filled $(echo "$out" | tail -n 1)" > "$state.done"
    else echo "fill-failed ($rc) $(echo "$out" | tail -n 3 | tr '\n' ' ')" > "$state.done"
    fi
  fi
  rmdir "$state.lock"
fi
# psql quotes the name and the password itself (a password may hold quotes).
printf '%s\n' "ALTER ROLE :\"u\" PASSWORD :'pw'" \
  | psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v u="$POSTGRES_USER" -v pw="$POSTGRES_PASSWORD"
