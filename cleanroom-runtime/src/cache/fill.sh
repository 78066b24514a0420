set -eu
# $1 = fresh: nothing but the entrypoint touched the cluster (the first
# check's fill), so the copy is clean as it is. Otherwise tests may be
# running: the copy is settled (below) before it counts as clean.
mode=${1:-settle}
# Generations sort by time, then by the (zero-padded, growing) pid of the
# fill: a refill in the same second as the first fill sorts after it.
c=/cleanroom-cache; gen="gen-$(date +%s)-$(printf %010d $$)-${HOSTNAME:-host}"; dest="$c/$gen"
mkdir "$dest"; mkdir "$dest/pg_wal"
trap 'rm -rf "$dest"' EXIT
psql_() { psql -v ON_ERROR_STOP=1 -qAt -U "$POSTGRES_USER" -d "${POSTGRES_DB:-$POSTGRES_USER}" "$@"; }
version=$(psql_ -c 'SHOW server_version_num')
if [ "$version" -ge 150000 ]; then
  start="pg_backup_start('cleanroom', true)"; stop="pg_backup_stop(false)"
else
  start="pg_start_backup('cleanroom', true, false)"; stop="pg_stop_backup(false, false)"
fi
psql_ >/dev/null <<SQL
SELECT $start;
\! for f in "\$PGDATA"/* "\$PGDATA"/.[!.]*; do case "\${f##*/}" in pg_wal|postmaster.pid|postmaster.opts|backup_label.old|'.[!.]*') ;; *) cp -a "\$f" "$dest/" || touch "$dest/.failed";; esac; done
SELECT labelfile AS label, pg_walfile_name(lsn) AS stopwal FROM $stop \gset
\o $dest/backup_label
SELECT :'label';
\o $dest/.stop_wal
SELECT :'stopwal';
\o
SQL
test ! -e "$dest/.failed"
wal=$(sed -n 's/^START WAL LOCATION: .*(file \([0-9A-F]*\))$/\1/p' "$dest/backup_label")
stopwal=$(cat "$dest/.stop_wal"); rm -f "$dest/.stop_wal"
test -n "$wal"; test -n "$stopwal"
# Only the segments the copy needs, from where the backup started to where it
# stopped: not the ones the server recycled ahead.
first() { printf '%s\n%s\n' "$1" "$2" | sort | head -n 1; }
for f in "$PGDATA"/pg_wal/*; do
  n=${f##*/}
  case "$n" in ????????????????????????) ;; *) continue ;; esac
  if [ "$(first "$wal" "$n")" = "$wal" ] && [ "$(first "$n" "$stopwal")" = "$n" ]; then cp -a "$f" "$dest/pg_wal/"; fi
done
mkdir -p "$dest/pg_wal/archive_status"
test -f "$dest/pg_wal/$wal"; test -f "$dest/pg_wal/$stopwal"
# Settling: a server of its own, on the copy and on no TCP address (a
# socket in a directory of its own), recovers it, makes it exactly a fresh
# cluster (`clean.sh`: the test databases and what shared tests wrote go)
# and shuts down cleanly, its last checkpoint removing the WAL it no longer
# needs (`wal_recycle=off`, Postgres 12 on: none kept for later). A restore
# of a settled generation copies less, starts without recovery and needs no
# clean-up before its first test.
# Where the image has no way to start that server as the data's owner (no
# setpriv, gosu or su-exec) the generation is kept unsettled: the first check
# of a run that restores it cleans it.
settle() {
  command -v pg_ctl >/dev/null || return 1
  uid=$(stat -c %u "$PGDATA") && gid=$(stat -c %g "$PGDATA") || return 1
  # util-linux's setpriv (busybox's, which an image's sh may prefer, cannot
  # change ids), gosu or su-exec: the first that works.
  run=""
  for r in setpriv /usr/bin/setpriv /bin/setpriv gosu su-exec; do
    case "$r" in
      *setpriv) set -- "$r" --reuid="$uid" --regid="$gid" --clear-groups ;;
      *) set -- "$r" "$uid:$gid" ;;
    esac
    if "$@" true 2>/dev/null; then run="$*"; break; fi
  done
  [ -n "$run" ] || return 1
  as() { $run "$@"; }
  sock=$(mktemp -d) && chown "$uid:$gid" "$sock" "$dest" "$dest/pg_wal" "$dest/pg_wal/archive_status" "$dest/backup_label" && chmod 700 "$dest" || return 1
  # From here on the copy is the server's: a failure that leaves it unknown
  # throws the generation away (2).
  recycle=""; [ "$version" -lt 120000 ] || recycle="-c wal_recycle=off"
  if ! as pg_ctl -D "$dest" -s -w -t 60 -l "$sock/log" -o "-c listen_addresses='' -c unix_socket_directories=$sock \
      -p 5433 -c fsync=off -c full_page_writes=off -c shared_buffers=16MB $recycle -c archive_mode=off \
      -c autovacuum=off" start; then
    as pg_ctl -D "$dest" -s -m immediate stop 2>/dev/null
    cat "$sock/log" >&2; return 2
  fi
  cleaned=0
  if (PGHOST=$sock PGPORT=5433; export PGHOST PGPORT; clean); then cleaned=1; fi
  if ! as pg_ctl -D "$dest" -s -w -t 60 -m fast stop; then
    as pg_ctl -D "$dest" -s -m immediate stop; cat "$sock/log" >&2; return 2
  fi
  rm -rf "$sock" "$dest/backup_label.old" "$dest/postmaster.opts"
  # Shut down cleanly but not cleaned: a cluster like any, cleaned at restore.
  [ "$cleaned" = 1 ] || return 1
}
if [ "$mode" = fresh ]; then touch "$dest/.clean"
else
  rc=0; settle || rc=$?
  [ "$rc" != 2 ] || exit 1
  [ "$rc" != 0 ] || touch "$dest/.clean"
fi
touch "$dest/.complete"
trap - EXIT
previous=""
for d in "$c"/gen-*; do if [ "$d" != "$dest" ] && [ -f "$d/.complete" ]; then previous="$d"; fi; done
for d in "$c"/gen-*; do
  if [ "$d" != "$dest" ] && [ "$d" != "$previous" ] && [ -n "$(find "$d" -maxdepth 0 -mmin +10)" ]; then rm -rf "$d"; fi
done
du -sk "$c" | cut -f1
