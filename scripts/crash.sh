#!/usr/bin/env bash
# Crash durability by hand: kill -9 the real binary at random instants during concurrent
# C-STORE (two modalities) and STOW-RS (a technician), restart it, and check every
# acknowledged instance byte for byte, that nothing half-written is visible, and that
# every acknowledged study reaches the worklist.
#
#   scripts/crash.sh [ROUNDS]      (default 100; the ordinary test run does 3)
#
# Prints one line per round and the totals for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-100}
READHUB_CRASH_ROUNDS=$ROUNDS cargo test --locked --test e2e crash::killed_at_random_instants_loses_nothing_acknowledged -- --nocapture 2>&1 \
  | grep -E "^round |^crash rounds|panicked|test result"
