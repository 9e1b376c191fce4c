#!/usr/bin/env bash
# Runs one fuzz target for a bounded time (docs/fuzzing.md):
#   run_fuzz.sh TARGET SEEDS_DIR CORPUS_DIR ARTIFACT_DIR SECONDS [fresh]
# New inputs go to CORPUS_DIR (emptied first with `fresh`), SEEDS_DIR is only
# read; a crash, leak, timeout or out-of-memory input is saved in
# ARTIFACT_DIR and fails the run.
set -euo pipefail
target=$1 seeds=$2 corpus=$3 artifacts=$4 seconds=$5
[ "${6:-}" = fresh ] && rm -rf "$corpus"
mkdir -p "$corpus" "$artifacts"
exec "$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$(basename "$target")-" "$corpus" "$seeds"
