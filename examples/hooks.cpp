// hooks: reading and editing the model's activations with ds4::Hook.
//
// 1. A read-only hook logs, for every layer, the RMS of the residual stream
//    after the layer and which experts the router picked for the last token.
// 2. An editing hook scales the FFN output of one layer, and we measure how
//    much the next-token distribution moves.
//
// usage: ds4-example-hooks [MODEL.gguf]   (default: the demo model, data/demo-model)
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ds4/chat.hpp"
#include "ds4/hook.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "common/demo_model.hpp"

namespace {

// Logs per-layer activation norms and router choices of the newest token.
class NormAndRouterLogger : public ds4::Hook {
public:
    bool wants(ds4::HookPoint point, int) const override {
        return point == ds4::HookPoint::ResidPost || point == ds4::HookPoint::RouterSelection;
    }
    void on_activation(const ds4::ActivationView& v) override {
        const int64_t last = v.rows - 1;
        if (v.point == ds4::HookPoint::ResidPost) {
            double ss = 0;
            for (int64_t c = 0; c < v.width; ++c) ss += double(v.row(last)[c]) * v.row(last)[c];
            rms_[v.layer] = std::sqrt(ss / double(v.width));
        } else {
            std::vector<int> chosen(v.experts + last * v.k, v.experts + (last + 1) * v.k);
            experts_[v.layer] = chosen;
        }
    }
    void print() const {
        for (const auto& [layer, rms] : rms_) {
            std::printf("  layer %2d  rms(resid_post) = %8.4f  experts:", layer, rms);
            auto it = experts_.find(layer);
            if (it != experts_.end())
                for (int e : it->second) std::printf(" %d", e);
            std::printf("\n");
        }
    }

private:
    std::map<int, double> rms_;
    std::map<int, std::vector<int>> experts_;
};

// Multiplies the FFN output of one layer by a factor (an edit: it has a fingerprint).
class ScaleFfnOutput : public ds4::Hook {
public:
    ScaleFfnOutput(int layer, float factor) : layer_(layer), factor_(factor) {}
    bool wants(ds4::HookPoint point, int layer) const override {
        return point == ds4::HookPoint::FfnOut && layer == layer_;
    }
    void on_activation(const ds4::ActivationView& v) override {
        for (int64_t i = 0; i < v.rows * v.width; ++i) v.data[i] *= factor_;
    }
    uint64_t fingerprint() const override { return 0x5ca1e000u + uint64_t(layer_) * 1000 + uint64_t(factor_ * 100); }

private:
    int layer_;
    float factor_;
};

std::vector<double> softmax(std::span<const float> logits) {
    double mx = logits[0];
    for (float x : logits) mx = std::max(mx, double(x));
    std::vector<double> p(logits.size());
    double sum = 0;
    for (size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp(double(logits[i]) - mx);
    for (double& x : p) x /= sum;
    return p;
}

double kl(const std::vector<double>& p, const std::vector<double>& q) {
    double s = 0;
    for (size_t i = 0; i < p.size(); ++i)
        if (p[i] > 0) s += p[i] * std::log(p[i] / std::max(q[i], 1e-300));
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const std::string path = argc > 1 ? argv[1] : example::DemoModel{}.path();
        std::printf("model: %s\n", path.c_str());
        auto model = ds4::Model::load(path);
        const std::vector<ds4::ChatMessage> chat = {{ds4::Role::User, "What is the capital of Varnia?", ""}};
        const std::vector<ds4::TokenId> prompt = ds4::render_chat(*model->tokenizer(), chat);

        std::printf("1. read-only hook: per-layer RMS and router choice for the last token\n");
        ds4::Session session(model);
        auto logger = std::make_shared<NormAndRouterLogger>();
        session.add_hook(logger);
        session.prefill(prompt);
        logger->print();
        const auto base = softmax(session.logits());

        std::printf("2. editing hook: scale the FFN output of layer 1\n");
        for (float factor : {1.0f, 0.5f, 0.0f, 2.0f}) {
            ds4::Session edited(model);
            edited.add_hook(std::make_shared<ScaleFfnOutput>(1, factor));
            edited.prefill(prompt);
            std::printf("  factor %.1f  KL(base || edited) = %.6f\n", factor, kl(base, softmax(edited.logits())));
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "hooks: %s\n", e.what());
        return 1;
    }
}
