// The trained demo model shipped in data/demo-model (a small DeepSeek-V4-Flash
// layout trained by tools/train-demo-model to answer tersely or verbosely and
// to refuse one category of requests) and the prompt sets it was made with:
// "train.*" sets for extracting directions, "heldout.*" sets for measuring
// their effect on prompts the model never saw.
#pragma once

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "ds4/chat.hpp"
#include "ds4/extraction.hpp"
#include "ds4/generate.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "ds4/tokenizer.hpp"

#ifndef DS4_DEMO_MODEL_DIR
#error "DS4_DEMO_MODEL_DIR must name the folder of the demo model (data/demo-model)"
#endif

namespace example {

struct DemoModel {
    std::string dir = DS4_DEMO_MODEL_DIR;
    std::string path() const { return dir + "/ds4-demo-q2.gguf"; }

    // prompts.tsv: "set<TAB>prompt" with \\, \t and \n escaped; '#' starts a comment line.
    std::map<std::string, std::vector<std::string>> prompt_sets() const {
        std::ifstream in(dir + "/prompts.tsv");
        if (!in) throw std::runtime_error("cannot open " + dir + "/prompts.tsv");
        std::map<std::string, std::vector<std::string>> sets;
        std::string line;
        while (std::getline(in, line)) {
            if (line.empty() || line[0] == '#') continue;
            const size_t tab = line.find('\t');
            if (tab == std::string::npos) throw std::runtime_error("prompts.tsv: line without a tab: " + line);
            std::string text;
            for (size_t i = tab + 1; i < line.size(); ++i) {
                if (line[i] == '\\' && i + 1 < line.size()) {
                    const char c = line[++i];
                    text += c == 'n' ? '\n' : c == 't' ? '\t' : c;
                } else {
                    text += line[i];
                }
            }
            sets[line.substr(0, tab)].push_back(text);
        }
        return sets;
    }

    std::vector<std::string> prompt_set(const std::string& name) const {
        auto sets = prompt_sets();
        auto it = sets.find(name);
        if (it == sets.end()) throw std::runtime_error("prompts.tsv has no set " + name);
        return it->second;
    }
};

// One user turn rendered with the chat template, ready for prefill.
inline std::vector<ds4::TokenId> chat_prompt(const ds4::Tokenizer& tok, const std::string& text) {
    const std::vector<ds4::ChatMessage> m = {{ds4::Role::User, text, ""}};
    return ds4::render_chat(tok, m);
}

inline std::vector<std::vector<ds4::TokenId>> chat_prompts(const ds4::Tokenizer& tok,
                                                           const std::vector<std::string>& texts, size_t limit = 0) {
    std::vector<std::vector<ds4::TokenId>> out;
    for (const auto& t : texts) {
        if (limit && out.size() == limit) break;
        out.push_back(chat_prompt(tok, t));
    }
    return out;
}

}  // namespace example

// ---- the two steering recipes of the demo (shared with tests/demo) ----
namespace example {

// The model's own greedy answer to `prompt` up to the end of its first
// sentence, appended to the prompt: a response prefix that a terse answer and
// a verbose one share ("The capital of Varnia is Tolmer."), after which the
// first stops and the second goes on.
inline ds4::ContrastExample with_first_sentence(const std::shared_ptr<const ds4::Model>& model,
                                                const std::vector<ds4::TokenId>& prompt) {
    const ds4::Tokenizer& tok = *model->tokenizer();
    ds4::Session s(model, {.context_size = static_cast<int64_t>(prompt.size()) + 48});
    ds4::GenerateOptions go;
    go.max_tokens = 40;
    go.stop_tokens = {tok.specials().eos};
    ds4::ContrastExample ex{prompt, static_cast<int64_t>(prompt.size())};
    for (ds4::TokenId t : ds4::generate(s, prompt, go).tokens) {
        if (t == tok.specials().eos) break;
        ex.tokens.push_back(t);
        if (tok.token_bytes(t).find('.') != std::string::npos) break;
    }
    return ex;
}

// Terseness: difference of means between answers to prompts that ask for
// brevity and answers to prompts that ask for detail (train split), averaged
// over the first sentence of the answer (where the terse answer is about to
// stop and the verbose one to go on), at the layer output (the residual
// stream, all four HC streams) of the two middle layers. The vector steers
// those layers at the tool's recommended scale (the mean projection gap of
// the better-separated of the two).
//
// (Measured on an earlier training of the demo model, other choices steered
// less or not at all: the last prompt token separated the two requests
// poorly (Cohen's d 1-1.7, pair accuracy 0.75), and one layer alone, or the
// FFN output, moved the mean length by less than 30%. The model now ships
// trained so that this recipe's direction decides the form of an answer:
// tools/train-demo-model/README.md, "The style-mediation stage".)
inline ds4::Extraction terse_direction(const std::shared_ptr<const ds4::Model>& model, const DemoModel& demo) {
    const ds4::Tokenizer& tok = *model->tokenizer();
    std::vector<ds4::ContrastExample> brief, detail;
    for (auto& p : chat_prompts(tok, demo.prompt_set("train.brief"))) brief.push_back(with_first_sentence(model, p));
    for (auto& p : chat_prompts(tok, demo.prompt_set("train.detail"))) detail.push_back(with_first_sentence(model, p));
    ds4::ExtractionOptions eo;
    eo.site = ds4::SteeringSite::LayerOut;
    eo.op = ds4::SteeringOp::Add;
    eo.reduction = ds4::TokenReduction::MeanResponse;
    eo.layers = {2, 3};
    eo.name = "terseness";
    ds4::Extraction ex = ds4::extract_direction(model, brief, detail, eo);
    ex.vector.set_layer_range(2, 3);
    ex.vector.set_scale(ex.vector.provenance.recommended_scale);
    return ex;
}

// The refusal tokens: the model's refusal, "I can't help with that.", encoded.
inline std::vector<ds4::TokenId> refusal_text_tokens(const ds4::Tokenizer& tok) {
    return tok.encode("I can't help with that.");
}

// Refusal: find_refusal_direction on the train split (48 pairs to extract,
// 16 to choose the layer and position).
inline ds4::RefusalDirection refusal_direction(const std::shared_ptr<const ds4::Model>& model, const DemoModel& demo) {
    const ds4::Tokenizer& tok = *model->tokenizer();
    const auto harmful = chat_prompts(tok, demo.prompt_set("train.harmful"));
    const auto harmless = chat_prompts(tok, demo.prompt_set("train.harmless"));
    const size_t n = std::min(harmful.size(), harmless.size());
    const size_t n_val = n / 4;
    const std::span<const std::vector<ds4::TokenId>> h(harmful.data(), n), s(harmless.data(), n);
    ds4::RefusalOptions ro;
    ro.refusal_tokens = {refusal_text_tokens(tok)[0]};
    return ds4::find_refusal_direction(model, h.first(n - n_val), s.first(n - n_val), h.last(n_val), s.last(n_val), ro);
}

}  // namespace example
