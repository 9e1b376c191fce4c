// ds4-steer: train a steering vector from text with ds4::train_steering,
// print the report and write the vector.
//
//   ds4-steer -m MODEL.gguf --pairs pairs.jsonl --heldout questions.txt -o terse.ds4steer.gguf
//
// --pairs: JSONL, one pair a line, in one of three forms:
//   {"positive": "user text", "negative": "user text"}              (answers generated)
//   {"prompt": "user text", "positive": "answer", "negative": "answer"}
//   {"positive": [{"role": "user", "content": ...}, ...], "negative": [...]}
// or TSV (a .tsv file): positive<TAB>negative, or prompt<TAB>positive<TAB>negative.
// --heldout / --neutral: one user prompt a line (or JSONL {"prompt", "positive", "negative"} for
// the completion_logprob metric). '#' starts a comment line in text and TSV files.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/cli.hpp"
#include "common/files.hpp"
#include "ds4/ds4.hpp"

namespace {

using nlohmann::json;

struct InputError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Lines of a text file without blank and '#' lines, with their line numbers.
std::vector<std::pair<size_t, std::string>> read_lines(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw InputError(path + ": cannot open");
    std::vector<std::pair<size_t, std::string>> out;
    std::string line;
    for (size_t n = 1; std::getline(in, line); ++n) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty() || line[0] == '#') continue;
        out.emplace_back(n, line);
    }
    return out;
}

std::vector<std::string> split_tabs(const std::string& line) {
    std::vector<std::string> out(1);
    for (char c : line) {
        if (c == '\t') out.emplace_back();
        else out.back().push_back(c);
    }
    return out;
}

std::string where(const std::string& path, size_t line) { return path + ":" + std::to_string(line) + ": "; }

json parse_json_line(const std::string& path, size_t line, const std::string& text) {
    try {
        json j = json::parse(text);
        if (!j.is_object()) throw InputError(where(path, line) + "expected a JSON object");
        return j;
    } catch (const json::exception& e) {
        throw InputError(where(path, line) + "not valid JSON: " + e.what());
    }
}

std::string text_field(const json& j, const char* key, const std::string& at) {
    if (!j.contains(key) || !j[key].is_string()) throw InputError(at + "field \"" + key + "\" must be a string");
    return j[key].get<std::string>();
}

std::vector<ds4::ChatMessage> conversation(const json& j, const std::string& at) {
    std::vector<ds4::ChatMessage> out;
    for (const json& m : j) {
        const std::string role = m.is_object() ? text_field(m, "role", at) : "";
        ds4::Role r = ds4::Role::User;
        if (role == "system") r = ds4::Role::System;
        else if (role == "assistant") r = ds4::Role::Assistant;
        else if (role == "tool") r = ds4::Role::Tool;
        else if (role != "user") throw InputError(at + "message role must be system, user, assistant or tool");
        out.push_back({r, text_field(m, "content", at), ""});
    }
    return out;
}

void add_json_pair(ds4::SteeringDataset& d, const json& j, const std::string& at) {
    if (j.contains("positive") && j["positive"].is_array() && j.contains("negative") && j["negative"].is_array()) {
        d.pairs.push_back({conversation(j["positive"], at), conversation(j["negative"], at)});
    } else if (j.contains("prompt")) {
        d.add_completions(text_field(j, "prompt", at), text_field(j, "positive", at), text_field(j, "negative", at));
    } else {
        d.add_pair(text_field(j, "positive", at), text_field(j, "negative", at));
    }
}

void read_pairs(ds4::SteeringDataset& d, const std::string& path) {
    const bool tsv = ends_with(path, ".tsv");
    for (const auto& [n, line] : read_lines(path)) {
        if (!tsv) {
            add_json_pair(d, parse_json_line(path, n, line), where(path, n));
            continue;
        }
        const auto cols = split_tabs(line);
        if (cols.size() == 2) d.add_pair(cols[0], cols[1]);
        else if (cols.size() == 3) d.add_completions(cols[0], cols[1], cols[2]);
        else throw InputError(where(path, n) + "expected 2 or 3 tab-separated columns, found " + std::to_string(cols.size()));
    }
}

void read_heldout(ds4::SteeringDataset& d, const std::string& path, bool neutral) {
    const bool jsonl = ends_with(path, ".jsonl");
    for (const auto& [n, line] : read_lines(path)) {
        if (!jsonl) {
            neutral ? d.add_neutral(line) : d.add_heldout(line);
            continue;
        }
        const json j = parse_json_line(path, n, line);
        const std::string at = where(path, n);
        if (neutral) {
            d.add_neutral(text_field(j, "prompt", at));
        } else {
            d.add_heldout(text_field(j, "prompt", at), j.contains("positive") ? text_field(j, "positive", at) : "",
                          j.contains("negative") ? text_field(j, "negative", at) : "");
        }
    }
}

// One line on stderr, redrawn in place (a line per stage when stderr is not a terminal).
class ProgressBar {
public:
    bool operator()(const ds4::SteeringTrainingProgress& p) {
        if (!tty_) {
            if (p.stage != stage_) std::fprintf(stderr, "ds4-steer: %s\n", p.stage.c_str());
            stage_ = p.stage;
            return true;
        }
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
        const int width = 30;
        const int filled = p.total > 0 ? static_cast<int>(width * p.done / p.total) : 0;
        std::string bar(static_cast<size_t>(filled), '#');
        bar.resize(width, '.');
        std::fprintf(stderr, "\r\033[K%-8s [%s] %lld/%lld %6.0fs %s", p.stage.c_str(), bar.c_str(),
                     static_cast<long long>(p.done), static_cast<long long>(p.total), elapsed, p.detail.c_str());
        std::fflush(stderr);
        return true;
    }
    ~ProgressBar() {
        if (tty_) std::fprintf(stderr, "\r\033[K");
    }

private:
    bool tty_ = isatty(STDERR_FILENO) != 0;
    std::string stage_;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"ds4-steer: train a steering vector from contrast pairs, chosen by measured behaviour", "ds4-steer"};
    ds4::tools::set_up(app);
    using ds4::tools::in_range;
    std::string model_path, pairs_path, heldout_path, neutral_path, out_path, report_path, f32_path, cv_path;
    std::string metric = "length", persona_template, positive_persona, negative_persona, openings_path;
    ds4::SteeringTrainingOptions o;
    bool think = false, lossy = false;
    app.add_option("-m,--model", model_path, "model GGUF")->required()->check(CLI::ExistingFile);
    app.add_option("--pairs", pairs_path, "contrast pairs (.jsonl or .tsv)")->check(CLI::ExistingFile);
    app.add_option("--persona-template", persona_template, "repeng-style pairs: a user message with {persona}");
    app.add_option("--positive-persona", positive_persona, "the persona of the positive side");
    app.add_option("--negative-persona", negative_persona, "the persona of the negative side");
    app.add_option("--openings", openings_path, "answer openings for the persona pairs, one a line")
        ->check(CLI::ExistingFile);
    app.add_option("--heldout", heldout_path, "held-out prompts the behaviour is measured on")
        ->required()->check(CLI::ExistingFile);
    app.add_option("--neutral", neutral_path, "prompts for the coherence guard (default: the held-out ones)")
        ->check(CLI::ExistingFile);
    app.add_option("-o,--out", out_path, "the steering vector to write (.ds4steer.gguf)")->required();
    app.add_option("--metric", metric, "length, logprob (CAA A/B on held-out completions) or refusal")
        ->check(CLI::IsMember({"length", "logprob", "refusal"}));
    app.add_option("--positive-direction", o.metric.positive_direction,
                   "+1/-1: the positive side scores higher/lower (default 0: measured)")
        ->check(in_range(-1, 1));
    app.add_option("--max-candidates", o.budget.max_candidates, "settings measured")->check(in_range(1, 1000));
    app.add_option("--search-prompts", o.budget.search_prompts, "held-out prompts per measured setting")
        ->check(in_range(1, 100000));
    app.add_option("--confirm-prompts", o.budget.confirm_prompts, "held-out prompts for the chosen setting")
        ->check(in_range(0, 100000));
    app.add_option("--max-new-tokens", o.budget.max_new_tokens, "tokens per generated answer")
        ->check(in_range(1, 65536));
    app.add_option("--max-tokens", o.budget.max_tokens, "stop searching after this many evaluated tokens (0: no limit)")
        ->check(in_range<int64_t>(0));
    app.add_option("--max-kl", o.max_kl, "coherence guard bound (nats)")->check(in_range(1e-9));
    app.add_option("--kl-quantile", o.kl_quantile, "quantile of the per-token KL the guard bounds")
        ->check(in_range(0.0, 1.0));
    app.add_option("--name", o.name, "name recorded in the file");
    app.add_option("--report", report_path, "also write the report as CSV");
    app.add_option("--export-f32", f32_path, "also write the reference engine's .f32 (+ .json sidecar)");
    app.add_option("--export-control-vector", cv_path, "also write a llama.cpp control vector");
    app.add_flag("--lossy", lossy, "let the exports drop what their format cannot hold (printed)");
    app.add_flag("--think", think, "render the conversations in thinking mode");
    if (const auto rc = ds4::tools::parse(app, argc, argv)) return *rc;
    o.metric.kind = metric == "logprob"   ? ds4::BehaviourMetric::Kind::CompletionLogProb
                    : metric == "refusal" ? ds4::BehaviourMetric::Kind::Refusal
                                          : ds4::BehaviourMetric::Kind::AnswerLength;
    o.chat.thinking = think ? ds4::ThinkingMode::High : ds4::ThinkingMode::None;
    try {
        for (const std::string& out : {out_path, report_path, f32_path, cv_path})
            if (!out.empty()) ds4::tools::refuse_input_as_output(out, {model_path, pairs_path, heldout_path, neutral_path});
        ds4::SteeringDataset data;
        if (!pairs_path.empty()) read_pairs(data, pairs_path);
        if (!persona_template.empty()) {
            if (positive_persona.empty() || negative_persona.empty() || openings_path.empty())
                throw InputError("--persona-template needs --positive-persona, --negative-persona and --openings");
            std::vector<std::string> openings;
            for (auto& [n, line] : read_lines(openings_path)) openings.push_back(line);
            data.add_personas(persona_template, positive_persona, negative_persona, openings);
        }
        read_heldout(data, heldout_path, false);
        if (!neutral_path.empty()) read_heldout(data, neutral_path, true);
        auto model = ds4::Model::load(model_path);
        ProgressBar bar;
        o.progress = std::ref(bar);
        const ds4::TrainedSteering t = ds4::train_steering(model, data, o);
        std::printf("%s", t.table().c_str());
        std::printf("%zu pairs, %zu held-out prompts: %lld tokens evaluated in %.1f s\n", data.pairs.size(),
                    data.heldout.size(), static_cast<long long>(t.tokens), t.seconds);
        if (!report_path.empty())
            ds4::tools::write_file_atomically(report_path, [&](std::ostream& r) { r << t.csv(); });
        if (!t.found) {
            std::fprintf(stderr, "ds4-steer: no setting moved the behaviour within the coherence guard; nothing written\n");
            return 1;
        }
        t.vector.save(out_path);
        std::printf("chosen: %s at scale %.4f -> %s\n", t.setting.label().c_str(), static_cast<double>(t.vector.scale()),
                    out_path.c_str());
        const ds4::SteeringVector::ExportOptions eo{.allow_lossy = lossy};
        int rc = 0;
        for (const auto& [path, f32] : {std::pair{f32_path, true}, std::pair{cv_path, false}}) {
            if (path.empty()) continue;
            try {
                const auto dropped = f32 ? t.vector.save_ds4_f32(path, eo) : t.vector.save_control_vector(path, eo);
                for (const auto& d : dropped) std::printf("  %s: dropped %s\n", path.c_str(), d.c_str());
            } catch (const ds4::Error& e) {
                std::fprintf(stderr, "ds4-steer: not exported: %s\n", e.what());
                rc = 1;
            }
        }
        return rc;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "\nds4-steer: %s\n", e.what());
        return 1;
    }
}
