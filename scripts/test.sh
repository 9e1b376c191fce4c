#!/usr/bin/env bash
# Installs the dependencies, builds ds4 and runs the default test suite
# (every test without the `long` or `multinode` label). Then, unless
# DS4_SKIP_FUZZ=1, a second build with clang in ./build-fuzz (fuzzer coverage,
# ASan, UBSan; only the library and the fuzz targets) runs each fuzz target
# for a few seconds (label fuzz-smoke, docs/fuzzing.md). Exits non-zero on any
# failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DS4_BUILD_DIR:-$root/build}
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
cd "$build"
ctest --output-on-failure --parallel "$(nproc)" --label-exclude 'long|multinode' "$@"

[ "${DS4_SKIP_FUZZ:-0}" = 1 ] && exit 0
fuzz_build=${DS4_FUZZ_BUILD_DIR:-$root/build-fuzz}
cmake -S "$root" -B "$fuzz_build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DDS4_BUILD_FUZZ=ON -DDS4_BUILD_TESTS=OFF -DDS4_BUILD_EXAMPLES=OFF \
    -DDS4_BUILD_BENCH=OFF >/dev/null
cmake --build "$fuzz_build" --parallel "$(nproc)" --target ds4_fuzz
ctest --test-dir "$fuzz_build" --output-on-failure --parallel "$(nproc)" --label-regex fuzz-smoke
