#include "ds4/error.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

std::string_view to_string(ErrorCode code) noexcept {
    switch (code) {
        case ErrorCode::InvalidArgument: return "invalid argument";
        case ErrorCode::CorruptFile: return "corrupt file";
        case ErrorCode::UnsupportedModel: return "unsupported model";
        case ErrorCode::IoError: return "I/O error";
        case ErrorCode::ContextFull: return "context full";
        case ErrorCode::OutOfMemory: return "out of memory";
        case ErrorCode::BackendFailure: return "backend failure";
        case ErrorCode::Cancelled: return "cancelled";
        case ErrorCode::NotFound: return "not found";
        case ErrorCode::Internal: return "internal error";
    }
    return "unknown error";
}

Version library_version() noexcept { return header_version(); }

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
