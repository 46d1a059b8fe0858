#!/usr/bin/env bash
# Ingest throughput of one readhub node against two on the same PostgreSQL and the same
# 3-node Garage (run by hand; figures in BENCHMARKS.md). The same corpus (benches/ingest.sh's:
# CT slices and DX films) is pushed by four pynetdicom associations: all four to the one
# node, or two to each of the two nodes.
#   N_DX=20 CT_SLICES=200 benches/nodes_ingest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N_DX=${N_DX:-20}
CT_SLICES=${CT_SLICES:-200}
WORK=${BENCH_DIR:-/tmp/readhub-bench}
PY=${READHUB_TEST_PYTHON:-$ROOT/.venv/bin/python}
if [ -z "${READHUB_BIN:-}" ]; then cargo build --release --locked -q; READHUB_BIN=$ROOT/target/release/readhub; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mkdir -p "$WORK"
. benches/corpus.sh
ensure_corpus "$WORK" "$N_DX" "$CT_SLICES" "$PY"
RUN=$(mktemp -d /tmp/readhub-nodes.XXXXXX)
. scripts/pg.sh
NODES=()
cleanup() {
  for p in "${NODES[@]}"; do kill "$p" 2>/dev/null || true; done
  pg_stop "$RUN"
  scripts/garage.sh stop "$RUN/garage" >/dev/null 2>&1 || true
  rm -rf "$RUN"
}
trap cleanup EXIT
PGPORT=$(free_port)
pg_start "$RUN" "$PGPORT" -c max_connections=200
export READHUB_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
mkdir -p "$RUN/garage" && chmod 777 "$RUN/garage"
scripts/garage.sh start "$RUN/garage" 3 readhub-nodes
# shellcheck disable=SC1091
source "$RUN/garage/env"
ENDPOINTS=($READHUB_TEST_S3_ENDPOINTS)
"$READHUB_BIN" --data-dir "$RUN/cli" site add Bench --ae BENCH1 --ae BENCH2 --ae BENCH3 --ae BENCH4 >/dev/null
export TCP_NODELAY=1

echo "| corpus | nodes | instances | seconds | instances/s | MB/s |"
echo "|---|---|---|---|---|---|"
for corpus in dx ct; do
  files=$(ls "$WORK/corpus/$corpus" | wc -l)
  bytes=$(du -sb "$WORK/corpus/$corpus" | cut -f1)
  rm -rf "$RUN/half-a" "$RUN/half-b"; mkdir -p "$RUN/half-a" "$RUN/half-b"
  i=0
  for f in "$WORK/corpus/$corpus"/*; do
    if [ $((i % 2)) = 0 ]; then ln -s "$f" "$RUN/half-a/"; else ln -s "$f" "$RUN/half-b/"; fi
    i=$((i + 1))
  done
  for n in 1 2; do
    prefix="run-$corpus-$n-$RANDOM"
    ports=()
    for k in $(seq 1 "$n"); do
      d=$(free_port)
      READHUB_DATA_DIR="$RUN/node$k-$corpus-$n" READHUB_NODE_NAME="node$k" READHUB_DICOM_ADDR=127.0.0.1:$d READHUB_HTTP_ADDR=127.0.0.1:0 \
        READHUB_OBJECT_STORE_URL="s3://readhub-nodes/$prefix?endpoint=${ENDPOINTS[$((k - 1))]}" READHUB_LOG=warn READHUB_PRERENDER=false \
        "$READHUB_BIN" serve 2>"$RUN/node$k.log" &
      NODES+=($!)
      ports+=("$d")
      for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$d") 2>/dev/null && break; sleep 0.1; done
    done
    t0=$(date +%s.%N)
    if [ "$n" = 1 ]; then
      "$PY" benches/pynetdicom_send.py --port "${ports[0]}" --aec READHUB --associations 4 "$WORK/corpus/$corpus"
    else
      "$PY" benches/pynetdicom_send.py --port "${ports[0]}" --aec READHUB --associations 2 "$RUN/half-a" &
      a=$!
      "$PY" benches/pynetdicom_send.py --port "${ports[1]}" --aec READHUB --associations 2 "$RUN/half-b"
      wait "$a"
    fi
    t1=$(date +%s.%N)
    python3 -c "f=$files;b=$bytes;s=$t1-$t0;print(f'| $corpus | $n | {f} | {s:.2f} | {f/s:.1f} | {b/s/1e6:.1f} |')"
    for p in "${NODES[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    NODES=()
  done
done
