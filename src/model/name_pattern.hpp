// Internal: the regular expressions of tensor overrides (TensorOverride::
// pattern), searched in tensor names.
//
// std::regex backtracks and recurses once per input character: a long
// tensor name with `.*` overflowed the stack, and a pattern such as (a*)*b
// takes exponential time. NamePattern compiles the ECMAScript subset that
// names need to a Thompson NFA and simulates it (a Pike VM without
// captures): time O(name length x pattern size), memory O(pattern size), no
// recursion over the input.
//
// Supported: literals, `.`, `[...]` / `[^...]` classes with ranges, the
// escapes \d \D \w \W \s \S \t \n \r \f \v \0 \xHH and any escaped
// punctuation, `^` `$`, groups `(...)` `(?:...)`, `|`, and the quantifiers
// * + ? {n} {n,} {n,m} (greedy or lazy: the same for a yes/no search).
// Anything else (back-references, lookaround, \b, \u...) is refused with an
// error naming it.
#pragma once

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ds4::model {

class NamePattern {
public:
    static constexpr size_t kMaxPatternLength = 1024;
    static constexpr int kMaxNesting = 64;         // nested groups
    static constexpr int kMaxRepeat = 1000;        // n and m of {n,m}
    static constexpr size_t kMaxProgram = 20000;   // NFA instructions after expanding {n,m}

    // Throws ds4::Error(InvalidArgument) naming the pattern and the problem.
    explicit NamePattern(std::string_view pattern);

    // True if the pattern matches somewhere in `name` (std::regex_search).
    bool search(std::string_view name) const;

    const std::string& pattern() const { return pattern_; }

    struct Inst {
        enum Op : uint8_t { Byte, Any, Class, Split, Jump, Begin, End, Match } op;
        uint8_t byte = 0;
        uint32_t x = 0, y = 0;  // Class: class index; Split: both targets; Jump: x
    };
    struct Node;  // parse tree (name_pattern.cpp)

private:
    std::string pattern_;
    std::vector<Inst> prog_;
    std::vector<std::bitset<256>> classes_;
};

}  // namespace ds4::model
