#!/usr/bin/env bash
# Checks of the command-line tools, one case per CTest test:
#   tools_test.sh BUILD_DIR SOURCE_DIR CASE
# CASE: usage_errors | steer_compose
# Runs on a copy of the committed demo model; steering files come from
# tests/tools/ds4-test-steering-files.
set -uo pipefail
build=$1 src=$2 case=$3
tools=$build/tools
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A copy: a tool that wrote over its input must not damage the committed file.
model=$work/model.gguf
cp "$src/data/demo-model/ds4-demo-q2.gguf" "$model"
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# expect_usage_error TOOL PATTERN ARGS...: exit status 2, and stderr names the
# tool and matches PATTERN (a grep -E pattern).
expect_usage_error() {
    local tool=$1 pattern=$2
    shift 2
    "$tools/$tool" "$@" >"$work/out" 2>"$work/err"
    local rc=$?
    [ $rc -eq 2 ] || fail "$tool $*: exit status $rc, expected 2 ($(head -c 300 "$work/err"))"
    grep -q "^$tool: " "$work/err" || fail "$tool $*: stderr does not name the tool: $(head -c 300 "$work/err")"
    grep -Eq -- "$pattern" "$work/err" || fail "$tool $*: stderr does not match '$pattern': $(head -c 300 "$work/err")"
}

# expect_error RC PATTERN CMD...: exit status RC and stderr matching PATTERN.
expect_error() {
    local want=$1 pattern=$2
    shift 2
    "$@" >"$work/out" 2>"$work/err"
    local rc=$?
    [ $rc -eq "$want" ] || fail "$*: exit status $rc, expected $want ($(head -c 300 "$work/err"))"
    grep -Eq -- "$pattern" "$work/err" || fail "$*: stderr does not match '$pattern': $(head -c 300 "$work/err")"
}

case_usage_errors() {
    local g=ds4-generate m=(-m "$model" -p hi)
    expect_usage_error $g "-n: '-5' is not a whole number" "${m[@]}" -n -5
    expect_usage_error $g "-n: 'abc' is not a whole number" "${m[@]}" -n abc
    expect_usage_error $g "-n: '1.5' is not a whole number" "${m[@]}" -n 1.5
    expect_usage_error $g "--scale: 'nan' is not a finite number" "${m[@]}" --steer x --scale nan
    expect_usage_error $g "--temp: 'inf' is not a finite number" "${m[@]}" --temp inf
    expect_usage_error $g "--temp: '-1' is not a finite number >= 0" "${m[@]}" --temp -1
    expect_usage_error $g "--seed: '-1' is not a whole number >= 0" "${m[@]}" --seed -1
    expect_usage_error $g "--top-p: '2' is not a finite number in \[0, 1\]" "${m[@]}" --top-p 2
    expect_usage_error $g "--min-p: '' is not" "${m[@]}" --min-p ""
    expect_usage_error $g "--ctx: '0' is not a whole number >= 1" "${m[@]}" --ctx 0
    expect_usage_error $g "--threads: '99999999999' is not" "${m[@]}" --threads 99999999999
    expect_usage_error $g "--top-logprobs: '-2' is not" "${m[@]}" --top-logprobs -2
    expect_usage_error $g "--steer: x:nan: the scale is not a finite float" "${m[@]}" --steer x:nan
    expect_usage_error $g "--steer: x:1e99: the scale is not a finite float" "${m[@]}" --steer x:1e99
    expect_usage_error $g "--scale: needs exactly one --steer" "${m[@]}" --scale 1
    expect_usage_error $g "--scale: needs exactly one --steer" "${m[@]}" --steer x --steer y --scale 1
    expect_usage_error $g "--scale: needs exactly one --steer" "${m[@]}" --steer x:2 --scale 1
    expect_usage_error $g "--think: foo not in" "${m[@]}" --think foo
    expect_usage_error $g "--prompt is required" -m "$model"
    expect_usage_error $g "not expected: --bogus" "${m[@]}" --bogus
    expect_usage_error $g "-n: 1 required INT.* missing" "${m[@]}" -n

    expect_usage_error ds4-make-model "--layers: '0' is not a whole number in \[1, 43\]" -o "$work/m.gguf" --layers 0
    expect_usage_error ds4-make-model "--seed: '0x10' is not" -o "$work/m.gguf" --seed 0x10
    expect_usage_error ds4-make-model "--small-merges: '-1' is not" -o "$work/m.gguf" --small-merges -1
    expect_usage_error ds4-make-model "--mix: q3 not in" -o "$work/m.gguf" --mix q3
    expect_usage_error ds4-make-model "--vocab: big not in" -o "$work/m.gguf" --vocab big
    expect_usage_error ds4-make-model "--out is required"

    expect_usage_error ds4-quantize "--mix is required" "$model" "$work/q.gguf"
    expect_usage_error ds4-quantize "--mix: q3 not in" "$model" "$work/q.gguf" --mix q3
    expect_usage_error ds4-quantize "OUT is required" "$model" --mix q2
    expect_usage_error ds4-quantize "not expected: extra" "$model" "$work/q.gguf" extra --mix q2

    expect_usage_error ds4-tokenize "Exactly 1 option from \[--text,--chat-tsv\] is required" -m "$model"
    expect_usage_error ds4-tokenize "and 2 were given" -m "$model" --text a --chat-tsv a b
    expect_usage_error ds4-tokenize "--chat-tsv: 2 required" -m "$model" --chat-tsv a
    expect_usage_error ds4-tokenize "--model is required" --text a
    [ -e "$work/m.gguf" ] || [ -e "$work/q.gguf" ] && fail "a usage error wrote an output file"

    for t in ds4-generate ds4-make-model ds4-quantize ds4-tokenize; do
        "$tools/$t" --help >"$work/out" 2>&1 || fail "$t --help: exit status $?"
        grep -q "^Usage: $t" "$work/out" || fail "$t --help prints no usage"
    done
}

# Generated text plus the top-3 log-probabilities at every step: the same
# exactly when the same edits were applied.
gen() {
    "$tools/ds4-generate" -m "$model" -p "Tell me about rivers." -n 12 --threads 1 --top-logprobs 3 "$@" 2>&1 |
        grep -v '^steering:\|prompt tokens'
}

expect_same() {  # expect_same NAME1 NAME2 (outputs in $work/NAME.txt)
    cmp -s "$work/$1.txt" "$work/$2.txt" || fail "--steer: '$1' and '$2' should give the same output"
}
expect_different() {
    cmp -s "$work/$1.txt" "$work/$2.txt" && fail "--steer: '$1' and '$2' should give different outputs"
}

case_steer_compose() {
    "$build/tests/tools/ds4-test-steering-files" "$model" "$work" 8 || { fail "ds4-test-steering-files"; return; }
    local s=$work
    gen >"$work/none.txt"
    gen --steer "$s/a.ds4steer.gguf" >"$work/a.txt"
    gen --steer "$s/b.ds4steer.gguf" >"$work/b.txt"
    gen --steer "$s/a.ds4steer.gguf" --steer "$s/b.ds4steer.gguf" >"$work/a_b.txt"
    gen --steer "$s/b.ds4steer.gguf" --steer "$s/a.ds4steer.gguf" >"$work/b_a.txt"
    gen --steer "$s/ab.ds4steer.gguf" >"$work/ab.txt"
    gen --steer "$s/ablate_e0.ds4steer.gguf" >"$work/ablate.txt"
    gen --steer "$s/add_e0.ds4steer.gguf" --steer "$s/ablate_e0.ds4steer.gguf" >"$work/add_ablate.txt"
    gen --steer "$s/ablate_e0.ds4steer.gguf" --steer "$s/add_e0.ds4steer.gguf" >"$work/ablate_add.txt"
    gen --steer "$s/a.ds4steer.gguf:0" >"$work/a0.txt"
    gen --steer "$s/a.ds4steer.gguf" --scale 0 >"$work/a_scale0.txt"
    gen --steer "$s/a.ds4steer.gguf:1" >"$work/a1.txt"
    gen --steer "$s/a.ds4steer.gguf:-1" >"$work/a_neg.txt"
    # Both vectors applied: a then b is the one vector holding both directions.
    expect_different none a
    expect_different none b
    expect_different a a_b
    expect_different b a_b
    expect_same a_b ab
    expect_same b_a ab
    # In the order given: ablating e0 after adding along e0 undoes the add.
    expect_same add_ablate ablate
    expect_different ablate_add ablate
    # :SCALE and --scale override the file's scale (1).
    expect_same a0 none
    expect_same a_scale0 none
    expect_same a1 a
    expect_different a_neg a
    [ -s "$work/none.txt" ] || fail "ds4-generate printed nothing"
    expect_error 1 "ds4-generate: .*missing.gguf" "$tools/ds4-generate" -m "$model" -p hi -n 1 --steer "$work/missing.gguf"
}

case "$case" in
    usage_errors | steer_compose) "case_$case" ;;
    *) echo "unknown case $case" >&2; exit 2 ;;
esac
[ $failures -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "tools.$case: ok"
