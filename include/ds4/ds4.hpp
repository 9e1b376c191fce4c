// ds4 — the whole public API in one include.
#pragma once

#include "ds4/backend.hpp"
#include "ds4/capture.hpp"
#include "ds4/config.hpp"
#include "ds4/dtype.hpp"
#include "ds4/error.hpp"
#include "ds4/extraction.hpp"
#include "ds4/generate.hpp"
#include "ds4/gguf.hpp"
#include "ds4/hook.hpp"
#include "ds4/log.hpp"
#include "ds4/model.hpp"
#include "ds4/model_generator.hpp"
#include "ds4/placement.hpp"
#include "ds4/quantize.hpp"
#include "ds4/sampling.hpp"
#include "ds4/session.hpp"
#include "ds4/steering.hpp"
#include "ds4/types.hpp"
#include "ds4/version.hpp"
#if __has_include("ds4/tokenizer.hpp")
#include "ds4/tokenizer.hpp"
#endif
#if __has_include("ds4/chat.hpp")
#include "ds4/chat.hpp"
#endif
