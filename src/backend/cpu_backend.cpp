// The "cpu" backend: the engine's own CPU operations behind the Backend
// interface (the engine calls the same functions directly when no other
// backend is assigned).
#include <thread>

#include "backend/builtin_backends.hpp"
#include "engine/layer_ops.hpp"
#include "engine/ops.hpp"

namespace ds4::backend {

namespace {

engine::CpuScratch& thread_scratch() {
    thread_local engine::CpuScratch s;
    return s;
}

class CpuBackend final : public Backend {
public:
    std::string_view name() const override { return "cpu"; }
    DeviceInfo device() const override { return cpu_device(); }
    bool supports(BackendOp op, DType type) const override {
        if (op != BackendOp::DenseMatmul && op != BackendOp::RoutedExperts) return true;
        switch (type) {
            case DType::F32: case DType::F16: case DType::BF16: case DType::Q8_0:
            case DType::Q2_K: case DType::Q4_K: case DType::IQ2_XXS: return true;
            default: return false;
        }
    }
    void matmul(const WeightRef& w, const float* x, int64_t n_tok, float* y, int64_t y_stride) override {
        engine::CpuScratch& s = thread_scratch();
        const kernels::Matrix m = engine::matrix_of(w);
        s.act.prepare(m.type, x, n_tok, m.cols);
        kernels::matmul(m, s.act, y, y_stride);
    }
    void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps) override {
        for (int64_t r = 0; r < rows; ++r) engine::rms_norm(x + r * n, w, y + r * n, n, eps);
    }
    void hc_pre(const HcPreCall& c) override { engine::cpu_hc_pre(c, thread_scratch()); }
    void hc_post(const HcPostCall& c) override { engine::cpu_hc_post(c); }
    void attention(const AttentionCall& c) override { engine::cpu_attention(c, thread_scratch()); }
    void routed_expert(const ExpertCall& c) override { engine::cpu_routed_expert(c, thread_scratch()); }

    static DeviceInfo cpu_device() {
        DeviceInfo d;
        d.name = "cpu0";
        d.description = "host CPU, " + std::to_string(std::thread::hardware_concurrency()) + " hardware threads";
        d.kind = DeviceKind::Cpu;
        return d;
    }
};

}  // namespace

BackendFactory cpu_backend_factory() {
    BackendFactory f;
    f.name = "cpu";
    f.devices = [] { return std::vector<DeviceInfo>{CpuBackend::cpu_device()}; };
    f.create = [](int) { return std::make_shared<CpuBackend>(); };
    return f;
}

}  // namespace ds4::backend
