#!/usr/bin/env bash
# pg-backup.sh — backups of banking's PostgreSQL database (issue 17, R-AV-3),
# for an operator's cron or systemd timers. the README's "Backups and the restore
# drill" says what runs when and how to restore; this header is the reference.
#
# The scheme: a full base backup every week, every WAL segment archived as it
# completes (the daily incremental, in fact continuous), and retention that
# keeps the newest N fulls and the WAL they need. Everything goes under
# BACKUP_DIR, which should be on another machine's disk (an NFS or
# object-store mount), never on the database server's own disk:
#
#   BACKUP_DIR/base/<YYYYmmddTHHMMSSZ>/   one plain-format base backup each
#                                         (a copy of the data directory, its
#                                         WAL included, a backup_manifest)
#   BACKUP_DIR/wal/                        the WAL archive (ARCHIVE_DIR)
#
# Commands:
#
#   pg-backup.sh full
#       pg_basebackup of the server libpq's PG* variables name (PGHOST,
#       PGPORT, PGUSER: a role with REPLICATION), -X stream -c fast, into
#       BACKUP_DIR/base/.partial-<date>, checked with pg_verifybackup, then
#       renamed to BACKUP_DIR/base/<date>: a directory without the ".partial-"
#       prefix is a complete, verified backup. Exit status non-zero on any
#       failure (the partial directory is removed).
#
#   pg-backup.sh retain N
#       keeps the newest N complete base backups, removes the older ones and,
#       with pg_archivecleanup, every WAL segment in ARCHIVE_DIR older than the
#       first segment the oldest kept backup needs. With no complete backup it
#       removes nothing and fails. N must be at least 1.
#
#   pg-backup.sh archive %p %f ARCHIVE_DIR
#       the server's archive_command (postgresql.conf, as the postgres user):
#           archive_mode = on
#           archive_command = '/usr/local/lib/keyward/pg-backup.sh archive %p %f /srv/backup/bank/wal'
#           archive_timeout = 60s
#       copies the segment under a temporary name, fsyncs it, renames it into
#       place; a segment already archived succeeds only if it is byte for byte
#       the same (a retry after a crash), never by overwriting.
#
# Environment: BACKUP_DIR (required for full and retain); ARCHIVE_DIR
# (default BACKUP_DIR/wal); PG_BIN (directory of pg_basebackup,
# pg_verifybackup, pg_archivecleanup; default KEYWARD_PG_BIN, else the
# highest /usr/lib/postgresql/<N>/bin, else PATH); libpq's PGHOST, PGPORT,
# PGUSER, PGPASSFILE for the connection (never a password in argv).
#
# Suggested timers (README, "Backups and the restore drill"): full every Sunday 01:00; retain 5 right
# after it (five weekly fulls: a month of point-in-time recovery); the archive
# runs continuously inside the server. Test a restore every week
# (make backup-drill does it in CI).
set -euo pipefail

die() { echo "pg-backup: $*" >&2; exit 1; }

pg_bin() {
  local name=$1 dir
  dir=${PG_BIN:-${KEYWARD_PG_BIN:-}}
  if [ -n "$dir" ]; then
    [ -x "$dir/$name" ] || die "$dir/$name is not executable (PG_BIN/KEYWARD_PG_BIN)"
    echo "$dir/$name"; return
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4nr); do
    [ -x "$dir/$name" ] && { echo "$dir/$name"; return; }
  done
  command -v "$name" || die "$name not found: install Debian's postgresql-client package or set PG_BIN"
}

cmd_archive() {
  [ $# -eq 3 ] || die "usage: pg-backup.sh archive %p %f ARCHIVE_DIR"
  local src=$1 name=$2 dir=$3
  [ -d "$dir" ] || die "archive directory $dir does not exist"
  local dest="$dir/$name"
  if [ -f "$dest" ]; then
    cmp -s "$src" "$dest" || die "$dest exists and differs from $src: refusing to overwrite an archived segment (another server archiving into the same directory?)"
    exit 0
  fi
  local tmp="$dest.tmp.$$"
  cp "$src" "$tmp"
  sync "$tmp"
  mv "$tmp" "$dest"
  sync "$dir"
}

backup_dir() {
  [ -n "${BACKUP_DIR:-}" ] || die "BACKUP_DIR is not set"
  mkdir -p "$BACKUP_DIR/base"
}

cmd_full() {
  [ $# -eq 0 ] || die "usage: pg-backup.sh full"
  backup_dir
  local name partial final
  name=$(date -u +%Y%m%dT%H%M%SZ)
  partial="$BACKUP_DIR/base/.partial-$name"
  final="$BACKUP_DIR/base/$name"
  [ ! -e "$final" ] || die "$final exists"
  trap 'rm -rf "$partial"' EXIT
  local start=$SECONDS
  "$(pg_bin pg_basebackup)" -D "$partial" -X stream -c fast -l "keyward weekly full $name" --no-password
  "$(pg_bin pg_verifybackup)" -q "$partial"
  mv "$partial" "$final"
  trap - EXIT
  echo "pg-backup: full backup $final ($(du -sh "$final" | cut -f1), $((SECONDS - start)) s)"
}

cmd_retain() {
  [ $# -eq 1 ] && [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] || die "usage: pg-backup.sh retain N (N >= 1)"
  local keep=$1
  backup_dir
  local archive=${ARCHIVE_DIR:-$BACKUP_DIR/wal}
  local complete=() d
  # Names are UTC timestamps: sorted by name is sorted by age.
  for d in $(ls -1 "$BACKUP_DIR/base" | grep -E '^[0-9]{8}T[0-9]{6}Z$' | sort); do
    [ -f "$BACKUP_DIR/base/$d/backup_manifest" ] && [ -f "$BACKUP_DIR/base/$d/backup_label" ] && complete+=("$d")
  done
  [ ${#complete[@]} -gt 0 ] || die "no complete base backup in $BACKUP_DIR/base: nothing removed"
  local n=${#complete[@]} i
  for ((i = 0; i < n - keep; i++)); do
    rm -rf "${BACKUP_DIR:?}/base/${complete[$i]}"
    echo "pg-backup: removed base backup ${complete[$i]}"
  done
  local oldest=${complete[$((n > keep ? n - keep : 0))]}
  local wal
  wal=$(sed -n 's/^START WAL LOCATION: .*(file \([0-9A-F]\{24\}\))$/\1/p' "$BACKUP_DIR/base/$oldest/backup_label")
  [ -n "$wal" ] || die "$BACKUP_DIR/base/$oldest/backup_label has no START WAL LOCATION"
  if [ -d "$archive" ]; then
    "$(pg_bin pg_archivecleanup)" "$archive" "$wal"
  fi
  echo "pg-backup: kept $((n < keep ? n : keep)) base backup(s) from $oldest, WAL from $wal"
}

case "${1:-}" in
  full) shift; cmd_full "$@" ;;
  retain) shift; cmd_retain "$@" ;;
  archive) shift; cmd_archive "$@" ;;
  *) die "usage: pg-backup.sh full | retain N | archive %p %f ARCHIVE_DIR (see the header of $0)" ;;
esac
