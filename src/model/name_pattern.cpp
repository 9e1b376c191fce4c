#include "model/name_pattern.hpp"

#include <algorithm>
#include <limits>

#include "core/error_internal.hpp"

namespace ds4::model {

struct NamePattern::Node {
    enum Kind : uint8_t { Empty, Byte, Any, Class, Begin, End, Cat, Alt, Repeat } kind = Empty;
    uint8_t byte = 0;
    uint32_t cls = 0;
    int min = 0, max = 0;  // Repeat; max -1 = unbounded
    std::vector<Node> kids;
};

namespace {

using Node = NamePattern::Node;
using Inst = NamePattern::Inst;
using ByteSet = std::bitset<256>;

// The pattern as shown in messages (long ones cut).
std::string shown(std::string_view p) {
    return p.size() <= 80 ? std::string(p) : std::string(p.substr(0, 80)) + "...";
}

[[noreturn]] void refuse(std::string_view pattern, const std::string& what, size_t at) {
    detail::fail(ErrorCode::InvalidArgument, "tensor override pattern '%s': %s (at offset %zu)", shown(pattern).c_str(),
                 what.c_str(), at);
}

ByteSet range(unsigned lo, unsigned hi) {
    ByteSet s;
    for (unsigned c = lo; c <= hi; ++c) s.set(c);
    return s;
}

ByteSet digits() { return range('0', '9'); }
ByteSet word() { return range('a', 'z') | range('A', 'Z') | digits() | range('_', '_'); }
ByteSet spaces() { return range('\t', '\r') | range(' ', ' '); }

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// One escape: a single byte or a set (\d and friends).
struct Escape {
    bool is_set = false;
    uint8_t byte = 0;
    ByteSet set;
};

class Parser {
public:
    Parser(std::string_view p, std::vector<ByteSet>& classes) : p_(p), classes_(classes) {}

    Node parse() {
        Node n = alternation(0);
        if (i_ < p_.size()) fail_at("unmatched ')'");
        return n;
    }

private:
    [[noreturn]] void fail_at(const std::string& what) const { refuse(p_, what, i_); }
    bool more() const { return i_ < p_.size(); }
    char peek() const { return p_[i_]; }

    Node alternation(int depth) {
        Node first = sequence(depth);
        if (!more() || peek() != '|') return first;
        Node alt;
        alt.kind = Node::Alt;
        alt.kids.push_back(std::move(first));
        while (more() && peek() == '|') {
            ++i_;
            alt.kids.push_back(sequence(depth));
        }
        return alt;
    }

    Node sequence(int depth) {
        Node cat;
        cat.kind = Node::Cat;
        while (more() && peek() != '|' && peek() != ')') cat.kids.push_back(quantified(depth));
        return cat;
    }

    Node quantified(int depth) {
        Node a = atom(depth);
        int min = 0, max = 0;
        if (!quantifier(min, max)) return a;
        if (a.kind == Node::Begin || a.kind == Node::End) fail_at("nothing to repeat (an anchor)");
        if (more() && peek() == '?') ++i_;  // lazy: the same for a yes/no search
        if (int m0, m1; quantifier_ahead(m0, m1)) fail_at("nothing to repeat (a quantifier after a quantifier)");
        Node r;
        r.kind = Node::Repeat;
        r.min = min;
        r.max = max;
        r.kids.push_back(std::move(a));
        return r;
    }

    // A quantifier at the cursor? (consumed if so)
    bool quantifier(int& min, int& max) {
        const size_t at = i_;
        if (!quantifier_ahead(min, max)) return false;
        i_ = at + quantifier_length_;
        return true;
    }

    bool quantifier_ahead(int& min, int& max) {
        if (!more()) return false;
        quantifier_length_ = 1;
        switch (peek()) {
            case '*': min = 0, max = -1; return true;
            case '+': min = 1, max = -1; return true;
            case '?': min = 0, max = 1; return true;
            case '{': return braces(min, max);
            default: return false;
        }
    }

    // {n}, {n,} or {n,m} at the cursor (not consumed); anything else is a literal '{'.
    bool braces(int& min, int& max) {
        size_t j = i_ + 1;
        auto number = [&](int& v) {
            const size_t start = j;
            long long x = 0;
            while (j < p_.size() && p_[j] >= '0' && p_[j] <= '9') {
                x = std::min<long long>(x * 10 + (p_[j] - '0'), std::numeric_limits<int>::max());
                ++j;
            }
            v = static_cast<int>(x);
            return j > start;
        };
        if (!number(min)) return false;
        max = min;
        if (j < p_.size() && p_[j] == ',') {
            ++j;
            if (!number(max)) max = -1;
        }
        if (j >= p_.size() || p_[j] != '}') return false;
        if (min > NamePattern::kMaxRepeat || max > NamePattern::kMaxRepeat)
            fail_at(detail::format("repetition count above %d", NamePattern::kMaxRepeat));
        if (max >= 0 && max < min) fail_at("{n,m} with m < n");
        quantifier_length_ = j + 1 - i_;
        return true;
    }

    Node atom(int depth) {
        const char c = peek();
        Node n;
        int m0, m1;
        if (c == '*' || c == '+' || c == '?' || (c == '{' && quantifier_ahead(m0, m1))) fail_at("nothing to repeat");
        ++i_;
        switch (c) {
            case '(': return group(depth);
            case '[': return char_class();
            case '.': n.kind = Node::Any; return n;
            case '^': n.kind = Node::Begin; return n;
            case '$': n.kind = Node::End; return n;
            case '\\': {
                const Escape e = escape(false);
                return e.is_set ? set_node(e.set) : byte_node(e.byte);
            }
            default: return byte_node(static_cast<uint8_t>(c));
        }
    }

    Node group(int depth) {
        if (depth + 1 > NamePattern::kMaxNesting)
            fail_at(detail::format("groups nested deeper than %d", NamePattern::kMaxNesting));
        if (more() && peek() == '?') {
            if (i_ + 1 < p_.size() && p_[i_ + 1] == ':')
                i_ += 2;
            else
                fail_at("lookaround and named groups ((?=, (?!, (?<) are not supported");
        }
        Node inner = alternation(depth + 1);
        if (!more() || peek() != ')') fail_at("unmatched '('");
        ++i_;
        return inner;
    }

    Node char_class() {
        ByteSet set;
        const bool negate = more() && peek() == '^';
        if (negate) ++i_;
        while (more() && peek() != ']') {
            const Escape lo = class_item();
            if (lo.is_set || i_ + 1 >= p_.size() || peek() != '-' || p_[i_ + 1] == ']') {
                set |= lo.is_set ? lo.set : range(lo.byte, lo.byte);
                continue;
            }
            ++i_;  // '-'
            const Escape hi = class_item();
            if (hi.is_set) fail_at("a class escape (\\d, \\w, \\s) cannot end a range");
            if (hi.byte < lo.byte) fail_at("range out of order in [...]");
            set |= range(lo.byte, hi.byte);
        }
        if (!more()) fail_at("unterminated '['");
        ++i_;  // ']'
        return set_node(negate ? ~set : set);
    }

    Escape class_item() {
        const char c = p_[i_++];
        if (c == '\\') return escape(true);
        Escape e;
        e.byte = static_cast<uint8_t>(c);
        return e;
    }

    // After a backslash.
    Escape escape(bool in_class) {
        if (!more()) fail_at("trailing backslash");
        const char c = p_[i_++];
        Escape e;
        auto set = [&](ByteSet s) {
            e.is_set = true;
            e.set = s;
            return e;
        };
        auto byte = [&](unsigned b) {
            e.byte = static_cast<uint8_t>(b);
            return e;
        };
        switch (c) {
            case 'd': return set(digits());
            case 'D': return set(~digits());
            case 'w': return set(word());
            case 'W': return set(~word());
            case 's': return set(spaces());
            case 'S': return set(~spaces());
            case 't': return byte('\t');
            case 'n': return byte('\n');
            case 'r': return byte('\r');
            case 'f': return byte('\f');
            case 'v': return byte('\v');
            case '0': return byte(0);
            case 'x': {
                const int h = i_ + 1 < p_.size() ? hex_value(p_[i_]) : -1;
                const int l = h >= 0 ? hex_value(p_[i_ + 1]) : -1;
                if (l < 0) fail_at("\\x needs two hex digits");
                i_ += 2;
                return byte(static_cast<unsigned>(h * 16 + l));
            }
            case 'b':
                if (in_class) return byte('\b');
                fail_at("word boundaries (\\b, \\B) are not supported");
            default: break;
        }
        if (c >= '1' && c <= '9') fail_at("back-references (\\1 ... \\9) are not supported");
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            fail_at(detail::format("the escape \\%c is not supported", c));
        return byte(static_cast<uint8_t>(c));  // escaped punctuation stands for itself
    }

    Node byte_node(uint8_t b) const {
        Node n;
        n.kind = Node::Byte;
        n.byte = b;
        return n;
    }

    Node set_node(const ByteSet& s) {
        Node n;
        n.kind = Node::Class;
        n.cls = static_cast<uint32_t>(classes_.size());
        classes_.push_back(s);
        return n;
    }

    std::string_view p_;
    std::vector<ByteSet>& classes_;
    size_t i_ = 0;
    size_t quantifier_length_ = 0;
};

// Thompson construction: every node becomes a fragment of the program.
class Compiler {
public:
    Compiler(std::string_view pattern, std::vector<Inst>& prog) : pattern_(pattern), prog_(prog) {}

    void emit(const Node& n) {
        switch (n.kind) {
            case Node::Empty: return;
            case Node::Byte: push({Inst::Byte, n.byte}); return;
            case Node::Any: push({Inst::Any}); return;
            case Node::Class: push({Inst::Class, 0, n.cls}); return;
            case Node::Begin: push({Inst::Begin}); return;
            case Node::End: push({Inst::End}); return;
            case Node::Cat:
                for (const Node& k : n.kids) emit(k);
                return;
            case Node::Alt: alternation(n); return;
            case Node::Repeat: repetition(n); return;
        }
    }

    uint32_t push(Inst in) {
        if (prog_.size() >= NamePattern::kMaxProgram)
            refuse(pattern_, detail::format("expands to more than %zu states", NamePattern::kMaxProgram),
                   pattern_.size());
        prog_.push_back(in);
        return static_cast<uint32_t>(prog_.size() - 1);
    }
    uint32_t here() const { return static_cast<uint32_t>(prog_.size()); }

private:
    void alternation(const Node& n) {
        std::vector<uint32_t> jumps;
        for (size_t k = 0; k + 1 < n.kids.size(); ++k) {
            const uint32_t split = push({Inst::Split});
            prog_[split].x = here();
            emit(n.kids[k]);
            jumps.push_back(push({Inst::Jump}));
            prog_[split].y = here();
        }
        emit(n.kids.back());
        for (uint32_t j : jumps) prog_[j].x = here();
    }

    void repetition(const Node& n) {
        const Node& body = n.kids[0];
        for (int k = 0; k < n.min; ++k) emit(body);
        if (n.max < 0) {  // star: split(body, out); body; jump split
            const uint32_t split = push({Inst::Split});
            prog_[split].x = here();
            emit(body);
            prog_[push({Inst::Jump})].x = split;
            prog_[split].y = here();
            return;
        }
        std::vector<uint32_t> splits;  // optional copies: each may skip to the end
        for (int k = n.min; k < n.max; ++k) {
            splits.push_back(push({Inst::Split}));
            prog_[splits.back()].x = here();
            emit(body);
        }
        for (uint32_t s : splits) prog_[s].y = here();
    }

    std::string_view pattern_;
    std::vector<Inst>& prog_;
};

}  // namespace

NamePattern::NamePattern(std::string_view pattern) : pattern_(pattern) {
    if (pattern.size() > kMaxPatternLength)
        detail::fail(ErrorCode::InvalidArgument, "tensor override pattern '%s' is %zu bytes long, the limit is %zu",
                     shown(pattern).c_str(), pattern.size(), kMaxPatternLength);
    const Node root = Parser(pattern, classes_).parse();
    Compiler c(pattern, prog_);
    c.emit(root);
    c.push({Inst::Match});
}

bool NamePattern::search(std::string_view name) const {
    // Thread lists per position; mark[pc] = the position pc was last added at.
    std::vector<uint32_t> cur, next, stack;
    std::vector<size_t> mark(prog_.size(), std::numeric_limits<size_t>::max());
    bool matched = false;
    auto add = [&](std::vector<uint32_t>& list, uint32_t start, size_t pos) {
        stack.push_back(start);
        while (!stack.empty()) {
            const uint32_t pc = stack.back();
            stack.pop_back();
            if (mark[pc] == pos) continue;
            mark[pc] = pos;
            const Inst& in = prog_[pc];
            switch (in.op) {
                case Inst::Jump: stack.push_back(in.x); break;
                case Inst::Split:
                    stack.push_back(in.y);
                    stack.push_back(in.x);
                    break;
                case Inst::Begin:
                    if (pos == 0) stack.push_back(pc + 1);
                    break;
                case Inst::End:
                    if (pos == name.size()) stack.push_back(pc + 1);
                    break;
                case Inst::Match: matched = true; break;
                default: list.push_back(pc);
            }
        }
    };
    for (size_t pos = 0;; ++pos) {
        add(cur, 0, pos);  // a match may start at any position
        if (matched) return true;
        if (pos == name.size()) return false;
        const auto c = static_cast<uint8_t>(name[pos]);
        next.clear();
        for (const uint32_t pc : cur) {
            const Inst& in = prog_[pc];
            const bool takes = in.op == Inst::Byte    ? in.byte == c
                               : in.op == Inst::Any   ? c != '\n' && c != '\r'
                               : in.op == Inst::Class ? classes_[in.x][c]
                                                      : false;
            if (takes) add(next, pc + 1, pos + 1);
        }
        cur.swap(next);
    }
}

}  // namespace ds4::model
