#!/usr/bin/env bash
# OHIF conformance check (run by hand before resolving DICOMweb work; too slow for CI:
# headless Chromium renders WebGL in software here). It
#   - fetches the prebuilt OHIF viewer (npm package @ohif/app, its dist/) and playwright-core
#     into target/ohif, and Debian's chromium if missing;
#   - starts readhub on a throwaway data dir and pushes a synthetic 40-slice CT series and a
#     real CR film (pydicom-data RG3, MONOCHROME1, JPEG 2000 lossless) with DCMTK storescu;
#   - serves OHIF with its app-config.js pointed at readhub's /dicom-web on the same origin;
#   - checks in Chromium: both studies in OHIF's study list, each rendered in the viewport,
#     no console errors and no failed DICOMweb request.
# Screenshots and result.json land in target/ohif/shots.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OHIF_VERSION=3.13.2
PLAYWRIGHT_VERSION=1.64.1
CACHE=$ROOT/target/ohif
WORK=$(mktemp -d /tmp/readhub-ohif.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for pkg in dcmtk:storescu chromium:chromium cmake:cmake; do
  command -v "${pkg#*:}" >/dev/null 2>&1 || missing+=("${pkg%%:*}")
done
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mkdir -p "$CACHE"
if [ ! -f "$CACHE/dist-$OHIF_VERSION/index.html" ]; then
  # only the package's own tarball: its dist/ is the built app, its dependencies are not needed
  (cd "$CACHE" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null)
  rm -rf "$CACHE/package" && tar -xzf "$CACHE/ohif-app-$OHIF_VERSION.tgz" -C "$CACHE"
  rm -rf "$CACHE/dist-$OHIF_VERSION" && mv "$CACHE/package/dist" "$CACHE/dist-$OHIF_VERSION"
fi
if [ ! -d "$CACHE/node_modules/playwright-core" ]; then
  (cd "$CACHE" && npm install --silent --no-audit --no-fund "playwright-core@$PLAYWRIGHT_VERSION")
fi
if ! .venv/bin/python -c "import pydicom, numpy" >/dev/null 2>&1; then
  python3 -m venv .venv && .venv/bin/pip install -q "pydicom==3.0.2" numpy
fi
if [ -n "${READHUB_BIN:-}" ]; then READHUB=$READHUB_BIN
else cargo build --release --locked -q && READHUB=$ROOT/target/release/readhub; fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

# this run's copy of the app, with readhub's configuration
cp -r "$CACHE/dist-$OHIF_VERSION" "$WORK/dist"
cp benches/ohif/app-config.js "$WORK/dist/app-config.js"

export READHUB_DATA_DIR=$WORK/data
DICOM_PORT=$(free_port); HTTP_PORT=$(free_port); APP_PORT=$(free_port)
"$READHUB" site add "Conformance clinic" --ae OHIFSCU >/dev/null
echo 'ohif-check-pass' | "$READHUB" user add ohif --role admin --password-stdin >/dev/null
READHUB_DICOM_ADDR=127.0.0.1:$DICOM_PORT READHUB_HTTP_ADDR=127.0.0.1:$HTTP_PORT READHUB_QUIET_PERIOD_SECS=1 \
  "$READHUB" serve 2>"$WORK/readhub.log" &
wait_port "$DICOM_PORT"; wait_port "$HTTP_PORT"

.venv/bin/python benches/gen_corpus.py --out "$WORK/corpus" --dx 0 --ct 40 >/dev/null
export TCP_NODELAY=1
storescu -aet OHIFSCU -aec READHUB +sd 127.0.0.1 "$DICOM_PORT" "$WORK/corpus/ct"
CR=../shared/data/pydicom-data/RG3_J2KR.dcm
storescu -aet OHIFSCU -aec READHUB -xv 127.0.0.1 "$DICOM_PORT" "$CR"
CT_STUDY=$(dcmdump +P StudyInstanceUID "$WORK/corpus/ct/ct0000.dcm" | sed 's/.*\[\(.*\)\].*/\1/')
CR_STUDY=$(dcmdump +P StudyInstanceUID "$CR" | sed 's/.*\[\(.*\)\].*/\1/')

PROXY_LOG=$WORK/proxy.log node benches/ohif/serve.mjs "$WORK/dist" "$APP_PORT" "http://127.0.0.1:$HTTP_PORT" ohif:ohif-check-pass &
wait_port "$APP_PORT"
mkdir -p "$CACHE/shots"
status=0
# from inside the cache, so that its node_modules resolve the import of playwright-core
cp benches/ohif/check.mjs "$CACHE/check.mjs"
node "$CACHE/check.mjs" "http://127.0.0.1:$APP_PORT" "$CACHE/shots" \
  "CT=$CT_STUDY=BENCH99999" "CR=$CR_STUDY=11RG3" || status=$?
echo "DICOMweb requests OHIF made (first 40 distinct paths):"
sed -E 's#/(1\.[0-9.]+)#/{uid}#g' "$WORK/proxy.log" | sort | uniq -c | sort -rn | head -40
[ $status -eq 0 ] || { echo "readhub log tail:"; tail -20 "$WORK/readhub.log"; }
exit $status
