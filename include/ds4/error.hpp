// ds4 — errors.
//
// Every failure the library reports is a ds4::Error: an exception carrying a
// machine-readable code next to a message that names the file, GGUF key or
// tensor concerned, so callers can branch without parsing text.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

enum class ErrorCode {
    InvalidArgument,   // a caller passed something out of range or malformed
    CorruptFile,       // a file is truncated, inconsistent or not what it claims
    UnsupportedModel,  // a well-formed file the library cannot run (type, shape, key)
    IoError,           // open/read/write/mmap failed at the OS level
    ContextFull,       // the session has no room for more tokens
    OutOfMemory,
    BackendFailure,
    Cancelled,         // a progress callback asked to stop
    NotFound,          // a named key, tensor, token or hook point does not exist
    Internal,
};

std::string_view to_string(ErrorCode code) noexcept;

class Error : public std::runtime_error {
public:
    Error(ErrorCode code, const std::string& message)
        : std::runtime_error(message), code_(code) {}
    ErrorCode code() const noexcept { return code_; }

private:
    ErrorCode code_;
};

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
