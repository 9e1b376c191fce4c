// The vocabulary a generated model embeds (bridges the generator and the
// tokenizer's vocabulary data).
#pragma once

#include <string>
#include <vector>

#include "ds4/gguf.hpp"
#include "ds4/model_generator.hpp"

namespace ds4::generator {

struct VocabData {
    std::vector<std::string> tokens;
    std::vector<std::string> merges;
    std::vector<int32_t> types;
    size_t size() const { return tokens.size(); }
};

VocabData load_vocab(VocabKind kind, int small_merges);
void write_vocab(gguf::Writer& w, const VocabData& v);

}  // namespace ds4::generator
