// Comma-separated option values of the benchmark programs ("--threads 1,2").
#pragma once

#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace ds4::bench {

// The non-empty items of a comma-separated list.
inline std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, ',');)
        if (!item.empty()) out.push_back(item);
    return out;
}

inline std::vector<int> split_ints(const std::string& s) {
    std::vector<int> out;
    for (const auto& v : split_list(s)) out.push_back(std::atoi(v.c_str()));
    return out;
}

}  // namespace ds4::bench
