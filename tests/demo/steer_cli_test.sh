#!/usr/bin/env bash
# ds4-steer end to end on the demo model with a small budget: bad flags and a
# bad input line are refused with a message; a run on pairs written here
# prints its report, writes the vector, the CSV report and a control vector,
# and the vector changes what ds4-generate answers.
# usage: steer_cli_test.sh DS4_STEER DS4_GENERATE DEMO_MODEL.gguf
set -euo pipefail
steer=$1 generate=$2 model=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

printf 'Where does the sulen live?\nWhich river is found in Komelba?\n' > "$work/heldout.txt"
if "$steer" -m "$model" --heldout "$work/heldout.txt" -o "$work/x.gguf" --max-new-tokens -3 2> "$work/err"; then
  fail "a negative --max-new-tokens was accepted"
fi
grep -q -- "--max-new-tokens" "$work/err" || fail "no message naming --max-new-tokens: $(cat "$work/err")"
if "$steer" -m "$model" --heldout "$work/heldout.txt" -o "$work/x.gguf" --max-kl nan 2> "$work/err"; then
  fail "--max-kl nan was accepted"
fi
grep -q -- "--max-kl" "$work/err" || fail "no message naming --max-kl: $(cat "$work/err")"
printf '{"positive": 3, "negative": "x"}\n' > "$work/bad.jsonl"
if "$steer" -m "$model" --pairs "$work/bad.jsonl" --heldout "$work/heldout.txt" -o "$work/x.gguf" 2> "$work/err"; then
  fail "a malformed pairs line was accepted"
fi
grep -q "bad.jsonl:1" "$work/err" || fail "the error does not name the line: $(cat "$work/err")"

# Pairs: the same question asking for brevity and for detail.
: > "$work/pairs.tsv"
for e in Zopolzo Bagarpe Zomirto Dipolgo Rimelba Kamelta Badalgo Kanixne; do
  printf 'Which river is found in %s? Keep it short.\tWhich river is found in %s? Explain at length.\n' "$e" "$e" \
    >> "$work/pairs.tsv"
done
# Held-out questions that the model answers long (rivers) and short (capitals) when not asked.
printf 'Which river is found in %s?\nTell me the capital of %s.\n' Koranta Peranpe Disormi Penixne Tadalne Tonixru Riwento Tobusji > "$work/heldout.txt"
"$steer" -m "$model" --pairs "$work/pairs.tsv" --heldout "$work/heldout.txt" -o "$work/terse.ds4steer.gguf" \
  --report "$work/report.csv" --export-control-vector "$work/terse-cvec.gguf" \
  --max-candidates 1 --search-prompts 8 --confirm-prompts 0 --max-new-tokens 96 > "$work/out.txt" \
  || fail "ds4-steer failed: $(cat "$work/out.txt")"
cat "$work/out.txt"
grep -q "<- chosen" "$work/out.txt" || fail "no chosen row in the report"
[ -s "$work/terse.ds4steer.gguf" ] || fail "no vector written"
[ -s "$work/terse-cvec.gguf" ] || fail "no control vector written"
head -1 "$work/report.csv" | grep -q "^setting,scale" || fail "the CSV report has no header"

prompt="Which river is found in Rivingo?"
plain=$("$generate" -m "$model" -p "$prompt" -n 64 2> /dev/null)
steered=$("$generate" -m "$model" -p "$prompt" -n 64 --steer "$work/terse.ds4steer.gguf" 2> /dev/null)
echo "unsteered: $plain"
echo "steered:   $steered"
[ "${#steered}" -lt "${#plain}" ] || fail "the trained vector did not shorten the answer"
echo "ok"
