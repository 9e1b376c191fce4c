// ds4-generate: text in, text out, with optional steering.
//
//   ds4-generate -m MODEL.gguf -p "Explain MoE routing." [--system TEXT] [--think none|high|max]
//                [-n 256] [--temp 0] [--top-k 0] [--top-p 1] [--min-p 0.05] [--seed 1] [--ctx 4096]
//                [--steer FILE --scale S] [--raw] [--threads N] [--top-logprobs N]
//
// By default the prompt is rendered as one user turn of the chat template
// (--raw sends the text as is, matching control tokens). Text streams to
// stdout as it is generated; statistics go to stderr.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ds4/ds4.hpp"

namespace {

[[noreturn]] void usage(int code) {
    std::fprintf(code ? stderr : stdout,
                 "usage: ds4-generate -m MODEL.gguf -p TEXT [options]\n"
                 "  --system TEXT        system message\n"
                 "  --think MODE         none (default), high or max\n"
                 "  -n N                 tokens to generate (default 256)\n"
                 "  --temp T             temperature (default 0: greedy)\n"
                 "  --top-k K --top-p P --min-p M   sampling filters (defaults 0, 1, 0.05)\n"
                 "  --seed S             sampling seed (default 1)\n"
                 "  --ctx N              context size (default 4096)\n"
                 "  --steer FILE         steering vector (ds4 GGUF, .f32 or llama.cpp control vector)\n"
                 "  --scale S            its scale (default: the file's)\n"
                 "  --raw                no chat template; control-token text in the prompt is matched\n"
                 "  --threads N          worker threads (default: one per physical core)\n"
                 "  --top-logprobs N     print the N most likely tokens at each step to stderr\n");
    std::exit(code);
}

}  // namespace

int main(int argc, char** argv) {
    std::string model_path, prompt, system, think = "none", steer_path;
    int n_predict = 256, threads = 0, top_logprobs = 0;
    int64_t ctx = 4096;
    float scale = NAN;
    bool raw = false;
    ds4::SamplingParams sp;
    sp.temperature = 0.0f;
    uint64_t seed = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) usage(2);
            return argv[++i];
        };
        if (a == "-m" || a == "--model") model_path = next();
        else if (a == "-p" || a == "--prompt") prompt = next();
        else if (a == "--system") system = next();
        else if (a == "--think") think = next();
        else if (a == "-n") n_predict = std::atoi(next().c_str());
        else if (a == "--temp") sp.temperature = std::strtof(next().c_str(), nullptr);
        else if (a == "--top-k") sp.top_k = std::atoi(next().c_str());
        else if (a == "--top-p") sp.top_p = std::strtof(next().c_str(), nullptr);
        else if (a == "--min-p") sp.min_p = std::strtof(next().c_str(), nullptr);
        else if (a == "--seed") seed = std::strtoull(next().c_str(), nullptr, 10);
        else if (a == "--ctx") ctx = std::atoll(next().c_str());
        else if (a == "--steer") steer_path = next();
        else if (a == "--scale") scale = std::strtof(next().c_str(), nullptr);
        else if (a == "--raw") raw = true;
        else if (a == "--threads") threads = std::atoi(next().c_str());
        else if (a == "--top-logprobs") top_logprobs = std::atoi(next().c_str());
        else if (a == "-h" || a == "--help") usage(0);
        else {
            std::fprintf(stderr, "ds4-generate: unknown option %s\n", a.c_str());
            usage(2);
        }
    }
    if (model_path.empty() || prompt.empty()) usage(2);
    try {
        ds4::ModelOptions mo;
        mo.n_threads = threads;
        auto model = ds4::Model::load(model_path, mo);
        const ds4::Tokenizer* tok = model->tokenizer();
        if (!tok) throw ds4::Error(ds4::ErrorCode::UnsupportedModel, model_path + ": the file has no tokenizer");

        std::vector<ds4::TokenId> ids;
        if (raw) {
            ids = tok->encode(prompt, {.allow_special = true});
        } else {
            ds4::ChatOptions co;
            co.thinking = think == "none" ? ds4::ThinkingMode::None
                          : think == "high" ? ds4::ThinkingMode::High
                          : think == "max"  ? ds4::ThinkingMode::Max
                                            : throw ds4::Error(ds4::ErrorCode::InvalidArgument, "--think: none, high or max");
            co.context_size = ctx;
            std::vector<ds4::ChatMessage> msgs;
            if (!system.empty()) msgs.push_back({ds4::Role::System, system, ""});
            msgs.push_back({ds4::Role::User, prompt, ""});
            ids = ds4::render_chat(*tok, msgs, co);
        }

        ds4::Session session(model, {.context_size = ctx});
        if (!steer_path.empty()) {
            ds4::SteeringVector v = ds4::SteeringVector::load_any(steer_path, *model);
            if (!std::isnan(scale)) v.set_scale(scale);
            ds4::add_steering(session, v);
            std::fprintf(stderr, "steering: %s (%s at %s, scale %g, %zu layers)\n", steer_path.c_str(),
                         std::string(ds4::steering_op_name(v.op())).c_str(),
                         std::string(ds4::steering_site_name(v.site())).c_str(), static_cast<double>(v.scale()),
                         v.layers().size());
        }

        ds4::StreamDecoder dec(*tok);
        ds4::GenerateOptions go;
        go.max_tokens = n_predict;
        go.sampling = sp;
        go.seed = seed;
        go.stop_tokens = {tok->specials().eos};
        go.on_token = [&](ds4::TokenId t) {
            if (top_logprobs > 0) {
                std::fprintf(stderr, "[");
                for (const auto& lp : ds4::top_logprobs(session.logits(), top_logprobs))
                    std::fprintf(stderr, " %d:%.3f", lp.id, static_cast<double>(lp.logprob));
                std::fprintf(stderr, " ]\n");
            }
            if (t != tok->specials().eos) std::fputs(dec.push(t).c_str(), stdout);
            std::fflush(stdout);
            return true;
        };
        const auto t0 = std::chrono::steady_clock::now();
        const ds4::Generation g = ds4::generate(session, ids, go);
        std::fputs(dec.flush().c_str(), stdout);
        std::fputs("\n", stdout);
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const auto st = session.stats();
        std::fprintf(stderr, "%zu prompt tokens, %zu generated (%s) in %.2f s: prefill %.1f tok/s, decode %.2f tok/s\n",
                     ids.size(), g.tokens.size(),
                     g.stopped_by_token ? "end of turn" : g.hit_context_limit ? "context full" : "length", sec,
                     st.prefill_seconds > 0 ? st.prefill_tokens / st.prefill_seconds : 0.0,
                     st.decode_seconds > 0 ? st.decode_tokens / st.decode_seconds : 0.0);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ds4-generate: %s\n", e.what());
        return 1;
    }
}
