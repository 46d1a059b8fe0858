#!/usr/bin/env bash
# Fuzz readhub's parsers with cargo-fuzz (libFuzzer) on the nightly toolchain.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 120 s, every target)
#
# Each target starts from its seeds (fuzz/corpus/<target>/) and the inputs that once broke
# it (fuzz/regressions/<target>/). Memory is capped (-rss_limit_mb, -malloc_limit_mb) and so
# is time per input (-timeout), so unbounded allocation and hangs count as failures like
# panics and aborts do. A failing input is copied to fuzz/regressions/<target>/, where
# `cargo test` (crates/fuzz-targets/tests/corpus.rs) replays it from then on: fix the bug,
# keep the file. New corpus entries stay in fuzz/corpus-runs/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-120}
shift || true
ALL=(pdu command_set header_walk charset stow_multipart qido_query frame_list waveform ecg_file commitment_request hl7_message find_identifier)
TARGETS=("${@:-${ALL[@]}}")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")

command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
rustup toolchain list | grep -q nightly || { echo "the nightly toolchain is needed (rustup toolchain install nightly)"; exit 1; }

cd fuzz
cargo +nightly fuzz build -O
status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus-runs/$t" "artifacts/$t" "regressions/$t"
  echo "== $t: ${SECS} s"
  if ! cargo +nightly fuzz run -O "$t" "corpus-runs/$t" "corpus/$t" "regressions/$t" -- \
      -max_total_time="$SECS" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
      -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>"artifacts/$t.log"; then
    status=1
    tail -30 "artifacts/$t.log"
    for f in "artifacts/$t"/*; do
      [ -f "$f" ] && cp "$f" "regressions/$t/" && echo "!! $t: failing input kept as regressions/$t/$(basename "$f")"
    done
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "artifacts/$t.log" | tr '\n' ' '
    echo
  fi
done
exit $status
