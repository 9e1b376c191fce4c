#include "generator/vocab_source.hpp"

#include "core/error_internal.hpp"

namespace ds4::generator {

VocabData load_vocab(VocabKind, int) {
    detail::fail(ErrorCode::NotFound, "generator: tokenizer vocabulary data is not available in this build yet");
}

void write_vocab(gguf::Writer&, const VocabData&) {}

}  // namespace ds4::generator
