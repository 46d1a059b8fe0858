#!/usr/bin/env bash
# Issue 15's side-by-side benchmark (run by hand, not by CI), in one run on one machine:
#  1. ingest: readhub, DCMTK storescp and Orthanc receive the same corpus from the same
#     senders (storescu one association, pynetdicom four): benches/ingest.sh;
#  2. pixels: readhub and Orthanc + DICOMweb hold the same 15 MB DX; WADO-RS instance,
#     rendered (full, viewport 512, the viewer's preview 1024, thumbnail), p50/p95 of
#     ROUNDS after two warm-ups on one keep-alive connection; a burst of 8 concurrent full
#     renders (wall time, peak RSS); the raw loopback time for the same bytes;
#  3. the ratios readhub ÷ Orthanc.
# Figures go in BENCHMARKS.md with the date, the machine and the versions.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-20}
WORK=${BENCH_DIR:-/tmp/readhub-pixels-bench}
export N_DX=${N_DX:-40} CT_SLICES=${CT_SLICES:-300}

source benches/dicomweb_servers.sh
install_dicomweb_peers
PY=$ROOT/.venv/bin/python
if [ -z "${READHUB_BIN:-}" ]; then cargo build --release --locked -q; export READHUB_BIN=$ROOT/target/release/readhub; fi
READHUB=$READHUB_BIN

echo "## 1. ingest ($N_DX DX of 15 MB, a $CT_SLICES-slice CT)"
[ "${SKIP_INGEST:-}" = 1 ] || BENCH_DIR=$WORK/ingest bash benches/ingest.sh | tee "$WORK.ingest.txt"

echo "## 2. pixels"
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

# the raw loopback ceiling: the same number of bytes through one TCP connection
RAW=$("$PY" - "$DX" <<'PY'
import os, socket, statistics, sys, threading, time
n = os.path.getsize(sys.argv[1]); data = open(sys.argv[1], "rb").read()
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
def serve():
    c, _ = srv.accept()
    while c.recv(1):
        c.sendall(data)
threading.Thread(target=serve, daemon=True).start()
s = socket.create_connection(srv.getsockname()); times = []
for i in range(22):
    t0 = time.perf_counter(); s.sendall(b"x"); got = 0
    while got < n:
        got += len(s.recv(1 << 20))
    if i >= 2: times.append((time.perf_counter() - t0) * 1000)
print(f"{statistics.median(times):.1f}")
PY
)
echo "raw loopback, $(stat -c %s "$DX") bytes: $RAW ms"

declare -A P50 BURST RSS TINYRATE
TINY=${TINY:-2000}
for server in readhub orthanc; do
  store=$WORK/$server; rm -rf "$store"; mkdir -p "$store"
  dport=$(free_port); hport=$(free_port)
  start_dicomweb_server "$server" "$store" "$dport" "$hport"
  wait_port "$dport"; wait_port "$hport"
  # many tiny studies (one small instance each) from four pynetdicom associations
  t0=$(date +%s.%N)
  "$PY" benches/qido_populate.py --port "$dport" --aec "$AEC" --studies "$TINY" --processes 4
  t1=$(date +%s.%N)
  TINYRATE[$server]=$(python3 -c "print(f'{$TINY/($t1-$t0):.0f}')")
  echo "$server: $TINY tiny studies from 4 associations: ${TINYRATE[$server]} studies/s"
  storescu -aet BENCH -aec "$AEC" 127.0.0.1 "$dport" "$DX"
  sleep 3   # readhub's preview and thumbnails are made in the background meanwhile
  rss0=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$PID/status")
  mapfile -t out < <("$PY" benches/dicomweb_latency.py "$server" "http://127.0.0.1:$hport/dicom-web" "$CRED" "$ROUNDS" \
    "WADO-RS instance=$INST" \
    "WADO-RS instance, client accepts gzip=$INST" \
    "rendered full=$INST/rendered" \
    "rendered viewport 512=$INST/rendered?viewport=512,512" \
    "rendered viewport 1024 (viewer preview)=$INST/rendered?viewport=1024,1024" \
    "thumbnail=$INST/thumbnail")
  printf '%s\n' "${out[@]}"
  for row in "${out[@]}"; do
    label=$(echo "$row" | cut -d'|' -f2 | xargs); P50[$server/$label]=$(echo "$row" | cut -d'|' -f4 | xargs)
  done
  BURST[$server]=$("$PY" benches/render_burst.py "http://127.0.0.1:$hport/dicom-web" "$CRED" "$INST/rendered" 8)
  RSS[$server]="$rss0 → $(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$PID/status")"
  echo "$server: 8 concurrent full renders ${BURST[$server]} s, RSS ${RSS[$server]} MiB"
  kill "$PID"; wait "$PID" 2>/dev/null || true
done

echo
echo "## 3. side by side ($(date -u +%F), $(nproc) cores, Orthanc $(Orthanc --version 2>/dev/null | head -1 | awk '{print $NF}'))"
echo "| request | readhub p50 ms | Orthanc p50 ms | readhub ÷ Orthanc |"
echo "|---|---|---|---|"
for label in "WADO-RS instance" "WADO-RS instance, client accepts gzip" "rendered full" "rendered viewport 512" "rendered viewport 1024 (viewer preview)" "thumbnail"; do
  r=${P50[readhub/$label]:-?}; o=${P50[orthanc/$label]:-?}
  echo "| $label | $r | $o | $(python3 -c "print(f'{$r/$o:.2f}')" 2>/dev/null || echo ?) |"
done
r=${BURST[readhub]%% *}; o=${BURST[orthanc]%% *}
echo "| 8 concurrent full renders (wall s) | $r (RSS ${RSS[readhub]} MiB) | $o (RSS ${RSS[orthanc]} MiB) | $(python3 -c "print(f'{$r/$o:.2f}')") |"
echo "| tiny studies, 4 associations (studies/s) | ${TINYRATE[readhub]} | ${TINYRATE[orthanc]} | $(python3 -c "print(f'{${TINYRATE[readhub]}/${TINYRATE[orthanc]}:.2f}')") |"
echo "| WADO-RS instance ÷ raw loopback ($RAW ms) | $(python3 -c "print(f'{${P50[readhub/WADO-RS instance]}/$RAW:.2f}')") | $(python3 -c "print(f'{${P50[orthanc/WADO-RS instance]}/$RAW:.2f}')") | |"
[ -f "$WORK.ingest.txt" ] && { echo; echo "ingest:"; tail -8 "$WORK.ingest.txt"; }
