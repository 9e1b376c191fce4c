// Reproducible random inputs for tests: token ids and activation rows.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "ds4/types.hpp"

namespace ds4::test_support {

inline std::vector<TokenId> random_tokens(int n, int vocab, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<TokenId> t(static_cast<size_t>(n));
    for (auto& x : t) x = static_cast<TokenId>(rng() % static_cast<uint64_t>(vocab));
    return t;
}

// n values drawn from N(0, 1).
inline std::vector<float> random_row(int n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> g;
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = g(rng);
    return v;
}

}  // namespace ds4::test_support
