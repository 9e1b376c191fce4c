// ds4 — logging sink.
//
// The library never writes to stdout. Diagnostics go to one process-wide sink
// (stderr at Warning by default). Set the level to Off to silence the library,
// or install your own sink (tests use it to capture warnings).
#pragma once

#include <functional>
#include <string_view>

#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

enum class LogLevel { Debug = 0, Info = 1, Warning = 2, Error = 3, Off = 4 };

using LogSink = std::function<void(LogLevel, std::string_view)>;

// Messages below `level` are dropped before they are formatted.
void set_log_level(LogLevel level) noexcept;
LogLevel log_level() noexcept;

// Replace the sink; an empty function restores the default stderr sink.
void set_log_sink(LogSink sink);

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
