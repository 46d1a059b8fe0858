#!/usr/bin/env bash
# The audit trail's cost on QIDO and WADO (run by hand, not by CI): the same data in two
# release builds, BEFORE (the commit before the audit trail) and AFTER (this tree), one at a
# time on the same machine. Per build: single-client latency (p50/p95 of ROUNDS over one
# keep-alive connection) and the throughput of THREADS concurrent clients for SECS seconds
# (QIDO and WADO mixed). Figures go in BENCHMARKS.md.
#     benches/audit.sh [BEFORE_REV]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BEFORE_REV=${1:-f0a9844}
ROUNDS=${ROUNDS:-200}
THREADS=${THREADS:-8}
SECS=${SECS:-20}
WORK=${BENCH_DIR:-/tmp/readhub-audit-bench}
PY=$ROOT/.venv/bin/python
mkdir -p "$WORK"

# the two binaries, each in a target dir of its own (cargo names a workspace crate's build
# the same whatever its path, and judges freshness by time: one shared target dir would
# take one tree's build for the other's)
if [ ! -x "$WORK/readhub-before" ]; then
  rm -rf "$WORK/src-before"; git worktree add -f --detach "$WORK/src-before" "$BEFORE_REV" >/dev/null
  (cd "$WORK/src-before" && CARGO_TARGET_DIR="$ROOT/target/bench-before" cargo build --release --locked -q)
  cp "$ROOT/target/bench-before/release/readhub" "$WORK/readhub-before"
  git worktree remove --force "$WORK/src-before"
fi
cargo build --release --locked -q
cp "$ROOT/target/release/readhub" "$WORK/readhub-after"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
FILES=("$ROOT/../shared/data/pydicom-data/RG1_UNCR.dcm" "$ROOT/../shared/data/pydicom/test_files/CT_small.dcm" "$ROOT/../shared/data/pynetdicom/CTImageStorage.dcm")
uid() { dcmdump +P "$1" "$2" | head -1 | sed 's/.*\[\(.*\)\].*/\1/'; }
CR=${FILES[0]}
STUDY=$(uid StudyInstanceUID "$CR"); SERIES=$(uid SeriesInstanceUID "$CR"); SOP=$(uid SOPInstanceUID "$CR"); PID=$(uid PatientID "$CR")
INST="/dicom-web/studies/$STUDY/series/$SERIES/instances/$SOP"
# a small instance (39 KB), where the per-request cost shows most
CT=${FILES[1]}
SMALL="/dicom-web/studies/$(uid StudyInstanceUID "$CT")/series/$(uid SeriesInstanceUID "$CT")/instances/$(uid SOPInstanceUID "$CT")"

for build in before after; do
  for run in 1 2; do
    store=$WORK/$build-$run; rm -rf "$store"; mkdir -p "$store"
    export READHUB_DATA_DIR=$store/data
    "$WORK/readhub-$build" site add Bench --ae BENCH >/dev/null
    echo 'bench-pass-1' | "$WORK/readhub-$build" user add bench --role admin --password-stdin >/dev/null
    dport=$(free_port); hport=$(free_port)
    READHUB_DICOM_ADDR=127.0.0.1:$dport READHUB_HTTP_ADDR=127.0.0.1:$hport READHUB_LOG=warn "$WORK/readhub-$build" serve 2>"$store.log" &
    PID_HUB=$!
    wait_port "$hport"
    storescu -aet BENCH -aec READHUB 127.0.0.1 "$dport" "${FILES[@]}"
    B=http://127.0.0.1:$hport
    echo "## $build (run $run)"
    echo "| request | server | p50 ms | p95 ms | | bytes |"
    "$PY" benches/dicomweb_latency.py "$build" "$B" bench:bench-pass-1 "$ROUNDS" \
      "QIDO by PatientID=/dicom-web/studies?PatientID=$PID" \
      "QIDO studies=/dicom-web/studies?limit=100" \
      "QIDO instances of study=/dicom-web/studies/$STUDY/instances" \
      "study metadata=/dicom-web/studies/$STUDY/metadata" \
      "WADO instance 7 MB=$INST" \
      "WADO instance 39 KB=$SMALL"
    echo "| load | req/s | p50 ms | p99 ms | errors |"
    echo -n "QIDO + metadata "
    "$PY" benches/audit_load.py "$B" bench:bench-pass-1 "$THREADS" "$SECS" \
      "/dicom-web/studies?PatientID=$PID" "/dicom-web/studies/$STUDY/metadata" "/dicom-web/studies/$STUDY/instances"
    echo -n "WADO 39 KB "
    "$PY" benches/audit_load.py "$B" bench:bench-pass-1 "$THREADS" "$SECS" "$SMALL"
    if [ "$build" = after ]; then
      n=$(curl -s -u bench:bench-pass-1 "$B/api/admin/audit/export?format=ndjson" | wc -l)
      echo "audit rows written: $n"
    fi
    kill "$PID_HUB"; wait "$PID_HUB" 2>/dev/null || true
  done
done
