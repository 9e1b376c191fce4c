#include "core/log_internal.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::Warning)};
std::mutex g_sink_mutex;
LogSink g_sink;  // empty = stderr

const char* level_tag(LogLevel level) {
    switch (level) {
        case LogLevel::Debug: return "debug";
        case LogLevel::Info: return "info";
        case LogLevel::Warning: return "warning";
        case LogLevel::Error: return "error";
        case LogLevel::Off: break;
    }
    return "";
}
}  // namespace

void set_log_level(LogLevel level) noexcept { g_level.store(static_cast<int>(level)); }
LogLevel log_level() noexcept { return static_cast<LogLevel>(g_level.load()); }

void set_log_sink(LogSink sink) {
    std::lock_guard<std::mutex> lock(g_sink_mutex);
    g_sink = std::move(sink);
}
DS4_INLINE_NAMESPACE_END

namespace detail {
bool log_enabled(LogLevel level) noexcept {
    return level != LogLevel::Off && static_cast<int>(level) >= g_level.load();
}

void log_write(LogLevel level, const std::string& message) {
    std::lock_guard<std::mutex> lock(g_sink_mutex);
    if (g_sink) {
        g_sink(level, message);
    } else {
        std::fprintf(stderr, "ds4 %s: %s\n", level_tag(level), message.c_str());
    }
}
}  // namespace detail
}  // namespace ds4
