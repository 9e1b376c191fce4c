#!/usr/bin/env bash
# Installs the dependencies, builds ds4 and runs the default test suite
# (every test without the `long` or `multinode` label). Exits non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DS4_BUILD_DIR:-$root/build}
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
cd "$build"
ctest --output-on-failure --parallel "$(nproc)" --label-exclude 'long|multinode' "$@"
