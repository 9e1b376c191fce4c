// Internal logging helpers: format only when the level is enabled.
#pragma once

#include <cstdio>
#include <string>

#include "ds4/log.hpp"

namespace ds4::detail {

bool log_enabled(LogLevel level) noexcept;
void log_write(LogLevel level, const std::string& message);

template <class... Args>
void logf(LogLevel level, const char* fmt, Args... args) {
    if (!log_enabled(level)) return;
    int n = std::snprintf(nullptr, 0, fmt, args...);
    if (n < 0) return;
    std::string s(static_cast<size_t>(n), '\0');
    std::snprintf(s.data(), s.size() + 1, fmt, args...);
    log_write(level, s);
}

}  // namespace ds4::detail

#define DS4_LOG_DEBUG(...) ::ds4::detail::logf(::ds4::LogLevel::Debug, __VA_ARGS__)
#define DS4_LOG_INFO(...) ::ds4::detail::logf(::ds4::LogLevel::Info, __VA_ARGS__)
#define DS4_LOG_WARN(...) ::ds4::detail::logf(::ds4::LogLevel::Warning, __VA_ARGS__)
#define DS4_LOG_ERROR(...) ::ds4::detail::logf(::ds4::LogLevel::Error, __VA_ARGS__)
