#!/usr/bin/env bash
# The main job: installs the dependencies, builds ds4, and runs the steering
# demo — a terseness vector trained with train_steering's defaults, with generations at several
# scales, then the refusal direction with ablation and an orthogonalized
# model — on the trained demo model in data/demo-model (see README). An
# argument names another model folder (ds4-demo-q2.gguf + prompts.tsv).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DS4_BUILD_DIR:-$root/build}
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
dir=${1:-}
echo "== terseness direction"
"$build/examples/ds4-example-terse" ${dir:+"$dir"}
echo
echo "== refusal direction"
"$build/examples/ds4-example-refusal" ${dir:+"$dir"}
echo
echo "== hooks"
"$build/examples/ds4-example-hooks" ${dir:+"$dir/ds4-demo-q2.gguf"}
