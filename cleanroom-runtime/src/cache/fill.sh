set -eu
# Generations sort by time, then by the (zero-padded, growing) pid of the
# fill: a refill in the same second as the first fill sorts after it.
c=/cleanroom-cache; gen="gen-$(date +%s)-$(printf %010d $$)-${HOSTNAME:-host}"; dest="$c/$gen"
mkdir "$dest"; mkdir "$dest/pg_wal"
trap 'rm -rf "$dest"' EXIT
psql_() { psql -v ON_ERROR_STOP=1 -qAt -U "$POSTGRES_USER" -d "${POSTGRES_DB:-$POSTGRES_USER}" "$@"; }
if [ "$(psql_ -c 'SHOW server_version_num')" -ge 150000 ]; then
  start="pg_backup_start('cleanroom', true)"; stop="pg_backup_stop(false)"
else
  start="pg_start_backup('cleanroom', true, false)"; stop="pg_stop_backup(false, false)"
fi
psql_ >/dev/null <<SQL
SELECT $start;
\! for f in "\$PGDATA"/* "\$PGDATA"/.[!.]*; do case "\${f##*/}" in pg_wal|postmaster.pid|postmaster.opts|'.[!.]*') ;; *) cp -a "\$f" "$dest/" || touch "$dest/.failed";; esac; done
\o $dest/backup_label
SELECT labelfile FROM $stop;
\o
SQL
cp -a "$PGDATA"/pg_wal/. "$dest"/pg_wal/
test ! -e "$dest/.failed"
wal=$(sed -n 's/^START WAL LOCATION: .*(file \([0-9A-F]*\))$/\1/p' "$dest/backup_label")
test -n "$wal"; test -f "$dest/pg_wal/$wal"
touch "$dest/.complete"
trap - EXIT
previous=""
for d in "$c"/gen-*; do if [ "$d" != "$dest" ] && [ -f "$d/.complete" ]; then previous="$d"; fi; done
for d in "$c"/gen-*; do
  if [ "$d" != "$dest" ] && [ "$d" != "$previous" ] && [ -n "$(find "$d" -maxdepth 0 -mmin +10)" ]; then rm -rf "$d"; fi
done
du -sk "$c" | cut -f1
