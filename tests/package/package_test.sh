#!/usr/bin/env bash
# Installs the built ds4 into a temporary prefix, generates a tiny model with
# the installed ds4-make-model, then builds and runs examples/embed twice:
# through find_package(ds4) and through pkg-config.
# usage: package_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
"$work/prefix/bin/ds4-make-model" -o "$work/model.gguf" --config tiny --mix q2 --seed 7 >/dev/null

echo "== find_package(ds4)"
cmake -S "$src/examples/embed" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$work/prefix" \
      -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/cmake-build" >/dev/null
"$work/cmake-build/embed" "$work/model.gguf" | tee "$work/out-cmake.txt"

echo "== pkg-config ds4"
pcdir=$(dirname "$(find "$work/prefix" -name ds4.pc | head -n 1)")
export PKG_CONFIG_PATH="$pcdir"
# ds4 is a static library by default: --static also links its private dependencies.
static=--static
if find "$work/prefix" -name 'libds4.so*' | grep -q .; then static=; fi
c++ -std=c++20 -O1 "$src/examples/embed/main.cpp" -o "$work/embed-pc" \
    $(pkg-config --cflags $static ds4) $(pkg-config --libs $static ds4)
"$work/embed-pc" "$work/model.gguf" | tee "$work/out-pc.txt"

# Both builds run the same library on the same model: same tokens.
cmp "$work/out-cmake.txt" "$work/out-pc.txt"
echo "package test passed"
