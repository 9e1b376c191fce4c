#include "tokenizer/pretokenizer.hpp"

#include <unicode/uchar.h>

#include <cstdint>

#include "tokenizer/utf8.hpp"

namespace ds4::tokenizer {

namespace {

enum : uint16_t {
    kL = 1,             // \p{L}
    kM = 2,             // \p{M}
    kN = 4,             // \p{N}
    kP = 8,             // \p{P}
    kS = 16,            // \p{S}
    kSpace = 32,        // \s
    kCrLf = 64,         // \r or \n
    kCjk = 128,         // pass 2 ranges
    kAsciiPunct = 256,  // [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]
    kAsciiAlpha = 512,  // [A-Za-z]
    kAsciiSpace = 1024, // ' '
};

bool is_js_space(char32_t c) {
    switch (c) {
        case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0xA0: case 0x1680:
        case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000: case 0xFEFF: return true;
        default: return c >= 0x2000 && c <= 0x200A;
    }
}

uint16_t classify(char32_t c) {
    uint16_t f = 0;
    if (c < 0x80) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) f |= kAsciiAlpha;
        if ((c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~'))
            f |= kAsciiPunct;
        if (c == ' ') f |= kAsciiSpace;
        if (c == '\r' || c == '\n') f |= kCrLf;
    }
    if (is_js_space(c)) f |= kSpace;
    if ((c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x3040 && c <= 0x309F) || (c >= 0x30A0 && c <= 0x30FF)) f |= kCjk;
    if (c >= 0xDC80 && c <= 0xDCFF) return f;  // a stray byte of invalid UTF-8: no category
    switch (u_charType(static_cast<UChar32>(c))) {
        case U_UPPERCASE_LETTER: case U_LOWERCASE_LETTER: case U_TITLECASE_LETTER: case U_MODIFIER_LETTER:
        case U_OTHER_LETTER: f |= kL; break;
        case U_NON_SPACING_MARK: case U_ENCLOSING_MARK: case U_COMBINING_SPACING_MARK: f |= kM; break;
        case U_DECIMAL_DIGIT_NUMBER: case U_LETTER_NUMBER: case U_OTHER_NUMBER: f |= kN; break;
        case U_DASH_PUNCTUATION: case U_START_PUNCTUATION: case U_END_PUNCTUATION: case U_CONNECTOR_PUNCTUATION:
        case U_OTHER_PUNCTUATION: case U_INITIAL_PUNCTUATION: case U_FINAL_PUNCTUATION: f |= kP; break;
        case U_MATH_SYMBOL: case U_CURRENCY_SYMBOL: case U_MODIFIER_SYMBOL: case U_OTHER_SYMBOL: f |= kS; break;
        default: break;
    }
    return f;
}

// classify() for the Basic Multilingual Plane, computed once.
uint16_t classify_fast(char32_t c) {
    static const std::vector<uint16_t> bmp = [] {
        std::vector<uint16_t> t(0x10000);
        for (char32_t i = 0; i < 0x10000; ++i) t[i] = classify(i);
        return t;
    }();
    return c < 0x10000 ? bmp[c] : classify(c);
}

// Classes of the code points of a text, with their byte offsets.
struct Chars {
    std::vector<uint16_t> cls;
    std::vector<size_t> offset;  // byte offset of char i; offset[n] = text size
};

using Matcher = size_t (*)(const Chars& c, size_t pos, size_t end);

size_t run_of(const Chars& c, size_t pos, size_t end, uint16_t mask) {
    size_t p = pos;
    while (p < end && (c.cls[p] & mask)) ++p;
    return p - pos;
}

size_t match_digits(const Chars& c, size_t pos, size_t end) {
    size_t n = 0;
    while (n < 3 && pos + n < end && (c.cls[pos + n] & kN)) ++n;
    return n;
}

size_t match_cjk(const Chars& c, size_t pos, size_t end) { return run_of(c, pos, end, kCjk); }

size_t match_general(const Chars& c, size_t pos, size_t end) {
    const uint16_t here = c.cls[pos];
    // [ASCII punct][A-Za-z]+
    if ((here & kAsciiPunct) && pos + 1 < end && (c.cls[pos + 1] & kAsciiAlpha))
        return 1 + run_of(c, pos + 1, end, kAsciiAlpha);
    // [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
    if (!(here & (kCrLf | kL | kP | kS)) && pos + 1 < end && (c.cls[pos + 1] & (kL | kM)))
        return 1 + run_of(c, pos + 1, end, kL | kM);
    if (here & (kL | kM)) return run_of(c, pos, end, kL | kM);
    // ' '?[\p{P}\p{S}]+[\r\n]*
    {
        size_t q = pos + ((here & kAsciiSpace) ? 1 : 0);
        if (q < end && (c.cls[q] & (kP | kS))) {
            q += run_of(c, q, end, kP | kS);
            q += run_of(c, q, end, kCrLf);
            return q - pos;
        }
    }
    const size_t ws = run_of(c, pos, end, kSpace);
    if (ws == 0) return 0;
    // \s*[\r\n]+ : up to the last CR/LF of the whitespace run
    for (size_t k = ws; k-- > 0;)
        if (c.cls[pos + k] & kCrLf) return k + 1;
    // \s+(?!\S) : the run, minus its last char unless it ends the piece
    if (pos + ws == end) return ws;
    if (ws >= 2) return ws - 1;
    // \s+
    return ws;
}

// One pass: every match and every stretch between matches becomes a piece.
void split_pass(const Chars& c, const std::vector<std::pair<size_t, size_t>>& in,
                std::vector<std::pair<size_t, size_t>>& out, Matcher m) {
    out.clear();
    for (const auto& [b, e] : in) {
        size_t gap = b, pos = b;
        while (pos < e) {
            const size_t len = m(c, pos, e);
            if (len == 0) {
                ++pos;
                continue;
            }
            if (gap < pos) out.emplace_back(gap, pos);
            out.emplace_back(pos, pos + len);
            pos += len;
            gap = pos;
        }
        if (gap < e) out.emplace_back(gap, e);
    }
}

}  // namespace

void pre_tokenize(std::string_view text, std::vector<Piece>& out) {
    if (text.empty()) return;
    thread_local Chars c;
    thread_local std::vector<std::pair<size_t, size_t>> a, b;
    c.cls.clear();
    c.offset.clear();
    for (size_t i = 0; i < text.size();) {
        size_t len;
        const char32_t cp = decode_utf8(text, i, &len);
        c.cls.push_back(classify_fast(cp));
        c.offset.push_back(i);
        i += len;
    }
    c.offset.push_back(text.size());
    a.assign(1, {0, c.cls.size()});
    split_pass(c, a, b, match_digits);
    split_pass(c, b, a, match_cjk);
    split_pass(c, a, b, match_general);
    for (const auto& [s, e] : b) out.push_back({c.offset[s], c.offset[e]});
}

}  // namespace ds4::tokenizer
