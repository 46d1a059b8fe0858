#!/usr/bin/env bash
# The index of a city-year and beyond on PostgreSQL (run by hand; figures in BENCHMARKS.md).
# Synthetic rows are written in bulk by PostgreSQL (benches/scale_load.sql: ten instances per
# study over 200 sites, every study with its worklist item, the newest OPEN_ITEMS open) up to
# each step, and at each step a release readhub answers, over HTTP, QIDO by PatientID, name
# wildcard, a week of dates and the study list, a real 200-slice CT's metadata, claim-next and
# the queue page (benches/scale_measure.py: p50/p95 of 200 requests each).
#
#   STEPS="100000 1000000 10000000" OPEN_ITEMS=100000 benches/scale.sh
#   SCALE_KEEP=1: after the last step keep PostgreSQL and the hub running (to read a query's
#   plan with EXPLAIN ANALYZE); the script prints how to reach them and waits until killed
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STEPS=${STEPS:-"100000 1000000 10000000"}
OPEN_ITEMS=${OPEN_ITEMS:-100000}
PY=${READHUB_TEST_PYTHON:-$ROOT/.venv/bin/python}
if [ -z "${READHUB_BIN:-}" ]; then cargo build --release --locked -q; READHUB_BIN=$ROOT/target/release/readhub; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d /tmp/readhub-scale.XXXXXX)
. scripts/pg.sh
HUB=""
cleanup() { [ -n "$HUB" ] && kill "$HUB" 2>/dev/null; pg_stop "$WORK"; rm -rf "$WORK"; }
trap cleanup EXIT
PGPORT=$(free_port)
pg_start "$WORK" "$PGPORT" -c shared_buffers=2GB -c max_wal_size=8GB -c work_mem=64MB
export READHUB_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
export READHUB_DATA_DIR=$WORK/data
psql_() { pg "psql -q -h '$WORK' -p $PGPORT -U postgres -v ON_ERROR_STOP=1 $*"; }

cli() { "$READHUB_BIN" "$@" >/dev/null; }
for s in $(seq 0 199); do printf -v name 'Site-%03d' "$s"; cli site add "$name" --ae "AE$(printf %03d "$s")"; done
cli site add CT-Real --ae CTREAL
echo admin-password-1 | cli user add admin --role admin --password-stdin
for i in 1 2 3 4; do echo "reader-pw-$i" | cli user add "rad$i" --role reader --pool imaging --password-stdin; done

H=$(free_port); D=$(free_port)
READHUB_HTTP_ADDR=127.0.0.1:$H READHUB_DICOM_ADDR=127.0.0.1:$D READHUB_LOG=warn READHUB_PRERENDER=false "$READHUB_BIN" serve 2>"$WORK/hub.log" &
HUB=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$H/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
# one real study for the metadata query: a 200-slice CT
CT=${BENCH_DIR:-/tmp/readhub-bench}/corpus/ct
[ -d "$CT" ] || "$PY" benches/gen_corpus.py --out "${BENCH_DIR:-/tmp/readhub-bench}/corpus" --dx 1 --ct 200 >/dev/null
TCP_NODELAY=1 storescu -q -aet CTREAL -aec READHUB +sd 127.0.0.1 "$D" "$CT"
META_UID=$("$PY" -c "import pydicom,os,sys; d=sys.argv[1]; print(pydicom.dcmread(os.path.join(d, sorted(os.listdir(d))[0]), stop_before_pixels=True).StudyInstanceUID)" "$CT")

echo "| scale (instances / studies / open items) | query | p50 ms | p95 ms | results |"
echo "|---|---|---|---|---|"
from=0
for step in $STEPS; do
  to=$(( step / 10 ))
  open=$(( to < OPEN_ITEMS ? to : OPEN_ITEMS ))
  t0=$(date +%s)
  psql_ "-v from=$from -v to=$to -v open=$open -f '$ROOT/benches/scale_load.sql'"
  echo "loaded to $step instances in $(( $(date +%s) - t0 )) s; database $(psql_ "-Atc \"SELECT pg_size_pretty(pg_database_size('postgres'))\"")" >&2
  "$PY" benches/scale_measure.py "127.0.0.1:$H" "$step / $to / $open" "$to" "$META_UID"
  from=$to
done
if [ -n "${SCALE_KEEP:-}" ]; then
  echo "kept: psql -h $WORK -p $PGPORT -U postgres (run as postgres); hub http://127.0.0.1:$H (admin / admin-password-1); kill $$ to clean up" >&2
  while kill -0 "$HUB" 2>/dev/null; do sleep 5; done
fi
