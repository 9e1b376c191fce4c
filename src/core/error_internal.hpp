// Internal helpers to throw ds4::Error with printf-style messages.
#pragma once

#include <cstdio>
#include <string>

#include "ds4/error.hpp"

namespace ds4::detail {

template <class... Args>
std::string format(const char* fmt, Args... args) {
    int n = std::snprintf(nullptr, 0, fmt, args...);
    if (n < 0) return fmt;
    std::string s(static_cast<size_t>(n), '\0');
    std::snprintf(s.data(), s.size() + 1, fmt, args...);
    return s;
}

template <class... Args>
[[noreturn]] void fail(ErrorCode code, const char* fmt, Args... args) {
    throw Error(code, format(fmt, args...));
}

}  // namespace ds4::detail
