// The backends built into the library (registered by the registry itself).
#pragma once

#include "ds4/backend.hpp"

namespace ds4::backend {

BackendFactory cpu_backend_factory();
BackendFactory reference_backend_factory();

}  // namespace ds4::backend
