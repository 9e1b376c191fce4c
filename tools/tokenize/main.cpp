// ds4-tokenize: turn text into token ids with a model's own tokenizer and chat
// template, for tools written in other languages (the demo model's trainer
// tokenizes its dataset with it, so training sees exactly what the SDK feeds
// the model).
//
//   ds4-tokenize -m MODEL.gguf --text "some text"          ids of the raw text
//   ds4-tokenize -m MODEL.gguf --chat-tsv IN.tsv OUT.tsv   chat examples
//
// IN.tsv: one example per line, "prompt<TAB>response", with \\, \t and \n
// escaped. OUT.tsv: "prompt ids<TAB>response ids" (space separated), where the
// prompt ids are the user turn rendered with the generation prompt (what a
// Session is prefilled with) and the response ids are what the rendered
// conversation continues with: the response and the end-of-sentence token.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/cli.hpp"
#include "common/files.hpp"
#include "ds4/ds4.hpp"

namespace {

std::runtime_error line_error(size_t line_no, const std::string& what) {
    return std::runtime_error("line " + std::to_string(line_no) + ": " + what);
}

std::string unescape(const std::string& s, size_t line_no) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\') {
            out += s[i];
            continue;
        }
        if (++i == s.size()) throw line_error(line_no, "dangling backslash");
        switch (s[i]) {
            case 'n': out += '\n'; break;
            case 't': out += '\t'; break;
            case '\\': out += '\\'; break;
            default: throw line_error(line_no, std::string("unknown escape \\") + s[i]);
        }
    }
    return out;
}

void write_ids(std::ostream& os, const std::vector<ds4::TokenId>& ids, size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
        if (i > begin) os << ' ';
        os << ids[i];
    }
}

// One "prompt<TAB>response" line as "prompt ids<TAB>response ids".
void write_example(std::ostream& out, const ds4::Tokenizer& tok, const std::string& line, size_t line_no) {
    const size_t tab = line.find('\t');
    if (tab == std::string::npos) throw line_error(line_no, "no tab");
    const ds4::ChatMessage user{ds4::Role::User, unescape(line.substr(0, tab), line_no), ""};
    const ds4::ChatMessage reply{ds4::Role::Assistant, unescape(line.substr(tab + 1), line_no), ""};
    const std::vector<ds4::ChatMessage> turn = {user}, both = {user, reply};
    const auto prompt = ds4::render_chat(tok, turn);
    ds4::ChatOptions closed;
    closed.add_generation_prompt = false;
    const auto full = ds4::render_chat(tok, both, closed);
    if (full.size() < prompt.size() || !std::equal(prompt.begin(), prompt.end(), full.begin()))
        throw line_error(line_no, "the rendered conversation does not extend the rendered prompt");
    write_ids(out, full, 0, prompt.size());
    out << '\t';
    write_ids(out, full, prompt.size(), full.size());
    out << '\n';
}

// All of IN.tsv into OUT.tsv, which is written whole or not at all.
void tokenize_chat_tsv(const ds4::Tokenizer& tok, const std::string& in_path, const std::string& out_path) {
    std::ifstream in(in_path);
    if (!in) throw std::runtime_error("cannot open " + in_path);
    ds4::tools::write_file_atomically(out_path, [&](std::ostream& out) {
        std::string line;
        for (size_t line_no = 1; std::getline(in, line); ++line_no) write_example(out, tok, line, line_no);
        if (in.bad()) throw std::runtime_error("read error on " + in_path);
    });
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app("Token ids of text, or of chat examples, with a model's tokenizer and chat template.",
                 "ds4-tokenize");
    ds4::tools::set_up(app);
    std::string model_path;
    std::optional<std::string> text;
    std::optional<std::pair<std::string, std::string>> tsv;
    app.add_option("-m,--model", model_path, "model GGUF with a tokenizer")->required();
    auto* input = app.add_option_group("input");
    input->add_option("--text", text, "ids of the raw text, printed to stdout");
    input->add_option("--chat-tsv", tsv, "chat examples IN.tsv to OUT.tsv")->type_name("IN.tsv OUT.tsv");
    input->require_option(1);
    if (const auto rc = ds4::tools::parse(app, argc, argv)) return *rc;
    try {
        if (tsv) ds4::tools::refuse_input_as_output(tsv->second, {tsv->first, model_path});
        const auto model = ds4::Model::load(model_path);
        const ds4::Tokenizer* tok = model->tokenizer();
        if (!tok) throw std::runtime_error(model_path + " has no tokenizer");
        if (tsv) {
            tokenize_chat_tsv(*tok, tsv->first, tsv->second);
            return 0;
        }
        const auto ids = tok->encode(*text);
        write_ids(std::cout, ids, 0, ids.size());
        std::cout << '\n' << std::flush;
        if (!std::cout) throw std::runtime_error("write error on stdout");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ds4-tokenize: %s\n", e.what());
        return 1;
    }
    return 0;
}
