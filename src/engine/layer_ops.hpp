// The CPU implementations of the backend operations (ds4/backend.hpp). The
// engine calls them directly when an operation stays on the CPU, and the
// built-in "cpu" backend wraps them, so both are one piece of code.
#pragma once

#include <span>
#include <vector>

#include "ds4/backend.hpp"
#include "kernels/matmul.hpp"

namespace ds4::placement {
class WorkerPool;
}

namespace ds4::engine {

// Reusable buffers of the CPU operations (one per thread of work), and the
// worker pool their matrix products run on (null: OpenMP).
struct CpuScratch {
    kernels::Activations act;
    std::vector<float> a, b, c;
    placement::WorkerPool* pool = nullptr;
};

// y = W x over the rows of W, on the scratch's pool (or OpenMP without one).
void cpu_matmul(const CpuScratch& s, const kernels::Matrix& W, const kernels::Activations& x, float* y,
                int64_t y_stride = 0);

// a.prepare(weight_type, x, n_tok, cols), with the rows split over the
// scratch's pool when there are enough of them (prefill); same result.
void prepare_activations(const CpuScratch& s, kernels::Activations& a, DType weight_type, const float* x,
                         int64_t n_tok, int64_t cols);

kernels::Matrix matrix_of(const WeightRef& w);
WeightRef weight_ref(const kernels::Matrix& m, std::string_view name = {}, int expert = -1);

void cpu_hc_pre(const HcPreCall& call, CpuScratch& scratch);
void cpu_hc_post(const HcPostCall& call);
void cpu_attention(const AttentionCall& call, CpuScratch& scratch);

// The same attention with the key rows in F16 as the engine stores them (no
// f32 copy): scores and the weighted sum run on the dispatched SIMD kernels.
struct AttentionF16Call {
    const float* q = nullptr;        // [H][hd]
    const uint16_t* keys = nullptr;  // [N][hd], F16
    int64_t n_rows = 0;
    int heads = 0;
    int head_dim = 0;
    const float* sinks = nullptr;  // [H]
    float scale = 1;
    float* out = nullptr;  // [H][hd]
};
void cpu_attention_f16(const AttentionF16Call& call, CpuScratch& scratch);
void cpu_routed_expert(const ExpertCall& call, CpuScratch& scratch);

// Buffers of cpu_routed_experts, reused from call to call.
struct RoutedExpertsScratch {
    struct InputKey {
        const float* x;
        int64_t n_tok, cols;
        DType type;  // activation type
    };
    std::vector<InputKey> input_keys;
    std::vector<kernels::Activations> inputs;      // one per distinct input key
    std::vector<size_t> gate_input, up_input;      // per call: its inputs[] entries
    std::vector<kernels::Activations> hidden;      // per call: its SwiGLU output, quantized for down
    std::vector<float> gate, up;                   // per call at hidden_offset: [n][ff]
    std::vector<int64_t> ff_offset, out_offset;    // prefix sums of the gate/up rows and of the down rows
    std::vector<int64_t> hidden_offset;            // prefix sums of n * ff
};

// Several routed experts of one layer as two jobs on the pool: the gate and
// up rows of every expert (with the clamped SwiGLU of each row range as soon
// as both are computed), then the down rows of every expert. Calls that read
// the same x (same pointer and token count, as in one-token decode) share one
// quantization of it. Each output row is computed exactly as
// cpu_routed_expert computes it, so the results are the same.
void cpu_routed_experts(std::span<const ExpertCall> calls, CpuScratch& scratch, RoutedExpertsScratch& buffers);

}  // namespace ds4::engine
