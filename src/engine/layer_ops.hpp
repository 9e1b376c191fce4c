// The CPU implementations of the backend operations (ds4/backend.hpp). The
// engine calls them directly when an operation stays on the CPU, and the
// built-in "cpu" backend wraps them, so both are one piece of code.
#pragma once

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

kernels::Matrix matrix_of(const WeightRef& w);
WeightRef weight_ref(const kernels::Matrix& m, std::string_view name = {}, int expert = -1);

void cpu_hc_pre(const HcPreCall& call, CpuScratch& scratch);
void cpu_hc_post(const HcPostCall& call);
void cpu_attention(const AttentionCall& call, CpuScratch& scratch);
void cpu_routed_expert(const ExpertCall& call, CpuScratch& scratch);

}  // namespace ds4::engine
