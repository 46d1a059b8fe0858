# shellcheck shell=bash
# A throwaway PostgreSQL cluster from the binaries on the machine, loopback only. Sourced by
# the test command, scripts/cluster.sh and the benches:
#   . scripts/pg.sh
#   pg_start DIR PORT [postgres settings, e.g. -c fsync=off]   # cluster in DIR/pg, socket in DIR
#   pg_stop DIR
# initdb refuses to run as root, so as root the cluster belongs to the postgres user (and
# `pg CMD` runs CMD as that user).
PGBIN=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
if [ "$(id -u)" = 0 ]; then pg() { su postgres -s /bin/sh -c "$*"; }; else pg() { sh -c "$*"; }; fi
pg_start() {
  local dir=$1 port=$2
  shift 2
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
  pg "'$PGBIN/initdb' -D '$dir/pg' -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8" >/dev/null
  pg "'$PGBIN/pg_ctl' -D '$dir/pg' -l '$dir/pg.log' -w -o \"-c listen_addresses=127.0.0.1 -p $port -k '$dir' $*\" start" >/dev/null
}
pg_stop() { pg "'$PGBIN/pg_ctl' -D '$1/pg' -m immediate stop" >/dev/null 2>&1 || true; }
