// IEEE half and bfloat16 conversions (scalar, exact; SIMD kernels use F16C).
#pragma once

#include <cstdint>
#include <cstring>

namespace ds4 {

inline float f32_from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline uint32_t bits_from_f32(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

// f16 -> f32, exact for every input including subnormals, inf and NaN.
inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    const uint32_t man = h & 0x3FFu;
    if (exp == 0) {
        // zero or subnormal: man * 2^-24
        const float v = static_cast<float>(man) * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exp == 31) return f32_from_bits(sign | 0x7F800000u | (man << 13));
    return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

// f32 -> f16 with round-to-nearest-even, subnormals, overflow to inf, NaN kept.
inline uint16_t f32_to_f16(float f) {
    const uint32_t x = bits_from_f32(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) return static_cast<uint16_t>(sign | 0x7C00u | (ax > 0x7F800000u ? 0x200u : 0));
    if (ax >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds to >= 65520 -> inf
    if (ax < 0x38800000u) {
        // Result is subnormal (or zero): value / 2^-24 rounded to nearest even.
        if (ax < 0x33000000u) return static_cast<uint16_t>(sign);  // < 2^-25: rounds to 0
        const uint32_t e = ax >> 23;
        const uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
        const uint32_t shift = 126 - e;  // 14..24 for e in [102, 112]
        uint32_t q = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) ++q;
        return static_cast<uint16_t>(sign | q);
    }
    // Normal: rebias exponent, round mantissa from 23 to 10 bits.
    uint32_t v = ax - 0x38000000u;  // exponent 127 -> 15
    const uint32_t rem = v & 0x1FFFu;
    v >>= 13;
    if (rem > 0x1000u || (rem == 0x1000u && (v & 1))) ++v;
    return static_cast<uint16_t>(sign | v);
}

inline float round_to_f16(float f) { return f16_to_f32(f32_to_f16(f)); }

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

// f32 -> bf16, round-to-nearest-even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
    const uint32_t x = bits_from_f32(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
    return static_cast<uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

}  // namespace ds4
