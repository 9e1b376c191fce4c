// ds4 — the DeepSeek-V4 tokenizer: byte-level BPE with the DeepSeek
// pre-tokenizer (Unicode general categories, not an ASCII approximation),
// special tokens looked up by their text, and a streaming detokenizer that
// never emits a broken UTF-8 sequence.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ds4/types.hpp"
#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

namespace gguf {
class File;
}

// GGUF token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct EncodeOptions {
    // Match the text of control tokens (`<｜User｜>`, `<think>`, ...) as those
    // tokens. Off by default: user text can never inject a control token.
    bool allow_special = false;
};

class Tokenizer {
public:
    // From the model file's metadata: tokenizer.ggml.tokens, .merges and
    // .token_type. Throws ds4::Error naming the key, or the special token
    // that is missing.
    static Tokenizer from_gguf(const gguf::File& file);
    // From a vocabulary in memory (token strings in byte-symbol form, merges
    // "A B" in rank order, GGUF token types; empty types = all normal).
    static Tokenizer from_vocab(std::vector<std::string> tokens, std::vector<std::string> merges,
                                std::vector<int32_t> types);

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    size_t vocab_size() const noexcept;

    std::vector<TokenId> encode(std::string_view text, const EncodeOptions& options = {}) const;
    // Appends to `out` (no allocation beyond its growth).
    void encode_append(std::string_view text, std::vector<TokenId>& out, const EncodeOptions& options = {}) const;

    // The bytes the tokens stand for (control tokens as their text). Throws
    // InvalidArgument for an id outside the vocabulary.
    std::string decode(std::span<const TokenId> ids) const;
    // Bytes of one token.
    std::string token_bytes(TokenId id) const;
    // The vocabulary string of a token (byte-symbol form).
    const std::string& token_string(TokenId id) const;
    TokenType token_type(TokenId id) const;
    // Id of a vocabulary string, if present.
    std::optional<TokenId> find(std::string_view token_string) const;

    // The special tokens the chat format uses, looked up by their text at load.
    struct Specials {
        TokenId bos = -1, eos = -1, user = -1, assistant = -1, think = -1, end_think = -1, dsml = -1;
    };
    const Specials& specials() const noexcept;

    // The pre-tokenizer alone: the pieces BPE runs on (for tests and tools).
    std::vector<std::string> split(std::string_view text) const;

    struct Impl;

private:
    Tokenizer();
    std::unique_ptr<Impl> impl_;
};

// Turns a stream of token ids into text without ever emitting an incomplete
// UTF-8 sequence: bytes of a character split across tokens are held back
// until the character is complete (or flush() is called).
class StreamDecoder {
public:
    explicit StreamDecoder(const Tokenizer& tokenizer) : tok_(&tokenizer) {}
    // The text that became complete with this token (may be empty).
    std::string push(TokenId id);
    // Whatever is held back (possibly an incomplete sequence).
    std::string flush();

private:
    const Tokenizer* tok_;
    std::string pending_;
};

// Length of the longest prefix of `bytes` that does not end inside a UTF-8
// sequence that later bytes could complete.
size_t utf8_complete_prefix(std::string_view bytes) noexcept;

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
