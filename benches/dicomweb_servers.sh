# Sourced by the DICOMweb benchmarks (dicomweb.sh, pixels.sh): start readhub or Orthanc with
# its DICOMweb plugin on an empty store, the same way for every benchmark.
#   start_dicomweb_server NAME STORE DICOM_PORT HTTP_PORT   (needs $READHUB)
# Sets PID, AEC (the called AE title) and CRED (user:password for HTTP, or - for none).
#   install_dicomweb_peers   (DCMTK, Orthanc and its DICOMweb plugin, cmake, the venv)

install_dicomweb_peers() {
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  need=()
  command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
  command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
  [ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
  command -v cmake >/dev/null 2>&1 || need+=(cmake)
  if [ ${#need[@]} -gt 0 ]; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  as_root service orthanc stop >/dev/null 2>&1 || true
  if ! .venv/bin/python -c "import pynetdicom, pydicom, numpy" >/dev/null 2>&1; then
    python3 -m venv .venv && .venv/bin/pip install -q "pynetdicom==3.0.4" "pydicom==3.0.2" numpy
  fi
}

start_dicomweb_server() {
  local server=$1 store=$2 dport=$3 hport=$4
  case $server in
    readhub)
      export READHUB_DATA_DIR=$store/data
      "$READHUB" site add Bench --ae BENCH >/dev/null
      echo 'bench-pass-1' | "$READHUB" user add bench --role admin --password-stdin >/dev/null
      READHUB_DICOM_ADDR=127.0.0.1:$dport READHUB_HTTP_ADDR=127.0.0.1:$hport READHUB_LOG=warn "$READHUB" serve 2>"$store.log" &
      PID=$!; AEC=READHUB; CRED=bench:bench-pass-1 ;;
    orthanc)
      cat > "$store.json" <<JSON
{ "Name": "bench", "StorageDirectory": "$store/db", "IndexDirectory": "$store/db",
  "DicomAet": "ORTHANC", "DicomPort": $dport, "HttpPort": $hport, "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false, "DicomCheckCalledAet": false, "DicomAlwaysAllowStore": true,
  "StorageCompression": false, "ConcurrentJobs": 2, "DicomThreadsCount": 4,
  "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/", "StudiesMetadata": "Full" } }
JSON
      Orthanc "$store.json" 2>"$store.log" &
      PID=$!; AEC=ORTHANC; CRED=- ;;
    *) echo "unknown server $server" >&2; return 1 ;;
  esac
}
