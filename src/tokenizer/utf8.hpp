// UTF-8 helpers and the GPT-2 byte <-> code point map of byte-level BPE.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace ds4::tokenizer {

// Decodes one code point at s[i]; invalid or truncated sequences yield the
// single byte as a code point in U+DC80..U+DCFF (never a letter, digit, ...)
// and length 1, so every byte of the input stays accounted for.
inline char32_t decode_utf8(std::string_view s, size_t i, size_t* len) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    auto cont = [&](size_t k) { return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80; };
    auto byte = [&](size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F); };
    if (b0 < 0x80) {
        *len = 1;
        return b0;
    }
    if (b0 >= 0xC2 && b0 <= 0xDF && cont(1)) {
        *len = 2;
        return (static_cast<char32_t>(b0 & 0x1F) << 6) | byte(1);
    }
    if (b0 >= 0xE0 && b0 <= 0xEF && cont(1) && cont(2)) {
        const char32_t cp = (static_cast<char32_t>(b0 & 0x0F) << 12) | (byte(1) << 6) | byte(2);
        if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) {
            *len = 3;
            return cp;
        }
    }
    if (b0 >= 0xF0 && b0 <= 0xF4 && cont(1) && cont(2) && cont(3)) {
        const char32_t cp = (static_cast<char32_t>(b0 & 0x07) << 18) | (byte(1) << 12) | (byte(2) << 6) | byte(3);
        if (cp >= 0x10000 && cp <= 0x10FFFF) {
            *len = 4;
            return cp;
        }
    }
    *len = 1;
    return 0xDC00 + b0;
}

inline void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// GPT-2's map: printable bytes (33-126, 161-172, 174-255) map to themselves,
// the other 68 bytes in increasing order to U+0100, U+0101, ...
struct ByteMap {
    std::array<char32_t, 256> to_cp{};
    std::array<int16_t, 324> from_cp{};  // code point (< 324) -> byte, -1 if none
    ByteMap() {
        from_cp.fill(-1);
        char32_t next = 0x100;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            to_cp[static_cast<size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
            from_cp[static_cast<size_t>(to_cp[static_cast<size_t>(b)])] = static_cast<int16_t>(b);
        }
    }
};

inline const ByteMap& byte_map() {
    static const ByteMap m;
    return m;
}

}  // namespace ds4::tokenizer
