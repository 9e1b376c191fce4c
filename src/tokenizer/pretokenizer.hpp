// The DeepSeek-V3/V4 pre-tokenizer (runtime spec 1.4): three split passes,
// each isolating its matches, on Unicode general categories.
//   1. \p{N}{1,3}
//   2. [U+4E00-U+9FA5 U+3040-U+309F U+30A0-U+30FF]+
//   3. [ASCII punct][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ | ' '?[\p{P}\p{S}]+[\r\n]*
//      | \s*[\r\n]+ | \s+(?!\S) | \s+
// Whitespace (\s) is the ECMAScript set, as in the reference tokenizer.
#pragma once

#include <string_view>
#include <vector>

namespace ds4::tokenizer {

struct Piece {
    size_t begin, end;  // byte offsets into the text
};

// Appends the pieces of `text` (in order, covering every byte) to `out`.
void pre_tokenize(std::string_view text, std::vector<Piece>& out);

}  // namespace ds4::tokenizer
