// ds4 — small shared types.
#pragma once

#include <cstdint>

#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using TokenId = int32_t;

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
