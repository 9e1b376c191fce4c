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
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "ds4/ds4.hpp"

namespace {

[[noreturn]] void usage(int code) {
    std::fprintf(code ? stderr : stdout,
                 "usage: ds4-tokenize -m MODEL.gguf (--text TEXT | --chat-tsv IN.tsv OUT.tsv)\n");
    std::exit(code);
}

std::string unescape(const std::string& s, size_t line_no) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\') {
            out += s[i];
            continue;
        }
        if (++i == s.size()) throw std::runtime_error("line " + std::to_string(line_no) + ": dangling backslash");
        switch (s[i]) {
            case 'n': out += '\n'; break;
            case 't': out += '\t'; break;
            case '\\': out += '\\'; break;
            default: throw std::runtime_error("line " + std::to_string(line_no) + ": unknown escape \\" + s[i]);
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

}  // namespace

int main(int argc, char** argv) {
    std::string model_path, text, in_path, out_path;
    bool have_text = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) usage(2);
            return argv[++i];
        };
        if (a == "-m" || a == "--model") model_path = next();
        else if (a == "--text") text = next(), have_text = true;
        else if (a == "--chat-tsv") in_path = next(), out_path = next();
        else if (a == "-h" || a == "--help") usage(0);
        else usage(2);
    }
    if (model_path.empty() || (have_text == !in_path.empty())) usage(2);
    try {
        ds4::ModelOptions mo;
        const auto model = ds4::Model::load(model_path, mo);
        const ds4::Tokenizer* tok = model->tokenizer();
        if (!tok) {
            std::fprintf(stderr, "ds4-tokenize: %s has no tokenizer\n", model_path.c_str());
            return 1;
        }
        if (have_text) {
            write_ids(std::cout, tok->encode(text), 0, tok->encode(text).size());
            std::cout << '\n';
            return 0;
        }
        std::ifstream in(in_path);
        if (!in) throw std::runtime_error("cannot open " + in_path);
        std::ofstream out(out_path);
        if (!out) throw std::runtime_error("cannot write " + out_path);
        std::string line;
        size_t line_no = 0;
        while (std::getline(in, line)) {
            ++line_no;
            const size_t tab = line.find('\t');
            if (tab == std::string::npos) throw std::runtime_error("line " + std::to_string(line_no) + ": no tab");
            const ds4::ChatMessage user{ds4::Role::User, unescape(line.substr(0, tab), line_no), ""};
            const ds4::ChatMessage reply{ds4::Role::Assistant, unescape(line.substr(tab + 1), line_no), ""};
            const std::vector<ds4::ChatMessage> turn = {user};
            const std::vector<ds4::ChatMessage> both = {user, reply};
            const auto prompt = ds4::render_chat(*tok, turn);
            ds4::ChatOptions closed;
            closed.add_generation_prompt = false;
            const auto full = ds4::render_chat(*tok, both, closed);
            if (full.size() < prompt.size() || !std::equal(prompt.begin(), prompt.end(), full.begin()))
                throw std::runtime_error("line " + std::to_string(line_no) +
                                         ": the rendered conversation does not extend the rendered prompt");
            write_ids(out, full, 0, prompt.size());
            out << '\t';
            write_ids(out, full, prompt.size(), full.size());
            out << '\n';
        }
        if (!out) throw std::runtime_error("write error on " + out_path);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ds4-tokenize: %s\n", e.what());
        return 1;
    }
    return 0;
}
