// ds4-generate: text in, text out, with optional steering.
//
//   ds4-generate -m MODEL.gguf -p "Explain MoE routing." [--system TEXT] [--think none|high|max]
//                [-n 256] [--temp 0] [--top-k 0] [--top-p 1] [--min-p 0.05] [--seed 1] [--ctx 4096]
//                [--steer FILE[:SCALE]]... [--scale S] [--raw] [--threads N] [--top-logprobs N]
//
// By default the prompt is rendered as one user turn of the chat template
// (--raw sends the text as is, matching control tokens). Text streams to
// stdout as it is generated; statistics go to stderr.
//
// --steer may be given several times (e.g. a refusal ablation and a
// terseness vector): the vectors apply in the order given. Each takes its
// scale from its file unless a `:SCALE` suffix gives one (the suffix is read
// as a scale when what follows the last ':' is a number; `./a:1:0.5` is the
// file `./a:1` at scale 0.5). --scale S sets the scale of a single --steer.
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "ds4/ds4.hpp"

namespace {

struct SteerArg {
    std::string path;
    std::optional<float> scale;
};

// "FILE[:SCALE]". A suffix that reads as a number but is not a finite float
// (nan, inf, 1e99) is an error, not part of the file name.
SteerArg parse_steer(const std::string& s) {
    const size_t colon = s.rfind(':');
    if (colon == std::string::npos) return {s, std::nullopt};
    const std::string suffix = s.substr(colon + 1);
    double d = 0;
    const auto [p, ec] = std::from_chars(suffix.data(), suffix.data() + suffix.size(), d);
    if (suffix.empty() || p != suffix.data() + suffix.size()) return {s, std::nullopt};
    const auto scale = ds4::tools::parse_number<float>(suffix);
    if (ec != std::errc() || !scale) throw std::invalid_argument(s + ": the scale is not a finite float");
    return {s.substr(0, colon), scale};
}

struct Args {
    std::string model_path, prompt, system, think = "none";
    int n_predict = 256, threads = 0, top_logprobs = 0;
    int64_t ctx = 4096;
    std::vector<std::string> steer;
    std::optional<float> scale;
    bool raw = false;
    ds4::SamplingParams sp{.temperature = 0.0f};
    uint64_t seed = 1;
};

void add_options(CLI::App& app, Args& a) {
    using ds4::tools::in_range;
    constexpr float kMaxFloat = std::numeric_limits<float>::max();
    app.add_option("-m,--model", a.model_path, "model GGUF")->required();
    app.add_option("-p,--prompt", a.prompt, "prompt text")->required();
    app.add_option("--system", a.system, "system message");
    app.add_option("--think", a.think, "thinking mode (default none)")->check(CLI::IsMember({"none", "high", "max"}));
    app.add_option("-n", a.n_predict, "tokens to generate (default 256)")->check(in_range(0));
    app.add_option("--temp", a.sp.temperature, "temperature (default 0: greedy)")->check(in_range(0.0f));
    app.add_option("--top-k", a.sp.top_k, "keep the K most likely tokens (default 0: off)")->check(in_range(0));
    app.add_option("--top-p", a.sp.top_p, "nucleus sampling (default 1: off)")->check(in_range(0.0f, 1.0f));
    app.add_option("--min-p", a.sp.min_p, "keep tokens with p >= M * p_max (default 0.05)")->check(in_range(0.0f, 1.0f));
    app.add_option("--seed", a.seed, "sampling seed (default 1)")->check(in_range<uint64_t>(0));
    app.add_option("--ctx", a.ctx, "context size in tokens (default 4096)")->check(in_range<int64_t>(1));
    app.add_option("--steer", a.steer,
                   "steering vector file (ds4 GGUF, .f32 or llama.cpp control vector), with an optional scale "
                   "(default: the file's); repeat to apply several, in order")
        ->type_name("FILE[:SCALE]")
        ->check([](const std::string& s) {
            try {
                parse_steer(s);
                return std::string();
            } catch (const std::invalid_argument& e) {
                return std::string(e.what());
            }
        });
    app.add_option("--scale", a.scale, "scale of the single --steer (same as FILE:S)")->check(in_range(-kMaxFloat));
    app.add_flag("--raw", a.raw, "no chat template; control-token text in the prompt is matched");
    app.add_option("--threads", a.threads, "worker threads (default 0: one per physical core)")->check(in_range(0));
    app.add_option("--top-logprobs", a.top_logprobs, "print the N most likely tokens at each step to stderr")
        ->check(in_range(0));
}

// The steering vectors as given, --scale applied to the single one.
std::vector<SteerArg> steer_args(const Args& a) {
    std::vector<SteerArg> out;
    for (const std::string& s : a.steer) out.push_back(parse_steer(s));
    if (!a.scale) return out;
    if (out.size() != 1 || out[0].scale)
        throw CLI::ValidationError("--scale", "needs exactly one --steer without a :SCALE (use FILE:SCALE for several)");
    out[0].scale = a.scale;
    return out;
}

void add_steering(ds4::Session& session, const ds4::Model& model, const std::vector<SteerArg>& steer) {
    for (const SteerArg& s : steer) {
        ds4::SteeringVector v = ds4::SteeringVector::load_any(s.path, model);
        if (s.scale) v.set_scale(*s.scale);
        ds4::add_steering(session, v);
        std::fprintf(stderr, "steering: %s (%s at %s, scale %g, %zu layers)\n", s.path.c_str(),
                     std::string(ds4::steering_op_name(v.op())).c_str(),
                     std::string(ds4::steering_site_name(v.site())).c_str(), static_cast<double>(v.scale()),
                     v.layers().size());
    }
}

std::vector<ds4::TokenId> prompt_ids(const ds4::Tokenizer& tok, const Args& a) {
    if (a.raw) return tok.encode(a.prompt, {.allow_special = true});
    ds4::ChatOptions co;
    co.thinking = a.think == "high" ? ds4::ThinkingMode::High
                  : a.think == "max" ? ds4::ThinkingMode::Max
                                     : ds4::ThinkingMode::None;
    co.context_size = a.ctx;
    std::vector<ds4::ChatMessage> msgs;
    if (!a.system.empty()) msgs.push_back({ds4::Role::System, a.system, ""});
    msgs.push_back({ds4::Role::User, a.prompt, ""});
    return ds4::render_chat(tok, msgs, co);
}

void print_top_logprobs(const ds4::Session& session, int n) {
    std::fprintf(stderr, "[");
    for (const auto& lp : ds4::top_logprobs(session.logits(), n))
        std::fprintf(stderr, " %d:%.3f", lp.id, static_cast<double>(lp.logprob));
    std::fprintf(stderr, " ]\n");
}

void print_stats(const ds4::Session& session, size_t n_prompt, const ds4::Generation& g, double sec) {
    const auto st = session.stats();
    std::fprintf(stderr, "%zu prompt tokens, %zu generated (%s) in %.2f s: prefill %.1f tok/s, decode %.2f tok/s\n",
                 n_prompt, g.tokens.size(),
                 g.stopped_by_token ? "end of turn" : g.hit_context_limit ? "context full" : "length", sec,
                 st.prefill_seconds > 0 ? st.prefill_tokens / st.prefill_seconds : 0.0,
                 st.decode_seconds > 0 ? st.decode_tokens / st.decode_seconds : 0.0);
}

void run(const Args& a, const std::vector<SteerArg>& steer) {
    ds4::ModelOptions mo;
    mo.n_threads = a.threads;
    auto model = ds4::Model::load(a.model_path, mo);
    const ds4::Tokenizer* tok = model->tokenizer();
    if (!tok) throw ds4::Error(ds4::ErrorCode::UnsupportedModel, a.model_path + ": the file has no tokenizer");
    const std::vector<ds4::TokenId> ids = prompt_ids(*tok, a);
    ds4::Session session(model, {.context_size = a.ctx});
    add_steering(session, *model, steer);

    ds4::StreamDecoder dec(*tok);
    ds4::GenerateOptions go;
    go.max_tokens = a.n_predict;
    go.sampling = a.sp;
    go.seed = a.seed;
    go.stop_tokens = {tok->specials().eos};
    go.on_token = [&](ds4::TokenId t) {
        if (a.top_logprobs > 0) print_top_logprobs(session, a.top_logprobs);
        if (t != tok->specials().eos) std::fputs(dec.push(t).c_str(), stdout);
        std::fflush(stdout);
        return true;
    };
    const auto t0 = std::chrono::steady_clock::now();
    const ds4::Generation g = ds4::generate(session, ids, go);
    std::fputs(dec.flush().c_str(), stdout);
    std::fputs("\n", stdout);
    print_stats(session, ids.size(), g, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app("Text in, text out, with optional steering.", "ds4-generate");
    ds4::tools::set_up(app);
    Args a;
    add_options(app, a);
    std::vector<SteerArg> steer;
    app.callback([&] { steer = steer_args(a); });
    if (const auto rc = ds4::tools::parse(app, argc, argv)) return *rc;
    try {
        run(a, steer);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ds4-generate: %s\n", e.what());
        return 1;
    }
}
