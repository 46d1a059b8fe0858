#!/usr/bin/env bash
# Time to first image in the web viewer for a 15 MB DX (run by hand, not by CI):
# over loopback, and under Chromium's network emulation of a 20 Mbit/s township line.
# Needs what the README's test command installs (Chromium, playwright-core, the venv).
#   benches/first_image/run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
RUNS=${1:-5}
WORK=$(mktemp -d /tmp/readhub-first-image.XXXX)
trap 'kill $RPID 2>/dev/null || true; rm -rf "$WORK"' EXIT
cargo build --release --locked -q
READHUB=$ROOT/target/release/readhub
[ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm ci --silent)
# the driver imports playwright-core: resolve it from the browser tests' install
ln -sfn ../../tests/browser/node_modules benches/first_image/node_modules
.venv/bin/python benches/first_image/make_dx.py "$ROOT/../shared/data" "$WORK/dx15.dcm"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTP=$(free_port); DIMSE=$(free_port)
export READHUB_DATA_DIR=$WORK/data READHUB_QUIET_PERIOD_SECS=1
"$READHUB" site add Township-1 --ae TOWNSHIP1 >/dev/null
echo 'bench-reader-pw' | "$READHUB" user add rad1 --role reader --pool imaging --password-stdin >/dev/null
READHUB_DICOM_ADDR=127.0.0.1:$DIMSE READHUB_HTTP_ADDR=127.0.0.1:$HTTP READHUB_LOG=warn "$READHUB" serve 2>"$WORK/readhub.log" &
RPID=$!
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$HTTP") 2>/dev/null && break; sleep 0.1; done
TCP_NODELAY=1 storescu -aet TOWNSHIP1 -aec READHUB 127.0.0.1 "$DIMSE" "$WORK/dx15.dcm"
sleep 3
echo "== loopback"
node "$ROOT/benches/first_image/first_image.mjs" "http://127.0.0.1:$HTTP" rad1 bench-reader-pw "$RUNS"
echo "== 20 Mbit/s, 20 ms (Chromium network emulation)"
node "$ROOT/benches/first_image/first_image.mjs" "http://127.0.0.1:$HTTP" rad1 bench-reader-pw "$RUNS" 20 20
