#!/usr/bin/env bash
# The main job: installs the dependencies, builds ds4, and runs the steering
# demo — extraction of a terseness direction with generations at several
# scales, then the refusal direction with ablation and an orthogonalized
# model — on the demo model (a generated tiny DeepSeek-V4-Flash layout with
# the real tokenizer until the trained demo model ships; see README).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DS4_BUILD_DIR:-$root/build}
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "== terseness direction"
"$build/examples/ds4-example-terse" "$@"
echo
echo "== refusal direction"
"$build/examples/ds4-example-refusal" "$@"
echo
echo "== hooks"
"$build/examples/ds4-example-hooks" "$@"
