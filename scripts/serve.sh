#!/usr/bin/env bash
# Run the hub on embedded defaults (the README's first command): DICOM on port 11112 (AE
# READHUB), HTTP on 127.0.0.1:8080, everything under ./data. Arguments go to `readhub serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
# cmake: CharLS (JPEG-LS) builds with it; fonts-noto-cjk: the Chinese in report PDFs and
# rasterised ECGs
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
[ -d /usr/share/fonts/opentype/noto ] || need+=(fonts-noto-cjk)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
fi
exec cargo run --release --locked -- serve "$@"
