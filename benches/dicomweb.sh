#!/usr/bin/env bash
# DICOMweb benchmark (run by hand, not by CI): readhub and Orthanc's DICOMweb plugin hold the
# same STUDIES small studies plus one 15 MB DX, and answer the same QIDO-RS searches and
# rendered/thumbnail requests over loopback, one server at a time. Prints p50/p95 latency
# (ms) per request. Figures go in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STUDIES=${STUDIES:-100000}
ROUNDS=${ROUNDS:-50}
WORK=${BENCH_DIR:-/tmp/readhub-dicomweb-bench}
SERVERS=${SERVERS:-"readhub orthanc"}

source benches/dicomweb_servers.sh
install_dicomweb_peers
PY=$ROOT/.venv/bin/python
if [ -n "${READHUB_BIN:-}" ]; then READHUB=$READHUB_BIN
else cargo build --release --locked -q && READHUB=$ROOT/target/release/readhub; fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
mkdir -p "$WORK"
if [ ! -f "$WORK/dx/.done" ]; then
  rm -rf "$WORK/dx"; "$PY" benches/gen_corpus.py --out "$WORK/dx" --dx 1 --ct 0 && touch "$WORK/dx/.done"
fi
DX=$WORK/dx/dx/dx0000.dcm
uid() { dcmdump +P "$1" "$DX" | sed 's/.*\[\(.*\)\].*/\1/'; }
INST="/studies/$(uid StudyInstanceUID)/series/$(uid SeriesInstanceUID)/instances/$(uid SOPInstanceUID)"
export TCP_NODELAY=1

rows=()
for server in $SERVERS; do
  store=$WORK/$server; rm -rf "$store"; mkdir -p "$store"
  dport=$(free_port); hport=$(free_port)
  start_dicomweb_server "$server" "$store" "$dport" "$hport"
  wait_port "$dport"; wait_port "$hport"
  t0=$(date +%s.%N)
  "$PY" benches/qido_populate.py --port "$dport" --aec "$AEC" --studies "$STUDIES" --processes 4
  t1=$(date +%s.%N)
  echo "$server: $STUDIES studies stored in $(python3 -c "print(f'{$t1-$t0:.0f} s, {$STUDIES/($t1-$t0):.0f} studies/s')")"
  storescu -aet BENCH -aec "$AEC" 127.0.0.1 "$dport" "$DX"
  sleep 2
  MID=$(printf "%06d" $((STUDIES / 2 + 1)))
  mapfile -t out < <("$PY" benches/dicomweb_latency.py "$server" "http://127.0.0.1:$hport/dicom-web" "$CRED" "$ROUNDS" \
    "study list (limit 100)=/studies?limit=100" \
    "PatientID exact=/studies?PatientID=BENCH$MID" \
    "PatientName wildcard (10 hits)=/studies?PatientName=Bench%5EP${MID:0:5}*" \
    "AccessionNumber=/studies?AccessionNumber=A$MID" \
    "StudyDate month, limit 100=/studies?StudyDate=20230101-20230131&limit=100" \
    "ModalitiesInStudy=CT, limit 100=/studies?ModalitiesInStudy=CT&limit=100" \
    "DX rendered (full, JPEG)=$INST/rendered" \
    "DX rendered viewport 512=$INST/rendered?viewport=512,512" \
    "DX thumbnail=$INST/thumbnail")
  printf '%s\n' "${out[@]}"
  rows+=("${out[@]}")
  echo "$server: peak RSS $(awk '/VmHWM/ {printf "%.0f MB", $2/1024}' "/proc/$PID/status")"
  kill "$PID"; wait "$PID" 2>/dev/null || true
done
echo
echo "| request | server | p50 ms | p95 ms | studies in answer | bytes |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}" | sort -s -t'|' -k2,2
