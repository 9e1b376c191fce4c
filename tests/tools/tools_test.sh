#!/usr/bin/env bash
# Checks of the command-line tools, one case per CTest test:
#   tools_test.sh BUILD_DIR SOURCE_DIR CASE
# CASE: usage_errors | steer_compose | tokenize_outputs | quantize_outputs
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

# no_temp_files DIR: nothing named *.tmp.* left in DIR.
no_temp_files() {
    local left
    left=$(find "$1" -name '*.tmp.*')
    [ -z "$left" ] || fail "temporary files left: $left"
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

case_tokenize_outputs() {
    local tok=("$tools/ds4-tokenize" -m "$model") in=$work/in.tsv out=$work/out.tsv
    for i in $(seq 1 200); do printf 'question %d\tanswer %d\n' "$i" "$i"; done >"$in"
    "${tok[@]}" --chat-tsv "$in" "$out" || fail "ds4-tokenize --chat-tsv failed"
    [ "$(wc -l <"$out")" -eq 200 ] || fail "ds4-tokenize wrote $(wc -l <"$out") lines, expected 200"
    # A bad line after good ones: nothing written, an existing output kept.
    cp "$in" "$work/bad.tsv"
    echo "no tab here" >>"$work/bad.tsv"
    echo old >"$work/kept.tsv"
    expect_error 1 "line 201: no tab" "${tok[@]}" --chat-tsv "$work/bad.tsv" "$work/kept.tsv"
    [ "$(cat "$work/kept.tsv")" = old ] || fail "a failed run changed the existing output"
    expect_error 1 "line 201: no tab" "${tok[@]}" --chat-tsv "$work/bad.tsv" "$work/new.tsv"
    [ -e "$work/new.tsv" ] && fail "a failed run left a partial output"
    # A full disk, on a device and on a regular file (file size limit).
    expect_error 1 "ds4-tokenize: write error on /dev/full" "${tok[@]}" --chat-tsv "$in" /dev/full
    head -n 1 "$in" >"$work/one.tsv"  # fits in the stream's buffer: fails when flushed at the end
    expect_error 1 "ds4-tokenize: write error on /dev/full" "${tok[@]}" --chat-tsv "$work/one.tsv" /dev/full
    (trap '' XFSZ; ulimit -f 4; "${tok[@]}" --chat-tsv "$in" "$work/big.tsv") >"$work/out" 2>"$work/err"
    [ $? -eq 1 ] && grep -q "write error on" "$work/err" || fail "a write error on a regular file was not reported: $(cat "$work/err")"
    [ -e "$work/big.tsv" ] && fail "a failed write left a partial output"
    "${tok[@]}" --text hello >/dev/full 2>"$work/err"
    [ $? -eq 1 ] && grep -q "write error on stdout" "$work/err" || fail "a write error on stdout was not reported"
    # The output is never an input.
    expect_error 1 "is the input file" "${tok[@]}" --chat-tsv "$in" "$work/../$(basename "$work")/in.tsv"
    expect_error 1 "is the input file" "${tok[@]}" --chat-tsv "$in" "$model"
    ln -s out.tsv "$work/link.tsv"
    "${tok[@]}" --chat-tsv "$work/one.tsv" "$work/link.tsv" || fail "ds4-tokenize to a link failed"
    [ -L "$work/link.tsv" ] && [ "$(wc -l <"$work/out.tsv")" -eq 1 ] || fail "ds4-tokenize did not write through the link"
    no_temp_files "$work"
}

case_quantize_outputs() {
    local q=$tools/ds4-quantize m=$work/m.gguf sum
    cp "$model" "$m"
    sum=$(sha256sum <"$m")
    ln "$m" "$work/hard.gguf"
    ln -s "$m" "$work/soft.gguf"
    # The output is never the input, under any name.
    expect_error 1 "ds4-quantize: .*the output is the input file" "$q" "$m" "$m" --mix q4
    expect_error 1 "the output is the input file" "$q" "$m" "$work/./m.gguf" --mix q4
    expect_error 1 "the output is the input file" "$q" "$m" "$work/hard.gguf" --mix q4
    expect_error 1 "the output is the input file" "$q" "$work/soft.gguf" "$m" --mix q4
    [ "$(sha256sum <"$m")" = "$sum" ] || fail "ds4-quantize changed its input"
    # Never renamed over a device or a pipe.
    mkfifo "$work/fifo"
    expect_error 1 "ds4-quantize: .*fifo: the output exists and is not a regular file" "$q" "$m" "$work/fifo" --mix q2
    expect_error 1 "ds4-make-model: .*fifo: the output exists and is not a regular file" "$tools/ds4-make-model" -o "$work/fifo"
    [ -p "$work/fifo" ] || fail "the pipe was replaced"
    # A full disk (file size limit) leaves no partial output.
    (trap '' XFSZ; ulimit -f 1024; "$q" "$m" "$work/q.gguf" --mix q2) >"$work/out" 2>"$work/err"
    [ $? -eq 1 ] && grep -q "^ds4-quantize: " "$work/err" || fail "a write error was not reported: $(cat "$work/err")"
    [ -e "$work/q.gguf" ] && fail "a failed write left a partial output"
    no_temp_files "$work"
    "$q" "$m" "$work/q.gguf" --mix q2 >/dev/null || fail "ds4-quantize failed"
    [ -s "$work/q.gguf" ] || fail "ds4-quantize wrote nothing"
    # Through a symbolic link: the link stays, the file it names gets the output.
    echo old >"$work/target.gguf"
    ln -s target.gguf "$work/link.gguf"
    "$q" "$m" "$work/link.gguf" --mix q2 >/dev/null || fail "ds4-quantize to a link failed"
    [ -L "$work/link.gguf" ] || fail "ds4-quantize replaced the link to its output"
    cmp -s "$work/q.gguf" "$work/target.gguf" || fail "ds4-quantize did not write through the link"
}

case "$case" in
    usage_errors | steer_compose | tokenize_outputs | quantize_outputs) "case_$case" ;;
    *) echo "unknown case $case" >&2; exit 2 ;;
esac
[ $failures -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "tools.$case: ok"
