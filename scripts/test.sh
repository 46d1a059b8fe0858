#!/usr/bin/env bash
# readhub's test command (the README's second command). On a fresh Debian machine it
# installs what the tests need, starts a throwaway PostgreSQL cluster and a Garage (S3) node on
# loopback, and runs the whole test suite against SQLite, PostgreSQL and PostgreSQL + S3 with
# real peers (DCMTK, pynetdicom).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
log() { printf '\n== %s\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. Debian packages: DCMTK (storescu/echoscu/dcmj2pnm as modalities and oracle), Chromium
#    (the browser tests), cmake (CharLS, the JPEG-LS codec, builds with it), fonts-noto-cjk
#    (the ECG paper's Chinese header when rasterised, and the report PDF), poppler-utils
#    (pdftotext/pdffonts read the report PDF back as an independent reader), openssl (the TLS
#    tests make a throwaway CA, the hub's certificate and modalities' client certificates).
need=()
command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
[ -d /usr/share/fonts/opentype/noto ] || need+=(fonts-noto-cjk)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} from Debian"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. Python venv: pynetdicom (a second, independent modality) and dicomweb-client (a standard
#    DICOMweb client), with pydicom, pylibjpeg (libjpeg, openjpeg) and Pillow as the
#    independent decoder the rendering tests compare against.
#    The ECG tests' independent readers: sierraecg (Philips XML), aecg (HL7 aECG; it asks for
#    Python 3.12 but runs on 3.11, so it is installed without that check) and neurokit2 (a
#    second ECG measurer). The orders and results tests read readhub's HL7 with python-hl7 and
#    validate its FHIR DiagnosticReports with fhir.resources.
if ! .venv/bin/python -c "import pynetdicom, pydicom, dicomweb_client, numpy, PIL, libjpeg, openjpeg, sierraecg, aecg, neurokit2, hl7, fhir.resources" >/dev/null 2>&1; then
  log "creating .venv with pynetdicom, dicomweb-client, pydicom, pylibjpeg, sierraecg, aecg, neurokit2, hl7 and fhir.resources"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check "pynetdicom==3.0.4" "pydicom==3.0.2" "dicomweb-client==0.61.2" \
    "numpy==2.4.6" "pillow==13.0.0" "pylibjpeg==2.1.0" "pylibjpeg-libjpeg==2.5.0" "pylibjpeg-openjpeg==2.6.0" \
    "sierraecg==0.4.0" "neurokit2==0.2.13" "scipy==1.17.1" "pandas==2.3.3" "lxml==6.1.3" "pydantic==2.14.4" \
    "pydantic-xml==2.22.0" "python-benedict[xml]==0.40.1" "plotly==7.1.0" "hl7==0.4.5" "fhir.resources==8.3.0"
  .venv/bin/pip install -q --disable-pip-version-check --ignore-requires-python --no-deps "aecg==0.1.3"
fi
export READHUB_TEST_PYTHON="$ROOT/.venv/bin/python"

# 2b. The browser tests' driver: playwright-core from npm (pinned by package-lock.json),
#     driving Debian's Chromium (never a downloaded browser).
if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/@cornerstonejs/codec-charls ]; then
  log "installing playwright-core for the browser tests"
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi
export READHUB_TEST_BROWSER=1

# 3. A throwaway PostgreSQL cluster from the binaries on the machine, loopback only
#    (scripts/pg.sh).
. scripts/pg.sh
PGDIR=$(mktemp -d /tmp/readhub-pg.XXXXXX)
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop_pg() { pg_stop "$PGDIR"; rm -rf "$PGDIR"; }
GARAGE_DIR=$(mktemp -d /tmp/readhub-garage.XXXXXX)
cleanup() { stop_pg; scripts/garage.sh stop "$GARAGE_DIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT
log "starting PostgreSQL on 127.0.0.1:$PGPORT"
pg_start "$PGDIR" "$PGPORT" -c fsync=off -c max_connections=400
export READHUB_TEST_PG_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"

# 3b. A throwaway Garage node (a real S3-compatible distributed store, AGPL, run beside
#     readhub like PostgreSQL; built once with cargo install if missing, ~10 min, then
#     cached in ~/.cache/readhub-peers): the S3 stories and the two-node test put their
#     instances in its bucket (READHUB_TEST_S3_URL, AWS_* credentials).
log "starting a 1-node Garage (S3)"
scripts/garage.sh start "$GARAGE_DIR" 1 readhub-test
# shellcheck disable=SC1091
source "$GARAGE_DIR/env"

# 4. The tests: every crate's unit tests and the end-to-end suite, both backends.
log "cargo test (SQLite and PostgreSQL)"
cargo test --workspace --locked "$@"
