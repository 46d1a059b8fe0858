#!/usr/bin/env bash
# readhub scaled out, on loopback: a 3-node Garage (S3), one PostgreSQL, three `readhub serve`
# nodes behind HAProxy (HTTP with /readyz health checks, DICOM as TCP), a mixed load through
# the balancer (scripts/cluster_load.py: four modalities pushing CT, MR and CR, three readers
# claiming and signing, QIDO and metadata), and one readhub node killed (kill -9) mid-run.
# node-2 comes back 10 s later (as a supervisor would restart it) and uploads what its receive
# buffer held. It fails unless every acknowledged instance is in the index and retrievable
# through the balancer, and every study was read once.
# The stall horizon is 60 s here (default 600): a study whose association died with its node
# is ready once the rest of it, re-sent through another node, has been quiet that long.
#
#   scripts/cluster.sh [SECONDS]        (default 60 s of pushing)
#   READHUB_BIN=target/debug/readhub scripts/cluster.sh   (default: a release build)
#
# Needs what scripts/test.sh installs (PostgreSQL binaries, the venv) and haproxy (apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_OF_LOAD=${1:-60}
log() { printf '\n== %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
command -v haproxy >/dev/null 2>&1 || { as_root apt-get update -qq; as_root apt-get install -y -qq haproxy >/dev/null; }
if [ -z "${READHUB_BIN:-}" ]; then
  cargo build --release --locked --quiet
  READHUB_BIN=$ROOT/target/release/readhub
fi
PY=${READHUB_TEST_PYTHON:-$ROOT/.venv/bin/python}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

WORK=$(mktemp -d /tmp/readhub-cluster.XXXXXX)
PIDS=()
. scripts/pg.sh
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$WORK"/node*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  pg_stop "$WORK"
  scripts/garage.sh stop "$WORK/garage" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log "PostgreSQL"
PGPORT=$(free_port)
pg_start "$WORK" "$PGPORT" -c max_connections=200
export READHUB_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"

log "a 3-node Garage"
mkdir -p "$WORK/garage" && chmod 777 "$WORK/garage"
scripts/garage.sh start "$WORK/garage" 3 readhub
# shellcheck disable=SC1091
source "$WORK/garage/env"
ENDPOINTS=($READHUB_TEST_S3_ENDPOINTS)

log "sites, readers and an admin"
mkdir -p "$WORK/node0"
cli() { "$READHUB_BIN" --data-dir "$WORK/node0" "$@" >/dev/null; }
cli site add CT-Township --ae CTSITE1
cli site add MR-Township --ae MRSITE2
cli site add Village-3 --ae CRSITE3
cli site add Village-4 --ae CRSITE4
echo admin-password-1 | cli user add admin --role admin --password-stdin
for i in 1 2 3; do echo "reader-pw-$i" | cli user add "rad$i" --role reader --pool imaging --password-stdin; done

log "three readhub nodes, each on its own Garage endpoint"
HTTP_BACKENDS="" DICOM_BACKENDS=""
NODE_PIDS=()
HTTP_PORTS=() DICOM_PORTS=()
start_node() { # i: node-i on its ports, its own data dir (and receive buffer), its own Garage endpoint
  local i=$1
  READHUB_DATA_DIR="$WORK/node$i" READHUB_NODE_NAME="node-$i" READHUB_HTTP_ADDR="127.0.0.1:${HTTP_PORTS[$i]}" \
    READHUB_DICOM_ADDR="127.0.0.1:${DICOM_PORTS[$i]}" \
    READHUB_OBJECT_STORE_URL="s3://readhub/cluster?endpoint=${ENDPOINTS[$((i - 1))]}" READHUB_QUIET_PERIOD_SECS=2 READHUB_STALL_HORIZON_SECS=60 \
    READHUB_METRICS_TOKEN=metrics-token READHUB_LOG_FORMAT=json READHUB_LOG=warn \
    setsid "$READHUB_BIN" serve >> "$WORK/node$i.log" 2>&1 &
  echo $! > "$WORK/node$i.pid"
}
for i in 1 2 3; do
  HTTP_PORTS[$i]=$(free_port); DICOM_PORTS[$i]=$(free_port)
  mkdir -p "$WORK/node$i"
  start_node "$i"
  NODE_PIDS+=("$(cat "$WORK/node$i.pid")")
  HTTP_BACKENDS+="    server node$i 127.0.0.1:${HTTP_PORTS[$i]} check\n"
  DICOM_BACKENDS+="    server node$i 127.0.0.1:${DICOM_PORTS[$i]} check\n"
done
LB_HTTP=$(free_port); LB_DICOM=$(free_port)
printf "global\n    maxconn 2000\ndefaults\n    timeout connect 2s\n    timeout client 120s\n    timeout server 120s\n    retries 3\n    option redispatch\n\
frontend http\n    mode http\n    bind 127.0.0.1:$LB_HTTP\n    default_backend readhub_http\n\
backend readhub_http\n    mode http\n    balance roundrobin\n    option httpchk GET /readyz\n    http-request set-header X-Request-Id %%[uuid()] unless { req.hdr(x-request-id) -m found }\n${HTTP_BACKENDS}\
frontend dicom\n    mode tcp\n    bind 127.0.0.1:$LB_DICOM\n    default_backend readhub_dicom\n\
backend readhub_dicom\n    mode tcp\n    balance leastconn\n${DICOM_BACKENDS}" > "$WORK/haproxy.cfg"
haproxy -f "$WORK/haproxy.cfg" -db > "$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 150); do curl -fs "http://127.0.0.1:$LB_HTTP/readyz" >/dev/null 2>&1 && break; sleep 0.2; done

log "mixed load for ${SECONDS_OF_LOAD} s through HAProxy; node-2 is killed half-way and restarted 10 s later"
# as its supervisor (systemd Restart=always) would: the node comes back on its own disk and
# uploads what its receive buffer held, acknowledged but not yet in the bucket
(
  sleep "$(( SECONDS_OF_LOAD / 2 ))"; kill -9 "${NODE_PIDS[1]}"
  echo "   (node-2 killed at $(date +%T); its receive buffer holds $(find "$WORK/node2/receive-buffer" -name '*.dcm' 2>/dev/null | wc -l) instances)"
  sleep 10; start_node 2; echo "   (node-2 restarted at $(date +%T))"
) &
set +e
"$PY" scripts/cluster_load.py --dicom "127.0.0.1:$LB_DICOM" --http "http://127.0.0.1:$LB_HTTP" --seconds "$SECONDS_OF_LOAD" \
  --readers 3 --admin admin:admin-password-1 | tee "$WORK/result.json"
rc=${PIPESTATUS[0]}
set -e
log "who runs the cluster's jobs now"
pg "psql -h '$WORK' -p $PGPORT -U postgres -Atc 'SELECT job, holder FROM cluster_leases ORDER BY job'"
curl -fs -H "Authorization: Bearer metrics-token" "http://127.0.0.1:$LB_HTTP/metrics" | grep -E '^readhub_(worklist_items|background_backlog)' | grep -v ' 0$' || true
exit "$rc"
