#!/usr/bin/env bash
# Ingest benchmark (run by hand, not by CI): the same senders push the same corpus into
# readhub, DCMTK's storescp and Orthanc over loopback, one receiver at a time.
#   corpus: N_DX DX instances (2500x3000, 16-bit, ~15 MB) and a CT_SLICES-slice CT
#   senders: DCMTK storescu (one association), pynetdicom (four associations)
#   RECEIVERS="readhub readhub-s3 readhub-s3-direct storescp orthanc": readhub-s3 keeps the
#   instances in a 1-node Garage (S3) on loopback instead of the local disk, acknowledging
#   from its receive buffer (the default; the time the buffer took to empty after the last
#   acknowledgement is printed too); readhub-s3-direct acknowledges after each upload
# Reports instances/s, MB/s and the receiver's peak RSS (VmHWM). Figures go in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N_DX=${N_DX:-200}
CT_SLICES=${CT_SLICES:-300}
WORK=${BENCH_DIR:-/tmp/readhub-bench}
RECEIVERS=${RECEIVERS:-"readhub storescp orthanc"}

need_mb=$(( N_DX * 15 * 2 + CT_SLICES * 2 + 2048 ))
free_mb=$(df -Pm "$(dirname "$WORK")" | awk 'NR==2 {print $4}')
if [ "$free_mb" -lt "$need_mb" ]; then
  echo "not enough disk: $free_mb MB free under $(dirname "$WORK"), need $need_mb MB (lower N_DX)" >&2
  exit 1
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
for pkg in dcmtk:storescp orthanc:Orthanc cmake:cmake; do
  command -v "${pkg#*:}" >/dev/null 2>&1 || { as_root apt-get update -qq; DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${pkg%%:*}" >/dev/null; }
done
# Debian starts an Orthanc service on install; the benchmark runs its own
as_root service orthanc stop >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import pynetdicom, pydicom, numpy" >/dev/null 2>&1; then
  python3 -m venv .venv
  .venv/bin/pip install -q "pynetdicom==3.0.4" "pydicom==3.0.2" numpy
fi
PY=$ROOT/.venv/bin/python
# READHUB_BIN: measure a binary built earlier (default: build this tree in release)
if [ -n "${READHUB_BIN:-}" ]; then
  READHUB=$READHUB_BIN
else
  cargo build --release --locked -q
  READHUB=$ROOT/target/release/readhub
fi

mkdir -p "$WORK"
# readhub-s3: the same readhub with its instances in a 1-node Garage (S3) on loopback
if [[ " $RECEIVERS " == *" readhub-s3"* ]]; then
  scripts/garage.sh stop "$WORK/garage" >/dev/null 2>&1 || true
  scripts/garage.sh start "$WORK/garage" 1 readhub-bench
  # shellcheck disable=SC1091
  source "$WORK/garage/env"
  S3_ENDPOINT=${READHUB_TEST_S3_ENDPOINTS%% *}
  trap 'scripts/garage.sh stop "$WORK/garage" >/dev/null 2>&1 || true' EXIT
fi
. benches/corpus.sh
ensure_corpus "$WORK" "$N_DX" "$CT_SLICES" "$PY"

# DCMTK leaves Nagle's algorithm on unless told: without this, every C-STORE-RSP of storescp
# (and every small PDU of storescu) waits ~40 ms for a delayed ACK, and the comparison would
# measure that stall instead of the receivers. readhub sets TCP_NODELAY itself.
export TCP_NODELAY=1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

start_receiver() { # name port store -> sets RPID, AEC
  local name=$1 port=$2 store=$3
  rm -rf "$store"; mkdir -p "$store"
  case $name in
    readhub)
      export READHUB_DATA_DIR=$store
      "$READHUB" site add Bench --ae BENCH --ae BENCH1 --ae BENCH2 --ae BENCH3 --ae BENCH4 >/dev/null
      READHUB_DICOM_ADDR=127.0.0.1:$port READHUB_HTTP_ADDR=127.0.0.1:0 READHUB_LOG=warn "$READHUB" serve 2>"$store.log" &
      RPID=$!; AEC=READHUB ;;
    readhub-s3|readhub-s3-direct)
      export READHUB_DATA_DIR=$store
      "$READHUB" site add Bench --ae BENCH --ae BENCH1 --ae BENCH2 --ae BENCH3 --ae BENCH4 >/dev/null
      READHUB_RECEIVE_BUFFER=$([ "$name" = readhub-s3 ] && echo "$store/receive-buffer" || echo off) \
        READHUB_OBJECT_STORE_URL="s3://readhub-bench/run-$RANDOM$RANDOM?endpoint=$S3_ENDPOINT" \
        READHUB_DICOM_ADDR=127.0.0.1:$port READHUB_HTTP_ADDR=127.0.0.1:0 READHUB_LOG=warn "$READHUB" serve 2>"$store.log" &
      RPID=$!; AEC=READHUB ;;
    storescp)
      storescp -od "$store" -aet STORESCP "$port" 2>"$store.log" &
      RPID=$!; AEC=STORESCP ;;
    orthanc)
      cat > "$store.json" <<JSON
{ "Name": "bench", "StorageDirectory": "$store/db", "IndexDirectory": "$store/db",
  "DicomAet": "ORTHANC", "DicomPort": $port, "HttpPort": $(free_port), "HttpServerEnabled": true,
  "RemoteAccessAllowed": false, "AuthenticationEnabled": false, "DicomCheckCalledAet": false,
  "DicomAlwaysAllowStore": true, "UnknownSopClassAccepted": true, "StorageCompression": false,
  "Plugins": [], "ConcurrentJobs": 2, "DicomThreadsCount": 4 }
JSON
      Orthanc "$store.json" 2>"$store.log" &
      RPID=$!; AEC=ORTHANC ;;
  esac
  wait_port "$port"
}

results=()
drains=()
for corpus in dx ct; do
  files=$(ls "$WORK/corpus/$corpus" | wc -l)
  bytes=$(du -sb "$WORK/corpus/$corpus" | cut -f1)
  for receiver in $RECEIVERS; do
    for sender in storescu pynetdicom4; do
      port=$(free_port); store="$WORK/store-$receiver"
      start_receiver "$receiver" "$port" "$store"
      sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
      t0=$(date +%s.%N)
      case $sender in
        storescu) storescu -q -aet BENCH -aec "$AEC" +sd 127.0.0.1 "$port" "$WORK/corpus/$corpus" 2>>"$store.send.log" || echo "storescu failed" ;;
        pynetdicom4) "$PY" benches/pynetdicom_send.py --port "$port" --aec "$AEC" --associations 4 "$WORK/corpus/$corpus" 2>>"$store.send.log" || echo "pynetdicom failed" ;;
      esac
      t1=$(date +%s.%N)
      if [ "$receiver" = readhub-s3 ]; then
        while [ -n "$(find "$store/receive-buffer" -name '*.dcm' -print -quit 2>/dev/null)" ]; do sleep 0.05; done
        drained=$(python3 -c "import time; print(f'{time.time()-$t1:.2f}')")
        drains+=("$corpus $sender: the receive buffer emptied ${drained} s after the last acknowledgement")
      fi
      rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$RPID/status")
      kill "$RPID"; wait "$RPID" 2>/dev/null || true
      secs=$(python3 -c "print(f'{$t1-$t0:.2f}')")
      row=$(python3 -c "f=$files;b=$bytes;s=$t1-$t0;print(f'| $corpus | $receiver | $sender | {f} | {s:.2f} | {f/s:.1f} | {b/s/1e6:.1f} | {$rss_kb/1024:.0f} |')")
      echo "$row"; results+=("$row")
      rm -rf "$store"
    done
  done
done
echo
echo "| corpus | receiver | sender | instances | seconds | instances/s | MB/s | peak RSS MB |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
[ ${#drains[@]} -eq 0 ] || { echo; printf '%s\n' "${drains[@]}"; }
