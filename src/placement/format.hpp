// Internal: small text helpers for placement reports.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error_internal.hpp"

namespace ds4::placement {

// "1.50 GiB", "512.0 MiB", "4.0 KiB", "17 B".
inline std::string format_bytes(uint64_t b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(b);
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        ++u;
    }
    if (u == 0) return detail::format("%llu B", static_cast<unsigned long long>(b));
    return detail::format(v >= 100.0 ? "%.0f %s" : (v >= 10.0 ? "%.1f %s" : "%.2f %s"), v, units[u]);
}

// "0-3,8,10-11" for a list of integers (sorted first).
inline std::string format_index_list(std::vector<int> v) {
    std::sort(v.begin(), v.end());
    std::string s;
    for (size_t i = 0; i < v.size();) {
        size_t j = i;
        while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
        if (!s.empty()) s += ',';
        s += std::to_string(v[i]);
        if (j > i) {
            s += j == i + 1 ? ',' : '-';
            s += std::to_string(v[j]);
        }
        i = j + 1;
    }
    return s;
}

}  // namespace ds4::placement
